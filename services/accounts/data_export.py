"""Personal data exports ("download my data", GDPR Art. 20).

A user asks (`request_export`: one pending at a time, EXPORTS_PER_DAY in any 24 hours,
counted under their users row lock so two concurrent requests cannot both pass); a builder
writes the document and tells them (`build_pending`); they read its state and a download
link (`get_export`) until it expires 7 days after it was built, when the clean-up in
`build_pending` deletes the object and reports the export `expired`.

The document is one gzip JSON object at users/{user_id}/exports/{export_id}.json.gz in the
uploads bucket (SSE-KMS), so the account's purge, which empties users/{user_id}/, takes it
too. It is built in bounded memory: rows are read through server-side cursors a chunk at a
time, encoded one by one, compressed as they come and sent up in ~8 MiB multipart parts.

Builders (the web workers' thread, `flask accounts export-data`, the worker tier's task)
run side by side: each claims one export at a time with FOR UPDATE SKIP LOCKED and takes a
lease on it (available_at moves DATA_EXPORT_LEASE_SECONDS ahead, the attempt is counted)
in a short transaction, then builds with no row locked. A builder that crashes leaves the
export pending; it is claimed again when the lease runs out. A build that fails is retried
after a back-off; after DATA_EXPORT_MAX_ATTEMPTS attempts the export is `failed`, the
reason logged and kept in last_error.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import secrets
import time
import uuid
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import Select, or_, select, text, update
from sqlalchemy.orm import Session, sessionmaker

from models import (
    Block,
    Booking,
    BookingEvent,
    DataExport,
    Device,
    Event,
    Message,
    Notification,
    ProviderProfile,
    Review,
    SyncDataset,
    SyncRecord,
    Upload,
    User,
)
from models.base import utcnow
from services.aws.exports import ExportObject
from services.aws.s3 import ObjectStore, StorageUnavailable
from services.base.errors import ExportInProgress, NotFound, RateLimited, Unavailable
from services.base.settings import Settings
from services.base.unit_of_work import transaction
from services.messaging import outbox, texts
from services.messaging.notifications import notify

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
# How long a built export (and every link in it) stays downloadable: SigV4's longest.
LINK_SECONDS = 7 * 24 * 3600  # how long a ready export can be downloaded
DOWNLOAD_LINK_SECONDS = 3600  # one presigned link to it (GET the export again for another)
CONTENT_TYPE = "application/gzip"
READY_KIND = "data_export_ready"
# Set on a session that created an export: after its commit the web builder is woken.
PENDING_FLAG = "trellis.data_export_pending"
# Rows fetched per round trip of a server-side cursor.
CHUNK_ROWS = 1000
# Compressed bytes gathered before they go to the object (which sends ~8 MiB parts).
WRITE_BYTES = 256 * 1024
RETRY_BASE_SECONDS = 60
DAY = timedelta(hours=24)


def export_key(user_id: uuid.UUID, export_id: uuid.UUID) -> str:
    return f"users/{user_id}/exports/{export_id}.json.gz"


@dataclass(frozen=True, slots=True)
class ExportView:
    id: uuid.UUID
    status: str  # pending | ready | failed | expired
    created_at: datetime
    download_url: str | None = None
    expires_at: datetime | None = None
    size_bytes: int | None = None


# --------------------------------------------------------------------------------------------
# Asking and looking
# --------------------------------------------------------------------------------------------


def request_export(
    session: Session, *, user_id: uuid.UUID, per_day: int, links_base_url: str
) -> ExportView:
    """A new pending export of the user's data. 409 (ExportInProgress) while one is pending;
    429 once `per_day` were asked for in the last 24 hours (Retry-After: when the oldest of
    them is a day old). A user whose deletion is scheduled may still ask. `links_base_url`
    is the API's public base URL (no trailing /): the document's links to the user's files
    start with it."""
    # FOR NO KEY UPDATE on the users row, as deletion.py: a second request of the same user
    # waits here until the first commits, then sees its export in the checks below.
    locked = session.scalar(
        select(User.id).where(User.id == user_id).with_for_update(key_share=True)
    )
    if locked is None:
        raise NotFound("No such user.")
    now = utcnow()
    pending = session.scalar(
        select(DataExport.id).where(DataExport.user_id == user_id, DataExport.status == "pending")
    )
    if pending is not None:
        raise ExportInProgress(pending)
    today = session.scalars(
        select(DataExport.created_at)
        .where(DataExport.user_id == user_id, DataExport.created_at > now - DAY)
        .order_by(DataExport.created_at)
    ).all()
    if len(today) >= per_day:
        wait = max(1, math.ceil((today[0] + DAY - now).total_seconds()))
        raise RateLimited(
            f"You can ask for {per_day} data exports a day; the next one is possible in "
            f"{wait} seconds.",
            retry_after=wait,
        )
    export = DataExport(
        id=uuid.uuid4(),
        user_id=user_id,
        status="pending",
        created_at=now,
        available_at=now,
        attempts=0,
        links_base_url=links_base_url,
    )
    session.add(export)
    session.flush()
    session.info[PENDING_FLAG] = True
    return ExportView(export.id, "pending", now)


def get_export(
    session: Session, store: ObjectStore, *, user_id: uuid.UUID, export_id: uuid.UUID
) -> ExportView:
    """The caller's export; 404 for anyone else's. A ready one carries a fresh presigned
    link valid for an hour at most (signed with the instance role's credentials, it could
    not outlive them anyway); past `expires_at` it is `expired` (the object is, or is about
    to be, deleted by the clean-up)."""
    row = session.execute(
        select(
            DataExport.status,
            DataExport.created_at,
            DataExport.key,
            DataExport.expires_at,
            DataExport.size_bytes,
        ).where(DataExport.id == export_id, DataExport.user_id == user_id)
    ).one_or_none()
    if row is None:
        raise NotFound("No such export.")
    now = utcnow()
    if row.status == "ready" and row.expires_at is not None and row.expires_at <= now:
        return ExportView(export_id, "expired", row.created_at, expires_at=row.expires_at)
    if row.status != "ready" or row.key is None or row.expires_at is None:
        return ExportView(export_id, row.status, row.created_at, expires_at=row.expires_at)
    seconds = max(1, min(DOWNLOAD_LINK_SECONDS, int((row.expires_at - now).total_seconds())))
    try:
        url = store.presign_get(key=row.key, expires_in=seconds)
    except StorageUnavailable as exc:
        raise Unavailable("File storage is not reachable right now; retry shortly.") from exc
    return ExportView(export_id, "ready", row.created_at, url, row.expires_at, row.size_bytes)


# --------------------------------------------------------------------------------------------
# The links to the user's files inside the document
# --------------------------------------------------------------------------------------------

# A presigned S3 link lives no longer than the credentials that signed it, and on Elastic
# Beanstalk those are the instance role's, rotated within hours: a link in a document meant
# to be read for 7 days cannot be one. So the document links to Trellis, with a token of the
# export's, and Trellis answers each click with a fresh short-lived presigned GET.
FILE_LINK_SECONDS = 300


class FileLinks:
    """The links of one build: a new random token each build; only its hash is stored."""

    def __init__(self, base_url: str, export_id: uuid.UUID) -> None:
        self._prefix = f"{base_url}/exports/{export_id}/files/"
        self._token = secrets.token_urlsafe(32)
        self.token_sha256 = _sha256(self._token)

    def url(self, upload_id: object) -> str:
        return f"{self._prefix}{upload_id}?token={self._token}"


def _sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def file_link(
    session: Session,
    store: ObjectStore,
    *,
    export_id: uuid.UUID,
    upload_id: uuid.UUID,
    token: str,
    now: datetime | None = None,
) -> str:
    """A fresh presigned GET of a file listed in a ready export, for the holder of the
    export's token; NotFound for anything else (a wrong token, an expired export, a file
    deleted since, another user's), all alike so that nothing can be probed."""
    now = now or utcnow()
    found = session.execute(
        select(Upload.key, DataExport.link_token_sha256)
        .join(DataExport, DataExport.user_id == Upload.owner_id)
        .where(
            DataExport.id == export_id,
            DataExport.status == "ready",
            DataExport.expires_at > now,
            Upload.id == upload_id,
            Upload.status == "ready",
            Upload.created_at <= DataExport.ready_at,  # only files the document lists
        )
    ).first()
    if (
        found is None
        or found.link_token_sha256 is None
        or not hmac.compare_digest(found.link_token_sha256, _sha256(token))
    ):
        raise NotFound(
            "No such file, or the link has expired: the links in a data export work until "
            "the export expires (7 days after it was built). Ask for a new export."
        )
    try:
        return store.presign_get(key=found.key, expires_in=FILE_LINK_SECONDS)
    except StorageUnavailable as exc:
        raise Unavailable("The file store cannot sign a link right now.") from exc


