"""Personal data exports ("download my data", GDPR Art. 20): one row per export a user asked for."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, Index, String, text
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, utcnow


class DataExport(Base):
    """A user's export: `pending` until a worker built the document at `key` (then `ready`
    until `expires_at`, when the clean-up deletes the object and marks it `expired`), or
    `failed` after too many attempts.

    A build claims the row by pushing `available_at` forward (a lease) and counting the
    attempt: a worker that crashes mid-build leaves the row pending, and it is claimed again
    once the lease has run out.
    """

    __tablename__ = "data_exports"
    __table_args__ = (
        CheckConstraint("status IN ('pending', 'ready', 'failed', 'expired')", name="status_known"),
        # The user's exports of the last 24 hours (the daily limit) and GET by owner.
        Index("ix_data_exports_user_id_created_at", "user_id", "created_at"),
        # The builders' claim: the pending exports whose lease has run out, oldest first.
        Index("ix_data_exports_status_available_at", "status", "available_at"),
        # At most one pending export per user, whatever a bug in the locking might let by.
        Index(
            "uq_data_exports_one_pending",
            "user_id",
            unique=True,
            postgresql_where=text("status = 'pending'"),
            sqlite_where=text("status = 'pending'"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(16), default="pending")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # When a builder may (next) claim it: now when asked; the end of the lease once claimed.
    available_at: Mapped[datetime] = mapped_column(default=utcnow)
    attempts: Mapped[int] = mapped_column(default=0)
    # Why the last attempt failed (for operators; never shown to the user).
    last_error: Mapped[str | None] = mapped_column(String(1000))
    # The document in the uploads bucket: users/{user_id}/exports/{id}.json.gz.
    key: Mapped[str | None] = mapped_column(String(300))
    size_bytes: Mapped[int | None] = mapped_column(BigInteger)
    ready_at: Mapped[datetime | None]
    expires_at: Mapped[datetime | None]
    # The links to the user's files inside the document: Trellis's own URLs (this base, as
    # the app reached the API when it asked) holding a token of which only the SHA-256 is
    # kept. They answer with a fresh presigned GET until the export expires.
    links_base_url: Mapped[str | None] = mapped_column(String(2048))
    link_token_sha256: Mapped[str | None] = mapped_column(String(64))
