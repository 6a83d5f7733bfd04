"""The unit of work: the database work of one request, or of one step of a job.

A request's unit opens, on first use, what its endpoint declared it needs:
- a write endpoint works on one transactional session on the primary (`session`);
- a read endpoint on an autocommit read session (a replica fit for the caller, else the
  primary's read pool) where any write raises WriteOnReadSession. A read that must write
  asks for `writer()`, a transactional session on the primary, explicitly.

Nothing is kept unless `commit()` runs, and it runs once per unit: in the endpoint wrapper
after the view returned, or in the idempotency layer together with the stored response.
`close()` rolls back whatever was not committed. Services never commit.

Bookkeeping that must stand whatever becomes of the work (the caller's user row on sign-in)
runs in `bookkeeping()`: a short transaction of its own on the writer, allowed only while
the unit holds no work. The idempotency layer needs none: a key's lock, its row and the
work share the writer's one transaction (services/base/idempotency.py).

Jobs (the outbox relay, the export, clean-ups) have no request around them: each step runs
in `transaction(sessions)`, committed at the end of the block. `_commit` below is the one
place Trellis commits.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy.orm import Session, sessionmaker

from services.base.replicas import ReadRouter, Replica

log = logging.getLogger("trellis.db")


class UnitOfWorkError(RuntimeError):
    """The unit was used against its rules (a second commit, bookkeeping mid-work)."""


@dataclass
class ReadRetries:
    """What a read may still try after a database error: each at most once per request."""

    primary_only: bool = False  # a replica failed under the read: the primary from now on
    read_again_used: bool = False  # a pooled connection was dead: one more try


class UnitOfWork:
    """One request's database work; see the module docstring for the rules."""

    def __init__(
        self,
        *,
        writes: bool,
        sessions: sessionmaker[Session],
        read_sessions: sessionmaker[Session],
        reads: ReadRouter | None = None,
        subject: str | None = None,
    ) -> None:
        self.writes = writes
        self.subject = subject  # the caller's token subject: their reads see their writes
        self.route: str | None = None  # where the work went, for the access log
        self._sessions = sessions
        self._read_sessions = read_sessions
        self._reads = reads
        self._retries = ReadRetries()
        self._reader: Session | None = None
        self._replica: Replica | None = None
        self._writer: Session | None = None
        self._working = False  # the view runs: bookkeeping would commit its work
        self._committed = False
        self._wrote = False  # something committed: replicas must catch up before the reads
        self._written_for: set[str] = set()

    @property
    def session(self) -> Session:
        """The session the work runs on: the writer for a write unit, else a read session."""
        return self.writer() if self.writes else self._read_session()

    def writer(self) -> Session:
        """A transactional session on the primary, opened on first use."""
        if self._writer is None:
            self._writer = self._sessions()
            self.route = self.route or "primary"
        return self._writer

    def begin_work(self) -> None:
        """From here on the writer holds the work: no more bookkeeping until a rollback."""
        self._working = True

    def commit(self) -> None:
        """Keep the work: commit the writer, if the work opened one. Once per unit."""
        if self._committed:
            raise UnitOfWorkError("this unit of work was already committed")
        self._committed = True
        if self._writer is not None:
            self._wrote |= _commit(self._writer)

    def rollback(self) -> None:
        """Drop the work so far (the idempotency layer, after a failure or a refusal); the
        writer's next statement begins a new transaction."""
        if self._writer is not None:
            self._writer.rollback()
        self._working = False

    @contextmanager
    def bookkeeping(self) -> Iterator[Session]:
        """A short transaction of its own on the writer, committed at the end of the block:
        for what must stand whatever becomes of the work. Only while the unit holds none."""
        if self._working:
            raise UnitOfWorkError("bookkeeping after the work began would commit the work")
        writer = self.writer()
        try:
            yield writer
            self._wrote |= _commit(writer)
        except BaseException:
            writer.rollback()
            raise

    def reads_must_see_write(self, subject: str) -> None:
        """Another user's reads must also wait for this unit's writes (a role revoked)."""
        self._written_for.add(subject)

    def retry_read(self, error: BaseException) -> bool:
        """After a database error in a read endpoint: whether the read may run once more.

        On a fresh connection, routed anew, after its pooled one was dead (read pools skip
        the ping on checkout; SQLAlchemy has by then discarded the pool's older connections);
        on the primary after a replica failed under it."""
        if self.writes:
            return False
        if getattr(error, "connection_invalidated", False) and not self._retries.read_again_used:
            log.info("a read's pooled connection was dead, reading again: %s", error)
            self._retries.read_again_used = True
        elif self._replica is not None:
            # The error may have come from the primary (a write the read needed): check the
            # replica itself rather than blame it; a failed check takes it out of rotation.
            log.warning("a read on replica %s failed, retrying on the primary: %s",
                        self._replica.name, error)  # fmt: skip
            self._replica.status(fresh=True)
            self._retries.primary_only = True
        else:
            return False
        self._drop_reader()
        self.rollback()  # the next attempt starts the work afresh
        return True

    def close(self) -> None:
        """Roll back whatever was not committed, return the connections, and record how far
        the committed writes reached (read-your-writes on replicas).

        The answer is already made: a connection that died since (the ROLLBACK fails) must
        not turn it into a 500. The pool discards that connection; committed work stands."""
        self._drop_reader()
        if self._writer is not None:
            _close(self._writer)
            self._writer = None
        if self._wrote and self._reads is not None:
            for subject in self._written_for | ({self.subject} if self.subject else set()):
                self._reads.note_write(subject)
            self._wrote = False

    def _read_session(self) -> Session:
        if self._reader is None:
            replica = None
            if self._reads is not None and not self._retries.primary_only:
                replica = self._reads.choose(self.subject)
            if replica is not None:
                self._replica, self.route = replica, f"replica:{replica.name}"
                self._reader = replica.read_sessions()
            else:
                self._reader, self.route = self._read_sessions(), "primary"
        return self._reader

    def _drop_reader(self) -> None:
        if self._reader is not None:
            _close(self._reader)
        self._reader = self._replica = None


@contextmanager
def transaction(sessions: sessionmaker[Session]) -> Iterator[Session]:
    """One step of a job: a session of its own, committed at the end of the block, rolled
    back (and closed) on any error."""
    with sessions() as session:
        try:
            yield session
            _commit(session)
        except BaseException:
            session.rollback()
            raise


def _commit(session: Session) -> bool:
    """The one place Trellis commits. True when there was a transaction to commit."""
    had_work = session.in_transaction()
    session.commit()
    return had_work


def _close(session: Session) -> None:
    try:
        session.close()
    except Exception as exc:
        log.warning("closing a database session failed: %s", exc)
        with contextlib.suppress(Exception):
            session.invalidate()
