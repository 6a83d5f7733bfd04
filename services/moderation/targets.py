"""What a report points at: a user, message, review, provider profile or upload.

For each kind: whose it is (the owner a suspension hits), who may see it (only they may
report it: otherwise 404, as for a missing object), what an operator reads to decide (the
snapshot), and what `remove_content` does to it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, exists, or_, select, update
from sqlalchemy.orm import Session

from models import Booking, Message, Notification, ProviderProfile, Review, Upload, User
from services.accounts.blocks import either_blocked

REMOVED_STATUS = "removed"  # an upload a moderator removed: its object is gone, never served


@dataclass(frozen=True, slots=True)
class Target:
    type: str
    id: uuid.UUID
    owner_id: uuid.UUID | None  # None once the owner's account was purged
    booking_id: uuid.UUID | None = None  # the booking a message, review or attachment is of
    upload: Upload | None = None


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The target as it is now, for the operator: `exists` is False once it was deleted."""

    exists: bool
    owner_id: uuid.UUID | None = None
    display_name: str | None = None  # the owner's name (the profile's, for a profile)
    text: str | None = None  # message body, review comment, bio; None once removed
    removed: bool = False
    rating: int | None = None
    content_type: str | None = None
    download_url: str | None = None  # images only, short-lived
    booking_id: uuid.UUID | None = None


def load(session: Session, target_type: str, target_id: uuid.UUID) -> Target | None:
    """The target, or None if there is no such object."""
    if target_type == "message":
        row = session.execute(
            select(Message.sender_id, Message.booking_id).where(Message.id == target_id)
        ).first()
        return Target(target_type, target_id, row[0], row[1]) if row else None
    if target_type == "review":
        row = session.execute(
            select(Review.consumer_id).where(Review.booking_id == target_id)
        ).first()
        return Target(target_type, target_id, row[0], target_id) if row else None
    if target_type == "provider_profile":
        found = session.scalar(
            select(ProviderProfile.user_id).where(ProviderProfile.user_id == target_id)
        )
        return Target(target_type, target_id, target_id) if found else None
    if target_type == "user":
        found = session.scalar(
            select(User.id).where(User.id == target_id, User.purged_at.is_(None))
        )
        return Target(target_type, target_id, target_id) if found else None
    upload = session.get(Upload, target_id)
    if upload is None:
        return None
    return Target(target_type, target_id, upload.owner_id, upload.booking_id, upload)


def visible(session: Session, target: Target, viewer_id: uuid.UUID) -> bool:
    """Whether `viewer_id` may see the target, hence report it."""
    if target.type in ("message", "review"):
        return target.booking_id is not None and _party(session, target.booking_id, viewer_id)
    if target.type == "provider_profile":
        return _profile_visible(session, target.id, viewer_id)
    if target.type == "user":
        return _user_visible(session, target.id, viewer_id)
    upload = target.upload
    if upload is None or upload.status != "ready":
        return False
    if upload.purpose == "booking_attachment" and upload.booking_id is not None:
        return _party(session, upload.booking_id, viewer_id)
    if upload.purpose == "avatar" and target.owner_id is not None:
        is_avatar = session.scalar(
            select(exists().where(User.id == target.owner_id, User.avatar_upload_id == upload.id))
        )
        return bool(is_avatar) and _user_visible(session, target.owner_id, viewer_id)
    return False


def _party(session: Session, booking_id: uuid.UUID, viewer_id: uuid.UUID) -> bool:
    query = exists().where(
        Booking.id == booking_id,
        or_(Booking.consumer_id == viewer_id, Booking.provider_id == viewer_id),
    )
    return bool(session.scalar(select(query)))


def _profile_visible(session: Session, user_id: uuid.UUID, viewer_id: uuid.UUID) -> bool:
    """As GET /v1/providers/{id}: active, and neither blocked the other."""
    query = select(ProviderProfile.active).where(ProviderProfile.user_id == user_id)
    active = session.scalar(query)
    return bool(active) and not either_blocked(session, viewer_id, user_id)


def _user_visible(session: Session, user_id: uuid.UUID, viewer_id: uuid.UUID) -> bool:
    """A user the viewer shares a booking with (blocked or not: whoever harassed you stays
    reportable), or whose provider profile the viewer can see."""
    b = Booking
    shared = exists().where(
        or_(
            and_(b.consumer_id == viewer_id, b.provider_id == user_id),
            and_(b.consumer_id == user_id, b.provider_id == viewer_id),
        )
    )
    return bool(session.scalar(select(shared))) or _profile_visible(session, user_id, viewer_id)


def snapshot(target: Target | None, session: Session) -> Snapshot:
    """What the operator reads; the download link of an image is added by the caller (it
    needs the object store)."""
    if target is None:
        return Snapshot(exists=False)
    name = _display_name(session, target.owner_id)
    if target.type == "message":
        body = session.scalar(select(Message.body).where(Message.id == target.id))
        removed = body is None
        return Snapshot(True, target.owner_id, name, body, removed, booking_id=target.booking_id)
    if target.type == "review":
        review = session.get(Review, target.id)
        assert review is not None
        removed = review.comment is None
        return Snapshot(
            True, target.owner_id, name, review.comment, removed, review.rating,
            booking_id=target.booking_id,
        )  # fmt: skip
    if target.type in ("provider_profile", "user"):
        profile = session.get(ProviderProfile, target.id)
        bio = profile.bio if profile is not None else None
        if target.type == "provider_profile" and profile is not None:
            name = profile.display_name
        return Snapshot(True, target.owner_id, name, bio, False)
    upload = target.upload
    assert upload is not None
    removed = upload.status == REMOVED_STATUS
    return Snapshot(
        True, target.owner_id, name, upload.filename, removed,
        content_type=upload.content_type, booking_id=target.booking_id,
    )  # fmt: skip


def _display_name(session: Session, user_id: uuid.UUID | None) -> str | None:
    if user_id is None:
        return None
    return session.scalar(select(User.display_name).where(User.id == user_id))


def remove(session: Session, target: Target, now: datetime) -> None:
    """Hide the content from everyone (the upload's S3 object was deleted before)."""
    if target.type == "message":
        session.execute(
            update(Message).where(Message.id == target.id).values(body=None, removed_at=now)
        )
        # The recipient's inbox entry quotes the message: it goes too.
        session.execute(
            update(Notification)
            .where(
                Notification.kind == "message.new",
                Notification.data["message_id"].as_string() == str(target.id),
            )
            .values(body="")
        )
    elif target.type == "review":
        # The rating stays in the provider's average: only the words are removed.
        session.execute(
            update(Review)
            .where(Review.booking_id == target.id)
            .values(comment=None, removed_at=now)
        )
    elif target.type == "provider_profile":
        _clear_bio(session, target.id)
    elif target.type == "user":
        session.execute(update(User).where(User.id == target.id).values(display_name=None))
        _clear_bio(session, target.id)
    else:
        session.execute(update(Upload).where(Upload.id == target.id).values(status=REMOVED_STATUS))
        session.execute(
            update(User).where(User.avatar_upload_id == target.id).values(avatar_upload_id=None)
        )


def _clear_bio(session: Session, user_id: uuid.UUID) -> None:
    session.execute(
        update(ProviderProfile).where(ProviderProfile.user_id == user_id).values(bio="")
    )
