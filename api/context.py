"""Per-request access to the process's components and the request's database sessions.

Reads (GET and HEAD) run on a replica when one is configured and fit for the caller (see
services/base/replicas.py); everything else, and any write a read needs, runs on the primary.
"""

from __future__ import annotations

import contextlib
import logging

from flask import Flask, Response, current_app, g, request
from sqlalchemy import Engine, event
from sqlalchemy.orm import Session

from services.components import Components

log = logging.getLogger("trellis.db")
EXTENSION = "trellis"
READ_SESSIONS = "trellis.read_sessions"
READ_METHODS = frozenset({"GET", "HEAD"})
_COMMITTED = "trellis.committed"


def components() -> Components:
    return current_app.extensions[EXTENSION]


def db_session() -> Session:
    """The request's session, opened on first use and closed at teardown."""
    session = g.get("db_session")
    if session is None:
        session = g.db_session = _open_session()
    return session


def primary_session() -> Session:
    """A transactional session on the primary: the request's own unless that one is a read
    session (autocommit, or on a replica)."""
    db_session()
    if not g.get("db_read_only"):
        return g.db_session
    session = g.get("db_primary")
    if session is None:
        session = g.db_primary = components().sessions()
    return session


def _open_session() -> Session:
    built = components()
    if request.method not in READ_METHODS:
        g.db_route = "primary"
        return built.sessions()
    reads = built.reads
    if reads is not None and not g.get("db_force_primary"):
        identity = g.get("identity")
        replica = reads.choose(getattr(identity, "sub", None))
        if replica is not None:
            g.db_replica = replica
            g.db_route = f"replica:{replica.name}"
            g.db_read_only = True
            return replica.read_sessions()
    g.db_route = "primary"
    read_sessions = current_app.extensions[READ_SESSIONS]
    g.db_read_only = read_sessions is not built.sessions
    return read_sessions()


def read_on_primary_after_failure(error: BaseException) -> bool:
    """After a database error in a read served by a replica: let the read run again on the
    primary (True). False when the request was not reading from a replica."""
    replica = g.pop("db_replica", None)
    if replica is None:
        return False
    # The error may have come from the primary (a write the read needed): check the replica
    # itself rather than blame it; a failed check takes it out of rotation for a while.
    log.warning("a read on replica %s failed, retrying on the primary: %s", replica.name, error)
    replica.status(fresh=True)
    _drop_request_session()
    g.db_force_primary = True
    return True


def read_again_after_disconnect(error: BaseException) -> bool:
    """After a read's pooled connection turned out dead (read pools skip the ping on checkout):
    let the read run once more (True). SQLAlchemy has by then discarded the pool's older
    connections, so the second attempt connects afresh."""
    if request.method not in READ_METHODS or g.get("db_read_again"):
        return False
    if not getattr(error, "connection_invalidated", False):
        return False
    g.db_read_again = True
    log.info("a read's pooled connection was dead, reading again: %s", error)
    g.pop("db_replica", None)  # routed anew: the replica may be fine, its pool was stale
    _drop_request_session()
    return True


def _drop_request_session() -> None:
    """Close the request's session so the next db_session() opens (and routes) a new one."""
    session = g.pop("db_session", None)
    if session is not None:
        _close(session)


def reads_must_see_write(subject: str) -> None:
    """Another user's reads must also wait for this request's write (e.g. a role revoked)."""
    g.setdefault("written_for", set()).add(subject)


def _note_write(response: Response) -> Response:
    """Before the answer leaves: record how far this request's committed writes reached."""
    sessions = (g.get("db_session"), g.get("db_primary"))
    if not any(s is not None and s.info.get(_COMMITTED) for s in sessions):
        return response
    subjects = set(g.get("written_for", ()))
    caller = getattr(g.get("identity"), "sub", None)
    if caller is not None:
        subjects.add(caller)
    reads = components().reads
    for subject in subjects if reads is not None else ():
        reads.note_write(subject)
    return response


def _close_sessions(_exc: BaseException | None) -> None:
    for name in ("db_session", "db_primary"):
        session = g.pop(name, None)
        if session is not None:
            _close(session)


def _close(session: Session) -> None:
    """Roll back whatever a service left uncommitted and return the connection.

    The answer is already made: a connection that died since (the ROLLBACK fails) must not
    turn it into a 500. The pool discards that connection; committed work stands.
    """
    try:
        session.close()
    except Exception as exc:
        log.warning("closing the request's database session failed: %s", exc)
        with contextlib.suppress(Exception):
            session.invalidate()


def _flag_commit(session: Session) -> None:
    session.info[_COMMITTED] = True


def register_context(app: Flask, built: Components) -> None:
    app.extensions[EXTENSION] = built
    # Tests bind `sessions` to a Connection holding a per-test transaction: reads follow it.
    rebound = not isinstance(built.sessions.kw.get("bind"), Engine)
    app.extensions[READ_SESSIONS] = built.sessions if rebound else built.read_sessions
    if built.reads is not None:
        event.listen(built.sessions, "after_commit", _flag_commit)
        app.after_request(_note_write)
    app.teardown_appcontext(_close_sessions)
