"""The soak's fault schedule, and the coroutine that injects it through the stack's proxies."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import asdict, dataclass

from tests.support.faultstack import FaultStack
from tests.support.proxy import Mode

# Fault kind -> the link it breaks.
LINKS = {
    "pg_cut": "postgres",
    "pg_refuse": "postgres",
    "redis_down": "redis",
    "jwks_down": "jwks",
    "sns_down": "sns",
}
KINDS = tuple(LINKS)


@dataclass(frozen=True)
class Fault:
    """At `at` seconds into the load, break one link for `seconds` (0: cut it once)."""

    at: float
    kind: str
    seconds: float = 0.0
    mode: Mode = "refuse"


def short_schedule() -> list[Fault]:
    """Every kind at least once within 25 s; PostgreSQL cut twice (before and after a refusal)."""
    return [
        Fault(3, "sns_down", 10),
        Fault(5, "pg_cut"),
        Fault(8, "redis_down", 5),
        Fault(14, "jwks_down", 5),
        Fault(17, "pg_refuse", 2),
        Fault(22, "pg_cut"),
    ]


def long_schedule(duration: float, period: float = 24.0) -> list[Fault]:
    """The short pattern repeated every `period` seconds, alternating refuse and blackhole
    for Redis, the JWKS and SNS; the last `period` of the load runs without faults."""
    faults: list[Fault] = []
    start, cycle = 2.0, 0
    while start + period <= duration - period / 2:
        hole: Mode = "blackhole" if cycle % 2 else "refuse"
        faults += [
            Fault(start, "pg_cut"),
            Fault(start + 2, "redis_down", 8, hole),
            Fault(start + 7, "jwks_down", 8, hole),
            Fault(start + 11, "pg_refuse", 3),
            Fault(start + 12, "sns_down", 10, hole),
            Fault(start + 18, "pg_cut"),
        ]
        start += period
        cycle += 1
    return faults


async def inject(stack: FaultStack, schedule: list[Fault], started: float) -> list[dict]:
    """Apply each fault at its time (`started` is the load's time.monotonic() origin)."""
    return list(await asyncio.gather(*(_apply(stack, f, started) for f in schedule)))


async def _apply(stack: FaultStack, fault: Fault, started: float) -> dict:
    await asyncio.sleep(max(0.0, started + fault.at - time.monotonic()))
    proxy = stack.proxies[LINKS[fault.kind]]
    began = round(time.monotonic() - started, 1)
    if fault.seconds == 0:
        proxy.cut()
    else:
        proxy.set(fault.mode)
        await asyncio.sleep(fault.seconds)
        proxy.set("pass")
    return {**asdict(fault), "began": began}


def counts(applied: list[dict]) -> dict[str, int]:
    """How many faults of each kind were injected (every kind listed, zeros included)."""
    seen = Counter(f["kind"] for f in applied)
    return {kind: seen[kind] for kind in KINDS}
