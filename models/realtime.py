"""The change feed: what each user must learn about, numbered 1, 2, 3... per user.

`change_sequences` holds each user's last number; `changes` the entries themselves, keyed
(user_id, seq) so "after N, oldest first" is one range scan of the primary key.
services/realtime/feed.py writes both in the transaction of the change it records.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, utcnow


class ChangeSequence(Base):
    """A user's last change number. Kept when the changes themselves are purged, so a
    number is never given twice and a cursor older than the purge can be told apart."""

    __tablename__ = "change_sequences"

    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    last_seq: Mapped[int] = mapped_column(BigInteger)


class Change(Base):
    """One entry of a user's feed: a type, when, and the ids an app needs to refresh."""

    __tablename__ = "changes"
    # The retention purge walks created_at.
    __table_args__ = (Index("ix_changes_created_at", "created_at"),)

    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    type: Mapped[str] = mapped_column(String(48))
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
