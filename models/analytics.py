"""App analytics events (what Mobile Analytics / Pinpoint collected)."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import JSON, BigInteger, ForeignKey, Identity, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, utcnow


class Event(Base):
    __tablename__ = "events"
    __table_args__ = (
        Index("ix_events_received_at", "received_at"),
        Index("ix_events_name_received_at", "name", "received_at"),
        Index("ix_events_user_received_at", "user_id", "received_at"),
    )

    # BIGINT on PostgreSQL; SQLite only auto-increments an INTEGER PRIMARY KEY.
    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), Identity(), primary_key=True
    )
    user_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    name: Mapped[str] = mapped_column(String(128))
    occurred_at: Mapped[datetime]  # the client's clock
    received_at: Mapped[datetime] = mapped_column(default=utcnow)  # ours
    session_id: Mapped[str | None] = mapped_column(String(128))
    attributes: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    metrics: Mapped[dict[str, float]] = mapped_column(JSON, default=dict)
    app_version: Mapped[str | None] = mapped_column(String(32))
    platform: Mapped[str | None] = mapped_column(String(16))


class ExportWatermark(Base):
    """How far each table has been exported: rows after (updated_at, id) are not yet."""

    __tablename__ = "export_watermarks"

    table_name: Mapped[str] = mapped_column(String(64), primary_key=True)
    last_changed_at: Mapped[datetime]
    last_key: Mapped[str] = mapped_column(String(64))
    last_run_id: Mapped[uuid.UUID]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class ExportRun(Base):
    __tablename__ = "export_runs"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]
    status: Mapped[str] = mapped_column(String(16))  # running | succeeded | failed
    rows: Mapped[int] = mapped_column(BigInteger, default=0)
    files: Mapped[list[str]] = mapped_column(JSON, default=list)
    error: Mapped[str | None] = mapped_column(String(2000))
