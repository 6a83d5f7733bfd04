"""Idempotent retries (draft-ietf-httpapi-idempotency-key-header, Stripe's semantics).

The first request with a key runs; its outcome is stored in the same transaction as its
writes, so a stored response exists exactly when the work committed. A retry with the same
key and payload gets the stored response without running again; another payload gets 422;
a retry while the first is still running gets 409. Keys are per user and expire.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import NoReturn

from sqlalchemy import bindparam, delete, select, update
from sqlalchemy.orm import Session, sessionmaker

from models import IdempotencyKey
from models.base import utcnow
from services.base.db import insert_ignoring_conflict
from services.base.errors import Conflict, TrellisError
from services.base.unit_of_work import UnitOfWork, transaction

log = logging.getLogger("trellis.idempotency")

# A request holding a key longer than this (the gunicorn timeout plus margin) has died; its
# writes rolled back with it, so a retry may safely take the key over.
STALE_AFTER = timedelta(seconds=60)


class KeyInProgress(Conflict):
    """The first request with this key has not finished."""


class KeyReused(TrellisError):
    """The key was used before with a different request."""


@dataclass(frozen=True)
class StoredResponse:
    status: int
    body: bytes
    content_type: str
    headers: dict[str, str] = field(default_factory=dict)
    replayed: bool = False


@dataclass(frozen=True)
class Outcome:
    """What the work came to: its response, and whether the work refused by raising (its
    writes are then dropped; the refusal is stored as the key's final answer)."""

    response: StoredResponse
    raised: bool = False


def run(
    unit: UnitOfWork,
    *,
    user_id: uuid.UUID,
    key: str,
    fingerprint: str,
    ttl: timedelta,
    work: Callable[[], Outcome],
) -> StoredResponse:
    """Run `work` once per (user, key); replay its stored response on retries.

    The claim is bookkeeping, committed before the work so that a concurrent retry sees it;
    the work's writes and the stored response then commit together, once.
    """
    with unit.bookkeeping() as session:
        stored = _claim(session, user_id, key, fingerprint, ttl)
    if stored is not None:
        return stored
    try:
        outcome = work()
    except BaseException:
        _release_after_failure(unit, user_id, key)
        raise
    response = outcome.response
    if response.status >= 500:  # nothing was done; let a retry run again
        _release_after_failure(unit, user_id, key)
        return response
    if outcome.raised:  # a refusal is final for this key, but the work's writes are not kept
        unit.rollback()
    try:
        unit.writer().execute(
            _COMPLETE,
            {
                "user": user_id,
                "the_key": key,
                "status": response.status,
                "body": response.body,
                "headers": {"Content-Type": response.content_type, **response.headers},
            },
        )
        unit.commit()  # the work's writes and the stored response, together
    except BaseException:
        # Nothing was kept (or, if only COMMIT's answer was lost, the key is completed and
        # the release below matches nothing): free the key so the retry runs or replays.
        _release_after_failure(unit, user_id, key)
        raise
    return response


_KEYS = IdempotencyKey.__table__
# Built once (building it per request cost more than running it); values bound at execution.
_COMPLETE = (
    update(_KEYS)
    .where(_KEYS.c.user_id == bindparam("user"), _KEYS.c.key == bindparam("the_key"))
    .values(
        state="completed",
        response_status=bindparam("status", type_=_KEYS.c.response_status.type),
        response_body=bindparam("body", type_=_KEYS.c.response_body.type),
        response_headers=bindparam("headers", type_=_KEYS.c.response_headers.type),
    )
)


def _claim(
    session: Session, user_id: uuid.UUID, key: str, fingerprint: str, ttl: timedelta
) -> StoredResponse | None:
    now = utcnow()
    fresh = {
        "fingerprint": fingerprint,
        "state": "in_progress",
        "locked_at": now,
        "expires_at": now + ttl,
        "response_status": None,
        "response_body": None,
        "response_headers": None,
    }
    inserted = insert_ignoring_conflict(
        session, IdempotencyKey, {"user_id": user_id, "key": key, **fresh}, ["user_id", "key"]
    )
    if inserted.rowcount == 1:
        return None
    row = session.scalars(
        select(IdempotencyKey)
        .where(IdempotencyKey.user_id == user_id, IdempotencyKey.key == key)
        .execution_options(populate_existing=True)
    ).one()
    if row.expires_at <= now:
        return None if _take_over(session, row, fresh) else _busy()
    if row.fingerprint != fingerprint:
        raise KeyReused(
            "This Idempotency-Key was already used with a different request; use a new key."
        )
    if row.state == "completed":
        headers = dict(row.response_headers or {})
        content_type = headers.pop("Content-Type", "application/json")
        return StoredResponse(
            row.response_status or 200, row.response_body or b"", content_type, headers, True
        )
    if row.locked_at <= now - STALE_AFTER and _take_over(session, row, fresh):
        return None
    return _busy()


def _busy() -> NoReturn:
    raise KeyInProgress(
        "A request with this Idempotency-Key is still being processed; retry shortly."
    )


def _take_over(session: Session, row: IdempotencyKey, fresh: dict[str, object]) -> bool:
    """Re-arm an expired or abandoned key; only one of several racing retries wins."""
    result = session.execute(
        update(IdempotencyKey)
        .where(
            IdempotencyKey.user_id == row.user_id,
            IdempotencyKey.key == row.key,
            IdempotencyKey.locked_at == row.locked_at,
        )
        .values(**fresh)
    )
    return result.rowcount == 1


def _release_after_failure(unit: UnitOfWork, user_id: uuid.UUID, key: str) -> None:
    """Roll the work back and free the key; if the database is gone too, the key frees
    itself after STALE_AFTER, and the original error is the one the client hears about."""
    try:
        unit.rollback()
        with unit.bookkeeping() as session:
            session.execute(
                delete(IdempotencyKey).where(
                    IdempotencyKey.user_id == user_id,
                    IdempotencyKey.key == key,
                    IdempotencyKey.state == "in_progress",
                )
            )
    except Exception as exc:
        with contextlib.suppress(Exception):
            unit.rollback()
        log.warning("could not release an Idempotency-Key after a failure: %s", exc)


def purge_expired(sessions: sessionmaker[Session], *, now: datetime | None = None) -> int:
    """Delete keys past their expiry; returns how many. Run it from the scheduled worker."""
    with transaction(sessions) as session:
        result = session.execute(
            delete(IdempotencyKey).where(IdempotencyKey.expires_at <= (now or utcnow()))
        )
    return result.rowcount
