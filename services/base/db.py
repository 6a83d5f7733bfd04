"""Engines and session factories (services/base/unit_of_work.py uses them per request)."""

from __future__ import annotations

import contextlib
import itertools
import logging
import re
from dataclasses import dataclass
from functools import cache
from typing import Any

import psycopg2
from psycopg2.extensions import TRANSACTION_STATUS_INERROR
from sqlalchemy import CursorResult, Engine, Insert, Table, create_engine, event, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from services.base import metrics
from services.base.errors import Unavailable
from services.base.settings import Settings

log = logging.getLogger("trellis.db")


def build_engine(
    settings: Settings, url_text: str | None = None, *, autocommit: bool = False
) -> Engine:
    """A pooled engine (DATABASE_URL unless `url_text`) with liveness checks and bounded waits.

    `autocommit` engines serve read-only requests: their own pool, so a connection never
    switches between modes (psycopg2 spends a round trip each way). They do not ping a
    connection on checkout (a `SELECT 1` round trip on every GET): a read that finds its
    connection dead runs again once on a fresh one instead (api/context.py).
    """
    url_text = url_text or settings.db_url
    url = make_url(url_text)
    options: dict[str, Any] = {"isolation_level": "AUTOCOMMIT"} if autocommit else {}
    if url.get_backend_name() == "sqlite":
        return _sqlite_engine(url_text, **options)
    connect_args: dict[str, Any] = {
        "connect_timeout": settings.db_connect_timeout_seconds,
        # A database that vanishes mid-query (a failover, a dropped route) sends no reset:
        # without these a thread would wait on the socket for good. Keepalives end a silent
        # wait after about 25 s, tcp_user_timeout a send that is never acknowledged.
        "keepalives": 1,
        "keepalives_idle": 10,
        "keepalives_interval": 5,
        "keepalives_count": 3,
        "tcp_user_timeout": 25_000,
    }
    if settings.db_statement_timeout_ms:
        connect_args["options"] = f"-c statement_timeout={settings.db_statement_timeout_ms}"
    engine = create_engine(
        url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_timeout=settings.db_pool_timeout_seconds,
        pool_pre_ping=not autocommit,
        pool_recycle=1800,
        connect_args=connect_args,
        **options,
    )
    if settings.db_prepared_statements:
        event.listen(engine, "before_cursor_execute", _run_prepared, retval=True)
    _time_statements(engine)
    return engine


def _time_statements(engine: Engine) -> None:
    """The driver's time per statement, summed per request for the access line's db_ms."""
    event.listen(engine, "before_cursor_execute", metrics.before_cursor_execute)
    event.listen(engine, "after_cursor_execute", metrics.after_cursor_execute)


# ---- Server-side prepared statements (DB_PREPARED_STATEMENTS) ---------------------------
#
# psycopg2 sends every statement as text, so PostgreSQL parses and plans it on every request
# (half its CPU on the hot reads, BENCHMARKS.md). The one unusual idiom of this module, in
# one place: a statement a connection has already run once is PREPAREd on that connection
# (its %(name)s placeholders become $1, $2 ...) and from then on sent as
# `EXECUTE name(%(a)s::type, ...)`, the values bound by psycopg2 as before and cast to the
# types PostgreSQL inferred for the parameters (an array of strings would otherwise arrive
# as text[], not uuid[]). SQLAlchemy's compiled cache hands the same statement string each
# time, so the per-connection cache is a dict keyed by that string; it lives in the pool's
# connection record (`conn.info`), cleared when the connection is replaced. Statements run
# once (one-off texts) are never prepared; at most PREPARED_PER_CONNECTION are. A PREPARE
# PostgreSQL refuses leaves that statement unprepared for the process, inside a SAVEPOINT
# when a transaction is open, so the transaction goes on.
PREPARED_PER_CONNECTION = 200
_SEEN_PER_CONNECTION = 1_000  # statements counted on one connection, to prepare on a rerun
_KNOWN_STATEMENTS = 5_000  # process-wide: statement -> its prepared form (or None)
_PREPARABLE = re.compile(r"\s*(SELECT|INSERT|UPDATE|DELETE|WITH)\b", re.IGNORECASE)
_PLACEHOLDER = re.compile(r"%\(([^)]+)\)s|%%|%")
_names = itertools.count(1)
_TYPES_OF = "; SELECT parameter_types::text[] FROM pg_prepared_statements WHERE name = '{}'"


@dataclass
class _Prepared:
    """A statement's prepared form, the same on every connection of the process."""

    name: str
    prepare: str  # PREPARE name AS ... ($1, $2 ...)
    keys: tuple[str, ...]  # the parameters' names, in $-order
    execute: str | None = None  # EXECUTE name(%(key)s::type, ...), once the types are known


_forms: dict[str, _Prepared | None] = {}


