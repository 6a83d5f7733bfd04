"""Read replicas: read-only work goes to a replica that already holds the caller's writes.

A user's write commits on the primary; the request then records the primary's WAL insert
position for that user (a "write mark", in Redis so every instance sees it). A later read
by that user goes to a replica only once the replica has replayed past the mark, so an app
never sees its own change disappear. A replica that fails or lags beyond the bound is
skipped for a pause; with none usable, reads go to the primary.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import sessionmaker

from services.base.db import read_session_factory

log = logging.getLogger("trellis.replicas")

State = Literal["ok", "lagging", "down"]

_STATUS = text(
    "SELECT (CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn()"
    "       ELSE pg_current_wal_lsn() END)::text,"
    # The replica's own estimate, used until the primary's positions are known: caught up
    # (everything received is replayed) means no lag; otherwise the age of the last replayed
    # commit (which overstates the lag after a quiet spell on the primary).
    " CASE WHEN NOT pg_is_in_recovery()"
    "      OR pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0"
    "      ELSE COALESCE(EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp()), 0) END"
)
_PRIMARY_LSN = text("SELECT pg_current_wal_insert_lsn()::text")


def parse_lsn(value: str) -> int:
    """PostgreSQL's 'X/Y' log sequence number as an integer."""
    high, _, low = value.partition("/")
    return (int(high, 16) << 32) + int(low, 16)


@dataclass(frozen=True, slots=True)
class ReplicaStatus:
    """A replica's state as last checked; `lag_seconds` is None when it did not answer."""

    name: str
    state: State
    lag_seconds: float | None
    replay_lsn: int | None
    error: str | None = None


class PrimaryPositions:
    """Recent (time, WAL position) samples of the primary, to tell how far behind a replica is.

    A replica's own view (age of its last replayed commit) cannot see that it stopped
    receiving WAL; the primary's positions can: a replica that has not replayed a position
    the primary reached at time t is at least now - t behind.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        every_seconds: float,
        keep: int = 600,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._engine = engine
        self._every = every_seconds
        self._clock = clock
        self._samples: deque[tuple[float, int]] = deque(maxlen=keep)
        self._next = 0.0
        self._lock = threading.Lock()

    def current(self) -> int:
        """The primary's WAL insert position now (raises when the primary is unreachable)."""
        with self._engine.connect() as connection:
            lsn = parse_lsn(connection.execute(_PRIMARY_LSN).scalar_one())
        self._samples.append((self._clock(), lsn))
        return lsn

    def sample(self) -> None:
        """Take a sample every `every_seconds` at most; never raises."""
        now = self._clock()
        if now < self._next or not self._lock.acquire(blocking=False):
            return
        try:
            self._next = now + self._every
            self.current()
        except Exception as exc:  # the primary's failures surface on its own requests
            self._next = now + max(self._every, 5.0)  # do not stall reads on a dead primary
            log.debug("primary position not sampled: %s", exc)
        finally:
            self._lock.release()

    def seconds_behind(self, replayed: int) -> float | None:
        """How long ago the primary first passed a position the replica has not replayed
        (None before the first sample: then the replica's own estimate stands)."""
        samples = list(self._samples)
        for at, lsn in samples:
            if lsn > replayed:
                return max(0.0, self._clock() - at)
        return 0.0 if samples else None


