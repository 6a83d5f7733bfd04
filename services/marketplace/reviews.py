"""One review per completed booking, by its consumer; the provider's rating moves with it."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from models import BookingEvent, ProviderProfile, Review
from models.base import utcnow
from services.accounts.users import UserView, deletion_scheduled_refusal
from services.base.content_filter import ContentFilter, flag
from services.base.errors import Conflict, Forbidden
from services.marketplace.bookings import lock_booking, party_of


@dataclass(frozen=True, slots=True)
class ReviewView:
    booking_id: uuid.UUID
    provider_id: uuid.UUID | None  # None once that party's account is purged
    consumer_id: uuid.UUID | None
    rating: int
    comment: str | None  # None once removed; the rating stays in the provider's average
    created_at: datetime

    @property
    def removed(self) -> bool:
        return self.comment is None


def post_review(
    session: Session,
    *,
    booking_id: uuid.UUID,
    author: UserView,
    rating: int,
    comment: str,
    content: ContentFilter,
    window: timedelta = timedelta(days=14),
) -> ReviewView:
    """404 if hidden, 403 unless the booking's consumer, 409 unless completed, if reviewed,
    or once `window` (REVIEW_WINDOW_DAYS) has passed since completion. A comment that hits
    the content filter is kept and opens a system report of the review."""
    booking = lock_booking(session, booking_id, author)
    if party_of(booking, author) != "consumer":
        raise Forbidden("Only the booking's consumer may review it.")
    if author.purge_at is not None:
        raise deletion_scheduled_refusal("review a booking")
    if booking.status != "completed":
        raise Conflict(f"This booking is {booking.status}; reviews open once it is completed.")
    if session.get(Review, booking_id) is not None:
        raise Conflict("This booking already has a review.")
    now = utcnow()
    completed_at = _completed_at(session, booking_id)
    if completed_at is not None and now > completed_at + window:
        raise Conflict(
            f"Reviews close {window.days} days after completion; this booking was completed "
            f"on {completed_at:%Y-%m-%d}."
        )
    review = Review(
        booking_id=booking_id,
        consumer_id=booking.consumer_id,
        provider_id=booking.provider_id,
        rating=rating,
        comment=comment,
        created_at=now,
    )
    session.add(review)
    flag(session, content, target_type="review", target_id=booking_id, texts=(comment,))
    # In SQL, not read-modify-write: concurrent reviews of one provider cannot lose a count.
    session.execute(
        update(ProviderProfile)
        .where(ProviderProfile.user_id == booking.provider_id)
        .values(
            rating_sum=ProviderProfile.rating_sum + rating,
            rating_count=ProviderProfile.rating_count + 1,
        )
    )
    session.flush()
    return ReviewView(
        review.booking_id,
        review.provider_id,
        review.consumer_id,
        review.rating,
        review.comment,
        review.created_at,
    )


def _completed_at(session: Session, booking_id: uuid.UUID) -> datetime | None:
    """When the booking was completed (by its provider or by the timer), from its history."""
    return session.scalar(
        select(func.max(BookingEvent.created_at)).where(
            BookingEvent.booking_id == booking_id, BookingEvent.to_status == "completed"
        )
    )
