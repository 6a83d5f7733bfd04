"""The composition root: builds every long-lived object once from Settings."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, event
from sqlalchemy.orm import Session, sessionmaker

from services.accounts import data_export
from services.accounts.auth import JwksCache, TokenVerifier
from services.analytics import export
from services.aws.cognito import CognitoGroups, GroupDirectory
from services.aws.exports import ExportSink, S3ExportStore
from services.aws.jwks import HttpJwksFetcher, JwksFetcher
from services.aws.s3 import ObjectStore, S3Store
from services.aws.sns import PushGateway, SnsPush
from services.base.background import WakeableLoop
from services.base.content_filter import ContentFilter, TermsFileError
from services.base.db import build_engine, read_session_factory, session_factory
from services.base.replicas import (
    MemoryWriteMarks,
    PrimaryPositions,
    ReadRouter,
    RedisWriteMarks,
    Replica,
    WriteMarks,
    replica_name,
)
from services.base.settings import Settings, SettingsError
from services.marketplace import timers
from services.marketplace.process import TimerPolicy
from services.media_urls import AvatarUrls
from services.messaging import outbox
from services.uploads import DEFAULT_LIMITS, UploadLimit

log = logging.getLogger(__name__)

# A web worker's data-export thread also looks every this often, in case a builder
# elsewhere crashed and its lease ran out.
EXPORT_BUILDER_INTERVAL_SECONDS = 30.0


@dataclass(frozen=True)
class Components:
    """What a running Trellis process holds: settings, database, verifier, AWS adapters.

    Frozen: built once by build_components; a test that needs other parts builds its own
    (build_components takes the adapters as overrides)."""

    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    read_sessions: sessionmaker[Session]  # GET/HEAD on the primary: autocommit, no writes
    verifier: TokenVerifier
    groups: GroupDirectory
    store: ObjectStore
    push: PushGateway
    exports: ExportSink
    relay: outbox.OutboxRelay | None = None
    export_builder: WakeableLoop | None = None  # DATA_EXPORTS_IN_WEB
    reads: ReadRouter | None = None  # None: no replica configured, everything on the primary
    upload_limits: Mapping[str, UploadLimit] = field(default_factory=dict)
    # The objectionable-content terms, compiled once (services/base/content_filter.py).
    content_filter: ContentFilter = field(default_factory=lambda: ContentFilter(()))
    # avatar_url everywhere a person is shown (services/media_urls.py); built from `store`.
    avatar_urls: AvatarUrls = field(kw_only=True)


def build_components(
    settings: Settings,
    *,
    jwks_fetcher: JwksFetcher | None = None,
    write_marks: WriteMarks | None = None,
    groups: GroupDirectory | None = None,
    store: ObjectStore | None = None,
    push: PushGateway | None = None,
    exports: ExportSink | None = None,
) -> Components:
    """Build everything lazily: no connection, JWKS fetch or AWS client until first use."""
    check_export_tables(settings)
    content = content_filter(settings)
    engine = build_engine(settings)
    fetcher = jwks_fetcher or HttpJwksFetcher(
        settings.jwks_url, timeout_seconds=settings.jwks_timeout_seconds
    )
    verifier = TokenVerifier(
        keys=JwksCache(fetcher),
        issuer=settings.issuer,
        client_ids=settings.cognito_app_client_ids,
        token_use=settings.cognito_token_use,
        leeway_seconds=settings.token_leeway_seconds,
    )
    push = push or SnsPush(
        region=settings.aws_region,
        applications={
            "ios": settings.sns_platform_application_arn_ios,
            "android": settings.sns_platform_application_arn_android,
        },
    )
    sessions = session_factory(engine)
    relay = None
    if settings.outbox_relay_in_web:
        relay = outbox.OutboxRelay(
            sessions,
            push,
            max_backoff_seconds=settings.outbox_max_backoff_seconds,
            drainer=timers_then_drain(TimerPolicy.of(settings)),
        )
        wake_relay_after_commit(sessions, relay)
    store = store or S3Store(
        bucket=settings.uploads_bucket or "",
        region=settings.aws_region,
        kms_key_id=settings.kms_key_id,
    )
    export_builder = None
    if settings.data_exports_in_web:
        export_builder = export_builder_for(sessions, store, settings)
    return Components(
        settings=settings,
        engine=engine,
        sessions=sessions,
        read_sessions=read_session_factory(build_engine(settings, autocommit=True)),
        verifier=verifier,
        groups=groups
        or CognitoGroups(
            user_pool_id=settings.cognito_user_pool_id, region=settings.cognito_region
        ),
        store=store,
        push=push,
        exports=exports
        or S3ExportStore(
            bucket=settings.export_bucket or "",
            region=settings.aws_region,
            kms_key_id=settings.kms_key_id,
        ),
        relay=relay,
        export_builder=export_builder,
        upload_limits=upload_limits(settings),
        content_filter=content,
        avatar_urls=AvatarUrls(
            store,
            cdn_base_url=settings.assets_cdn_base_url,
            expires_in=settings.download_url_expiry_seconds,
        ),
        reads=read_router(settings, engine, write_marks),
    )


def read_router(
    settings: Settings, primary: Engine, marks: WriteMarks | None = None
) -> ReadRouter | None:
    """Replicas from DATABASE_READ_URL; write marks in Redis when there is one."""
    if not settings.database_read_urls:
        return None
    positions = PrimaryPositions(primary, every_seconds=settings.db_replica_check_seconds)
    replicas = [
        Replica(
            replica_name(url),
            build_engine(settings, url),
            build_engine(settings, url, autocommit=True),
            positions,
            max_lag_seconds=settings.db_replica_max_lag_seconds,
            retry_seconds=settings.db_replica_retry_seconds,
            check_seconds=settings.db_replica_check_seconds,
        )
        for url in settings.database_read_urls
    ]
    if marks is None:
        marks = (
            RedisWriteMarks(settings.redis_url, prefix=settings.rate_limit_key_prefix)
            if settings.redis_url
            else MemoryWriteMarks()
        )
    # A replica within the lag bound has replayed every commit older than the bound, so a
    # mark is needed only that long (with a margin for the check interval).
    ttl = int(settings.db_replica_max_lag_seconds + 2 * settings.db_replica_check_seconds) + 5
    return ReadRouter(positions, replicas, marks, mark_ttl_seconds=ttl)


def timers_then_drain(policy: TimerPolicy) -> Callable[..., outbox.DrainStats]:
    """The web relay's pass: due booking timers first (a reminder's push then goes out in
    the same pass), then the outbox. A failure of the timers does not hold the pushes."""

    def run(sessions: sessionmaker[Session], push: PushGateway, **kwargs: Any) -> outbox.DrainStats:
        try:
            timers.run_due(sessions, policy)
        except Exception:
            log.exception("booking timers pass failed")
        return outbox.drain_all(sessions, push, **kwargs)

    return run


def wake_relay_after_commit(sessions: sessionmaker[Session], relay: outbox.OutboxRelay) -> None:
    """After a commit that enqueued pushes, nudge the relay (non-blocking)."""
    wake_after_commit(sessions, outbox.PENDING_FLAG, relay.wake)


def wake_after_commit(sessions: sessionmaker[Session], flag: str, wake: Callable[[], None]) -> None:
    """After the commit of a session that set `flag` in its info, call `wake`; a rollback
    drops the flag (its work never happened)."""

    def after_commit(session: Session) -> None:
        if session.info.pop(flag, False):
            wake()

    def after_rollback(session: Session) -> None:
        session.info.pop(flag, None)

    event.listen(sessions, "after_commit", after_commit)
    event.listen(sessions, "after_rollback", after_rollback)


def export_builder_for(
    sessions: sessionmaker[Session], store: ObjectStore, settings: Settings
) -> WakeableLoop:
    """The web worker's data export thread, woken after a commit that asked for an export.
    A thread of its own, not a step of the outbox relay's loop: a large export takes seconds
    to build, and pushes must not wait behind it."""
    builder = WakeableLoop(
        "data-exports",
        lambda: data_export.build_pending(sessions, store, settings),
        interval=EXPORT_BUILDER_INTERVAL_SECONDS,
    )
    wake_after_commit(sessions, data_export.PENDING_FLAG, builder.wake)
    return builder


def upload_limits(settings: Settings) -> dict[str, UploadLimit]:
    """The built-in limits with UPLOAD_LIMITS' overrides applied."""
    limits = dict(DEFAULT_LIMITS)
    for purpose, override in settings.upload_limits.items():
        base = limits[purpose]
        changes: dict[str, Any] = {}
        if override.max_bytes is not None:
            changes["max_bytes"] = override.max_bytes
        if override.content_types is not None:
            changes["content_types"] = frozenset(override.content_types)
        limits[purpose] = UploadLimit(**{**base.__dict__, **changes})
    return limits


def content_filter(settings: Settings) -> ContentFilter:
    """The term list of CONTENT_FILTER_TERMS_FILE (or the shipped default), compiled once; an
    unreadable file stops start-up with a message naming it."""
    try:
        return ContentFilter.from_file(settings.content_filter_terms_file)
    except TermsFileError as exc:
        raise SettingsError(f"invalid settings: CONTENT_FILTER_TERMS_FILE: {exc}") from None


def check_export_tables(settings: Settings) -> None:
    """EXPORT_TABLES against the schema and the export's deny-list: a start-up error that
    names every unknown or refused table and column."""
    if settings.export_tables is None:
        return
    try:
        export.plan_tables(settings.export_tables)
    except ValueError as exc:
        raise SettingsError(f"invalid settings: EXPORT_TABLES: {exc}") from None
