"""Idempotent retries (draft-ietf-httpapi-idempotency-key-header, Stripe's semantics).

The first request with a key runs; its outcome is stored in the same transaction as its
writes, so a stored response exists exactly when the work committed. A retry with the same
key and payload gets the stored response without running again; another payload gets 422;
a retry while the first is still running gets 409 at once. Keys are per user and expire.

One transaction per request (PostgreSQL), on the unit's writer:

    SELECT pg_try_advisory_xact_lock(<64-bit hash of user id and key>)   false: 409
    SELECT the key's row               completed: replay; another payload: 422
    the work
    INSERT the key's row, completed, with the response (ON CONFLICT: see _store)
    COMMIT                             the work's writes and the key's row, together

Why it holds (READ COMMITTED, the engines' level: each statement sees what committed before
it began):
- Two requests with one key: the first to take the lock runs; the other's try fails at
  once (409, no waiting) for as long as the first's transaction lives.
- The lock is released by the holder's COMMIT or ROLLBACK, after its writes became
  visible, and the row is read by a statement *after* the lock was taken (never in the
  same one: its snapshot could predate that commit), so it sees what the holder committed:
  the completed row (replay), or nothing if it rolled back (run).
- A 5xx or an exception rolls back: no write of the work and no key row were ever kept, and
  the lock dies with the transaction; a retry runs.
- A refusal (a 4xx the work raised) is final for the key but its writes are not kept: the
  transaction is rolled back (the lock with it), and a new one takes the lock again (try)
  and stores the refusal. A retry that slipped in between those two round trips runs the
  work itself and its outcome is the key's; this request then answers its refusal without
  storing it (the lock was taken, or the INSERT found the other's row). Nothing runs twice:
  the refused work's writes are gone. (A SAVEPOINT around the work would close that window
  at the price of round trips on every request: BENCHMARKS.md, Lever 5.)
- A row left `in_progress` by the code before this one (it committed a claim before the
  work; during a rolling deploy both run) answers 409 until STALE_AFTER, then is taken
  over. That code takes no advisory lock, so the INSERT that stores an outcome replaces a
  row only if it is still the one read after the lock (same `locked_at`); if a request
  claimed the key meanwhile, this one's work is dropped and it answers 409.
- Two keys whose hashes collide (2^-64) only make one wait for the other (409).
SQLite (unit tests) has no advisory locks: it serialises writers, and the same guarded
INSERT refuses the second of two racing requests (its work rolled back, 409).
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cache
from typing import NoReturn

from sqlalchemy import Insert, bindparam, delete, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from models import IdempotencyKey
from models.base import utcnow
from services.base.db import core_rows
from services.base.errors import Conflict, TrellisError
from services.base.unit_of_work import UnitOfWork, transaction

# A row left `in_progress` (by the code before one-transaction requests, which committed its
# claim first) longer than this (the gunicorn timeout plus margin) belongs to a request that
# died; its writes rolled back with it, so a retry may safely take the key over.
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
    """Run `work` once per (user, key); replay its stored response on retries. The key's
    record, the work's writes and the response commit together, once (module docstring)."""
    session = unit.writer()
    now = utcnow()
    seen = _look_up(session, user_id, key, fingerprint, now)
    if isinstance(seen, StoredResponse):
        return seen
    try:
        outcome = work()
    except BaseException:
        unit.rollback()  # nothing of the work is kept, and the key stays free for a retry
        raise
    response = outcome.response
    if response.status >= 500:  # nothing was done; let a retry run again
        unit.rollback()
        return response
    record = {
        "user_id": user_id,
        "key": key,
        "fingerprint": fingerprint,
        "state": "completed",
        "locked_at": now,
        "expires_at": now + ttl,
        "response_status": response.status,
        "response_body": response.body,
        "response_headers": {"Content-Type": response.content_type, **response.headers},
        "seen_locked_at": seen,
    }
    if outcome.raised:
        _store_refusal(unit, user_id, key, record)
        return response
    session.flush()  # the work's pending ORM changes first, as an autoflush would
    if core_rows(session, _store(_dialect(session)), record).rowcount != 1:
        unit.rollback()  # another request claimed the key meanwhile (module docstring)
        _busy()
    unit.commit()  # the work's writes and the stored response, together
    return response