class Replica:
    """One replica: its sessions and a cached status refreshed at most every `check_seconds`."""

    def __init__(
        self,
        name: str,
        engine: Engine,
        read_engine: Engine,
        primary: PrimaryPositions,
        *,
        max_lag_seconds: float,
        retry_seconds: float,
        check_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.engine = engine
        self.sessions = sessionmaker(bind=engine, expire_on_commit=False)  # jobs (the export)
        self.read_sessions = read_session_factory(read_engine)  # requests
        self._primary = primary
        self._max_lag = max_lag_seconds
        self._retry = retry_seconds
        self._check = check_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._status = ReplicaStatus(name, "down", None, None, "not checked yet")
        self._next_check = 0.0

    def status(self, *, fresh: bool = False) -> ReplicaStatus:
        """The cached status, re-checked when due (or now, if `fresh` and not paused)."""
        now = self._clock()
        paused = self._status.state == "down" and now < self._next_check
        due = now >= self._next_check or (fresh and not paused)
        # One thread checks; the others use the status it had.
        if due and self._lock.acquire(blocking=False):
            try:
                self._refresh()
            finally:
                self._lock.release()
        return self._status

    def mark_down(self, reason: str) -> None:
        """Stop using this replica for `retry_seconds` (a check on it just failed)."""
        self._set(ReplicaStatus(self.name, "down", None, None, reason), self._retry)

    def _refresh(self) -> None:
        self._primary.sample()
        try:
            with self.engine.connect() as connection:
                lsn, lag = connection.execute(_STATUS).one()
        except Exception as exc:  # any failure means: do not read here for a while
            self.mark_down(f"{type(exc).__name__}: {str(exc).strip()[:200]}")
            return
        behind = self._primary.seconds_behind(parse_lsn(lsn))
        lag = float(lag) if behind is None else behind
        state: State = "ok" if lag <= self._max_lag else "lagging"
        self._set(ReplicaStatus(self.name, state, round(lag, 3), parse_lsn(lsn)), self._check)

    def _set(self, status: ReplicaStatus, pause: float) -> None:
        previous = self._status
        self._status = status
        self._next_check = self._clock() + pause
        if previous.state != status.state:
            level = logging.INFO if status.state == "ok" else logging.WARNING
            log.log(
                level,
                "replica %s is %s",
                self.name,
                status.state,
                extra={
                    "replica": self.name,
                    "lag_seconds": status.lag_seconds,
                    "error": status.error,
                },
            )


class WriteMarks(Protocol):
    """Where the primary's position after each user's last write is kept."""

    def get(self, subject: str) -> int | None: ...

    def put(self, subject: str, lsn: int, ttl_seconds: int) -> None: ...


class MemoryWriteMarks:
    """Marks in this process only: enough for one instance (local runs, tests)."""

    def __init__(
        self, max_entries: int = 100_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._marks: OrderedDict[str, tuple[int, float]] = OrderedDict()
        self._max = max_entries
        self._clock = clock
        self._lock = threading.Lock()

    def get(self, subject: str) -> int | None:
        with self._lock:
            found = self._marks.get(subject)
        if found is None or found[1] < self._clock():
            return None
        return found[0]

    def put(self, subject: str, lsn: int, ttl_seconds: int) -> None:
        with self._lock:
            current = self._marks.pop(subject, None)
            keep = max(lsn, current[0]) if current else lsn
            self._marks[subject] = (keep, self._clock() + ttl_seconds)
            while len(self._marks) > self._max:
                self._marks.popitem(last=False)


# Keeps the larger mark: two writes of one user can record their positions out of order.
# Fixed-width hex strings compare in the same order as the positions.
_PUT_MAX = """
local current = redis.call('GET', KEYS[1])
if not current or current < ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
end
return 1
"""


class RedisWriteMarks:
    """Marks shared by every instance, so a user's next read may land anywhere."""

    def __init__(self, url: str, *, prefix: str, timeout_seconds: float = 0.5) -> None:
        import redis  # the rate limiter's client library

        self._redis = redis.Redis.from_url(
            url, socket_timeout=timeout_seconds, socket_connect_timeout=timeout_seconds
        )
        self._prefix = f"{prefix}:write-mark:"
        self._put = self._redis.register_script(_PUT_MAX)

    def get(self, subject: str) -> int | None:
        value = self._redis.get(self._prefix + subject)
        return int(value, 16) if value else None

    def put(self, subject: str, lsn: int, ttl_seconds: int) -> None:
        self._put(keys=[self._prefix + subject], args=[f"{lsn:016x}", ttl_seconds])


class ReadRouter:
    """Chooses where a read goes and records where each user's writes reached."""

    def __init__(
        self,
        primary: PrimaryPositions,
        replicas: Sequence[Replica],
        marks: WriteMarks,
        *,
        mark_ttl_seconds: int,
    ) -> None:
        self.primary = primary
        self.replicas = list(replicas)
        self._marks = marks
        self._mark_ttl = mark_ttl_seconds
        self._turn = 0

    def choose(self, subject: str | None) -> Replica | None:
        """A replica fit for this caller's read, or None for the primary."""
        try:
            needed = self._marks.get(subject) if subject else None
        except Exception as exc:
            # Without the marks, a replica could hide the caller's own write.
            log.warning("write marks unreadable, reading from the primary: %s", exc)
            return None
        count = len(self.replicas)
        self._turn = (self._turn + 1) % count
        for offset in range(count):
            replica = self.replicas[(self._turn + offset) % count]
            if _fit(replica.status(), needed) or (
                needed is not None and _fit(replica.status(fresh=True), needed)
            ):
                return replica
        return None

    def note_write(self, subject: str) -> None:
        """After `subject` committed on the primary: reads wait for a replica past this point."""
        try:
            self._marks.put(subject, self.primary.current(), self._mark_ttl)
        except Exception as exc:
            # The write stands; the user may briefly read an older copy from a replica.
            log.warning("could not record the write position: %s", exc)

    def caught_up(self, wait_seconds: float = 5.0) -> Replica | None:
        """A replica that has replayed everything the primary had written when asked (for a
        job that must not miss a row, such as the export), or None."""
        target = self.primary.current()
        deadline = time.monotonic() + wait_seconds
        while True:
            for replica in self.replicas:
                if _fit(replica.status(fresh=True), target):
                    return replica
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.1)

    def statuses(self) -> list[ReplicaStatus]:
        return [replica.status() for replica in self.replicas]


def _fit(status: ReplicaStatus, needed: int | None) -> bool:
    if status.state != "ok":
        return False
    return needed is None or (status.replay_lsn is not None and status.replay_lsn >= needed)


def replica_name(url: str) -> str:
    """host:port/database of a URL, without its credentials (for logs and /readyz)."""
    parsed = make_url(url)
    return f"{parsed.host}:{parsed.port or 5432}/{parsed.database}"
