"""Relations between accounts: who blocked whom; requests to delete one, from the web."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, utcnow


class Block(Base):
    """`blocker_id` blocked `blocked_id`: no new booking, message or provider notification
    between the two, in either direction, and neither finds the other in provider search.

    The primary key answers "did A block B" and lists A's blocks; the second index answers
    "who blocked B", so a check of both directions is two index probes.
    """

    __tablename__ = "blocks"
    __table_args__ = (
        CheckConstraint("blocker_id <> blocked_id", name="not_self"),
        Index("ix_blocks_blocked_id_blocker_id", "blocked_id", "blocker_id"),
    )

    blocker_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    blocked_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class DeletionRequest(Base):
    """Someone asked, on the public web page (GET /account/delete), for the deletion of the
    account that uses `email`. Operators read these (GET /v1/admin/deletion-requests), act in
    Cognito and Trellis, and close them; a closed request is deleted
    DELETION_REQUESTS_RETENTION_DAYS after `closed_at` (services/accounts/deletion_requests.py).

    Nothing ties a request to an account: anyone may type any address, so the match with a
    user is made when an operator lists them, never stored. The sender's IP address is not
    kept (data minimisation): the per-IP rate limit counts in Redis without it, and an
    operator confirms a request by writing to the address, not by where it came from.
    """

    __tablename__ = "deletion_requests"
    __table_args__ = (
        CheckConstraint("status IN ('open', 'closed')", name="status"),
        # The operators' list, newest first, whole or by status (keyset on both columns).
        Index("ix_deletion_requests_created_at_id", "created_at", "id"),
        Index("ix_deletion_requests_status_created_at_id", "status", "created_at", "id"),
        # The retention clean-up: closed requests by when they were closed.
        Index("ix_deletion_requests_closed_at", "closed_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    email: Mapped[str] = mapped_column(String(254))
    note: Mapped[str] = mapped_column(String(2000), default="")
    status: Mapped[str] = mapped_column(String(16), default="open")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    closed_at: Mapped[datetime | None]
    # The admin who closed it (null once that admin's own account is purged).
    closed_by_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL")
    )
    close_note: Mapped[str | None] = mapped_column(String(2000))
