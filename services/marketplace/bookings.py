"""Bookings: the state machine (services/marketplace/process.py), who may move it, and the
record of every move.

Checks run in one order everywhere: can the caller see the booking (404), may they take
this action (403), does the state allow it (409). A transition locks the booking row, so
two concurrent transitions on one booking cannot both succeed. Every change of a booking's
state or time resets its timers in the same transaction (set_timers): a timer made moot
is deleted, the ones the new state calls for are written.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from functools import cache
from typing import Any, Literal, Protocol

from sqlalchemy import (
    ColumnElement,
    Integer,
    Select,
    and_,
    bindparam,
    delete,
    func,
    select,
    tuple_,
    union_all,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from models import Booking, BookingEvent, BookingTimer, ProviderProfile, Upload, User
from models.base import utcnow
from services.accounts.blocks import either_blocked
from services.accounts.users import (
    UserView,
    deletion_scheduled_refusal,
    scheduled_for_deletion,
)
from services.base.db import core_rows
from services.base.errors import (
    Blocked,
    Conflict,
    FieldError,
    Forbidden,
    NotFound,
    SlotTaken,
    SlotUnavailable,
    ValidationFailed,
)
from services.base.pagination import Page, decode_cursor, page_of, scope_of, time_and_id
from services.base.views import row_view
from services.marketplace.availability import DEFAULT_DURATION_MINUTES, load_rules
from services.marketplace.process import (
    RESCHEDULABLE,
    STATUSES,
    TIMERS,
    TRANSITIONS,
    Action,
    Party,
    TimerKind,
    TimerPolicy,
    Transition,
)
from services.marketplace.providers import require_active_provider
from services.marketplace.slots import DEFAULT_STEP_MINUTES, busy_times, free_slots
from services.messaging.notifications import booking_changed, booking_reminder
from services.realtime import feed

__all__ = ["STATUSES", "TRANSITIONS", "Action", "Party", "Transition"]

MAX_AHEAD = timedelta(days=366)
DEFAULT_POLICY = TimerPolicy()
SYSTEM = "system"  # actor_role of what a timer did (actor_id null)


@row_view
class MoveView:
    """A `rescheduled` history entry's times: before and after."""

    from_starts_at: datetime
    from_ends_at: datetime
    to_starts_at: datetime
    to_ends_at: datetime


@row_view
class EventView:
    from_status: str | None
    to_status: str
    actor_id: uuid.UUID | None  # None once the actor's account is purged, and for `system`
    actor_role: str
    reason: str | None
    at: datetime
    kind: str = "transition"  # or "rescheduled"
    move: MoveView | None = None


@row_view
class RescheduleView:
    """A pending proposal to move a booking: by which party, to when."""

    proposed_by: str
    starts_at: datetime
    ends_at: datetime


@row_view
class BookingView:
    id: uuid.UUID
    # None once that party's account is purged (services/accounts/purge.py).
    consumer_id: uuid.UUID | None
    provider_id: uuid.UUID | None
    category: str
    scheduled_at: datetime
    ends_at: datetime
    lat: float | None  # None once the consumer is purged
    lng: float | None
    address: str | None
    notes: str
    status: str
    created_at: datetime
    updated_at: datetime
    reschedule: RescheduleView | None = None
    history: list[EventView] | None = None
    # Who the parties are, for a booking's screen; None in lists (like history).
    consumer: PartyView | None = None
    provider: PartyView | None = None


@row_view
class PartyView:
    """One party of a booking as the other sees it. A purged account is
    `PartyView(None, None, deleted=True)`: the booking stays, the person is gone."""

    id: uuid.UUID | None
    display_name: str | None
    deleted: bool
    avatar_key: str | None = None  # their avatar's object (services/media_urls.py)


GONE = PartyView(None, None, deleted=True)


@dataclass(frozen=True, slots=True)
class NewBooking:
    provider_id: uuid.UUID
    category: str
    scheduled_at: datetime
    lat: float
    lng: float
    address: str | None
    notes: str
    # None: the provider's default_duration_minutes, else DEFAULT_DURATION_MINUTES.
    duration_minutes: int | None = None


class Parties(Protocol):
    """A booking, or a narrow row of its consumer_id and provider_id."""

    @property
    def consumer_id(self) -> uuid.UUID: ...

    @property
    def provider_id(self) -> uuid.UUID: ...


