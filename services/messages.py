"""Messages between the two parties of a booking, numbered per booking for cheap polling."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from models import Booking, Message
from models.base import utcnow
from services.bookings import lock_booking, party_of
from services.db import transaction
from services.errors import Forbidden, NotFound
from services.notifications import notify
from services.pagination import decode_cursor, encode_cursor, invalid_cursor, scope_of
from services.users import UserView


@dataclass(frozen=True, slots=True)
class MessageView:
    id: uuid.UUID
    booking_id: uuid.UUID
    seq: int
    sender_id: uuid.UUID
    body: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class MessagePage:
    items: list[MessageView]
    next_cursor: str | None  # more are already waiting
    poll_cursor: str  # pass as `after` later to get only what is newer than these


def post_message(
    session: Session, *, booking_id: uuid.UUID, sender: UserView, body: str
) -> MessageView:
    """Only the two parties write; admins read. The booking row lock orders the numbers."""
    with transaction(session):
        booking = lock_booking(session, booking_id, sender)
        if party_of(booking, sender) == "admin":
            raise Forbidden("Admins can read a booking's messages but not write them.")
        booking.last_message_seq += 1
        message = Message(
            id=uuid.uuid4(),
            booking_id=booking_id,
            seq=booking.last_message_seq,
            sender_id=sender.id,
            body=body,
            created_at=utcnow(),
        )
        session.add(message)
        recipient = booking.provider_id if sender.id == booking.consumer_id else booking.consumer_id
        notify(
            session,
            user_id=recipient,
            kind="message.new",
            title="New message",
            body=body if len(body) <= 140 else body[:139] + "…",
            data={
                "booking_id": str(booking_id),
                "message_id": str(message.id),
                "deep_link": f"trellis://bookings/{booking_id}/messages",
            },
            sender_id=sender.id,
        )
    return _view(message)


def list_messages(
    session: Session, *, booking_id: uuid.UUID, viewer: UserView, after: str | None, limit: int
) -> MessagePage:
    """Messages after the cursor, oldest first."""
    booking = session.get(Booking, booking_id)
    if booking is None or party_of(booking, viewer) is None:
        raise NotFound("No such booking.")
    scope = scope_of("messages", str(booking_id))
    after_seq = _seq(decode_cursor(after, scope, field="after")) if after else 0
    rows = session.scalars(
        select(Message)
        .where(Message.booking_id == booking_id, Message.seq > after_seq)
        .order_by(Message.seq)
        .limit(limit + 1)
    ).all()
    items = [_view(m) for m in rows[:limit]]
    last_seq = items[-1].seq if items else after_seq
    cursor = encode_cursor(scope, [last_seq])
    return MessagePage(items, cursor if len(rows) > limit else None, cursor)


def _seq(key: list[object]) -> int:
    if len(key) != 1 or not isinstance(key[0], int) or isinstance(key[0], bool) or key[0] < 0:
        raise invalid_cursor("after")
    return key[0]


def _view(m: Message) -> MessageView:
    return MessageView(m.id, m.booking_id, m.seq, m.sender_id, m.body, m.created_at)
