"""Uploads the app sends straight to S3: issue a presigned POST, then verify what arrived."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TypeVar

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session, sessionmaker

from models import Booking, Upload, User
from models.base import utcnow
from services.accounts.users import UserView
from services.aws.s3 import ObjectStore, PresignedPost, StorageUnavailable
from services.base.errors import (
    Conflict,
    FieldError,
    Forbidden,
    NotFound,
    Unavailable,
    ValidationFailed,
)
from services.base.unit_of_work import transaction
from services.marketplace.bookings import party_of

T = TypeVar("T")
PURPOSES = ("avatar", "booking_attachment", "provider_document")


@dataclass(frozen=True)
class UploadLimit:
    max_bytes: int
    content_types: frozenset[str]


MIB = 1024 * 1024
IMAGES = frozenset({"image/jpeg", "image/png", "image/webp", "image/heic"})
DEFAULT_LIMITS: dict[str, UploadLimit] = {
    "avatar": UploadLimit(5 * MIB, IMAGES),
    "booking_attachment": UploadLimit(20 * MIB, IMAGES | {"application/pdf"}),
    "provider_document": UploadLimit(20 * MIB, IMAGES | {"application/pdf"}),
}


@dataclass(frozen=True, slots=True)
class UploadView:
    id: uuid.UUID
    owner_id: uuid.UUID
    purpose: str
    booking_id: uuid.UUID | None
    content_type: str
    size_bytes: int
    filename: str | None
    status: str
    created_at: datetime
    completed_at: datetime | None
    download_url: str | None = None
    upload: PresignedPost | None = None


@dataclass(frozen=True, slots=True)
class NewUpload:
    purpose: str
    content_type: str
    size_bytes: int
    filename: str | None
    booking_id: uuid.UUID | None


def issue_upload(
    session: Session,
    store: ObjectStore,
    *,
    owner: UserView,
    data: NewUpload,
    limits: Mapping[str, UploadLimit],
    expires_in: int,
) -> UploadView:
    """A pending upload and the presigned POST for it; 422 before any URL if out of limits."""
    _check(session, owner, data, limits)
    key = f"users/{owner.id}/{data.purpose}/{uuid.uuid4()}"  # never the client's file name
    post = _storage(
        lambda: store.presign_post(
            key=key,
            content_type=data.content_type,
            max_bytes=data.size_bytes,
            expires_in=expires_in,
        )
    )
    upload = Upload(
        id=uuid.uuid4(),
        owner_id=owner.id,
        purpose=data.purpose,
        booking_id=data.booking_id,
        content_type=data.content_type,
        size_bytes=data.size_bytes,
        filename=data.filename,
        key=key,
        status="pending",
        created_at=utcnow(),
    )
    session.add(upload)
    session.flush()
    return _view(upload, upload=post)


def _check(
    session: Session, owner: UserView, data: NewUpload, limits: Mapping[str, UploadLimit]
) -> None:
    if data.purpose == "provider_document" and "provider" not in owner.roles:
        raise Forbidden("Provider documents need the provider role.")
    limit = limits[data.purpose]
    problems: list[FieldError] = []
    if data.content_type not in limit.content_types:
        allowed = ", ".join(sorted(limit.content_types))
        problems.append(
            FieldError("content_type", f"for {data.purpose}: one of {allowed}", "type_not_allowed")
        )
    if data.size_bytes > limit.max_bytes:
        problems.append(
            FieldError(
                "size_bytes", f"for {data.purpose}: at most {limit.max_bytes} bytes", "too_large"
            )
        )
    if data.purpose == "booking_attachment":
        booking = session.get(Booking, data.booking_id) if data.booking_id else None
        if booking is None or party_of(booking, owner) not in ("consumer", "provider"):
            problems.append(
                FieldError("booking_id", "a booking you are a party to", "booking_unknown")
            )
    elif data.booking_id is not None:
        problems.append(FieldError("booking_id", "only for booking_attachment", "unexpected"))
    if problems:
        raise ValidationFailed("This upload is not allowed.", problems)


@dataclass(frozen=True, slots=True)
class Completion:
    """What completing an upload came to: `problems` is empty when it is ready; otherwise
    the object was deleted and the row marked rejected (a refusal that must be kept)."""

    upload: UploadView
    problems: tuple[FieldError, ...] = ()


def complete_upload(
    session: Session, store: ObjectStore, *, owner: UserView, upload_id: uuid.UUID
) -> Completion:
    """Check the object S3 holds against what was declared; a mismatch is deleted and the
    upload rejected: the caller keeps that outcome (commits) and answers 422."""
    upload = _owned(session, owner, upload_id)
    if upload.status == "ready":
        return Completion(_view(upload))
    if upload.status != "pending":
        raise Conflict(f"This upload is {upload.status}; start a new one.")
    stored = _storage(lambda: store.head(upload.key))
    if stored is None:
        raise ValidationFailed(
            "Nothing has been uploaded yet.",
            [FieldError("upload", "POST the file to the presigned URL first", "not_uploaded")],
        )
    problems = []
    if stored.size_bytes != upload.size_bytes:
        problems.append(
            FieldError(
                "size_bytes",
                f"declared {upload.size_bytes}, got {stored.size_bytes}",
                "size_mismatch",
            )
        )
    if stored.content_type != upload.content_type:
        problems.append(
            FieldError(
                "content_type",
                f"declared {upload.content_type}, got {stored.content_type}",
                "type_mismatch",
            )
        )
    upload.completed_at = utcnow()
    if problems:
        _storage(lambda: store.delete(upload.key))
        upload.status = "rejected"
        session.flush()
        return Completion(_view(upload), tuple(problems))
    upload.status = "ready"
    if upload.purpose == "avatar":
        session.execute(update(User).where(User.id == owner.id).values(avatar_upload_id=upload.id))
    session.flush()
    return Completion(_view(upload))


def get_upload(
    session: Session, store: ObjectStore, *, viewer: UserView, upload_id: uuid.UUID, expires_in: int
) -> UploadView:
    """For its owner and, for booking attachments, the booking's other party; else 404."""
    upload = session.get(Upload, upload_id)
    if upload is None or not _may_view(session, upload, viewer):
        raise NotFound("No such upload.")
    url = None
    if upload.status == "ready":
        url = _storage(lambda: store.presign_get(key=upload.key, expires_in=expires_in))
    return _view(upload, download_url=url)