def _store_refusal(
    unit: UnitOfWork, user_id: uuid.UUID, key: str, record: dict[str, object]
) -> None:
    """Drop the refused work's writes, then store the refusal as the key's answer in a new
    transaction under the key's lock, unless another request took the key meanwhile."""
    unit.rollback()
    session = unit.writer()
    if not _try_lock(session, user_id, key):
        return  # a retry runs now: its outcome becomes the key's
    if core_rows(session, _store(_dialect(session)), record).rowcount == 1:
        unit.commit()


def _look_up(
    session: Session, user_id: uuid.UUID, key: str, fingerprint: str, now: datetime
) -> StoredResponse | datetime | None:
    """Take the key's lock (409 if another request holds it), then read its row: the stored
    response to replay, or what the outcome's INSERT must find there (None: no row; else
    the `locked_at` of an expired or abandoned row it takes over). 422 for another payload."""
    if not _try_lock(session, user_id, key):
        _busy()
    row = core_rows(session, _FIND, {"user": user_id, "the_key": key}).one_or_none()
    if row is None:
        return None
    if row.expires_at <= now:
        return row.locked_at  # expired: a new request, whatever it carries
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
    if row.locked_at <= now - STALE_AFTER:
        return row.locked_at  # left in_progress by a request that died: take it over
    _busy()


def _try_lock(session: Session, user_id: uuid.UUID, key: str) -> bool:
    """Take the key's advisory lock for this transaction, without waiting; SQLite has none
    (module docstring): True there."""
    if _dialect(session) != "postgresql":
        return True
    return bool(core_rows(session, _TRY_LOCK, {"lock": lock_id(user_id, key)}).scalar())


def lock_id(user_id: uuid.UUID, key: str) -> int:
    """The key's advisory lock: a signed 64-bit hash of the user and the key (one bigint,
    a key space apart from the two-int4 locks, e.g. claim_time's)."""
    digest = hashlib.blake2b(user_id.bytes + key.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def _busy() -> NoReturn:
    raise KeyInProgress(
        "A request with this Idempotency-Key is still being processed; retry shortly."
    )


_KEYS = IdempotencyKey.__table__
# Built once (building them per request cost more than running them); values bound at run.
_TRY_LOCK = select(func.pg_try_advisory_xact_lock(bindparam("lock")))
_FIND = select(
    _KEYS.c.fingerprint,
    _KEYS.c.state,
    _KEYS.c.locked_at,
    _KEYS.c.expires_at,
    _KEYS.c.response_status,
    _KEYS.c.response_body,
    _KEYS.c.response_headers,
).where(_KEYS.c.user_id == bindparam("user"), _KEYS.c.key == bindparam("the_key"))


@cache
def _store(dialect: str) -> Insert:
    """The outcome's INSERT. A row already there is replaced only if it is the one read
    after the lock (`seen_locked_at`; NULL when there was none, which matches nothing):
    otherwise another request claimed the key meanwhile and the rowcount is 0."""
    insert = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(_KEYS)
    columns = [c.name for c in _KEYS.c if c.name not in ("user_id", "key")]
    return insert.on_conflict_do_update(
        index_elements=[_KEYS.c.user_id, _KEYS.c.key],
        set_={name: insert.excluded[name] for name in columns},
        where=_KEYS.c.locked_at == bindparam("seen_locked_at", type_=_KEYS.c.locked_at.type),
    )


def _dialect(session: Session) -> str:
    return session.get_bind().dialect.name


def purge_expired(sessions: sessionmaker[Session], *, now: datetime | None = None) -> int:
    """Delete keys past their expiry; returns how many. Run it from the scheduled worker."""
    with transaction(sessions) as session:
        result = session.execute(
            delete(IdempotencyKey).where(IdempotencyKey.expires_at <= (now or utcnow()))
        )
    return result.rowcount
