"""Engines and session factories (services/base/unit_of_work.py uses them per request)."""

from __future__ import annotations

import contextlib
import itertools
import logging
import re
import select
import time
import uuid
from dataclasses import dataclass
from functools import cache
from typing import Any

import orjson
import psycopg2
from psycopg2.extensions import TRANSACTION_STATUS_INERROR
from sqlalchemy import (
    CursorResult,
    Engine,
    Executable,
    Insert,
    Result,
    Table,
    create_engine,
    event,
    text,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.orm import Session, sessionmaker

from services.base import metrics
from services.base.errors import Unavailable
from services.base.settings import Settings

log = logging.getLogger("trellis.db")


# libpq options for every PostgreSQL connection Trellis opens. A database that vanishes
# mid-query (a failover, a dropped route) sends no reset: without these a thread would wait
# on the socket for good. Keepalives end a silent wait after about 25 s, tcp_user_timeout a
# send that is never acknowledged.
DEAD_PEER_ARGS: dict[str, int] = {
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
    "tcp_user_timeout": 25_000,
}


def build_engine(
    settings: Settings, url_text: str | None = None, *, autocommit: bool = False
) -> Engine:
    """A pooled engine (DATABASE_URL unless `url_text`) with liveness checks and bounded waits.

    `autocommit` engines serve read-only requests: their own pool, so a connection never
    switches between modes (psycopg2 spends a round trip each way). They do not ping a
    connection on checkout (a `SELECT 1` round trip on every GET): a read that finds its
    connection dead runs again once on a fresh one instead (api/context.py). A write never
    runs twice, so the transactional engines check each connection on checkout, without a
    round trip (`_refuse_if_closed_by_server`).
    """
    url_text = url_text or settings.db_url
    url = make_url(url_text)
    options: dict[str, Any] = {"isolation_level": "AUTOCOMMIT"} if autocommit else {}
    if url.get_backend_name() == "sqlite":
        return _sqlite_engine(url_text, **options)
    connect_args: dict[str, Any] = {
        "connect_timeout": settings.db_connect_timeout_seconds,
        **DEAD_PEER_ARGS,
    }
    # Timestamps come back in UTC whatever the server's or role's TimeZone: models/base.py
    # UTCDateTime then has nothing left to do per value on PostgreSQL.
    server_options = ["-c TimeZone=UTC"]
    if settings.db_statement_timeout_ms:
        server_options.append(f"-c statement_timeout={settings.db_statement_timeout_ms}")
    connect_args["options"] = " ".join(server_options)
    # Our connection class: its cursors time every statement (the access line's db_ms) and,
    # with DB_PREPARED_STATEMENTS, prepare the ones that run again (below).
    prepares = settings.db_prepared_statements
    connect_args["connection_factory"] = _PreparingConnection if prepares else _TimedConnection
    engine = create_engine(
        url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_timeout=settings.db_pool_timeout_seconds,
        pool_recycle=1800,
        connect_args=connect_args,
        # json/jsonb columns (a provider's categories, the caller's roles...) read per row:
        # orjson parses them about 4x faster than the json module. Writes keep json.dumps.
        json_deserializer=orjson.loads,
        **options,
    )
    # After the dialect's own connect hook, which registers psycopg2's plain uuid reader.
    event.listen(engine, "connect", _read_uuids_once_per_statement)
    if not autocommit:
        event.listen(engine, "checkout", _refuse_if_closed_by_server)
    return engine


def _refuse_if_closed_by_server(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
    """Replace a pooled connection the server has closed before a write uses it.

    Instead of SQLAlchemy's pre-ping, a `SELECT 1` round trip on every write (one in twelve
    of a message post's, BENCHMARKS.md): a connection PostgreSQL ended (a failover, a
    restart, pg_terminate_backend, a dropped route's reset) has its socket readable at
    once, with the server's goodbye or the end of the stream, while an idle live one has
    nothing to read (Trellis never LISTENs on a pooled connection). Readable: the pool
    discards it and checks out another (SQLAlchemy's DisconnectionError). A peer that
    vanished without a word is what the keepalives and tcp_user_timeout above are for, as
    they were for the ping, which would have waited on it just the same."""
    if dbapi_connection.closed:
        raise DisconnectionError("the pooled connection is closed")
    readable = select.poll()
    readable.register(dbapi_connection.fileno(), select.POLLIN)
    if readable.poll(0):
        raise DisconnectionError("the server closed the pooled connection")


def _time_statements(engine: Engine) -> None:
    """The driver's time per statement, summed per request for the access line's db_ms (on
    SQLite; PostgreSQL connections time their own, without SQLAlchemy's event dispatch)."""
    event.listen(engine, "before_cursor_execute", metrics.before_cursor_execute)
    event.listen(engine, "after_cursor_execute", metrics.after_cursor_execute)


# ---- Server-side prepared statements (DB_PREPARED_STATEMENTS) ---------------------------
#
# psycopg2 sends every statement as text, so PostgreSQL parses and plans it on every request
# (half its CPU on the hot reads, BENCHMARKS.md). The one unusual idiom of this module, in
# one place: our psycopg2 cursor PREPAREs a statement its connection has already run once
# (its %(name)s placeholders become $1, $2 ...) and from then on sends
# `EXECUTE name(%(a)s::type, ...)`, the values bound by psycopg2 as before and cast to the
# types PostgreSQL inferred for the parameters (an array of strings would otherwise arrive
# as text[], not uuid[]). SQLAlchemy's compiled cache hands the same statement string each
# time, so the per-connection cache is a dict keyed by that string, on the connection
# itself (gone with it). It lives in the cursor, not in a SQLAlchemy event: an engine with
# any cursor event takes SQLAlchemy's slower dispatching path on every execute (3-4% of a
# GET's instructions, BENCHMARKS.md). Statements run once (one-off texts) are never
# prepared; at most PREPARED_PER_CONNECTION are; never a named (server-side) cursor's or
# an executemany. A PREPARE PostgreSQL refuses leaves that statement unprepared for the
# process, inside a SAVEPOINT when a transaction is open, so the transaction goes on.
PREPARED_PER_CONNECTION = 200
_SEEN_PER_CONNECTION = 1_000  # statements counted on one connection, to prepare on a rerun
_KNOWN_STATEMENTS = 5_000  # process-wide: statement -> its prepared form (or None)
_PREPARABLE = re.compile(r"\s*(SELECT|INSERT|UPDATE|DELETE|WITH)\b", re.IGNORECASE)
_PLACEHOLDER = re.compile(r"%\(([^)]+)\)s|%%|%")
_TYPES_OF = "; SELECT parameter_types::text[] FROM pg_prepared_statements WHERE name = '{}'"
_names = itertools.count(1)


@dataclass
class _Prepared:
    """A statement's prepared form, the same on every connection of the process."""

    name: str
    prepare: str  # PREPARE name AS ... ($1, $2 ...)
    keys: tuple[str, ...]  # the parameters' names, in $-order
    execute: str | None = None  # EXECUTE name(%(key)s::type, ...), once the types are known


_forms: dict[str, _Prepared | None] = {}


# ---- uuid columns: each distinct value read once per statement ----------------------------
#
# psycopg2 turns every uuid it reads into a uuid.UUID in Python (a few thousand instructions
# each), and a page of rows repeats the same few: the caller, the other party, the booking
# of every message. Our reader keeps the statement's (the cursor's) values and hands the same
# immutable UUID again: (a) reads 23 instead of 64 (-6% of its instructions, BENCHMARKS.md).
def _uuid_of(value: str | None, cursor: Any) -> uuid.UUID | None:
    if value is None:
        return None
    seen: dict[str, uuid.UUID] = cursor.__dict__.setdefault("trellis_uuids", {})
    found = seen.get(value)
    if found is None:
        found = seen[value] = uuid.UUID(value)
    return found


_UUID = psycopg2.extensions.new_type((2950,), "TRELLIS_UUID", _uuid_of)
_UUID_ARRAY = psycopg2.extensions.new_array_type((2951,), "TRELLIS_UUID[]", _UUID)


def _read_uuids_once_per_statement(dbapi_connection: Any, _record: Any) -> None:
    psycopg2.extensions.register_type(_UUID, dbapi_connection)
    psycopg2.extensions.register_type(_UUID_ARRAY, dbapi_connection)


def core_rows(session: Session, statement: Executable, params: dict[str, Any]) -> Result[Any]:
    """A Core statement (no ORM entities) on the session's connection, in its transaction:
    the rows session.execute would give, without the ORM's bookkeeping around each statement
    (about 48,000 instructions, BENCHMARKS.md); for the hot reads. No autoflush: for a read
    that follows no pending ORM change in the session."""
    return session.connection().execute(statement, params)


class _TimedCursor(psycopg2.extensions.cursor):
    """Adds each statement's time to the request's database time (metrics.db_seconds)."""

    def execute(self, query: Any, vars: Any = None) -> None:
        started = time.perf_counter()
        try:
            super().execute(self._statement(query, vars), vars)
        finally:
            metrics.add_db_seconds(time.perf_counter() - started)

    def executemany(self, query: Any, vars_list: Any) -> None:
        started = time.perf_counter()
        try:
            super().executemany(query, vars_list)
        finally:
            metrics.add_db_seconds(time.perf_counter() - started)

    def _statement(self, query: Any, _vars: Any) -> Any:
        return query


class _PreparingCursor(_TimedCursor):
    def _statement(self, query: Any, vars: Any) -> Any:
        if not vars or not isinstance(vars, dict) or self.name is not None:
            return query  # a named (server-side) cursor DECLAREs its statement
        prepared: dict[str, bool] = self.connection.trellis_prepared
        if query not in prepared:  # its first run on this connection: sent as it is
            if len(prepared) < _SEEN_PER_CONNECTION:
                prepared[query] = False
            return query
        form = _forms[query] if query in _forms else _form(query)
        if form is None:
            return query
        if not prepared[query]:
            if self.connection.trellis_prepared_count >= PREPARED_PER_CONNECTION:
                return query
            if not _prepare(self, query, form):
                return query
            prepared[query] = True
            self.connection.trellis_prepared_count += 1
        return form.execute or query


class _TimedConnection(psycopg2.extensions.connection):
    cursor_class: type[_TimedCursor] = _TimedCursor

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.cursor_factory = self.cursor_class


class _PreparingConnection(_TimedConnection):
    cursor_class = _PreparingCursor

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.trellis_prepared: dict[str, bool] = {}  # statement -> prepared here yet?
        self.trellis_prepared_count = 0


def _form(statement: str) -> _Prepared | None:
    """The prepared form of a statement with pyformat placeholders, else None. None too once
    the process knows _KNOWN_STATEMENTS: a form it cannot keep would get a new name, and a
    new PREPARE, on every run."""
    if len(_forms) >= _KNOWN_STATEMENTS:
        return None
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
    execute = psycopg2.extensions.cursor.execute  # our own statements: neither timed nor prepared
    try:
        execute(cursor, sql)
    except psycopg2.OperationalError:
        raise  # the connection failed, not the statement: handled as any database error
    except psycopg2.Error as exc:
        if in_transaction:
            execute(cursor, "ROLLBACK TO trellis_prepare; RELEASE trellis_prepare")
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
