"""A provider's availability: weekly hours, date exceptions and booking rules.

The document is stored as sent (local "HH:MM" times in an IANA zone) and read back into
`Rules`, the form the slots are computed from (services/marketplace/slots.py). Shape and
ranges are checked by the API schema; what needs the whole document (overlapping intervals
of one day, a date given twice) is checked here, 422 naming the offending item.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy.orm import Session

from models import Availability
from models.base import utcnow
from services.base.db import insert_ignoring_conflict
from services.base.errors import FieldError, NotFound, ValidationFailed

DEFAULT_DURATION_MINUTES = 60  # a booking's length when the provider set no availability


@dataclass(frozen=True, slots=True)
class Span:
    """Minutes after local midnight: [start, end), end at most 1440."""

    start: int
    end: int


@dataclass(frozen=True, slots=True)
class Rules:
    time_zone: str
    weekly: dict[int, tuple[Span, ...]]  # weekday (Monday 0) -> the day's spans, sorted
    exceptions: dict[date, tuple[Span, ...]]  # replaces the weekly spans of that date
    buffer_minutes: int
    min_notice_minutes: int
    max_days_ahead: int
    default_duration_minutes: int

    def spans_on(self, day: date) -> tuple[Span, ...]:
        found = self.exceptions.get(day)
        return found if found is not None else self.weekly.get(day.weekday(), ())


@dataclass(frozen=True, slots=True)
class AvailabilityView:
    document: dict[str, Any]  # as stored: time_zone, weekly, exceptions, the four numbers
    updated_at: datetime


def put_availability(
    session: Session, *, provider_id: uuid.UUID, document: dict[str, Any]
) -> AvailabilityView:
    """Create or replace the provider's availability (`document` already schema-valid)."""
    _check_overlaps(document)
    now = utcnow()
    values = {**document, "provider_id": provider_id, "updated_at": now}
    # Insert, or (already there, perhaps from a concurrent first PUT) overwrite.
    if insert_ignoring_conflict(session, Availability, values, ["provider_id"]).rowcount == 0:
        row = session.get_one(Availability, provider_id, with_for_update=True)
        for name, value in values.items():
            setattr(row, name, value)
        session.flush()
    return AvailabilityView(document, now)


def get_availability(session: Session, *, provider_id: uuid.UUID) -> AvailabilityView:
    row = session.get(Availability, provider_id)
    if row is None:
        raise NotFound("You have set no availability yet; set it with PUT.")
    document = {name: getattr(row, name) for name in _DOCUMENT_FIELDS}
    return AvailabilityView(document, row.updated_at)


def load_rules(session: Session, provider_id: uuid.UUID) -> Rules | None:
    """The provider's rules, or None: no availability set, any time may be requested."""
    row = session.get(Availability, provider_id)
    if row is None:
        return None
    weekly: dict[int, list[Span]] = defaultdict(list)
    for item in row.weekly:
        weekly[item["weekday"]].append(_span(item))
    return Rules(
        time_zone=row.time_zone,
        weekly={day: tuple(sorted(spans, key=_start)) for day, spans in weekly.items()},
        exceptions={
            date.fromisoformat(e["date"]): tuple(sorted(map(_span, e["intervals"]), key=_start))
            for e in row.exceptions
        },
        buffer_minutes=row.buffer_minutes,
        min_notice_minutes=row.min_notice_minutes,
        max_days_ahead=row.max_days_ahead,
        default_duration_minutes=row.default_duration_minutes,
    )


_DOCUMENT_FIELDS = (
    "time_zone",
    "weekly",
    "exceptions",
    "buffer_minutes",
    "min_notice_minutes",
    "max_days_ahead",
    "default_duration_minutes",
)


def _minutes(hhmm: str) -> int:
    hours, minutes = hhmm.split(":")
    return int(hours) * 60 + int(minutes)


def _span(item: dict[str, Any]) -> Span:
    return Span(_minutes(item["start"]), _minutes(item["end"]))


def _start(span: Span) -> int:
    return span.start


def _check_overlaps(document: dict[str, Any]) -> None:
    """422 for an interval overlapping an earlier one of the same day, or a date given twice.
    Touching intervals (09:00-12:00, 12:00-17:00) are fine: they join."""
    problems: list[FieldError] = []
    by_day: dict[int, list[tuple[int, Span]]] = defaultdict(list)
    for i, item in enumerate(document["weekly"]):
        by_day[item["weekday"]].append((i, _span(item)))
    for day in by_day.values():
        problems += _overlapping(day, lambda i: f"weekly.{i}")
    seen: set[str] = set()
    for i, exception in enumerate(document["exceptions"]):
        if exception["date"] in seen:
            problems.append(
                FieldError(f"exceptions.{i}.date", "this date is given twice", "duplicate")
            )
        seen.add(exception["date"])
        spans = [(j, _span(item)) for j, item in enumerate(exception["intervals"])]
        problems += _overlapping(spans, lambda j, i=i: f"exceptions.{i}.intervals.{j}")
    if problems:
        raise ValidationFailed("The availability cannot be saved as sent.", problems)


def _overlapping(spans: list[tuple[int, Span]], path: Any) -> list[FieldError]:
    problems = []
    reach: Span | None = None  # of the spans so far, the one ending last
    for index, span in sorted(spans, key=lambda pair: (pair[1].start, pair[0])):
        if reach is not None and span.start < reach.end:
            message = f"overlaps {_hhmm(reach.start)}-{_hhmm(reach.end)} of the same day"
            problems.append(FieldError(f"{path(index)}.start", message, "overlap"))
        if reach is None or span.end > reach.end:
            reach = span
    return problems


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"
