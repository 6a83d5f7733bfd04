"""Provider availability: when a provider can be booked (services/marketplace/slots.py)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, CheckConstraint, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, utcnow


class Availability(Base):
    """One provider's weekly hours, date exceptions and booking rules, as one document.

    `weekly` and `exceptions` keep the shape the provider sent (local "HH:MM" times in
    `time_zone`): the slots are computed from them per request, so a change of the zone's
    rules (a new tzdata) applies without rewriting rows. Validated by api/schemas/scheduling.py.
    """

    __tablename__ = "availabilities"
    __table_args__ = (
        CheckConstraint("buffer_minutes BETWEEN 0 AND 1440", name="buffer_range"),
        CheckConstraint("min_notice_minutes BETWEEN 0 AND 525600", name="notice_range"),
        CheckConstraint("max_days_ahead BETWEEN 1 AND 366", name="ahead_range"),
        CheckConstraint("default_duration_minutes BETWEEN 5 AND 1440", name="duration_range"),
    )

    provider_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    time_zone: Mapped[str] = mapped_column(String(64))  # IANA, e.g. Europe/Berlin
    # [{"weekday": 0-6 (Monday 0), "start": "09:00", "end": "17:00"}, ...]
    weekly: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    # [{"date": "2026-12-24", "intervals": [{"start": ..., "end": ...}]}]: replaces that day
    exceptions: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    buffer_minutes: Mapped[int]
    min_notice_minutes: Mapped[int]
    max_days_ahead: Mapped[int]
    default_duration_minutes: Mapped[int]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class BookingTimer(Base):
    """A timed transition waiting to fire (services/marketplace/timers.py): written in the
    transaction that set it, deleted by the one that fires it or makes it moot. Only pending
    timers are rows, so "what is due" is one range scan of ix_booking_timers_due_at."""

    __tablename__ = "booking_timers"
    __table_args__ = (
        # One timer of each kind per booking; also the index that cancels a booking's timers.
        UniqueConstraint("booking_id", "kind"),
        Index("ix_booking_timers_due_at", "due_at"),
        CheckConstraint("kind IN ('expire', 'auto_complete', 'remind')", name="kind_known"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    booking_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("bookings.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))
    due_at: Mapped[datetime]
    # How many times firing it failed (an unexpected error): each failure postpones it.
    attempts: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
