"""The notification inbox, and the pushes that announce each entry."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.orm import Session

from models import Availability, Booking, Device, Notification, User
from models.base import utcnow
from services.accounts.blocks import either_blocked
from services.accounts.users import (
    UserView,
    deletion_scheduled_refusal,
    scheduled_for_deletion,
)
from services.base.errors import Blocked, FieldError, NotFound, RateLimited, ValidationFailed
from services.base.pagination import Page, decode_cursor, page_of, scope_of, time_and_id
from services.messaging import outbox, texts
from services.realtime import feed

# Keys Trellis itself writes: into a provider notification's data (booking_id, deep_link:
# the booking the two share) and into every push (kind, notification_id, outbox_id:
# outbox.sns_message; seq: the feed entry a woken app resumes after, realtime/feed.py).
# A provider's data holds none of them, in no spelling an app could
# read as the same key (outbox.key_form): a provider must not send a phone to a page of
# theirs ("pay now") nor pass for Trellis.
RESERVED_DATA_KEYS = frozenset(
    {"booking_id", outbox.DEEP_LINK_KEY, "kind", "notification_id", "outbox_id", "seq"}
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
    data: dict[str, str],
    title: str = "",
    body: str = "",
    message: texts.Message | None = None,
    sender_id: uuid.UUID | None = None,
) -> Notification:
    """An inbox entry and its push, in the caller's transaction (no commit here).

    Trellis's own notifications pass `message` (the event, rendered per reader: each
    device in its language and zone, the inbox in the caller's); `title` and `body` then
    store its English text. Without one, `title` and `body` are the text (a provider's)."""
    stored = None
    if message is not None:
        title, body = texts.render(message)
        stored = message.as_json()
    note = Notification(
        id=uuid.uuid4(),
        user_id=user_id,
        kind=kind,
        message=stored,
        title=title,
        body=body,
        data=data,
        sender_id=sender_id,
        created_at=utcnow(),
    )
    session.add(note)
    data = feed.notification_data(session, note)  # its push carries the feed entry's seq
    payload: dict[str, Any] = {"kind": kind, "title": title, "body": body, "data": data}
    if stored is not None:
        payload["message"] = stored
    outbox.enqueue(session, user_id=user_id, notification_id=note.id, payload=payload)
    return note


def booking_changed(
    session: Session,
    booking: Booking,
    *,
    actor_id: uuid.UUID | None,
    event: str,
    reason: str | None = None,
) -> None:
    """Tell the booking's other party (both, if an admin or a timer acted: actor_id None)
    what just happened; a party whose account was purged is no one to tell. `event` names
    the message (texts.MESSAGES["booking.<event>"]): an action, a timer, or a reschedule
    step."""
    data = _booking_data(booking)
    extra: dict[str, str | int] = {}
    if booking.reschedule_starts_at is not None:
        extra["proposed_at"] = booking.reschedule_starts_at.isoformat()
    if reason:
        extra["reason"] = reason
    message = _booking_message(session, booking, event, extra)
    for recipient in {booking.consumer_id, booking.provider_id} - {actor_id, None}:
        notify(
            session,
            user_id=recipient,
            kind=f"booking.{booking.status}",
            message=message,
            data=data,
            sender_id=actor_id,
        )


def booking_reminder(session: Session, booking: Booking, now: datetime) -> None:
    """Both parties (those whose account still exists) are reminded of the booking."""
    data = _booking_data(booking) | {"starts_at": booking.scheduled_at.isoformat()}
    minutes = -(-(booking.scheduled_at - now) // timedelta(minutes=1))  # rounded up
    message = _booking_message(session, booking, "reminder", {"count": max(1, minutes)})
    for recipient in (booking.consumer_id, booking.provider_id):
        if recipient is not None:
            notify(session, user_id=recipient, kind="booking.reminder", message=message, data=data)


def _booking_data(booking: Booking) -> dict[str, str]:
    """The data of a push about a booking: which one, its status, the app's page for it."""
    return {
        "booking_id": str(booking.id),
        "status": booking.status,
        "deep_link": outbox.deep_link("bookings", booking.id),
    }


def _booking_message(
    session: Session, booking: Booking, event: str, extra: dict[str, str | int]
) -> texts.Message:
    """The event `booking.<event>` about the booking: its category and start, then `extra`."""
    params: dict[str, str | int] = {
        "category": booking.category,
        "starts_at": booking.scheduled_at.isoformat(),
        **extra,
    }
    return texts.Message(f"booking.{event}", params, _provider_zone(session, booking))


def _provider_zone(session: Session, booking: Booking) -> str | None:
    """The zone of the provider's availability: times are shown in it to a reader whose
    device names none (the provider's working hours are where the booking happens)."""
    if booking.provider_id is None:
        return None
    return session.scalar(
        select(Availability.time_zone).where(Availability.provider_id == booking.provider_id)
    )


def reader_of(
    session: Session, user_id: uuid.UUID, accept_language: list[str] | None = None
) -> texts.Reader:
    """Whom the inbox renders for: the language the request asks for (Accept-Language, in
    its order of preference, the first one Trellis has a catalog for), else that of the
    user's most recently seen device, else English; times in that device's zone."""
    latest = session.execute(
        select(Device.locale, Device.time_zone)
        .where(Device.user_id == user_id)
        .order_by(Device.last_seen_at.desc(), Device.id)
        .limit(1)
    ).first()
    locale, zone = (latest.locale, latest.time_zone) if latest is not None else (None, None)
    for tag in accept_language or ():
        if texts.has_catalog(tag):
            locale = tag
            break
    return texts.Reader(locale, zone)


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
    session: Session,
    *,
    user_id: uuid.UUID,
    unread: bool | None,
    cursor: str | None,
    limit: int,
    reader: texts.Reader = texts.ENGLISH,
) -> Page[NotificationView]:
    """The user's notifications, newest first, in the reader's language and zone."""
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
    views = [_view(note, reader) for note in rows]
    return page_of(views, limit, scope, lambda v: [v.created_at.isoformat(), str(v.id)])


def mark_read(
    session: Session,
    *,
    user_id: uuid.UUID,
    notification_id: uuid.UUID,
    reader: texts.Reader = texts.ENGLISH,
) -> NotificationView:
    """Idempotent; 404 unless the notification is the user's."""
    note = session.get(Notification, notification_id)
    if note is None or note.user_id != user_id:
        raise NotFound("No such notification.")
    if note.read_at is None:
        note.read_at = utcnow()
    session.flush()
    return _view(note, reader)


def mark_all_read(session: Session, *, user_id: uuid.UUID) -> int:
    result = session.execute(
        update(Notification)
        .where(Notification.user_id == user_id, Notification.read_at.is_(None))
        .values(read_at=utcnow())
    )
    session.flush()
    return result.rowcount


def _view(n: Notification, reader: texts.Reader = texts.ENGLISH) -> NotificationView:
    title, body = n.title, n.body
    if n.message is not None:
        title, body = texts.render(texts.Message.from_json(n.message), reader)
    return NotificationView(
        n.id,
        n.kind,
        title,
        body,
        outbox.trellis_links_only(dict(n.data or {})),  # rows from before links were checked
        n.sender_id,
        n.read_at is not None,
        n.created_at,
    )
