"""Moving a booking to another time: one party proposes, the other accepts or declines.

A booking has at most one pending proposal: proposing while one is pending is 409 (answer
or wait for the answer; cancelling stays possible). Accepting moves the booking in the
request's transaction: its time is claimed again when it is accepted (the exclusion
constraint holds: 409 /problems/slot-taken), the provider's availability applies as on
create (409 /problems/slot-unavailable), its timers follow the new start, and the history
gets a `rescheduled` entry (from_status == to_status, the times before and after).
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from models import Booking, BookingEvent
from models.base import utcnow
from services.accounts.users import UserView
from services.base.errors import Conflict, Forbidden, ValidationFailed
from services.marketplace.bookings import (
    DEFAULT_POLICY,
    BookingView,
    booked_time,
    claim_time,
    clear_reschedule,
    detail_of,
    lock_booking,
    party_of,
    set_timers,
    start_problems,
)
from services.marketplace.process import RESCHEDULABLE, TimerPolicy
from services.marketplace.slots import DEFAULT_STEP_MINUTES
from services.messaging.notifications import booking_changed
from services.realtime import feed

_MINUTE = timedelta(minutes=1)


def propose(
    session: Session,
    *,
    booking_id: uuid.UUID,
    actor: UserView,
    starts_at: datetime,
    duration_minutes: int | None,
    step_minutes: int = DEFAULT_STEP_MINUTES,
) -> BookingView:
    """A party proposes another time (the duration's default: the booking's own). 404 if
    hidden, 403 unless a party, 409 unless requested or accepted or if a proposal is
    pending, 422 for a past or too distant start, 409 slot-unavailable outside the
    provider's free slots."""
    booking, party = _open(session, booking_id, actor)
    if booking.reschedule_by is not None:
        raise Conflict(
            "A new time is already proposed for this booking; it must be accepted or declined "
            "before another is proposed."
        )
    now = utcnow()
    problems = start_problems("starts_at", starts_at, now)
    if problems:
        raise ValidationFailed("The new time cannot be proposed.", problems)
    minutes = duration_minutes or (booking.ends_at - booking.scheduled_at) // _MINUTE
    if booking.provider_id is None:
        raise Conflict("The provider's account was deleted: the booking cannot be moved.")
    ends_at, _ = booked_time(
        session,
        booking.provider_id,
        starts_at,
        minutes,
        step_minutes=step_minutes,
        now=now,
        moving=booking.id,
    )
    booking.reschedule_by = party
    booking.reschedule_starts_at = starts_at
    booking.reschedule_ends_at = ends_at
    booking.updated_at = now
    feed.booking_changed(session, booking, "reschedule_proposed")
    booking_changed(session, booking, actor_id=actor.id, event="reschedule_proposed")
    session.flush()
    return detail_of(session, booking)


def answer(
    session: Session,
    *,
    booking_id: uuid.UUID,
    actor: UserView,
    accept: bool,
    step_minutes: int = DEFAULT_STEP_MINUTES,
    policy: TimerPolicy = DEFAULT_POLICY,
) -> BookingView:
    """The other party accepts (the booking moves) or declines (the proposal is dropped).
    404 if hidden, 403 for anyone but the other party, 409 when nothing is pending."""
    booking, party = _open(session, booking_id, actor)
    if booking.reschedule_by is None:
        raise Conflict("No new time is proposed for this booking.")
    if booking.reschedule_by == party:
        raise Forbidden("The other party answers a proposal, not the one who made it.")
    now = utcnow()
    starts_at, ends_at = booking.reschedule_starts_at, booking.reschedule_ends_at
    assert starts_at is not None and ends_at is not None
    clear_reschedule(booking)
    booking.updated_at = now
    if not accept:
        feed.booking_changed(session, booking, "reschedule_declined")
        booking_changed(session, booking, actor_id=actor.id, event="reschedule_declined")
        session.flush()
        return detail_of(session, booking)
    if starts_at <= now:
        raise Conflict("The proposed time has passed; propose another.")
    assert booking.provider_id is not None
    _, blocked_until = booked_time(
        session,
        booking.provider_id,
        starts_at,
        (ends_at - starts_at) // _MINUTE,
        step_minutes=step_minutes,
        now=now,
        moving=booking.id,
    )
    event = BookingEvent(
        id=uuid.uuid4(),
        booking_id=booking.id,
        from_status=booking.status,
        to_status=booking.status,
        actor_id=actor.id,
        actor_role=party,
        reason=None,
        created_at=now,
        kind="rescheduled",
        from_starts_at=booking.scheduled_at,
        from_ends_at=booking.ends_at,
        to_starts_at=starts_at,
        to_ends_at=ends_at,
    )
    booking.scheduled_at, booking.ends_at, booking.blocked_until = starts_at, ends_at, blocked_until
    if booking.status == "accepted":
        claim_time(session, booking)
    session.add(event)
    set_timers(session, booking, policy, now)
    feed.booking_changed(session, booking, "rescheduled")
    booking_changed(session, booking, actor_id=actor.id, event="rescheduled")
    session.flush()
    return detail_of(session, booking)


def _open(session: Session, booking_id: uuid.UUID, actor: UserView) -> tuple[Booking, str]:
    """The booking locked, and the caller's party: 404, 403 (not a party), 409 (state)."""
    booking = lock_booking(session, booking_id, actor)
    party = party_of(booking, actor)
    if party not in ("consumer", "provider"):
        raise Forbidden("Only the booking's consumer or provider may move it.")
    if booking.status not in RESCHEDULABLE:
        raise Conflict(f"This booking is {booking.status}; only requested or accepted ones move.")
    return booking, party