def _may_view(session: Session, upload: Upload, viewer: UserView) -> bool:
    if upload.owner_id == viewer.id:
        return True
    if upload.purpose != "booking_attachment" or upload.booking_id is None:
        return False
    booking = session.get(Booking, upload.booking_id)
    return booking is not None and party_of(booking, viewer) in ("consumer", "provider")


def delete_upload(
    session: Session, store: ObjectStore, *, owner: UserView, upload_id: uuid.UUID
) -> None:
    """Remove the object and the row (owner only)."""
    upload = _owned(session, owner, upload_id)
    _storage(lambda: store.delete(upload.key))
    session.execute(
        update(User).where(User.avatar_upload_id == upload.id).values(avatar_upload_id=None)
    )
    session.delete(upload)
    session.flush()


def cleanup_pending(
    sessions: sessionmaker[Session], store: ObjectStore, *, older_than: timedelta
) -> int:
    """Delete uploads still pending after `older_than` (the app never finished them), each
    in a step of its own: an object already deleted is no error on the next run."""
    cutoff = utcnow() - older_than
    with transaction(sessions) as session:
        stale = session.execute(
            select(Upload.id, Upload.key)
            .where(Upload.status == "pending", Upload.created_at < cutoff)
            .limit(1000)
        ).all()
    for upload_id, key in stale:
        _storage(lambda key=key: store.delete(key))
        with transaction(sessions) as session:
            session.execute(
                delete(Upload).where(Upload.id == upload_id, Upload.status == "pending")
            )
    return len(stale)


def _owned(session: Session, owner: UserView, upload_id: uuid.UUID) -> Upload:
    upload = session.get(Upload, upload_id, populate_existing=True)
    if upload is None or upload.owner_id != owner.id:
        raise NotFound("No such upload.")
    return upload


def _storage(call: Callable[[], T]) -> T:
    try:
        return call()
    except StorageUnavailable as exc:
        raise Unavailable("File storage is not reachable right now; retry shortly.") from exc


def _view(
    u: Upload, *, download_url: str | None = None, upload: PresignedPost | None = None
) -> UploadView:
    return UploadView(
        u.id,
        u.owner_id,
        u.purpose,
        u.booking_id,
        u.content_type,
        u.size_bytes,
        u.filename,
        u.status,
        u.created_at,
        u.completed_at,
        download_url,
        upload,
    )
