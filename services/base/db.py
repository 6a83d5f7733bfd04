"""Engines and session factories (services/base/unit_of_work.py uses them per request)."""

from __future__ import annotations

from functools import cache
from typing import Any

from sqlalchemy import CursorResult, Engine, Insert, Table, create_engine, event, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from services.base.errors import Unavailable
from services.base.settings import Settings


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
    return create_engine(
        url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_timeout=settings.db_pool_timeout_seconds,
        pool_pre_ping=not autocommit,
        pool_recycle=1800,
        connect_args=connect_args,
        **options,
    )


def _sqlite_engine(url: str, **options: Any) -> Engine:
    engine = create_engine(
        url, connect_args={"check_same_thread": False}, pool_pre_ping=True, **options
    )

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