# --------------------------------------------------------------------------------------------
# Building
# --------------------------------------------------------------------------------------------


@dataclass
class BuildStats:
    built: int = 0
    retried: int = 0  # failed this time; another attempt is scheduled
    failed: int = 0  # gave up: marked failed
    expired: int = 0  # past their 7 days: object deleted


@dataclass(frozen=True, slots=True)
class _Claim:
    id: uuid.UUID
    user_id: uuid.UUID
    attempt: int
    links_base_url: str = ""


def build_pending(
    sessions: sessionmaker[Session],
    store: ObjectStore,
    settings: Settings,
    *,
    now: datetime | None = None,
    max_seconds: float | None = None,
) -> BuildStats:
    """Delete what has expired, then build every pending export whose turn it is, one at a
    time; `max_seconds` stops it from starting another build after that long (the worker
    tier runs this inside a request). Safe beside other builders."""
    now = now or utcnow()
    started = time.monotonic()
    stats = BuildStats(expired=expire_old(sessions, store, now=now))
    while max_seconds is None or time.monotonic() - started < max_seconds:
        claim = _claim(sessions, settings, now, stats)
        if claim is None:
            break
        if claim.attempt:
            _build(sessions, store, settings, claim, now, stats)
    return stats


def _claim(
    sessions: sessionmaker[Session], settings: Settings, now: datetime, stats: BuildStats
) -> _Claim | None:
    """Take the next pending export whose lease ran out (None: nothing to do). One that used
    up its attempts without finishing (builders that crashed or were killed) is marked
    failed instead and returned with attempt 0."""
    with transaction(sessions) as session:
        export = session.scalar(
            select(DataExport)
            .where(DataExport.status == "pending", DataExport.available_at <= now)
            .order_by(DataExport.available_at, DataExport.id)
            .limit(1)
            .with_for_update(skip_locked=True)
        )
        if export is None:
            return None
        if export.attempts >= settings.data_export_max_attempts:
            reason = export.last_error or "the build stopped without finishing (crash or timeout)"
            _give_up(export, reason)
            stats.failed += 1
            return _Claim(export.id, export.user_id, 0)
        export.attempts += 1
        export.available_at = now + timedelta(seconds=settings.data_export_lease_seconds)
        return _Claim(export.id, export.user_id, export.attempts, export.links_base_url or "")


