"""What the simulated users saw: every response, and every write the service acknowledged.

The ledger is the client's side of the story; tests/soak/verify.py holds it against what
PostgreSQL and the emulated SNS hold at the end.
"""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

import httpx

PROBLEM = "application/problem+json"
# The 4xx a well-behaved app meets under faults and handles: a retry racing its own first
# attempt (409, retried with the same key) and another device's sync batch (409, merged).
HANDLED_CONFLICTS = ("/problems/idempotency-key-in-use", "/problems/sync-conflict")


@dataclass
class SyncLog:
    """One user's acknowledged sync writes to the soak dataset."""

    batches: int = 0
    notes: dict[str, tuple[Any, int]] = field(default_factory=dict)  # key -> (value, count)
    profile: tuple[Any, int] | None = None  # the last acknowledged (value, sync_count)


@dataclass
class Ledger:
    """Responses by status and kind, violations, and the acknowledged writes to check."""

    statuses: Counter[str] = field(default_factory=Counter)
    problem_types: Counter[str] = field(default_factory=Counter)  # "503 /problems/unavailable"
    by_kind: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    violations: list[str] = field(default_factory=list)
    retries: Counter[str] = field(default_factory=Counter)
    abandoned: Counter[str] = field(default_factory=Counter)
    tried_keys: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    bookings: dict[str, str] = field(default_factory=dict)  # Idempotency-Key -> booking id
    messages: dict[str, tuple[str, str]] = field(default_factory=dict)  # key -> (booking, id)
    accepts: set[str] = field(default_factory=set)  # booking ids
    sync: dict[str, SyncLog] = field(default_factory=lambda: defaultdict(SyncLog))

    def record(self, kind: str, response: httpx.Response, seconds: float) -> None:
        """Count a response; anything but 2xx, a documented 503 or a handled 409 is a violation."""
        status = response.status_code
        self.statuses[str(status)] += 1
        self.by_kind[kind][str(status)] += 1
        self.latencies[kind].append(seconds)
        if status < 400:
            return
        problem = problem_type(response)
        self.problem_types[f"{status} {problem or response.headers.get('content-type')}"] += 1
        if status == 503:
            if not response.headers.get("retry-after", "").isdigit() or problem is None:
                self.violations.append(f"{kind}: 503 without problem+json and Retry-After")
            return
        if status == 409 and problem in HANDLED_CONFLICTS:
            return
        detail = response.text[:300].replace("\n", " ")
        self.violations.append(f"{kind}: {status} {problem or ''} {detail}")

    def transport_error(self, kind: str, error: Exception, seconds: float) -> None:
        """No HTTP answer at all (a worker killed, a connection dropped): always a violation."""
        name = f"transport:{type(error).__name__}"
        self.statuses[name] += 1
        self.by_kind[kind][name] += 1
        self.latencies[kind].append(seconds)
        self.violations.append(f"{kind}: {name} {error!s:.200}")

    @property
    def requests(self) -> int:
        return sum(self.statuses.values())

    def latency_ms(self) -> dict[str, dict[str, float]]:
        """p50, p95 and max per kind of request, in milliseconds."""
        summary = {}
        for kind, values in sorted(self.latencies.items()):
            ordered = sorted(values)
            summary[kind] = {
                "p50": round(1000 * statistics.median(ordered), 1),
                "p95": round(1000 * ordered[int(0.95 * (len(ordered) - 1))], 1),
                "max": round(1000 * ordered[-1], 1),
            }
        return summary


def problem_type(response: httpx.Response) -> str | None:
    if not response.headers.get("content-type", "").startswith(PROBLEM):
        return None
    try:
        return str(response.json().get("type"))
    except ValueError:
        return None