def party_of(booking: Parties, user: UserView) -> Party | None:
    """The caller's part in a booking; None means they may not know it exists."""
    if user.id == booking.consumer_id:
        return "consumer"
    if user.id == booking.provider_id:
        return "provider"
    if "admin" in user.roles:
        return "admin"
    return None


def create_booking(
    session: Session,
    *,
    consumer: UserView,
    data: NewBooking,
    step_minutes: int = DEFAULT_STEP_MINUTES,
    policy: TimerPolicy = DEFAULT_POLICY,
) -> BookingView:
    """A consumer asks a provider for a service at a time and place; 403 (Blocked) if
    either of the two blocked the other; 409 (SlotUnavailable) if the provider set
    availability and the time is not one of their free slots (`step_minutes` their grid).
    The request expires by `policy` unless answered."""
    # Both users' rows held first, so a deletion of either being scheduled meanwhile either
    # shows here or cancels this booking (users.scheduled_for_deletion). A provider whose
    # deletion is scheduled has an inactive profile: unknown below, like any other.
    leaving = scheduled_for_deletion(session, {consumer.id, data.provider_id}, hold=True)
    if consumer.id in leaving:
        raise deletion_scheduled_refusal("book anyone")
    profile = require_active_provider(session, data.provider_id)
    if either_blocked(session, consumer.id, data.provider_id):
        raise Blocked("You cannot book this provider.")
    problems = []
    if data.provider_id == consumer.id:
        problems.append(FieldError("provider_id", "you cannot book yourself", "self_booking"))
    if data.category not in profile.categories:
        problems.append(
            FieldError("category", "this provider does not offer it", "category_not_offered")
        )
    now = utcnow()
    problems += start_problems("scheduled_at", data.scheduled_at, now)
    if problems:
        raise ValidationFailed("The booking cannot be made as asked.", problems)
    ends_at, blocked_until = booked_time(
        session,
        data.provider_id,
        data.scheduled_at,
        data.duration_minutes,
        step_minutes=step_minutes,
        now=now,
    )
    booking = Booking(
        id=uuid.uuid4(),
        consumer_id=consumer.id,
        provider_id=data.provider_id,
        category=data.category,
        scheduled_at=data.scheduled_at,
        ends_at=ends_at,
        blocked_until=blocked_until,
        lat=data.lat,
        lng=data.lng,
        address=data.address,
        notes=data.notes,
        status="requested",
        last_message_seq=0,
        created_at=now,
        updated_at=now,
    )
    event = _event(booking, None, "requested", consumer.id, "consumer", None, now)
    session.add_all([booking, event])
    session.flush()
    set_timers(session, booking, policy, now)
    feed.booking_changed(session, booking, "requested")
    booking_changed(session, booking, actor_id=consumer.id, event="requested")
    return _detail(session, booking, [_event_view(event)])


def detail_of(session: Session, booking: Booking) -> BookingView:
    """The booking with its history and parties, as its routes answer."""
    return _detail(session, booking, _history(session, booking.id))


def get_booking(session: Session, *, booking_id: uuid.UUID, viewer: UserView) -> BookingView:
    booking = session.get(Booking, booking_id)
    if booking is None or party_of(booking, viewer) is None:
        raise NotFound("No such booking.")
    return _detail(session, booking, _history(session, booking_id))


def transition(
    session: Session,
    *,
    booking_id: uuid.UUID,
    action: Action,
    actor: UserView,
    reason: str | None = None,
    policy: TimerPolicy = DEFAULT_POLICY,
) -> BookingView:
    """Apply `action`: 404 if hidden from the actor, 403 if not theirs, 409 if not now."""
    rule = TRANSITIONS[action]
    booking = lock_booking(session, booking_id, actor)
    party = party_of(booking, actor)
    assert party is not None
    if party not in rule.parties:
        who = " or ".join(sorted(rule.parties))
        raise Forbidden(f"Only the booking's {who} may {action} it.")
    if booking.status not in rule.sources:
        allowed = ", ".join(sorted(rule.sources))
        raise Conflict(
            f"This booking is {booking.status}; {action} is only possible when it is {allowed}."
        )
    now = utcnow()
    event = _event(booking, booking.status, rule.target, actor.id, party, reason, now)
    _move_to(session, booking, rule.target, policy, now)
    session.add(event)
    feed.booking_changed(session, booking, action)
    booking_changed(session, booking, actor_id=actor.id, event=action, reason=reason)
    session.flush()
    return _detail(session, booking, _history(session, booking_id))


