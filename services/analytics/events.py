"""App analytics: recording batches of events, and the admin summary built from them.

Built for volume: a batch is one multi-row INSERT through SQLAlchemy Core (no ORM objects);
the summary aggregates in SQL, by UTC day of the server's clock (`received_at`), over range
predicates that the indexes on events (received_at), (name, received_at) and
(user_id, received_at) serve.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import orjson
from sqlalchemy import Date, Insert, Text, bindparam, column, distinct, func, insert, select
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from models import Booking, BookingEvent, Event, ProviderProfile, User
from models.base import utcnow
from services.base.errors import FieldError, ValidationFailed

MAX_AHEAD = timedelta(hours=24)
MAX_BEHIND = timedelta(days=30)
MAX_RANGE_DAYS = 366
DEFAULT_RANGE_DAYS = 30
MAU_DAYS = 30
TOP_NAMES = 100
EARLIEST_DAY = date(1970, 1, 1)
LATEST_DAY = date(9999, 12, 30)

_EVENTS = Event.__table__


# --- recording --------------------------------------------------------------------------


@dataclass(slots=True)
class NewEvent:
    """One event as the app sent it, already checked for shape.

    Not frozen: a frozen dataclass's __init__ costs five times as much, 50 times a batch.
    """

    index: int  # its position in the batch, to report a rejection against
    name: str
    occurred_at: datetime
    session_id: str | None
    attributes: dict[str, str]
    metrics: dict[str, float]
    app_version: str | None
    platform: str | None


@dataclass(frozen=True, slots=True)
class Rejection:
    index: int
    errors: tuple[FieldError, ...]

    @property
    def reason(self) -> str:
        return "; ".join(f"{e.field}: {e.message}" for e in self.errors)


@dataclass(frozen=True, slots=True)
class RecordResult:
    accepted: int
    rejected: list[Rejection] = field(default_factory=list)


def record_events(
    session: Session, *, user_id: uuid.UUID, events: Sequence[NewEvent]
) -> RecordResult:
    """Store the events whose timestamp is plausible, in one INSERT; reject the others.

    The server's clock is recorded as `received_at` (one instant for the whole batch).
    """
    now = utcnow()
    latest, earliest = now + MAX_AHEAD, now - MAX_BEHIND
    rows: list[dict[str, Any]] = []
    rejected: list[Rejection] = []
    for event in events:
        # Compared before any conversion: a far-off instant may not fit in a UTC datetime.
        if event.occurred_at > latest:
            problem = FieldError("timestamp", "must be at most 24 hours ahead", "too_far_ahead")
            rejected.append(Rejection(event.index, (problem,)))
        elif event.occurred_at < earliest:
            problem = FieldError("timestamp", "must be at most 30 days old", "too_old")
            rejected.append(Rejection(event.index, (problem,)))
        else:
            rows.append(
                {
                    "name": event.name,
                    # UTC: PostgreSQL refuses offsets beyond 15:59, which RFC 3339 allows.
                    "occurred_at": event.occurred_at.astimezone(UTC),
                    "session_id": event.session_id,
                    "attributes": event.attributes,
                    "metrics": event.metrics,
                    "app_version": event.app_version,
                    "platform": event.platform,
                }
            )
    if rows:
        _insert(session, user_id, now, rows)
    return RecordResult(accepted=len(rows), rejected=rejected)


def _insert(
    session: Session, user_id: uuid.UUID, now: datetime, rows: list[dict[str, Any]]
) -> None:
    """One INSERT for the batch."""
    if session.get_bind().dialect.name != "postgresql":
        # Core executemany: one multi-row INSERT (insertmanyvalues).
        session.execute(
            insert(_EVENTS), [{**r, "user_id": user_id, "received_at": now} for r in rows]
        )
        return
    # The whole batch as one JSON parameter that PostgreSQL unpacks: rendering 50 events x
    # 9 bound values in Python (and json.dumps for each JSON column) cost twice the CPU.
    batch = orjson.dumps(rows, option=orjson.OPT_UTC_Z)
    session.execute(
        _INSERT_BATCH, {"user_id": user_id, "received_at": now, "batch": batch.decode()}
    )


_BATCH_COLUMNS = (
    "name",
    "occurred_at",
    "session_id",
    "attributes",
    "metrics",
    "app_version",
    "platform",
)


def _insert_batch_statement() -> Insert:
    """INSERT INTO events ... SELECT FROM json_to_recordset(:batch), built once.

    json (not jsonb), as the columns are: each attributes/metrics object is stored as the
    text orjson wrote for it, without jsonb's normalisation.
    """
    e = _EVENTS
    unpacked = (
        func.json_to_recordset(bindparam("batch", type_=Text))
        .table_valued(*(column(name, e.c[name].type) for name in _BATCH_COLUMNS))
        .render_derived(name="batch", with_types=True)
    )
    source = select(
        bindparam("user_id", type_=e.c.user_id.type),
        bindparam("received_at", type_=e.c.received_at.type),
        *(unpacked.c[name] for name in _BATCH_COLUMNS),
    )
    return insert(e).from_select(["user_id", "received_at", *_BATCH_COLUMNS], source)


_INSERT_BATCH = _insert_batch_statement()


# --- the summary ------------------------------------------------------------------------


class utc_day(FunctionElement[date]):
    """The UTC calendar day of a timestamp column, on PostgreSQL and SQLite alike."""

    type = Date()
    name = "utc_day"
    inherit_cache = True


@compiles(utc_day)
def _utc_day_default(element: utc_day, compiler: SQLCompiler, **kw: Any) -> str:
    # SQLite keeps timestamps as UTC text ('YYYY-MM-DD HH:MM:SS...'): date() takes the day.
    return f"date({compiler.process(element.clauses, **kw)})"


@compiles(utc_day, "postgresql")
def _utc_day_postgresql(element: utc_day, compiler: SQLCompiler, **kw: Any) -> str:
    # timestamptz -> the UTC wall time -> its date, whatever the session's TimeZone is.
    return f"CAST(({compiler.process(element.clauses, **kw)} AT TIME ZONE 'UTC') AS DATE)"


@dataclass(frozen=True, slots=True)
class DayStats:
    date: date
    active_users: int
    sessions: int
    events: int
    new_users: int


@dataclass(frozen=True, slots=True)
class NameStats:
    name: str
    total: int
    daily: list[tuple[date, int]]


@dataclass(frozen=True, slots=True)
class Funnel:
    requested: int
    accepted: int
    completed: int
    accept_rate: float | None
    completion_rate: float | None
    overall_rate: float | None


@dataclass(frozen=True, slots=True)
class Summary:
    from_: date
    to: date
    days: list[DayStats]
    active_users: int
    monthly_active_users: int
    events_by_name: list[NameStats]
    funnel: Funnel
    active_providers: int
    booked_providers: int


def resolve_range(first: date | None, last: date | None, *, today: date) -> tuple[date, date]:
    """The days asked for: default the last 30 days to today; 422 past 366 days or reversed."""
    problems: list[FieldError] = []
    for name, value in (("from", first), ("to", last)):
        if value is not None and not EARLIEST_DAY <= value <= LATEST_DAY:
            problems.append(
                FieldError(name, f"must be between {EARLIEST_DAY} and {LATEST_DAY}", "out_of_range")
            )
    if problems:
        raise ValidationFailed("The dates are out of range.", problems)
    last = last or today
    first = first or last - timedelta(days=DEFAULT_RANGE_DAYS - 1)
    if first > last:
        raise ValidationFailed(
            "`from` is after `to`.", [FieldError("from", "must not be after `to`", "reversed")]
        )
    if (last - first).days + 1 > MAX_RANGE_DAYS:
        raise ValidationFailed(
            f"The range is longer than {MAX_RANGE_DAYS} days.",
            [FieldError("from", f"at most {MAX_RANGE_DAYS} days before `to`", "range_too_long")],
        )
    return first, last


def summarize(session: Session, *, first: date | None, last: date | None) -> Summary:
    """Daily and monthly active users, sessions, events by name, the booking funnel, providers."""
    first, last = resolve_range(first, last, today=utcnow().date())
    start, end = _midnight(first), _midnight(last + timedelta(days=1))
    e = Event
    day = utc_day(e.received_at)
    in_range = (e.received_at >= start, e.received_at < end)

    per_day = {
        row.day: row
        for row in session.execute(
            select(
                day.label("day"),
                func.count(distinct(e.user_id)).label("users"),
                func.count(distinct(e.session_id)).label("sessions"),
                func.count().label("events"),
            )
            .where(*in_range)
            .group_by(day)
        )
    }
    user_day = utc_day(User.created_at)
    new_users: dict[date, int] = dict(
        session.execute(  # type: ignore[arg-type]
            select(user_day, func.count())
            .where(User.created_at >= start, User.created_at < end)
            .group_by(user_day)
        ).all()
    )
    days = []
    for offset in range((last - first).days + 1):
        current = first + timedelta(days=offset)
        row = per_day.get(current)
        days.append(
            DayStats(
                date=current,
                active_users=row.users if row else 0,
                sessions=row.sessions if row else 0,
                events=row.events if row else 0,
                new_users=new_users.get(current, 0),
            )
        )
    return Summary(
        from_=first,
        to=last,
        days=days,
        active_users=_distinct_users(session, start, end),
        monthly_active_users=_distinct_users(
            session, _midnight(last - timedelta(days=MAU_DAYS - 1)), end
        ),
        events_by_name=_events_by_name(session, start, end),
        funnel=_funnel(session, start, end),
        active_providers=session.scalar(
            select(func.count()).select_from(ProviderProfile).where(ProviderProfile.active)
        )
        or 0,
        booked_providers=session.scalar(
            select(func.count(distinct(Booking.provider_id))).where(
                Booking.created_at >= start, Booking.created_at < end
            )
        )
        or 0,
    )


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


def _distinct_users(session: Session, start: datetime, end: datetime) -> int:
    e = Event
    query = select(func.count(distinct(e.user_id))).where(
        e.received_at >= start, e.received_at < end
    )
    return session.scalar(query) or 0


def _events_by_name(session: Session, start: datetime, end: datetime) -> list[NameStats]:
    e = Event
    in_range = (e.received_at >= start, e.received_at < end)
    total = func.count().label("total")
    top = session.execute(
        select(e.name, total)
        .where(*in_range)
        .group_by(e.name)
        .order_by(total.desc(), e.name)
        .limit(TOP_NAMES)
    ).all()
    if not top:
        return []
    day = utc_day(e.received_at)
    daily: dict[str, list[tuple[date, int]]] = {name: [] for name, _ in top}
    rows = session.execute(
        select(e.name, day, func.count())
        .where(*in_range, e.name.in_(daily))
        .group_by(e.name, day)
        .order_by(e.name, day)
    )
    for name, current, count in rows:
        daily[name].append((current, count))
    return [NameStats(name, count, daily[name]) for name, count in top]


def _funnel(session: Session, start: datetime, end: datetime) -> Funnel:
    """The bookings requested in the range, and how many of those were accepted, completed.

    A cohort, followed to now: a booking requested on the range's last day and accepted the
    day after counts as accepted, so each step is a subset of the one before.
    """
    cohort = select(Booking.id).where(Booking.created_at >= start, Booking.created_at < end)
    requested = session.scalar(select(func.count()).select_from(cohort.subquery())) or 0
    reached: dict[str, int] = dict(
        session.execute(  # type: ignore[arg-type]
            select(BookingEvent.to_status, func.count(distinct(BookingEvent.booking_id)))
            .where(
                BookingEvent.booking_id.in_(cohort),
                BookingEvent.to_status.in_(("accepted", "completed")),
            )
            .group_by(BookingEvent.to_status)
        ).all()
    )
    accepted, completed = reached.get("accepted", 0), reached.get("completed", 0)
    return Funnel(
        requested=requested,
        accepted=accepted,
        completed=completed,
        accept_rate=_rate(accepted, requested),
        completion_rate=_rate(completed, accepted),
        overall_rate=_rate(completed, requested),
    )


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None
