"""Provider profiles, bookings and their history, messages, reviews, role changes."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import (
    JSON,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    column,
    false,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ExcludeConstraint
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, TimestampMixin, utcnow


class ProviderProfile(TimestampMixin, Base):
    """What a provider offers, where, and at what rate. One per provider user."""

    __tablename__ = "provider_profiles"
    __table_args__ = (
        CheckConstraint("lat BETWEEN -90 AND 90", name="lat_range"),
        CheckConstraint("lng BETWEEN -180 AND 180", name="lng_range"),
        CheckConstraint("rating_count >= 0", name="rating_count_positive"),
        Index("ix_provider_profiles_lat_lng", "lat", "lng"),
        Index("ix_provider_profiles_updated_at_user_id", "updated_at", "user_id"),
    )

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"), primary_key=True)
    display_name: Mapped[str] = mapped_column(String(100))
    bio: Mapped[str] = mapped_column(Text, default="")
    categories: Mapped[list[str]] = mapped_column(JSON)
    lat: Mapped[float]
    lng: Mapped[float]
    service_radius_km: Mapped[float]
    hourly_rate_cents: Mapped[int]
    currency: Mapped[str] = mapped_column(String(3))
    # False while the user does not hold the provider role: hidden from search and booking.
    active: Mapped[bool] = mapped_column(default=True)
    rating_sum: Mapped[int] = mapped_column(default=0)
    rating_count: Mapped[int] = mapped_column(default=0)


class ProviderCategory(Base):
    """One row per (category, provider): the index search narrows by first.

    lat/lng are copied from the profile (kept in step by services/marketplace/providers.py) so that
    category + bounding box is one index range scan.
    """

    __tablename__ = "provider_categories"
    __table_args__ = (Index("ix_provider_categories_search", "category", "lat", "lng"),)

    provider_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("provider_profiles.user_id", ondelete="CASCADE"), primary_key=True
    )
    category: Mapped[str] = mapped_column(String(40), primary_key=True)
    lat: Mapped[float]
    lng: Mapped[float]


class Booking(TimestampMixin, Base):
    __tablename__ = "bookings"
    __table_args__ = (
        Index("ix_bookings_consumer_created", "consumer_id", "created_at", "id"),
        Index("ix_bookings_provider_created", "provider_id", "created_at", "id"),
        Index("ix_bookings_updated_at_id", "updated_at", "id"),  # the export's watermark walk
        Index("ix_bookings_created_at", "created_at"),  # the analytics funnel
        CheckConstraint(
            "status IN ('requested', 'accepted', 'declined', 'in_progress', 'completed', "
            "'cancelled', 'expired')",
            name="status_known",
        ),
        # A pending reschedule proposal is all three columns or none.
        CheckConstraint(
            "(reschedule_by IS NULL AND reschedule_starts_at IS NULL AND reschedule_ends_at "
            "IS NULL) OR (reschedule_by IN ('consumer', 'provider') AND reschedule_starts_at "
            "IS NOT NULL AND reschedule_ends_at > reschedule_starts_at)",
            name="reschedule_whole",
        ),
        CheckConstraint("ends_at > scheduled_at", name="ends_after_start"),
        CheckConstraint("blocked_until >= ends_at", name="blocked_through_end"),
        # No double booking, whatever the code does: two accepted or in-progress bookings of
        # one provider never overlap, buffers included (PostgreSQL only; btree_gist gives the
        # gist index its `=` on provider_id). SQLite has no EXCLUDE: services/marketplace/
        # bookings.py checks the same under the write lock. The index also answers the slots'
        # "busy times of this provider in a range".
        ExcludeConstraint(
            ("provider_id", "="),
            (func.tstzrange(column("scheduled_at"), column("blocked_until")), "&&"),
            name="bookings_no_double_booking",
            using="gist",
            where=text("status IN ('accepted', 'in_progress') AND NOT legacy_overlap"),
        ).ddl_if(dialect="postgresql"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    # Null once that party's account is purged: the other keeps the booking, which no longer
    # points at the person who left (the same for every *_id below that a purge clears).
    consumer_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"))
    provider_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"))
    category: Mapped[str] = mapped_column(String(40))
    scheduled_at: Mapped[datetime]  # the start
    ends_at: Mapped[datetime]
    # ends_at + the provider's buffer when the time was set: the span the exclusion constraint
    # keeps apart (a column: timestamptz + interval is not immutable, so no index expression).
    blocked_until: Mapped[datetime]
    # Accepted before double booking was refused (migration c6a8e3b5f179) while overlapping
    # an earlier accepted booking: left out of the constraint, still busy time for the slots.
    legacy_overlap: Mapped[bool] = mapped_column(default=False, server_default=false())
    # The consumer's location: cleared (null) with the consumer's account.
    lat: Mapped[float | None]
    lng: Mapped[float | None]
    address: Mapped[str | None] = mapped_column(String(300))
    notes: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(16))
    # Highest message seq so far: messages get seq = this + 1 under the booking's row lock.
    last_message_seq: Mapped[int] = mapped_column(Integer, default=0)
    # The pending reschedule proposal, if any (at most one): which party proposed it (a
    # role, not a user: it outlives a purge) and the time proposed.
    reschedule_by: Mapped[str | None] = mapped_column(String(16))
    reschedule_starts_at: Mapped[datetime | None]
    reschedule_ends_at: Mapped[datetime | None]


class BookingEvent(Base):
    """One entry of a booking's history: a state change (kind `transition`: who, when, from
    what to what, and why) or a move to another time (kind `rescheduled`: from_status ==
    to_status, and the time before and after). A timer's change has actor_role `system` and
    no actor_id."""

    __tablename__ = "booking_events"
    __table_args__ = (
        Index("ix_booking_events_booking", "booking_id", "created_at"),
        Index("ix_booking_events_created_at_id", "created_at", "id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    booking_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("bookings.id", ondelete="CASCADE"))
    from_status: Mapped[str | None] = mapped_column(String(16))
    to_status: Mapped[str] = mapped_column(String(16))
    actor_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"))
    actor_role: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(String(1000))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    kind: Mapped[str] = mapped_column(
        String(16), default="transition", server_default=text("'transition'")
    )
    # Set on `rescheduled` entries only: the booking's time before and after the move.
    from_starts_at: Mapped[datetime | None]
    from_ends_at: Mapped[datetime | None]
    to_starts_at: Mapped[datetime | None]
    to_ends_at: Mapped[datetime | None]


class Message(Base):
    __tablename__ = "messages"
    __table_args__ = (
        UniqueConstraint("booking_id", "seq"),
        Index("ix_messages_created_at_id", "created_at", "id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    booking_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("bookings.id", ondelete="CASCADE"))
    # 1, 2, 3... per booking, assigned under the booking's row lock: a poll with after=N
    # never misses a message that commits later with a smaller number.
    seq: Mapped[int]
    sender_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"))
    # Null once removed (a moderator's remove_content, or the sender's purge): removed_at says when.
    body: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    removed_at: Mapped[datetime | None]


class Review(Base):
    __tablename__ = "reviews"
    __table_args__ = (
        CheckConstraint("rating BETWEEN 1 AND 5", name="rating_range"),
        Index("ix_reviews_provider_created", "provider_id", "created_at"),
        Index("ix_reviews_created_at_booking_id", "created_at", "booking_id"),
    )

    booking_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("bookings.id"), primary_key=True)
    consumer_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"))
    provider_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"))
    # The rating stays in the provider's average when the comment is removed.
    rating: Mapped[int]
    comment: Mapped[str | None] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    removed_at: Mapped[datetime | None]


class RoleChange(Base):
    """An admin granted or revoked a role (mirrored to a Cognito group)."""

    __tablename__ = "role_changes"
    __table_args__ = (Index("ix_role_changes_user", "user_id", "created_at"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    user_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"))
    role: Mapped[str] = mapped_column(String(16))
    action: Mapped[str] = mapped_column(String(8))
    actor_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