def _move_to(
    session: Session, booking: Booking, target: str, policy: TimerPolicy, now: datetime
) -> None:
    """Set the booking's state: its time claimed when it becomes accepted, a pending
    reschedule dropped when it can no longer be moved, its timers reset."""
    booking.status = target
    booking.updated_at = now
    if target == "accepted":
        claim_time(session, booking)
    if target not in RESCHEDULABLE:
        clear_reschedule(booking)
    set_timers(session, booking, policy, now)


def clear_reschedule(booking: Booking) -> None:
    booking.reschedule_by = None
    booking.reschedule_starts_at = None
    booking.reschedule_ends_at = None


def start_problems(field: str, starts_at: datetime, now: datetime) -> list[FieldError]:
    """What is wrong with `starts_at` as a booking's start, whoever the provider is."""
    if starts_at <= now:
        return [FieldError(field, "must be in the future", "not_future")]
    if starts_at > now + MAX_AHEAD:
        return [FieldError(field, "must be within a year", "too_far_ahead")]
    return []


def booked_time(
    session: Session,
    provider_id: uuid.UUID,
    starts_at: datetime,
    duration_minutes: int | None,
    *,
    step_minutes: int,
    now: datetime,
    moving: uuid.UUID | None = None,
) -> tuple[datetime, datetime]:
    """(ends_at, blocked_until) of a booking of the provider at `starts_at` (the duration's
    default: the provider's, else 60 minutes); 409 if the provider set availability and
    this is not a free slot of theirs (`moving`: the booking being moved, whose own time
    does not count as busy)."""
    rules = load_rules(session, provider_id)
    default = rules.default_duration_minutes if rules else DEFAULT_DURATION_MINUTES
    duration = timedelta(minutes=duration_minutes or default)
    ends_at = starts_at + duration
    if rules is None:
        return ends_at, ends_at
    buffer = timedelta(minutes=rules.buffer_minutes)
    busy = busy_times(session, provider_id, starts_at, ends_at + buffer, but=moving)
    step = timedelta(minutes=step_minutes)
    # Offered slots starting in [start, start + 1 µs): this one, if it is free.
    window_end = starts_at + timedelta(microseconds=1)
    if not free_slots(rules, busy, starts_at, window_end, duration, step, now):
        raise SlotUnavailable(
            "The provider is not available then: pick a time from "
            f"GET /v1/providers/{provider_id}/slots."
        )
    return ends_at, ends_at + buffer


def set_timers(session: Session, booking: Booking, policy: TimerPolicy, now: datetime) -> None:
    """The booking's timers as its state and time call for, in the caller's transaction:
    every other one deleted (made moot), each one its state has (re)written with its due
    time. A reminder is not set once the start has passed."""
    session.execute(delete(BookingTimer).where(BookingTimer.booking_id == booking.id))
    for kind, rule in TIMERS.items():
        if rule.state != booking.status:
            continue
        if kind == "remind" and booking.scheduled_at <= now:
            continue
        due = policy.due(
            kind, created_at=booking.created_at, starts=booking.scheduled_at, ends=booking.ends_at
        )
        session.add(
            BookingTimer(
                id=uuid.uuid4(),
                booking_id=booking.id,
                kind=kind,
                due_at=max(due, now) if kind == "remind" else due,
                attempts=0,
                created_at=now,
            )
        )


def fire_timer(
    session: Session, booking: Booking, kind: TimerKind, policy: TimerPolicy, now: datetime
) -> bool:
    """A due timer acts on its booking (locked by the caller): False, and nothing done, when
    the booking has moved on (the timer is moot; the caller deletes it either way)."""
    rule = TIMERS[kind]
    if booking.status != rule.state:
        return False
    if rule.target is None:  # the reminder
        if booking.scheduled_at <= now:
            return False
        booking_reminder(session, booking, now)
        return True
    event = _event(booking, booking.status, rule.target, None, SYSTEM, None, now)
    session.add(event)
    _move_to(session, booking, rule.target, policy, now)
    feed.booking_changed(session, booking, kind)
    booking_changed(session, booking, actor_id=None, event=kind)
    return True


# pg_advisory_xact_lock(_TIME_LOCK, provider): accepts of one provider's bookings queue up.
_TIME_LOCK = 15_0001


