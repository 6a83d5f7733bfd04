"""Messages between the two parties of a booking, numbered per booking for cheap polling."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Integer,
    Select,
    Update,
    bindparam,
    case,
    insert,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.orm import Session

from models import Booking, Message, User
from models.base import utcnow
from services.accounts.blocks import no_block_between
from services.accounts.users import UserView, deletion_scheduled_refusal
from services.base.content_filter import ContentFilter, flag
from services.base.db import core_rows
from services.base.errors import AccountDeleted, Blocked, Forbidden, NotFound, ValidationFailed
from services.base.pagination import decode_cursor, encode_cursor, invalid_cursor, scope_of
from services.base.views import row_view
from services.marketplace.bookings import lock_booking, party_of
from services.messaging import outbox, texts
from services.messaging.notifications import notify
from services.realtime import feed


@row_view
class MessageView:
    id: uuid.UUID
    booking_id: uuid.UUID
    seq: int
    sender_id: uuid.UUID | None  # None once the sender's account is purged
    body: str | None  # None once removed (by a moderator, or with the sender's account)
    created_at: datetime

    @property
    def removed(self) -> bool:
        return self.body is None


@dataclass(frozen=True, slots=True)
class MessagePage:
    items: list[MessageView]
    next_cursor: str | None  # more are already waiting
    poll_cursor: str  # pass as `after` later to get only what is newer than these


def post_message(
    session: Session,
    *,
    booking_id: uuid.UUID,
    sender: UserView,
    body: str,
    content: ContentFilter,
) -> MessageView:
    """Only the two parties write, and not once either blocked the other (403 Blocked);
    admins read. The booking row lock orders the numbers. A body that hits the content
    filter is sent as it is and opens a system report of the message."""
    now = utcnow()
    booking = _take_next_seq(session, booking_id, sender, now)
    recipient = booking.provider_id if sender.id == booking.consumer_id else booking.consumer_id
    if sender.purge_at is not None:
        raise deletion_scheduled_refusal("send messages")
    # Read with the seq, not held: a message racing the recipient's deletion is one sent a
    # moment before it.
    if booking.recipient_leaving:
        raise AccountDeleted(
            "The other party deleted their account; messages no longer reach them."
        )
    message = MessageView(uuid.uuid4(), booking_id, booking.last_message_seq, sender.id, body, now)
    session.execute(insert(_MESSAGES), [_row(message)])
    flag(session, content, target_type="message", target_id=message.id, texts=(body,))
    feed.message_posted(session, booking, message)
    notify(
        session,
        user_id=recipient,
        kind="message.new",
        message=texts.Message("message.new", {"text": _preview(body)}),
        data={
            "booking_id": str(booking_id),
            "message_id": str(message.id),
            "deep_link": outbox.deep_link("bookings", booking_id, "messages"),
        },
        sender_id=sender.id,
    )
    session.flush()
    return message


def _preview(body: str) -> str:
    """A message as its push shows it: its first 140 characters."""
    return body if len(body) <= 140 else body[:139] + "…"


def _take_next_seq(session: Session, booking_id: uuid.UUID, sender: UserView, now: datetime) -> Any:
    """The booking's next message number, taken under its row lock by a party while neither
    party blocked the other (one UPDATE ... RETURNING); 404 if the sender may not see the
    booking, 403 for a blocked party or an admin."""
    params = {"booking_id": booking_id, "sender_id": sender.id, "now": now}
    booking = session.execute(_TAKE_SEQ, params).one_or_none()
    if booking is None:
        found = lock_booking(session, booking_id, sender)  # 404 unless the sender may see it
        if party_of(found, sender) in ("consumer", "provider"):
            raise Blocked("You cannot message this user.")
        raise Forbidden("Admins can read a booking's messages but not write them.")
    return booking


def list_messages(
    session: Session, *, booking_id: uuid.UUID, viewer: UserView, after: str | None, limit: int
) -> MessagePage:
    """Messages after the cursor, oldest first."""
    scope = scope_of("messages", str(booking_id))
    try:
        after_seq = _seq(decode_cursor(after, scope, field="after")) if after else 0
    except ValidationFailed:
        _require_party(session, booking_id, viewer)  # a hidden booking is 404 first
        raise
    params = {"booking_id": booking_id, "after_seq": after_seq, "n": limit + 1}
    rows = core_rows(session, _POLL, params).all()
    # Nothing is returned unless the viewer is a party.
    if not rows or party_of(rows[0], viewer) is None:
        raise NotFound("No such booking.")
    found = [MessageView(*row[2:]) for row in rows if row.seq is not None]
    items = found[:limit]
    last_seq = items[-1].seq if items else after_seq
    cursor = encode_cursor(scope, [last_seq])
    return MessagePage(items, cursor if len(found) > limit else None, cursor)


_BOOKINGS = Booking.__table__
_MESSAGES = Message.__table__
# MessageView's fields in order: a row becomes MessageView(*row) without an ORM object.
_MESSAGE_COLUMNS = [
    _MESSAGES.c[name] for name in ("id", "booking_id", "seq", "sender_id", "body", "created_at")
]


def _poll_statement() -> Select[Any]:
    """One round trip: the booking's parties beside each message after :after_seq (one row
    with NULL message columns when there is none). The messages come from their own
    (booking_id, seq) index walk, LIMIT included. Built once; values bound per request."""
    b, m = _BOOKINGS, _MESSAGES
    booking_id = bindparam("booking_id", type_=b.c.id.type)
    newer = (
        select(*_MESSAGE_COLUMNS)
        .where(m.c.booking_id == booking_id, m.c.seq > bindparam("after_seq", type_=Integer))
        .order_by(m.c.seq)
        .limit(bindparam("n", type_=Integer))
        .subquery()
    )
    return (
        select(b.c.consumer_id, b.c.provider_id, *newer.c)
        .select_from(b.outerjoin(newer, true()))
        .where(b.c.id == booking_id)
        .order_by(newer.c.seq)
    )


_POLL = _poll_statement()


def _take_seq_statement() -> Update:
    """Take the next seq; return the parties, the seq and whether the other party's account
    deletion is scheduled (in the same round trip, not a read of its own)."""
    b, u = _BOOKINGS, User.__table__
    sender = bindparam("sender_id", type_=b.c.consumer_id.type)
    recipient = case((b.c.consumer_id == sender, b.c.provider_id), else_=b.c.consumer_id)
    leaving = select(u.c.purge_at.is_not(None)).where(u.c.id == recipient).scalar_subquery()
    return (
        update(b)
        .where(
            b.c.id == bindparam("booking_id", type_=b.c.id.type),
            or_(b.c.consumer_id == sender, b.c.provider_id == sender),
            # Two primary-key probes of `blocks` for the one booking row.
            no_block_between(b.c.consumer_id, b.c.provider_id),
        )
        .values(
            last_message_seq=b.c.last_message_seq + 1,
            updated_at=bindparam("now", type_=b.c.updated_at.type),
        )
        .returning(
            b.c.consumer_id,
            b.c.provider_id,
            b.c.last_message_seq,
            leaving.label("recipient_leaving"),
        )
    )


_TAKE_SEQ = _take_seq_statement()


def _row(message: MessageView) -> dict[str, Any]:
    return {
        "id": message.id,
        "booking_id": message.booking_id,
        "seq": message.seq,
        "sender_id": message.sender_id,
        "body": message.body,
        "created_at": message.created_at,
    }


def _require_party(session: Session, booking_id: uuid.UUID, viewer: UserView) -> None:
    b = _BOOKINGS
    booking = session.execute(
        select(b.c.consumer_id, b.c.provider_id).where(b.c.id == booking_id)
    ).first()
    if booking is None or party_of(booking, viewer) is None:
        raise NotFound("No such booking.")


def _seq(key: list[object]) -> int:
    if len(key) != 1 or not isinstance(key[0], int) or isinstance(key[0], bool) or key[0] < 0:
        raise invalid_cursor("after")
    return key[0]
