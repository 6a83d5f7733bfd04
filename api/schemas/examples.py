"""Examples of times and dates computed when /openapi.json is built, never written down.

A fixed date in an example is valid the day it is written and a 422 ("must be in the
future") some months later, when a developer pastes it from /docs. So a schema names an
offset from now instead: `Field(json_schema_extra=at(days=7))`, or calls `future_datetime`
in a model's `json_schema_extra` function. pydantic runs those functions each time it
generates a JSON Schema; api/openapi.py builds the document inside `examples_from(now)`
so that the whole document agrees on one "now" (and is the same bytes for the same hour).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime, timedelta
from typing import Any

_NOW: ContextVar[datetime | None] = ContextVar("examples_now", default=None)


def anchor(now: datetime | None = None) -> datetime:
    """The next full hour (UTC) after `now`: examples stay in the future for the hour the
    document is served, and one document serves a whole hour."""
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    return moment.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)


@contextmanager
def examples_from(now: datetime) -> Iterator[None]:
    token = _NOW.set(anchor(now))
    try:
        yield
    finally:
        _NOW.reset(token)


def _anchor() -> datetime:
    return _NOW.get() or anchor()


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def future_datetime(days: int = 0, hour: int | None = None) -> str:
    """A UTC date-time `days` after the anchor, at `hour`:00 if given (e.g. a booking at
    9 a.m. a week ahead), else at the anchor's hour."""
    moment = _anchor() + timedelta(days=days)
    if hour is not None:
        moment = moment.replace(hour=hour)
        if moment < _anchor():  # `days=0, hour=9` asked after 9: tomorrow at 9
            moment += timedelta(days=1)
    return _iso(moment)


def future_date(days: int) -> str:
    """A calendar date `days` after the anchor's (days >= 0)."""
    return (_anchor().date() + timedelta(days=days)).isoformat()


def at(*, days: int = 0, hour: int | None = None) -> Callable[[dict[str, Any]], None]:
    """`json_schema_extra` of a date-time field: its example, `days` ahead of now."""

    def set_example(schema: dict[str, Any]) -> None:
        schema["examples"] = [future_datetime(days, hour)]

    return set_example


def on(*, days: int) -> Callable[[dict[str, Any]], None]:
    """`json_schema_extra` of a date field: its example, `days` ahead of today."""

    def set_example(schema: dict[str, Any]) -> None:
        schema["examples"] = [future_date(days)]

    return set_example