def _run_prepared(
    conn: Any, cursor: Any, statement: str, parameters: Any, _context: Any, executemany: bool
) -> tuple[str, Any]:
    """SQLAlchemy's before_cursor_execute hook: the statement to send instead, if prepared."""
    if executemany or not parameters or not isinstance(parameters, dict) or cursor.name:
        return statement, parameters  # a named (server-side) cursor DECLAREs its statement
    prepared: dict[str, bool] | None = conn.info.get("trellis_prepared")
    if prepared is None:
        prepared = conn.info["trellis_prepared"] = {}
    if statement not in prepared:  # its first run on this connection: sent as it is
        if len(prepared) < _SEEN_PER_CONNECTION:
            prepared[statement] = False
        return statement, parameters
    form = _forms[statement] if statement in _forms else _form(statement)
    if form is None:
        return statement, parameters
    if not prepared[statement]:
        count = conn.info.get("trellis_prepared_count", 0)
        if count >= PREPARED_PER_CONNECTION or not _prepare(cursor, statement, form):
            return statement, parameters
        prepared[statement] = True
        conn.info["trellis_prepared_count"] = count + 1
    return form.execute or statement, parameters


def _form(statement: str) -> _Prepared | None:
    """The prepared form of a statement with pyformat placeholders, else None."""
    form = None
    numbers: dict[str, int] = {}

    def dollar(match: re.Match[str]) -> str:
        if match.group(0) == "%%":
            return "%"
        if match.group(1) is None:
            raise ValueError("a bare %: not a pyformat statement")
        return f"${numbers.setdefault(match.group(1), len(numbers) + 1)}"

    if _PREPARABLE.match(statement):
        with contextlib.suppress(ValueError):
            body = _PLACEHOLDER.sub(dollar, statement)
            if numbers:
                name = f"trellis_{next(_names)}"
                form = _Prepared(name, f"PREPARE {name} AS {body}", tuple(numbers))
    if len(_forms) < _KNOWN_STATEMENTS:
        _forms[statement] = form
    return form


def _prepare(cursor: Any, statement: str, form: _Prepared) -> bool:
    """PREPARE on this connection (and learn the parameters' types, the first time in the
    process); False, and the statement never prepared again, if PostgreSQL refuses it."""
    connection = cursor.connection
    in_transaction = not connection.autocommit
    if connection.info.transaction_status == TRANSACTION_STATUS_INERROR:
        return False  # the statement itself will fail; nothing to learn from it
    sql = form.prepare
    if in_transaction:  # a refused PREPARE must not abort the request's transaction
        sql = f"SAVEPOINT trellis_prepare; {sql}; RELEASE trellis_prepare"
    if form.execute is None:
        sql += _TYPES_OF.format(form.name)  # a name this module made
    try:
        cursor.execute(sql)
    except psycopg2.OperationalError:
        raise  # the connection failed, not the statement: handled as any database error
    except psycopg2.Error as exc:
        if in_transaction:
            cursor.execute("ROLLBACK TO trellis_prepare; RELEASE trellis_prepare")
        log.warning("statement left unprepared", extra={"error": str(exc).strip()[:300]})
        _forms[statement] = None
        return False
    if form.execute is None:
        types = cursor.fetchone()[0]
        arguments = ", ".join(f"%({k})s::{t}" for k, t in zip(form.keys, types, strict=True))
        form.execute = f"EXECUTE {form.name}({arguments})"
    return True


def _sqlite_engine(url: str, **options: Any) -> Engine:
    engine = create_engine(
        url, connect_args={"check_same_thread": False}, pool_pre_ping=True, **options
    )
    _time_statements(engine)

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=5000")
        cursor.close()

    return engine


def session_factory(engine: Engine) -> sessionmaker[Session]:
    # expire_on_commit=False: services return objects that are serialised after commit.
    return sessionmaker(bind=engine, expire_on_commit=False)


class WriteOnReadSession(RuntimeError):
    """A write reached a read endpoint's session: declare the endpoint `writes=True`, or
    write on the unit of work's `writer()` if the read must write."""


def read_session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions for read-only requests on an autocommit engine: no BEGIN and no ROLLBACK
    round trip (two of a GET's five), each statement on its own snapshot; a write raises."""
    factory = sessionmaker(bind=engine, expire_on_commit=False)
    event.listen(factory, "do_orm_execute", _refuse_write_statement)
    event.listen(factory, "before_flush", _refuse_flush)
    return factory


def _refuse_write_statement(state: Any) -> None:
    if state.is_insert or state.is_update or state.is_delete:
        raise WriteOnReadSession(f"{state.statement!s:.80} on a read-only request's session")


def _refuse_flush(session: Session, _context: Any, _instances: Any) -> None:
    if session.new or session.dirty or session.deleted:
        raise WriteOnReadSession("a flush on a read-only request's session")


def insert_ignoring_conflict(
    session: Session, model: type[Any], values: dict[str, Any], conflict: list[str] | None
) -> CursorResult[Any]:
    """Run INSERT ... ON CONFLICT DO NOTHING (PostgreSQL and SQLite alike); its rowcount is 0
    when a row with the same `conflict` columns was already there. `conflict` None: any
    unique index (the partial ones, which a conflict target cannot name without its WHERE)."""
    dialect = session.get_bind().dialect.name
    target = tuple(conflict) if conflict is not None else None
    return session.execute(_insert_ignoring(dialect, model.__table__, target), values)


@cache
def _insert_ignoring(dialect: str, table: Table, conflict: tuple[str, ...] | None) -> Insert:
    """Built once per table (building it per request cost more than running it); the values
    are bound at execution."""
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    elements = list(conflict) if conflict is not None else None
    return insert(table).on_conflict_do_nothing(index_elements=elements)


def check_database(engine: Engine) -> None:
    """Raise Unavailable unless the database answers a trivial query."""
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception as exc:
        raise Unavailable("The database is not reachable.") from exc
