"""The access line's fast formatter writes exactly what python-json-logger wrote."""

from __future__ import annotations

import json
import logging

import pytest
from pythonjsonlogger.orjson import OrjsonFormatter

from api.request_log import ACCESS_FIELDS, ACCESS_LOGGER, JsonLines

FORMAT = "{asctime}{levelname}{name}{message}"
RENAMED = {"asctime": "time", "levelname": "level", "name": "logger"}


def _record(name: str, **extra: object) -> logging.LogRecord:
    return logging.getLogger(name).makeRecord(
        name, logging.INFO, __file__, 1, "request", (), None, extra=extra
    )


@pytest.mark.parametrize(
    "fields",
    [
        {
            "request_id": "r-1",
            "method": "GET",
            "route": "/v1/bookings/<uuid:booking_id>",
            "path": "/v1/bookings/0d9a…\u2028\"'\\",
            "status": 200,
            "latency_ms": 3.25,
            "user_id": "04c62ca8-442d-4a17-8aab-151b9c2aaaf8",
            "db": "replica:one",
            "status_class": "2xx",
            "db_ms": 1.5,
        },
        dict.fromkeys(ACCESS_FIELDS[:8]),  # a 404: no route, no user, no unit, no metrics
    ],
)
def test_the_access_line_is_the_same_json(fields: dict[str, object]) -> None:
    record = _record(ACCESS_LOGGER, **fields)
    ours = JsonLines(FORMAT, style="{", rename_fields=RENAMED).format(record)
    theirs = OrjsonFormatter(FORMAT, style="{", rename_fields=RENAMED).format(record)
    assert ours == theirs
    assert list(json.loads(ours)) == ["time", "level", "logger", "message", *fields]


def test_the_access_line_keeps_its_metrics_members() -> None:
    """`_aws` too, which python-json-logger leaves out (a leading underscore)."""
    fields = dict.fromkeys(ACCESS_FIELDS[:8], "x") | {"status_class": "2xx", "db_ms": 0.5}
    aws = {"Timestamp": 1, "CloudWatchMetrics": []}
    record = _record(ACCESS_LOGGER, **fields, _aws=aws)
    ours = json.loads(JsonLines(FORMAT, style="{", rename_fields=RENAMED).format(record))
    theirs = json.loads(OrjsonFormatter(FORMAT, style="{", rename_fields=RENAMED).format(record))
    assert ours == theirs | {"_aws": aws}
    assert list(ours) == ["time", "level", "logger", "message", *ACCESS_FIELDS]


def test_other_lines_keep_python_json_logger() -> None:
    record = _record("trellis.db", error="boom", retry_in_s=2)
    ours = JsonLines(FORMAT, style="{", rename_fields=RENAMED).format(record)
    theirs = OrjsonFormatter(FORMAT, style="{", rename_fields=RENAMED).format(record)
    assert ours == theirs and json.loads(ours)["error"] == "boom"
