"""The change feed: every change a user must learn about, numbered 1, 2, 3... per user.

`append` is called in the transaction of the change it records, so an entry exists if and
only if its change committed. A transaction's entries are written together, in one
statement, when its session next flushes or commits (`write_pending`, hooked on every
Session). Their numbers come from the users' rows in `change_sequences`, taken with
`INSERT ... ON CONFLICT DO UPDATE SET last_seq = last_seq + n RETURNING`:

- gap-free: a rolled-back transaction rolls its increment back with it, so the numbers a
  user sees are 1, 2, 3... with none skipped (a gap therefore means a purge: 410);
- in commit order: the row stays locked until the transaction ends, so a second writer for
  the same user waits and takes the next number after the first committed. A reader that
  saw N never sees a smaller number commit later, which is what makes `after=N` a safe
  cursor. A global sequence (bigserial) would give neither: numbers are handed out at
  insert time, not commit time, and a rollback burns one;
- deadlock-free between writers: one statement takes all the rows it needs in user-id
  order, at the transaction's flush or commit, so the rows are held only for its end.

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
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import delete, event, func, insert, select, text, tuple_
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session, SessionTransaction, sessionmaker

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

_PENDING = "trellis.feed.pending"  # session.info: the transaction's _Pending
_MARKS = "trellis.feed.savepoints"  # session.info: _Pending.mark() when each savepoint began


@dataclass(slots=True)
class _Entry:
    user_id: uuid.UUID
    type: str
    data: dict[str, Any]
    push: dict[str, str] | None = None  # a push's data that waits for this entry's seq


@dataclass(slots=True)
class _Pending:
    """A transaction's entries, the first `written` of them written. Written entries are
    kept until the transaction ends: a savepoint rolled back undoes the rows of those it
    wrote, and they are written again (mark/restore)."""

    entries: list[_Entry] = field(default_factory=list)
    written: int = 0

    def mark(self) -> tuple[int, int]:
        return len(self.entries), self.written

    def restore(self, mark: tuple[int, int]) -> None:
        appended, written = mark
        del self.entries[appended:]  # appended inside the savepoint: its changes are gone
        self.written = min(self.written, written)


def append(
    session: Session, user_ids: Iterable[uuid.UUID | None], type: str, data: dict[str, Any]
) -> None:
    """An entry `type` with `data` in each user's feed, in the session's transaction. None
    ids (a purged party) are skipped. The entries of a transaction are written together,
    in one statement, when the session next flushes or commits (write_pending)."""
    users = sorted({user for user in user_ids if user is not None})
    _pending(session).entries.extend(_Entry(user, type, data) for user in users)


def _pending(session: Session) -> _Pending:
    pending: _Pending = session.info.setdefault(_PENDING, _Pending())
    return pending


def write_pending(session: Session) -> None:
    """Write the transaction's entries not written yet: their numbers, the rows and (on
    PostgreSQL) the notifications, in one round trip; each waiting push gets its seq."""
    pending: _Pending | None = session.info.get(_PENDING)
    if pending is None or pending.written == len(pending.entries):
        return
    new = pending.entries[pending.written :]
    now = utcnow()
    if session.get_bind().dialect.name == "postgresql":
        seqs = _write_postgresql(session, new, now)
    else:
        seqs = _write_portable(session, new, now)
    pending.written = len(pending.entries)
    for entry, seq in zip(new, seqs, strict=True):
        if entry.push is not None:
            entry.push["seq"] = str(seq)


def _write_postgresql(session: Session, pending: list[_Entry], now: datetime) -> list[int]:
    datas, rests = [], []
    for entry in pending:
        document = orjson.dumps(entry.data)
        rest = b',"t":' + orjson.dumps(entry.type) + b',"c":' + orjson.dumps(now)
        rest += b',"d":' + document
        if len(rest) > MAX_INLINE_BYTES:
            rest = b',"t":' + orjson.dumps(entry.type)
        datas.append(document.decode())
        rests.append(rest.decode() + "}")
    params = {
        "users": [str(entry.user_id) for entry in pending],
        "types": [entry.type for entry in pending],
        "datas": datas,
        "rests": rests,
        "now": now,
    }
    seqs = {row.ordinal: row.seq for row in session.execute(_WRITE, params)}
    return [seqs[ordinal] for ordinal in range(1, len(pending) + 1)]


# One round trip for all of a transaction's entries. Each user's row in change_sequences is
# taken once (in user-id order: no deadlock between writers) and moved on by the number of
# that user's entries; the entries are numbered in the order they were appended; each gets
# its notification, in seq order.
_WRITE = text(
    """
    WITH entries AS (
        SELECT * FROM unnest(
            CAST(:users AS uuid[]), CAST(:types AS text[]), CAST(:datas AS text[]),
            CAST(:rests AS text[])
        ) WITH ORDINALITY AS e(user_id, type, data, rest, ordinal)
    ), counts AS (
        SELECT user_id, count(*) AS n FROM entries GROUP BY user_id
    ), numbered AS (
        INSERT INTO change_sequences AS s (user_id, last_seq)
        SELECT user_id, n FROM counts ORDER BY user_id
        ON CONFLICT (user_id) DO UPDATE SET last_seq = s.last_seq + excluded.last_seq
        RETURNING s.user_id, s.last_seq
    ), ranked AS (
        SELECT e.ordinal, e.user_id, e.type, e.data, e.rest,
            n.last_seq - c.n + row_number() OVER (PARTITION BY e.user_id ORDER BY e.ordinal)
                AS seq
        FROM entries e JOIN numbered n USING (user_id) JOIN counts c USING (user_id)
    ), written AS (
        INSERT INTO changes (user_id, seq, type, data, created_at)
        SELECT user_id, seq, type, CAST(data AS json), :now FROM ranked
        RETURNING user_id
    )
    SELECT ordinal, seq FROM (
        SELECT ordinal, seq,
            pg_notify('trellis_changes', '{"u":"' || user_id || '","s":' || seq || rest)
        FROM ranked ORDER BY user_id, seq
    ) notified
    """
)


def _write_portable(session: Session, pending: list[_Entry], now: datetime) -> list[int]:
    seqs = []
    for entry in pending:  # one at a time: SQLite lets one writer in at a time anyway
        upsert = sqlite_insert(ChangeSequence).values(user_id=entry.user_id, last_seq=1)
        upsert = upsert.on_conflict_do_update(
            index_elements=["user_id"], set_={"last_seq": ChangeSequence.last_seq + 1}
        ).returning(ChangeSequence.last_seq)
        seq = session.execute(upsert).scalar_one()
        session.execute(
            insert(Change).values(
                user_id=entry.user_id, seq=seq, type=entry.type, data=entry.data, created_at=now
            )
        )
        seqs.append(seq)
    return seqs


# Every session writes its pending entries before it flushes (so a push's outbox row is
# inserted with its seq) and before it commits; the end of the transaction drops them; a
# rolled-back savepoint drops those appended inside it and writes again those it had
# written. Registered once, for every Session: a feed entry must never depend on which
# factory made the session.
@event.listens_for(Session, "before_flush")
def _before_flush(session: Session, _context: Any, _instances: Any) -> None:
    write_pending(session)


@event.listens_for(Session, "before_commit")
def _before_commit(session: Session) -> None:
    write_pending(session)


@event.listens_for(Session, "after_transaction_create")
def _savepoint_begins(session: Session, transaction: SessionTransaction) -> None:
    if transaction.nested:
        session.info.setdefault(_MARKS, {})[id(transaction)] = _pending(session).mark()


@event.listens_for(Session, "after_soft_rollback")
def _rolled_back(session: Session, previous: SessionTransaction) -> None:
    mark = session.info.get(_MARKS, {}).pop(id(previous), None)
    if previous.nested and mark is not None:
        session.info[_PENDING].restore(mark)


@event.listens_for(Session, "after_transaction_end")
def _transaction_ends(session: Session, transaction: SessionTransaction) -> None:
    if transaction.parent is None:  # the transaction itself, committed or rolled back
        session.info.pop(_PENDING, None)
        session.info.pop(_MARKS, None)


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
    """A new inbox entry: its feed entry; returns the data for its push, to which the
    entry's `seq` is added when it is written, before the push's outbox row (so a woken app
    asks for the changes after it). The inbox entry keeps its own data."""
    push = {**note.data}
    entry = _Entry(
        note.user_id, "notification", {"notification_id": str(note.id), "kind": note.kind}, push
    )
    _pending(session).entries.append(entry)
    return push


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
    last = items[-1].seq if items else start
    return ChangesPage(items, str(last) if more else None, last)


def _purged_after(session: Session, user_id: uuid.UUID, after: int) -> bool:
    """Whether a number after `after` was given and its entry is gone: numbers are gap-free,
    so a missing one was purged."""
    if last_seq(session, user_id) <= after:
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
