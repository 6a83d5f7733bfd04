"""CloudWatch metrics in the JSON log lines: the Embedded Metric Format (EMF).

Elastic Beanstalk already streams every stdout line to CloudWatch Logs, and CloudWatch Logs
turns a JSON line that carries an `_aws` member into metrics: no agent change and no API
call from the app. A line names its metrics and dimensions in `_aws` and carries their
values as ordinary members, so the same line stays readable as a log:

- each access line (api/request_log.py): `latency_ms` and `db_ms` (time spent in the
  database driver) by `route` and `status_class`, and by `status_class` alone (the 5xx
  rate alarm in .ebextensions/10-web-app-alarms.config);
- an outbox line from each process that drains the outbox, at most once a minute
  (services/messaging/outbox.py): `outbox_backlog`, `outbox_oldest_age_s`, `push_failures`
  (retries scheduled) and `push_endpoints_gone` since the last line.

The namespace is METRICS_NAMESPACE. Specification:
https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

metrics_log = logging.getLogger("trellis.metrics")

ACCESS_DIMENSIONS = [["route", "status_class"], ["status_class"]]
ACCESS_METRICS = [
    {"Name": "latency_ms", "Unit": "Milliseconds"},
    {"Name": "db_ms", "Unit": "Milliseconds"},
]
OUTBOX_DIMENSIONS = [["queue"]]
OUTBOX_METRICS = [
    {"Name": "outbox_backlog", "Unit": "Count"},
    {"Name": "outbox_oldest_age_s", "Unit": "Seconds"},
    {"Name": "push_failures", "Unit": "Count"},
    {"Name": "push_endpoints_gone", "Unit": "Count"},
]
OUTBOX_EVERY_SECONDS = 60.0
_namespace = ["Trellis"]  # METRICS_NAMESPACE, set once per process by configure()


def configure(namespace: str) -> None:
    _namespace[0] = namespace


def directive(dimensions: list[list[str]], metrics: list[dict[str, str]]) -> dict[str, Any]:
    """The `_aws` member of an EMF line, stamped now."""
    return {
        "Timestamp": int(time.time() * 1000),
        "CloudWatchMetrics": [
            {"Namespace": _namespace[0], "Dimensions": dimensions, "Metrics": metrics}
        ],
    }


# ---- database time per request: the driver's time, summed on the request's thread ----
_clock = threading.local()


def start_db_clock() -> None:
    _clock.seconds = 0.0


def db_seconds() -> float:
    return getattr(_clock, "seconds", 0.0)


def add_db_seconds(seconds: float) -> None:
    _clock.seconds = getattr(_clock, "seconds", 0.0) + seconds


def before_cursor_execute(*_args: Any) -> None:
    _clock.started = time.perf_counter()


def after_cursor_execute(*_args: Any) -> None:
    started = getattr(_clock, "started", None)
    if started is not None:
        add_db_seconds(time.perf_counter() - started)
        _clock.started = None


# ---- the outbox line -------------------------------------------------------------------
class OutboxReport:
    """Push failures counted between lines; a line at most every OUTBOX_EVERY_SECONDS."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._failures = 0
        self._gone = 0
        self._next = 0.0

    def count(self, failures: int, gone: int) -> bool:
        """Add a drain's failures; True when a line is due (the caller reads the backlog)."""
        with self._lock:
            self._failures += failures
            self._gone += gone
            now = time.monotonic()
            if now < self._next:
                return False
            self._next = now + OUTBOX_EVERY_SECONDS
            return True

    def emit(self, backlog: int, oldest_age_s: float) -> None:
        with self._lock:
            failures, gone, self._failures, self._gone = self._failures, self._gone, 0, 0
        members = {
            "queue": "outbox",
            "outbox_backlog": backlog,
            "outbox_oldest_age_s": round(oldest_age_s, 1),
            "push_failures": failures,
            "push_endpoints_gone": gone,
            "_aws": directive(OUTBOX_DIMENSIONS, OUTBOX_METRICS),
        }
        # `emf`: the JSON lines' formatter writes these members as they are (api/request_log.py;
        # python-json-logger would drop `_aws`, a name with a leading underscore).
        metrics_log.info("outbox", extra={"emf": members})


outbox_report = OutboxReport()
