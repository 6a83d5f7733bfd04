"""Request ids and one JSON log line per request (CloudWatch Logs reads stdout)."""

from __future__ import annotations

import logging
import re
import sys
import time
import uuid

from flask import Flask, Response, g, request
from pythonjsonlogger.orjson import OrjsonFormatter

from api.context import database_route

access_log = logging.getLogger("trellis.access")

# Only ids that cannot smuggle anything into a log line or a header are taken from clients.
_SAFE_ID = re.compile(r"^[A-Za-z0-9._:;=/+-]{1,128}$")


def configure_logging(level: str) -> None:
    """JSON lines on stdout for every Trellis logger; idempotent."""
    root = logging.getLogger()
    if not any(getattr(h, "_trellis", False) for h in root.handlers):
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(
            OrjsonFormatter(
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
    started = g.get("started")
    user = g.get("user")
    access_log.info(
        "request",
        extra={
            "request_id": g.get("request_id"),
            "method": request.method,
            "route": request.url_rule.rule if request.url_rule else None,
            "path": request.path,
            "status": response.status_code,
            "latency_ms": round((time.perf_counter() - started) * 1000, 2) if started else None,
            "user_id": str(user.id) if user is not None else None,
            "db": database_route(),
        },
    )
    return response


def register_request_log(app: Flask) -> None:
    app.before_request(_start)
    app.after_request(_finish)
