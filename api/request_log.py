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

ACCESS_LOGGER = "trellis.access"
access_log = logging.getLogger(ACCESS_LOGGER)
# The access line's own members, in the order they are written.
ACCESS_FIELDS = ("request_id", "method", "route", "path", "status", "latency_ms", "user_id", "db")

# Only ids that cannot smuggle anything into a log line or a header are taken from clients.
_SAFE_ID = re.compile(r"^[A-Za-z0-9._:;=/+-]{1,128}$")


class JsonLines(OrjsonFormatter):
    """python-json-logger's lines; the access line (one a request) written from its fixed
    members straight to orjson: the same JSON for half the CPU (BENCHMARKS.md)."""

    _second = -1
    _second_text = ""

    def format(self, record: logging.LogRecord) -> str:
        if record.name != ACCESS_LOGGER or record.exc_info:
            return super().format(record)
        line: dict[str, Any] = {
            "time": self._time(record.created),
            "level": record.levelname,
            "logger": ACCESS_LOGGER,
            "message": record.msg,
        }
        fields = record.__dict__
        for name in ACCESS_FIELDS:
            line[name] = fields.get(name)
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


def _finish(response: Response) -> Response:
    response.headers["X-Request-Id"] = g.get("request_id", "")
    if not access_log.isEnabledFor(logging.INFO):
        return response
    started = g.get("started")
    user = g.get("user")
    rule = request.url_rule
    fields = {
        "request_id": g.get("request_id"),
        "method": request.method,
        "route": rule.rule if rule is not None else None,
        "path": request.path,
        "status": response.status_code,
        "latency_ms": round((time.perf_counter() - started) * 1000, 2) if started else None,
        "user_id": str(user.id) if user is not None else None,
        "db": database_route(),
    }
    # makeRecord and handle: logger.info() would also walk the stack for the caller's line.
    access_log.handle(
        access_log.makeRecord(
            ACCESS_LOGGER, logging.INFO, __file__, 0, "request", (), None, extra=fields
        )
    )
    return response


def register_request_log(app: Flask) -> None:
    app.before_request(_start)
    app.after_request(_finish)
