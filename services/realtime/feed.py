"""The change feed: every change a user must learn about, numbered 1, 2, 3... per user.

`append` is called in the transaction of the change it records, so an entry exists if and
only if its change committed. The number comes from the user's row in `change_sequences`,
taken with `INSERT ... ON CONFLICT DO UPDATE SET last_seq = last_seq + 1 RETURNING`:

- gap-free: a rolled-back transaction rolls its increment back with it, so the numbers a
  user sees are 1, 2, 3... with none skipped (a gap therefore means a purge: 410);
- in commit order: the row stays locked until the transaction ends, so a second writer for
  the same user waits and takes the next number after the first committed. A reader that
  saw N never sees a smaller number commit later, which is what makes `after=N` a safe
  cursor. A global sequence (bigserial) would give neither: numbers are handed out at
  insert time, not commit time, and a rollback burns one;
- deadlock-free between appends: one statement takes all the rows it needs in user-id
  order. The price is that two transactions writing changes for one user queue on that row
  for the rest of the shorter one; the hooks sit at the end of the service functions, after
  their own row locks.

On PostgreSQL the same statement inserts the entries and calls `pg_notify` on CHANNEL: the
notification is delivered when (and only if) the transaction commits, in commit order, to
every realtime process listening (realtime/). It carries the entry itself when it is small
enough, else only the user and the seq, and the listener reads the feed. SQLite (`make
run`'s default) has no NOTIFY: a realtime process on SQLite polls the feed instead.

Entries are kept CHANGES_RETENTION_DAYS; `purge_expired` deletes older ones. A cursor from
before the purge gets ChangesExpired (410): the app resynchronises its lists.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import delete, func, select, text, tuple_
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session, sessionmaker

from models import Change, ChangeSequence
from models.base import utcnow
from services.base.errors import TrellisError
from services.base.unit_of_work import transaction

CHANNEL = "trellis_changes"
# NOTIFY payloads are limited to 8000 bytes; past this the notification names the entry only.
MAX_INLINE_BYTES = 7000
PURGE_BATCH = 5000


class ChangesExpired(TrellisError):
    """The cursor is older than the retention period: entries after it were purged."""


@dataclass(frozen=True, slots=True)
class ChangeView:
    seq: int
    type: str
    created_at: datetime
    data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ChangesPage:
    items: list[ChangeView]
    next_cursor: str | None  # more entries wait: ask again with after= this
    last_seq: int  # the newest seq returned, else `after`: the cursor to keep


# --- writing ----------------------------------------------------------------------------


def append(
    session: Session, user_ids: Iterable[uuid.UUID | None], type: str, data: dict[str, Any]
) -> dict[uuid.UUID, int]:
    """An entry `type` with `data` in each user's feed, in the session's transaction; the
    seq each got. None ids (a purged party) are skipped."""
    users = sorted({user for user in user_ids if user is not None})
    if not users:
        return {}
    now = utcnow()
    if session.get_bind().dialect.name == "postgresql":
        return _append_postgresql(session, users, type, data, now)
    return _append_portable(session, users, type, data, now)


def _append_postgresql(
    session: Session, users: list[uuid.UUID], type: str, data: dict[str, Any], now: datetime
) -> dict[uuid.UUID, int]:
    document = orjson.dumps(data)
    rest = b',"t":' + orjson.dumps(type) + b',"c":' + orjson.dumps(now) + b',"d":' + document
    if len(rest) > MAX_INLINE_BYTES:
        rest = b',"t":' + orjson.dumps(type)
    params = {
        "users": [str(user) for user in users],
        "type": type,
        "data": document.decode(),
        "now": now,
        "rest": rest.decode() + "}",
    }
    rows = session.execute(_APPEND, params)
    return {uuid.UUID(str(row.user_id)): row.seq for row in rows}


# One round trip: the numbers (rows taken in user-id order), the entries, the notifications.
_APPEND = text(
    """
    WITH numbered AS (
        INSERT INTO change_sequences AS s (user_id, last_seq)
        SELECT u, 1 FROM unnest(CAST(:users AS uuid[])) AS u ORDER BY u
        ON CONFLICT (user_id) DO UPDATE SET last_seq = s.last_seq + 1
        RETURNING s.user_id, s.last_seq
    ), written AS (
        INSERT INTO changes (user_id, seq, type, data, created_at)
        SELECT user_id, last_seq, :type, CAST(:data AS json), :now FROM numbered
        RETURNING user_id, seq
    )
    SELECT user_id, seq,
        pg_notify('trellis_changes', '{"u":"' || user_id || '","s":' || seq || :rest)
    FROM written
    """
)


def _append_portable(
    session: Session, users: list[uuid.UUID], type: str, data: dict[str, Any], now: datetime
) -> dict[uuid.UUID, int]:
    seqs: dict[uuid.UUID, int] = {}
    for user in users:  # one row at a time: SQLite lets one writer in at a time anyway
        upsert = sqlite_insert(ChangeSequence).values(user_id=user, last_seq=1)
        upsert = upsert.on_conflict_do_update(
            index_elements=["user_id"], set_={"last_seq": ChangeSequence.last_seq + 1}
        ).returning(ChangeSequence.last_seq)
        seqs[user] = session.execute(upsert).scalar_one()
    session.add_all(
        Change(user_id=user, seq=seq, type=type, data=data, created_at=now)
        for user, seq in seqs.items()
    )
    session.flush()
    return seqs


# The entries each change writes, one call per site in the services (keep them small: ids
# and the few fields an app needs to update its screen; the app fetches the rest).


def booking_changed(session: Session, booking: Any, event: str) -> None:
    """A booking was created, moved, rescheduled or proposed a new time: both parties."""
    data = {
        "booking_id": str(booking.id),
        "event": event,
        "status": booking.status,
        "scheduled_at": booking.scheduled_at.isoformat(),
        "ends_at": booking.ends_at.isoformat() if booking.ends_at else None,
        "reschedule_pending": booking.reschedule_by is not None,
    }
    append(session, (booking.consumer_id, booking.provider_id), "booking", data)


def message_posted(session: Session, booking: Any, message: Any) -> None:
    """A message in a booking: both parties (the sender's other devices too)."""
    data = {
        "booking_id": str(message.booking_id),
        "message_id": str(message.id),
        "seq": message.seq,
    }
    append(session, (booking.consumer_id, booking.provider_id), "message", data)


def notification_data(session: Session, note: Any) -> dict[str, str]:
    """A new inbox entry: its feed entry; returns the data for its push, the entry's `seq`
    added (so a woken app asks for the changes after it). The inbox entry keeps its own."""
    data = {"notification_id": str(note.id), "kind": note.kind}
    seq = append(session, (note.user_id,), "notification", data)[note.user_id]
    return {**note.data, "seq": str(seq)}


def dataset_changed(
    session: Session, user_id: uuid.UUID, name: str, sync_count: int | None, device_id: str | None
) -> None:
    """A sync dataset was written (`sync_count`) or deleted (None) by `device_id`."""
    data = {"dataset": name, "sync_count": sync_count, "device_id": device_id}
    append(session, (user_id,), "sync", data)


def report_resolved(
    session: Session, reporter_id: uuid.UUID, report_id: uuid.UUID, action: str
) -> None:
    append(session, (reporter_id,), "report", {"report_id": str(report_id), "action": action})


def role_changed(session: Session, user_id: uuid.UUID, role: str, action: str) -> None:
    """A role granted or revoked: realtime re-checks the user's open sockets at once."""
    append(session, (user_id,), "role", {"role": role, "action": action})


def account_suspended(session: Session, user_id: uuid.UUID) -> None:
    """The account was suspended: realtime closes its open sockets."""
    append(session, (user_id,), "account", {"suspended": True})


# --- reading ----------------------------------------------------------------------------


def changes_after(
    session: Session, *, user_id: uuid.UUID, after: int | None, limit: int
) -> ChangesPage:
    """The user's entries after `after` (from the oldest kept when None), oldest first.
    ChangesExpired (410) when entries after `after` were purged. An `after` beyond the
    newest entry gives nothing (a replica may lag behind what a socket delivered)."""
    start = after or 0
    rows = session.execute(
        select(Change.seq, Change.type, Change.created_at, Change.data)
        .where(Change.user_id == user_id, Change.seq > start)
        .order_by(Change.seq)
        .limit(limit + 1)
    ).all()
    if after and (not rows or rows[0].seq != after + 1) and _purged_after(session, user_id, after):
        raise ChangesExpired(
            "Changes after this seq are older than the retention period and were deleted; "
            "reload your lists, then ask again with after= the last_seq answered here."
        )
    items = [ChangeView(r.seq, r.type, r.created_at, r.data) for r in rows[:limit]]
    more = len(rows) > limit
    last = items[-1].seq if items else max(start, 0)
    return ChangesPage(items, str(last) if more else None, last)


def _purged_after(session: Session, user_id: uuid.UUID, after: int) -> bool:
    """Whether a number after `after` was given and its entry is gone: numbers are gap-free,
    so a missing one was purged."""
    newest = session.scalar(
        select(ChangeSequence.last_seq).where(ChangeSequence.user_id == user_id)
    )
    if newest is None or newest <= after:
        return False
    oldest = session.scalar(
        select(func.min(Change.seq)).where(Change.user_id == user_id, Change.seq > after)
    )
    return oldest is None or oldest > after + 1


def last_seq(session: Session, user_id: uuid.UUID) -> int:
    """The user's newest number (0 before their first change)."""
    query = select(ChangeSequence.last_seq).where(ChangeSequence.user_id == user_id)
    return session.scalar(query) or 0


def purge_expired(
    sessions: sessionmaker[Session], *, retention_days: int, now: datetime | None = None
) -> int:
    """Delete entries older than `retention_days`, in batches (each its own short
    transaction); returns how many. The numbers in change_sequences stay."""
    cutoff = (now or utcnow()) - timedelta(days=retention_days)
    removed = 0
    while True:
        with transaction(sessions) as session:
            batch = (
                select(Change.user_id, Change.seq)
                .where(Change.created_at <= cutoff)
                .limit(PURGE_BATCH)
            )
            result = session.execute(
                delete(Change).where(tuple_(Change.user_id, Change.seq).in_(batch))
            )
        removed += result.rowcount
        if result.rowcount < PURGE_BATCH:
            return removed