def claim_time(session: Session, booking: Booking) -> None:
    """Make `booking` (just set accepted) hold its time: 409 SlotTaken if it overlaps another
    accepted or in-progress booking of the provider (buffers included).

    PostgreSQL: the exclusion constraint refuses the overlap whatever happens here; the
    advisory lock only queues concurrent accepts of one provider, so that two of them never
    wait on each other's index entries (a deadlock, not a 409). SQLite: the UPDATE flushed
    first takes the database's write lock, so the check that follows sees every accept
    committed before and none can commit until this transaction ends."""
    provider_id = booking.provider_id
    if provider_id is None:  # the provider's account was purged: nothing to protect
        return
    if session.get_bind().dialect.name == "postgresql":
        key = int.from_bytes(provider_id.bytes[:4], "big", signed=True)
        with session.no_autoflush:  # the UPDATE goes out below, under the lock
            session.execute(select(func.pg_advisory_xact_lock(_TIME_LOCK, key)))
    try:
        session.flush()
    except IntegrityError as exc:
        if "bookings_no_double_booking" not in str(exc.orig):
            raise
        raise _slot_taken() from None
    if busy_times(
        session, provider_id, booking.scheduled_at, booking.blocked_until, but=booking.id
    ):
        raise _slot_taken()


def _slot_taken() -> SlotTaken:
    return SlotTaken("The provider already has an accepted booking at this time.")


