"""The notification inbox, and the pushes that announce each entry."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.orm import Session

from models import Booking, Notification, User
from models.base import utcnow
from services.accounts.blocks import either_blocked
from services.accounts.users import (
    UserView,
    deletion_scheduled_refusal,
    scheduled_for_deletion,
)
from services.base.errors import Blocked, FieldError, NotFound, RateLimited, ValidationFailed
from services.base.pagination import Page, decode_cursor, page_of, scope_of, time_and_id
from services.messaging import outbox
from services.realtime import feed

# Keys Trellis itself writes: into a provider notification's data (booking_id, deep_link:
# the booking the two share) and into every push (kind, notification_id, outbox_id:
# outbox.sns_message). A provider's data holds none of them, in no spelling an app could
# read as the same key (outbox.key_form): a provider must not send a phone to a page of
# theirs ("pay now") nor pass for Trellis.
RESERVED_DATA_KEYS = frozenset(
    {"booking_id", outbox.DEEP_LINK_KEY, "kind", "notification_id", "outbox_id"}
)
_RESERVED_FORMS = frozenset(outbox.key_form(key) for key in RESERVED_DATA_KEYS)
RESERVED_KEY_MESSAGE = (
    "is set by Trellis, not by the sender: Trellis links the notification to the booking "
    f"you share ({', '.join(sorted(RESERVED_DATA_KEYS))} are reserved, in any spelling)"
)
RESERVED_KEY_CODE = "reserved_key"


def reserved_data_key(key: str) -> bool:
    return outbox.key_form(key) in _RESERVED_FORMS


@dataclass(frozen=True, slots=True)
class NotificationView:
    id: uuid.UUID
    kind: str
    title: str
    body: str
    data: dict[str, str]
    sender_id: uuid.UUID | None
    read: bool
    created_at: datetime


def notify(
    session: Session,
    *,
    user_id: uuid.UUID,
    kind: str,
    title: str,
    body: str,
    data: dict[str, str],
    sender_id: uuid.UUID | None = None,
) -> Notification:
    """An inbox entry and its push, in the caller's transaction (no commit here)."""
    note = Notification(
        id=uuid.uuid4(),
        user_id=user_id,
        kind=kind,
        title=title,
        body=body,
        data=data,
        sender_id=sender_id,
        created_at=utcnow(),
    )
    session.add(note)
    data = feed.notification_data(session, note)  # its push carries the feed entry's seq
    outbox.enqueue(
        session,
        user_id=user_id,
        notification_id=note.id,
        payload={"kind": kind, "title": title, "body": body, "data": data},
    )
    return note


def booking_changed(
    session: Session, booking: Booking, *, actor_id: uuid.UUID | None, text: str
) -> None:
    """Tell the booking's other party (both, if an admin or a timer acted: actor_id None)
    what just happened; a party whose account was purged is no one to tell."""
    data = {
        "booking_id": str(booking.id),
        "status": booking.status,
        "deep_link": outbox.deep_link("bookings", booking.id),
    }
    for recipient in {booking.consumer_id, booking.provider_id} - {actor_id, None}:
        notify(
            session,
            user_id=recipient,
            kind=f"booking.{booking.status}",
            title="Booking update",
            body=text,
            data=data,
            sender_id=actor_id,
        )


