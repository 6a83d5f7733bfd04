"""Request ids and one JSON log line per request (CloudWatch Logs reads stdout)."""

from __future__ import annotations

import logging
import re
import sys
import time
import uuid
from typing import Any

import orjson
from flask import Flask, Response, g, request
from pythonjsonlogger.orjson import OrjsonFormatter

from api.context import database_route
from services.base import metrics

ACCESS_LOGGER = "trellis.access"
access_log = logging.getLogger(ACCESS_LOGGER)
# The access line's own members, in the order they are written.
ACCESS_FIELDS = (
    *("request_id", "method", "route", "path", "status", "latency_ms", "user_id", "db"),
    *("status_class", "db_ms", "_aws"),  # CloudWatch metrics (services/base/metrics.py)
)
_STATUS_CLASSES = {n: f"{n}xx" for n in range(1, 6)}

# Only ids that cannot smuggle anything into a log line or a header are taken from clients.
_SAFE_ID = re.compile(r"^[A-Za-z0-9._:;=/+-]{1,128}$")


class JsonLines(OrjsonFormatter):
    """python-json-logger's lines; the access line (one a request) written from its fixed
    members straight to orjson: the same JSON for half the CPU (BENCHMARKS.md)."""

    _second = -1
    _second_text = ""

    def format(self, record: logging.LogRecord) -> str:
        fields = record.__dict__
        emf = fields.get("emf")  # a metrics line (services/base/metrics.py): its members as given
        if (record.name != ACCESS_LOGGER and emf is None) or record.exc_info:
            return super().format(record)
        line: dict[str, Any] = {
            "time": self._time(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.msg,
        }
        if emf is not None:
            line.update(emf)
        else:
            for name in ACCESS_FIELDS:
                if name in fields:
                    line[name] = fields[name]
        return orjson.dumps(line).decode()

    def _time(self, created: float) -> str:
        """logging's default time format ("2026-12-06 02:31:07,266"), the date part built once
        a second (the handler's lock serialises formatting)."""
        second = int(created)
        if second != self._second:
            self._second_text = time.strftime("%Y-%m-%d %H:%M:%S", self.converter(created))
            self._second = second
        return f"{self._second_text},{int((created - second) * 1000):03d}"


def configure_logging(level: str) -> None:
    """JSON lines on stdout for every Trellis logger; idempotent."""
    root = logging.getLogger()
    if not any(getattr(h, "_trellis", False) for h in root.handlers):
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(
            JsonLines(
                "{asctime}{levelname}{name}{message}",
                style="{",
                rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            )
        )
        handler._trellis = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    root.setLevel(level)


def _request_id() -> str:
    for header in ("X-Request-Id", "X-Amzn-Trace-Id"):
        value = request.headers.get(header)
        if value and _SAFE_ID.match(value):
            return value
    return uuid.uuid4().hex


def _start() -> None:
    g.request_id = _request_id()
    g.started = time.perf_counter()
    metrics.start_db_clock()


def _finish(response: Response) -> Response:
    response.headers["X-Request-Id"] = g.get("request_id", "")
    if not access_log.isEnabledFor(logging.INFO):
        return response
    started = g.get("started")
    user = g.get("user")
    rule = request.url_rule
    status = response.status_code
    fields = {
        "request_id": g.get("request_id"),
        "method": request.method,
        "route": rule.rule if rule is not None else None,
        "path": request.path,
        "status": status,
        "latency_ms": round((time.perf_counter() - started) * 1000, 2) if started else None,
        "user_id": str(user.id) if user is not None else None,
        "db": database_route(),
    }
    if rule is not None and started:  # a route's request: its metrics (none for a 404 scan)
        fields["status_class"] = _STATUS_CLASSES.get(status // 100, "5xx")
        fields["db_ms"] = round(metrics.db_seconds() * 1000, 2)
        fields["_aws"] = metrics.directive(metrics.ACCESS_DIMENSIONS, metrics.ACCESS_METRICS)
    # makeRecord and handle: logger.info() would also walk the stack for the caller's line.
    access_log.handle(
        access_log.makeRecord(
            ACCESS_LOGGER, logging.INFO, __file__, 0, "request", (), None, extra=fields
        )
    )
    return response


def register_request_log(app: Flask) -> None:
    metrics.configure(app.extensions["trellis"].settings.metrics_namespace)
    app.before_request(_start)
    app.after_request(_finish)