def lock_booking(session: Session, booking_id: uuid.UUID, viewer: UserView) -> Booking:
    """The booking row, locked for this transaction; 404 unless the viewer may see it."""
    booking = session.scalar(
        select(Booking)
        .where(Booking.id == booking_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if booking is None or party_of(booking, viewer) is None:
        raise NotFound("No such booking.")
    return booking


def list_bookings(
    session: Session,
    *,
    viewer: UserView,
    role: Literal["consumer", "provider"] | None,
    status: str | None,
    cursor: str | None,
    limit: int,
) -> Page[BookingView]:
    """The viewer's bookings (as consumer, provider or either), newest first."""
    scope = scope_of("bookings", str(viewer.id), role, status)
    after = time_and_id(decode_cursor(cursor, scope)) if cursor is not None else None
    query = _list_query(role, status is not None, after is not None)
    params: dict[str, Any] = {"viewer": viewer.id, "status": status, "n": limit + 1}
    if after is not None:
        params["after_at"], params["after_id"] = after
    rows = [_row_view(*row) for row in core_rows(session, query, params)]
    return page_of(rows, limit, scope, lambda v: [v.created_at.isoformat(), str(v.id)])


_BOOKINGS = Booking.__table__
# _row_view's arguments in order: a list row becomes a BookingView without hydrating an ORM
# object it never needs.
_VIEW_COLUMNS = [
    _BOOKINGS.c[name]
    for name in (
        "id",
        "consumer_id",
        "provider_id",
        "category",
        "scheduled_at",
        "ends_at",
        "lat",
        "lng",
        "address",
        "notes",
        "status",
        "created_at",
        "updated_at",
        "reschedule_by",
        "reschedule_starts_at",
        "reschedule_ends_at",
    )
]


def _row_view(*row: Any) -> BookingView:
    *fields, by, starts_at, ends_at = row
    return BookingView(*fields, reschedule=_reschedule(by, starts_at, ends_at))


def _reschedule(
    by: str | None, starts_at: datetime | None, ends_at: datetime | None
) -> RescheduleView | None:
    if by is None or starts_at is None or ends_at is None:
        return None
    return RescheduleView(by, starts_at, ends_at)


@cache
def _list_query(role: str | None, by_status: bool, paged: bool) -> Select[Any]:
    """The list's statement for one shape of filters, built once (building it per request
    cost more than running it); values are bound at execution."""
    t = _BOOKINGS
    viewer = bindparam("viewer", type_=t.c.consumer_id.type)
    if role == "consumer":
        return _newest(t.c.consumer_id == viewer, by_status, paged)
    if role == "provider":
        return _newest(t.c.provider_id == viewer, by_status, paged)
    # Not `consumer_id = me OR provider_id = me`: PostgreSQL cannot walk either
    # (party, created_at, id) index for an OR, and walked every booking by created_at
    # instead (15 ms at 200k bookings). Each branch reads its own index, newest first,
    # and the two merge; the second skips a booking the first already has.
    as_consumer = _newest(t.c.consumer_id == viewer, by_status, paged)
    as_provider = _newest(
        and_(t.c.provider_id == viewer, t.c.consumer_id != viewer), by_status, paged
    )
    both = union_all(select(as_consumer.subquery()), select(as_provider.subquery())).subquery()
    return (
        select(both)
        .order_by(both.c.created_at.desc(), both.c.id.desc())
        .limit(bindparam("n", type_=Integer))
    )


def _newest(mine: ColumnElement[bool], by_status: bool, paged: bool) -> Select[Any]:
    """Bookings matching `mine` (and :status) older than the cursor's, newest first."""
    t = _BOOKINGS
    query = select(*_VIEW_COLUMNS).where(mine)
    if by_status:
        query = query.where(t.c.status == bindparam("status", type_=t.c.status.type))
    if paged:
        # A row comparison, so the (party, created_at, id) index bounds the scan itself.
        after = tuple_(
            bindparam("after_at", type_=t.c.created_at.type),
            bindparam("after_id", type_=t.c.id.type),
        )
        query = query.where(tuple_(t.c.created_at, t.c.id) < after)
    return query.order_by(t.c.created_at.desc(), t.c.id.desc()).limit(bindparam("n", type_=Integer))


def _event(
    booking: Booking,
    source: str | None,
    target: str,
    actor_id: uuid.UUID | None,
    role: str,
    reason: str | None,
    at: datetime,
) -> BookingEvent:
    return BookingEvent(
        id=uuid.uuid4(),
        booking_id=booking.id,
        from_status=source,
        to_status=target,
        actor_id=actor_id,
        actor_role=role,
        reason=reason,
        created_at=at,
    )


def _history(session: Session, booking_id: uuid.UUID) -> list[EventView]:
    events = session.scalars(
        select(BookingEvent)
        .where(BookingEvent.booking_id == booking_id)
        .order_by(BookingEvent.created_at, BookingEvent.id)
    )
    return [_event_view(e) for e in events]


def _event_view(e: BookingEvent) -> EventView:
    move = None
    if e.kind == "rescheduled":
        assert e.from_starts_at and e.from_ends_at and e.to_starts_at and e.to_ends_at
        move = MoveView(e.from_starts_at, e.from_ends_at, e.to_starts_at, e.to_ends_at)
    return EventView(
        e.from_status,
        e.to_status,
        e.actor_id,
        e.actor_role,
        e.reason,
        e.created_at,
        e.kind,
        move,
    )


def _detail(session: Session, b: Booking, history: list[EventView]) -> BookingView:
    """A booking with its history and its parties, as GET /v1/bookings/{id} shows it."""
    consumer, provider = _parties(session, b.consumer_id, b.provider_id)
    return replace(_view(b, history), consumer=consumer, provider=provider)


def _parties(
    session: Session, consumer_id: uuid.UUID | None, provider_id: uuid.UUID | None
) -> tuple[PartyView, PartyView]:
    """Both parties' names and avatars in one read: the provider by the name of their profile
    (what consumers book), else their account's; the consumer by their account's."""
    ids = [i for i in (consumer_id, provider_id) if i is not None]
    rows = session.execute(
        select(
            User.id,
            User.display_name,
            ProviderProfile.display_name.label("profile_name"),
            Upload.key.label("avatar_key"),
        )
        .outerjoin(ProviderProfile, ProviderProfile.user_id == User.id)
        .outerjoin(Upload, Upload.id == User.avatar_upload_id)
        .where(User.id.in_(ids))
    ).all()
    found = {row.id: row for row in rows}

    def party(user_id: uuid.UUID | None, *, as_provider: bool) -> PartyView:
        row = found.get(user_id) if user_id is not None else None
        if row is None:
            return GONE
        name = (row.profile_name if as_provider else None) or row.display_name
        return PartyView(row.id, name, deleted=False, avatar_key=row.avatar_key)

    return party(consumer_id, as_provider=False), party(provider_id, as_provider=True)


def _view(b: Booking, history: list[EventView] | None = None) -> BookingView:
    return BookingView(
        id=b.id,
        consumer_id=b.consumer_id,
        provider_id=b.provider_id,
        category=b.category,
        scheduled_at=b.scheduled_at,
        ends_at=b.ends_at,
        lat=b.lat,
        lng=b.lng,
        address=b.address,
        notes=b.notes,
        status=b.status,
        created_at=b.created_at,
        updated_at=b.updated_at,
        reschedule=_reschedule(b.reschedule_by, b.reschedule_starts_at, b.reschedule_ends_at),
        history=history,
    )
