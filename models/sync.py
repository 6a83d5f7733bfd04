"""Cross-device sync (the Cognito Sync model): per-user datasets of versioned records."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, utcnow


class SyncDataset(Base):
    __tablename__ = "sync_datasets"
    __table_args__ = (UniqueConstraint("user_id", "name"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(128))
    # Bumped by every successful batch; each record remembers the count that wrote it.
    sync_count: Mapped[int] = mapped_column(BigInteger, default=0)
    record_count: Mapped[int] = mapped_column(default=0)  # live records (tombstones excluded)
    bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class SyncRecord(Base):
    __tablename__ = "sync_records"
    __table_args__ = (Index("ix_sync_records_dataset_sync_count", "dataset_id", "sync_count"),)

    dataset_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("sync_datasets.id", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(String(1024), primary_key=True)
    value: Mapped[Any | None] = mapped_column(JSON)
    sync_count: Mapped[int] = mapped_column(BigInteger)
    deleted: Mapped[bool] = mapped_column(default=False)  # a tombstone, kept for other devices
    device_id: Mapped[str | None] = mapped_column(String(128))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
