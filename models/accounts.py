"""Relations between accounts: who blocked whom."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Index
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