def _build(
    sessions: sessionmaker[Session],
    store: ObjectStore,
    settings: Settings,
    claim: _Claim,
    now: datetime,
    stats: BuildStats,
) -> None:
    key = export_key(claim.user_id, claim.id)
    links = FileLinks(claim.links_base_url or settings.api_public_url or "", claim.id)
    try:
        target = store.open_write(key, content_type=CONTENT_TYPE)
        try:
            with sessions() as reader:
                write_document(reader, links, target, claim.user_id, claim.id, now)
            size = target.commit()
        except BaseException:
            target.abort()
            raise
    except Exception as exc:  # any failure of one build is that export's, not the loop's
        log.warning("data export build failed", exc_info=True, extra={"export_id": str(claim.id)})
        _record_failure(sessions, settings, claim, f"{type(exc).__name__}: {exc}", now, stats)
        return
    with transaction(sessions) as session:
        export = _still_ours(session, claim)
        if export is None:
            return  # another builder took it over after our lease ran out
        export.status, export.key, export.size_bytes = "ready", key, size
        export.link_token_sha256 = links.token_sha256
        export.ready_at, export.expires_at = now, now + timedelta(seconds=LINK_SECONDS)
        export.last_error = None
        # The inbox entry and its push commit with the export's readiness, or neither does.
        notify(
            session,
            user_id=claim.user_id,
            kind=READY_KIND,
            message=texts.Message("data_export.ready", {"count": LINK_SECONDS // 86_400}),
            data={
                "export_id": str(claim.id),
                outbox.DEEP_LINK_KEY: outbox.deep_link("me", "exports", claim.id),
            },
        )
    stats.built += 1


def _record_failure(
    sessions: sessionmaker[Session],
    settings: Settings,
    claim: _Claim,
    reason: str,
    now: datetime,
    stats: BuildStats,
) -> None:
    with transaction(sessions) as session:
        export = _still_ours(session, claim)
        if export is None:
            return
        if export.attempts >= settings.data_export_max_attempts:
            _give_up(export, reason)
            stats.failed += 1
            return
        export.last_error = reason[:1000]
        delay = RETRY_BASE_SECONDS * 2 ** (export.attempts - 1)
        export.available_at = now + timedelta(seconds=delay)
        stats.retried += 1


def _give_up(export: DataExport, reason: str) -> None:
    export.status = "failed"
    export.last_error = reason[:1000]
    log.error(
        "data export failed",
        extra={"export_id": str(export.id), "attempts": export.attempts, "reason": reason[:1000]},
    )


def _still_ours(session: Session, claim: _Claim) -> DataExport | None:
    """The export, locked, if it is still pending on this claim's attempt."""
    export = session.scalar(
        select(DataExport)
        .where(DataExport.id == claim.id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if export is None or export.status != "pending" or export.attempts != claim.attempt:
        return None
    return export


def expire_old(sessions: sessionmaker[Session], store: ObjectStore, *, now: datetime) -> int:
    """Delete the objects of exports past their 7 days and mark them expired. The objects go
    first, with no row locked; an export is marked only once its object is gone."""
    with transaction(sessions) as session:
        due = session.execute(
            select(DataExport.id, DataExport.key)
            .where(DataExport.status == "ready", DataExport.expires_at <= now)
            .order_by(DataExport.expires_at)
            .limit(500)
        ).all()
    gone = []
    for export_id, key in due:
        try:
            if key is not None:
                store.delete(key)
        except StorageUnavailable:
            log.warning("expired data export not deleted yet", extra={"export_id": str(export_id)})
            continue
        gone.append(export_id)
    if gone:
        with transaction(sessions) as session:
            session.execute(
                update(DataExport)
                .where(DataExport.id.in_(gone), DataExport.status == "ready")
                .values(status="expired", key=None)
            )
    return len(gone)


# --------------------------------------------------------------------------------------------
# The document
# --------------------------------------------------------------------------------------------


class JsonStream:
    """JSON written piece by piece into a gzip stream that feeds `target`: memory holds one
    value and a little compressed output, never the document."""

    def __init__(self, target: ExportObject) -> None:
        self._target = target
        self._gzip = zlib.compressobj(6, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
        self._out = bytearray()
        self._first: list[bool] = []  # per open container: nothing written in it yet

    def open(self, bracket: bytes, name: str | None = None) -> None:
        self._prefix(name)
        self._raw(bracket)
        self._first.append(True)

    def close(self, bracket: bytes) -> None:
        self._first.pop()
        self._raw(bracket)

    def value(self, value: Any, name: str | None = None) -> None:
        self._prefix(name)
        self._raw(orjson.dumps(value, option=orjson.OPT_UTC_Z | orjson.OPT_NON_STR_KEYS))

    def items(self, name: str, rows: Iterable[Any]) -> None:
        self.open(b"[", name)
        for row in rows:
            self.value(row)
        self.close(b"]")

    def finish(self) -> None:
        self._out += self._gzip.flush()
        self._send()

    def _prefix(self, name: str | None) -> None:
        if self._first:
            if self._first[-1]:
                self._first[-1] = False
            else:
                self._raw(b",")
        if name is not None:
            self._raw(orjson.dumps(name) + b":")

    def _raw(self, data: bytes) -> None:
        self._out += self._gzip.compress(data)
        if len(self._out) >= WRITE_BYTES:
            self._send()

    def _send(self) -> None:
        if self._out:
            chunk, self._out = self._out, bytearray()
            self._target.write(bytes(chunk))


def write_document(
    session: Session,
    links: FileLinks,
    target: ExportObject,
    user_id: uuid.UUID,
    export_id: uuid.UUID,
    now: datetime,
) -> None:
    """The user's data as one JSON object, streamed into `target` (not committed here)."""
    _snapshot(session)
    doc = JsonStream(target)
    doc.open(b"{")
    doc.value(FORMAT_VERSION, "format_version")
    doc.value(now, "generated_at")
    doc.value(user_id, "user_id")
    doc.value(export_id, "export_id")
    doc.value(_profile(session, user_id), "profile")
    doc.value(_provider_profile(session, user_id), "provider_profile")
    doc.items("bookings", _bookings(session, user_id))
    doc.items("messages", _messages(session, user_id))
    doc.open(b"{", "reviews")
    doc.items("written", _reviews(session, Review.consumer_id == user_id))
    doc.items("received", _reviews(session, Review.provider_id == user_id))
    doc.close(b"}")
    doc.items("uploads", _uploads(session, links, user_id))
    doc.items("devices", _rows(session, _DEVICES.where(Device.user_id == user_id)))
    doc.items(
        "notifications", _rows(session, _NOTIFICATIONS.where(Notification.user_id == user_id))
    )
    _sync_datasets(session, doc, user_id)
    doc.items("blocks", _rows(session, _BLOCKS.where(Block.blocker_id == user_id)))
    doc.items("analytics_events", _rows(session, _EVENTS.where(Event.user_id == user_id)))
    doc.close(b"}")
    doc.finish()


def _snapshot(session: Session) -> None:
    """Every section read from one snapshot (PostgreSQL), with no statement time limit:
    the document is consistent however long it takes to read."""
    if session.get_bind().dialect.name != "postgresql":
        return
    session.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY"))
    session.execute(text("SET LOCAL statement_timeout = 0"))


def _rows(session: Session, query: Select[Any]) -> Iterator[dict[str, Any]]:
    """The rows as dicts, fetched CHUNK_ROWS at a time through a server-side cursor."""
    result = session.execute(query, execution_options={"yield_per": CHUNK_ROWS})
    for row in result.mappings():
        yield dict(row)


def _profile(session: Session, user_id: uuid.UUID) -> dict[str, Any]:
    u = User
    row = session.execute(
        select(
            u.id,
            u.email,
            u.display_name,
            u.phone,
            u.roles,
            u.cognito_username.label("username"),
            u.avatar_upload_id,
            u.created_at,
            u.updated_at,
            u.deletion_requested_at,
            u.purge_at,
        ).where(u.id == user_id)
    ).one()
    return dict(row._mapping)


def _provider_profile(session: Session, user_id: uuid.UUID) -> dict[str, Any] | None:
    p = ProviderProfile
    row = session.execute(
        select(
            p.display_name,
            p.bio,
            p.categories,
            p.lat,
            p.lng,
            p.service_radius_km,
            p.hourly_rate_cents,
            p.currency,
            p.active,
            p.rating_sum,
            p.rating_count,
            p.created_at,
            p.updated_at,
        ).where(p.user_id == user_id)
    ).one_or_none()
    if row is None:
        return None
    profile = dict(row._mapping)
    rating_sum = profile.pop("rating_sum")
    count = profile["rating_count"]
    profile["rating_average"] = round(rating_sum / count, 2) if count else None
    return profile


_BOOKINGS = select(
    Booking.id,
    Booking.consumer_id,
    Booking.provider_id,
    Booking.category,
    Booking.scheduled_at,
    Booking.lat,
    Booking.lng,
    Booking.address,
    Booking.notes,
    Booking.status,
    Booking.created_at,
    Booking.updated_at,
)
_HISTORY = select(
    BookingEvent.booking_id,
    BookingEvent.from_status,
    BookingEvent.to_status,
    BookingEvent.actor_id,
    BookingEvent.actor_role,
    BookingEvent.reason,
    BookingEvent.created_at,
)


def _party(user_id: uuid.UUID) -> Any:
    return or_(Booking.consumer_id == user_id, Booking.provider_id == user_id)


def _bookings(session: Session, user_id: uuid.UUID) -> Iterator[dict[str, Any]]:
    """The user's bookings (either side), each with its history: the history of a chunk of
    bookings is read in one query while the cursor waits."""
    query = _BOOKINGS.where(_party(user_id)).order_by(Booking.created_at, Booking.id)
    result = session.execute(query, execution_options={"yield_per": CHUNK_ROWS})
    for chunk in result.mappings().partitions():
        history: dict[uuid.UUID, list[dict[str, Any]]] = {row["id"]: [] for row in chunk}
        events = session.execute(
            _HISTORY.where(BookingEvent.booking_id.in_(list(history))).order_by(
                BookingEvent.booking_id, BookingEvent.created_at, BookingEvent.id
            )
        ).mappings()
        for event in events:
            entry = dict(event)
            history[entry.pop("booking_id")].append(entry)
        for row in chunk:
            booking = dict(row)
            booking["role"] = "consumer" if row["consumer_id"] == user_id else "provider"
            booking["history"] = history[row["id"]]
            yield booking


def _messages(session: Session, user_id: uuid.UUID) -> Iterator[dict[str, Any]]:
    """Every message of every booking the user is a party to; removed ones as removed."""
    query = (
        select(
            Message.id,
            Message.booking_id,
            Message.seq,
            Message.sender_id,
            Message.body,
            Message.created_at,
            Message.removed_at,
        )
        .join(Booking, Booking.id == Message.booking_id)
        .where(_party(user_id))
        .order_by(Message.booking_id, Message.seq)
    )
    for message in _rows(session, query):
        removed = message.pop("removed_at") is not None
        message["body"] = None if removed else message["body"]
        message["removed"] = removed
        yield message


def _reviews(session: Session, whose: Any) -> Iterator[dict[str, Any]]:
    query = select(
        Review.booking_id,
        Review.consumer_id,
        Review.provider_id,
        Review.rating,
        Review.comment,
        Review.created_at,
        Review.removed_at,
    ).where(whose)
    for review in _rows(session, query.order_by(Review.created_at, Review.booking_id)):
        removed = review.pop("removed_at") is not None
        review["comment"] = None if removed else review["comment"]
        review["removed"] = removed
        yield review


def _uploads(session: Session, links: FileLinks, user_id: uuid.UUID) -> Iterator[dict[str, Any]]:
    """The user's uploads; ready ones with a link that works as long as the export does."""
    query = select(
        Upload.id,
        Upload.purpose,
        Upload.booking_id,
        Upload.content_type,
        Upload.size_bytes,
        Upload.filename,
        Upload.status,
        Upload.created_at,
        Upload.completed_at,
    ).where(Upload.owner_id == user_id)
    for upload in _rows(session, query.order_by(Upload.created_at, Upload.id)):
        ready = upload["status"] == "ready"
        upload["download_url"] = links.url(upload["id"]) if ready else None
        yield upload


# Devices without the push token and the SNS endpoint: the token is a per-install address
# Apple or Google issued to this app, meaningless to the user and to any other service, and
# a document that travels (mail, cloud drives) should not carry a way to reach the phone.
_DEVICES = select(
    Device.id,
    Device.platform,
    Device.app_version,
    Device.locale,
    Device.time_zone,
    Device.enabled,
    Device.created_at,
    Device.last_seen_at,
).order_by(Device.created_at, Device.id)
_NOTIFICATIONS = select(
    Notification.id,
    Notification.kind,
    Notification.title,
    Notification.body,
    Notification.data,
    Notification.sender_id,
    Notification.read_at,
    Notification.created_at,
).order_by(Notification.created_at, Notification.id)
_BLOCKS = select(Block.blocked_id.label("user_id"), Block.created_at).order_by(
    Block.created_at, Block.blocked_id
)
_EVENTS = select(
    Event.id,
    Event.name,
    Event.occurred_at,
    Event.received_at,
    Event.session_id,
    Event.attributes,
    Event.metrics,
    Event.app_version,
    Event.platform,
).order_by(Event.received_at, Event.id)
_RECORDS = select(
    SyncRecord.key,
    SyncRecord.value,
    SyncRecord.sync_count,
    SyncRecord.deleted,
    SyncRecord.device_id,
    SyncRecord.updated_at,
).order_by(SyncRecord.key)


def _sync_datasets(session: Session, doc: JsonStream, user_id: uuid.UUID) -> None:
    """Each dataset (few per user) with its records streamed inside it."""
    datasets = session.execute(
        select(
            SyncDataset.id,
            SyncDataset.name,
            SyncDataset.sync_count,
            SyncDataset.record_count,
            SyncDataset.bytes,
            SyncDataset.created_at,
            SyncDataset.updated_at,
        )
        .where(SyncDataset.user_id == user_id)
        .order_by(SyncDataset.name)
    ).all()
    doc.open(b"[", "sync_datasets")
    for dataset in datasets:
        fields = dict(dataset._mapping)
        dataset_id = fields.pop("id")
        doc.open(b"{")
        for name, value in fields.items():
            doc.value(value, name)
        doc.items("records", _rows(session, _RECORDS.where(SyncRecord.dataset_id == dataset_id)))
        doc.close(b"}")
    doc.close(b"]")
