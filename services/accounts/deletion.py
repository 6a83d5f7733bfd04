"""A user deletes their own account: scheduling it (DELETE /v1/me) and cancelling it during
the grace period (DELETE /v1/me/deletion). The purge once `purge_at` has passed is to come.

Scheduling is all or nothing, in the request's one transaction:

- refused (AccountHasActiveBookings, 409, nothing changed) while a booking of the user's is
  in progress: it has to be completed first;
- their requested and accepted bookings are cancelled through the state machine (reason
  "account deleted"), so the other party hears of it as of any cancellation (inbox entry
  and push through the outbox);
- from the commit on, the account is hidden from others: the provider profile is inactive
  (out of search, 404, not bookable; sync_user does not switch it back on), and nothing new
  reaches them (a message is AccountDeleted, a provider notification 404; see
  users.scheduled_for_deletion). They still sign in, read, and can cancel the deletion;
  nothing new of theirs reaches others (AccountDeletionScheduled, users.py).

Locks: the user's row (FOR NO KEY UPDATE), then their bookings, then their profile: the
order the other writers take them in, so concurrent requests wait rather than deadlock.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from models import Booking, User
from models.base import utcnow
from services.accounts.users import UserView, profile_shown, set_profile_shown
from services.base.errors import AccountHasActiveBookings, Conflict, NotFound
from services.marketplace import bookings

CANCEL_REASON = "account deleted"


@dataclass(frozen=True, slots=True)
class DeletionView:
    requested_at: datetime
    purge_at: datetime
    status: Literal["scheduled"] = "scheduled"


def deletion_of(user: Any) -> DeletionView | None:
    """A user's scheduled deletion (from a UserView or a User), or None."""
    if user.purge_at is None or user.deletion_requested_at is None:
        return None
    return DeletionView(user.deletion_requested_at, user.purge_at)


def schedule(session: Session, *, user: UserView, grace: timedelta) -> DeletionView:
    """Schedule the user's account for deletion `grace` from now; asked again while it is
    scheduled, the deletion stays as it is (the same `purge_at`). 409 while a booking of
    theirs is in progress."""
    row = _lock(session, user.id)
    scheduled = deletion_of(row)
    if scheduled is not None:
        return scheduled
    b = Booking
    live = session.execute(
        select(b.id, b.status)
        .where(
            or_(b.consumer_id == user.id, b.provider_id == user.id),
            b.status.in_(("requested", "accepted", "in_progress")),
        )
        .order_by(b.created_at, b.id)
        .with_for_update()
    ).all()
    in_progress = [booking.id for booking in live if booking.status == "in_progress"]
    if in_progress:
        raise AccountHasActiveBookings(in_progress)
    for booking in live:
        bookings.transition(
            session, booking_id=booking.id, action="cancel", actor=user, reason=CANCEL_REASON
        )
    now = utcnow()
    row.deletion_requested_at, row.purge_at = now, now + grace
    set_profile_shown(session, user.id, False)
    session.flush()
    return DeletionView(now, now + grace)


def cancel(session: Session, *, user_id: uuid.UUID) -> None:
    """Cancel the user's scheduled deletion: everything is visible again (the provider
    profile too, while they hold the provider role). Bookings cancelled stay cancelled.
    404 when none is scheduled, 409 once the grace period is over."""
    row = _lock(session, user_id)
    scheduled = deletion_of(row)
    if scheduled is None:
        raise NotFound("No deletion of your account is scheduled.")
    if scheduled.purge_at <= utcnow():
        when = scheduled.purge_at.isoformat().replace("+00:00", "Z")
        raise Conflict(
            f"The grace period ended at {when}; the deletion can no longer be cancelled."
        )
    row.deletion_requested_at = row.purge_at = None
    set_profile_shown(session, user_id, profile_shown(row.roles, row))
    session.flush()


def _lock(session: Session, user_id: uuid.UUID) -> User:
    """The user's row, held FOR NO KEY UPDATE: it orders this against bookings and profile
    changes that hold it FOR SHARE (users.scheduled_for_deletion) and against role syncs."""
    user = session.scalar(
        select(User)
        .where(User.id == user_id)
        .with_for_update(key_share=True)
        .execution_options(populate_existing=True)
    )
    if user is None:
        raise NotFound("No such user.")
    return user
