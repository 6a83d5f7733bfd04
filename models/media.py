"""Uploads to S3, push devices, the notification inbox and the outbox that delivers it."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, utcnow


class Upload(Base):
    """A file the app sends straight to S3 with a presigned POST, then confirms."""

    __tablename__ = "uploads"
    __table_args__ = (
        Index("ix_uploads_owner_created", "owner_id", "created_at"),
        Index("ix_uploads_status_created", "status", "created_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    owner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"))
    purpose: Mapped[str] = mapped_column(String(32))
    booking_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("bookings.id"))
    content_type: Mapped[str] = mapped_column(String(100))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    # The client's name for the file, for display only: never part of the S3 key.
    filename: Mapped[str | None] = mapped_column(String(255))
    key: Mapped[str] = mapped_column(String(300), unique=True)
    status: Mapped[str] = mapped_column(String(16))  # pending | ready | rejected
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    completed_at: Mapped[datetime | None]


class Device(Base):
    """A phone's push token, registered as an SNS platform endpoint."""

    __tablename__ = "devices"
    __table_args__ = (
        UniqueConstraint("platform", "token"),
        Index("ix_devices_user", "user_id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"))
    platform: Mapped[str] = mapped_column(String(16))  # ios | android
    token: Mapped[str] = mapped_column(String(4096))
    endpoint_arn: Mapped[str] = mapped_column(String(1024))
    enabled: Mapped[bool] = mapped_column(default=True)
    app_version: Mapped[str | None] = mapped_column(String(32))
    locale: Mapped[str | None] = mapped_column(String(35))
    # IANA zone the phone shows times in (services/messaging/texts.py); None: not told.
    time_zone: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(default=utcnow)


class Notification(Base):
    """One entry of a user's inbox."""

    __tablename__ = "notifications"
    __table_args__ = (Index("ix_notifications_user_created", "user_id", "created_at", "id"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"))
    kind: Mapped[str] = mapped_column(String(40))
    # Trellis's own notifications: the event (texts.Message: id, params, zone), rendered per
    # reader; title and body then hold its English text (what code before it reads).
    # NULL: title and body are the text itself (a provider's notification, older rows).
    message: Mapped[dict[str, object] | None] = mapped_column(JSON)
    title: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text)
    data: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    sender_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"))
    read_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class OutboxMessage(Base):
    """A push to deliver, written in the transaction of the change that caused it."""

    __tablename__ = "outbox_messages"
    __table_args__ = (Index("ix_outbox_messages_due", "delivered_at", "available_at"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"))
    notification_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("notifications.id"))
    # What to push: kind, title, body, data, silent (sync pushes carry no alert).
    payload: Mapped[dict[str, object]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    available_at: Mapped[datetime] = mapped_column(default=utcnow)
    attempts: Mapped[int] = mapped_column(default=0)
    last_error: Mapped[str | None] = mapped_column(String(1000))
    # Device ids already reached: a retry after a partial failure skips them.
    delivered_to: Mapped[list[str]] = mapped_column(JSON, default=list)
    delivered_at: Mapped[datetime | None]