def send_from_provider(
    session: Session,
    *,
    sender: UserView,
    user_id: uuid.UUID,
    title: str,
    body: str,
    data: dict[str, str],
    per_hour: int,
) -> NotificationView:
    """A provider writes to a consumer they have a booking with; 404 for anyone else, 403
    (Blocked) once either blocked the other. The notification links to their newest
    booking; `data` may not hold a key Trellis sets."""
    reserved = [
        FieldError(f"data.{key}", f"{key} {RESERVED_KEY_MESSAGE}", RESERVED_KEY_CODE)
        for key in data
        if reserved_data_key(key)
    ]
    if reserved:  # the API's schema refuses these first; this holds for any other caller
        raise ValidationFailed("Trellis sets these keys itself; leave them out.", reserved)
    if sender.purge_at is not None:
        raise deletion_scheduled_refusal("notify anyone")
    related = session.scalar(
        select(Booking.id)
        .where(Booking.provider_id == sender.id, Booking.consumer_id == user_id)
        .order_by(Booking.created_at.desc(), Booking.id.desc())
        .limit(1)
    )
    # A consumer whose account deletion is scheduled is as unknown as one without a booking.
    if related is None or scheduled_for_deletion(session, [user_id]):
        raise NotFound("No consumer with this id has a booking with you.")
    if either_blocked(session, sender.id, user_id):
        raise Blocked("You cannot notify this user.")
    # Count, then insert: two requests (in any worker) must not both count N-1 and both
    # insert. The sender's own row in `users` serialises them: FOR NO KEY UPDATE, held until
    # the request commits or rolls back, taken right before the count (nothing slow and no
    # network call follows: the push waits in the outbox). Under READ COMMITTED the count
    # that follows the lock sees what the previous holder committed. The sender's row and
    # not the consumer's: a provider racing their own requests slows only themselves, and
    # NO KEY UPDATE leaves the foreign-key checks of other transactions on the row alone.
    # SQLite (local mode) ignores the clause and lets one writer in at a time anyway.
    session.execute(select(User.id).where(User.id == sender.id).with_for_update(key_share=True))
    since = utcnow() - timedelta(hours=1)
    sent = session.scalar(
        select(func.count())
        .select_from(Notification)
        .where(
            Notification.sender_id == sender.id,
            Notification.user_id == user_id,
            Notification.kind == "provider.message",
            Notification.created_at >= since,
        )
    )
    if (sent or 0) >= per_hour:
        raise RateLimited(f"At most {per_hour} notifications an hour to one consumer.", 3600)
    note = notify(
        session,
        user_id=user_id,
        kind="provider.message",
        title=title,
        body=body,
        data={
            **data,
            "booking_id": str(related),
            "deep_link": outbox.deep_link("bookings", related),
        },
        sender_id=sender.id,
    )
    session.flush()
    return _view(note)


def inbox(
    session: Session, *, user_id: uuid.UUID, unread: bool | None, cursor: str | None, limit: int
) -> Page[NotificationView]:
    """The user's notifications, newest first."""
    n = Notification
    scope = scope_of("inbox", str(user_id), unread)
    query = select(n).where(n.user_id == user_id)
    if unread is not None:
        query = query.where(n.read_at.is_(None) if unread else n.read_at.is_not(None))
    if cursor is not None:
        created_at, after_id = time_and_id(decode_cursor(cursor, scope))
        query = query.where(
            or_(n.created_at < created_at, and_(n.created_at == created_at, n.id < after_id))
        )
    rows = session.scalars(query.order_by(n.created_at.desc(), n.id.desc()).limit(limit + 1))
    views = [_view(note) for note in rows]
    return page_of(views, limit, scope, lambda v: [v.created_at.isoformat(), str(v.id)])


def mark_read(
    session: Session, *, user_id: uuid.UUID, notification_id: uuid.UUID
) -> NotificationView:
    """Idempotent; 404 unless the notification is the user's."""
    note = session.get(Notification, notification_id)
    if note is None or note.user_id != user_id:
        raise NotFound("No such notification.")
    if note.read_at is None:
        note.read_at = utcnow()
    session.flush()
    return _view(note)


def mark_all_read(session: Session, *, user_id: uuid.UUID) -> int:
    result = session.execute(
        update(Notification)
        .where(Notification.user_id == user_id, Notification.read_at.is_(None))
        .values(read_at=utcnow())
    )
    session.flush()
    return result.rowcount


def _view(n: Notification) -> NotificationView:
    return NotificationView(
        n.id,
        n.kind,
        n.title,
        n.body,
        outbox.trellis_links_only(dict(n.data or {})),  # rows from before links were checked
        n.sender_id,
        n.read_at is not None,
        n.created_at,
    )
