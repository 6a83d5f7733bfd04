"""GET and HEAD read through autocommit sessions of their own pool; a write there raises."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, insert, select, text
from sqlalchemy.orm import Session

from api.context import EXTENSION
from models import User
from models.base import utcnow
from services.base.db import WriteOnReadSession, build_engine, read_session_factory
from tests.conftest import make_settings


@pytest.fixture
def read_engine(database_url: str) -> Iterator[Engine]:
    engine = build_engine(make_settings(database_url), autocommit=True)
    yield engine
    engine.dispose()


def _user() -> User:
    now = utcnow()
    sub = f"sub-{uuid.uuid4().hex[:8]}"
    return User(
        id=uuid.uuid4(),
        cognito_sub=sub,
        roles=[],
        role_revocations={},
        created_at=now,
        updated_at=now,
    )


def test_reads_work_and_every_kind_of_write_is_refused(read_engine: Engine) -> None:
    sessions = read_session_factory(read_engine)
    with sessions() as session:
        assert session.execute(select(User.id).limit(1)).all() is not None
        with pytest.raises(WriteOnReadSession):
            session.execute(insert(User).values(cognito_sub="x", roles=[], role_revocations={}))
        session.add(_user())
        with pytest.raises(WriteOnReadSession):
            session.flush()


def test_the_connection_is_in_autocommit_mode(read_engine: Engine) -> None:
    with read_session_factory(read_engine)() as session:
        connection = session.connection().connection.dbapi_connection
        assert connection is not None and connection.autocommit is True


def test_a_get_that_must_create_the_user_writes_on_a_transactional_session(
    app: object, tokens: object, engine: Engine
) -> None:
    """The first request of a new user is a GET: the user row is created on the primary."""
    client = app.test_client()  # type: ignore[attr-defined]
    response = client.get("/v1/me", headers=tokens.header("brand-new"))  # type: ignore[attr-defined]
    assert response.status_code == 200
    with Session(engine) as session:
        assert session.scalar(select(User.id).where(User.cognito_sub == "brand-new")) is not None


def test_a_read_whose_pooled_connection_died_runs_again_on_a_fresh_one(
    app: object, tokens: object, engine: Engine
) -> None:
    """Read pools skip the `SELECT 1` ping on checkout; a dead connection costs a retry,
    never the caller's answer."""
    app = app  # type: ignore[assignment]
    read_engine = app.extensions[EXTENSION].read_sessions.kw["bind"]  # type: ignore[attr-defined]
    assert read_engine.pool._pre_ping is False  # the round trip this saves on every GET
    client = app.test_client()  # type: ignore[attr-defined]
    headers = tokens.header("reader")  # type: ignore[attr-defined]
    assert client.get("/v1/me", headers=headers).status_code == 200
    _terminate_pooled_connections(engine, read_engine)  # e.g. a restart or a failover
    for _ in range(3):
        response = client.get("/v1/me", headers=headers)
        assert response.status_code == 200, response.get_data(as_text=True)
        assert response.get_json()["id"]


def test_writes_check_each_connection_on_checkout(
    app: object, tokens: object, engine: Engine
) -> None:
    """A write is never run again by Trellis (its client retries with its Idempotency-Key),
    so the write pool checks a connection before handing it out: a write after the
    connections died succeeds. The check reads the socket, not the server: no `SELECT 1`."""
    app = app  # type: ignore[assignment]
    client = app.test_client()  # type: ignore[attr-defined]
    headers = tokens.header("writer")  # type: ignore[attr-defined]
    assert client.patch("/v1/me", json={"display_name": "A"}, headers=headers).status_code == 200
    write_engine = app.extensions[EXTENSION].engine  # type: ignore[attr-defined]
    assert write_engine.pool._pre_ping is False  # the round trip this saves on every write
    _terminate_pooled_connections(engine, write_engine)
    response = client.patch("/v1/me", json={"display_name": "B"}, headers=headers)
    assert response.status_code == 200, response.get_data(as_text=True)


def test_the_checkout_check_hands_out_the_live_connection_and_replaces_a_closed_one(
    database_url: str, engine: Engine
) -> None:
    """A live idle connection is handed out again as it is (nothing sent to check it); one
    the server ended is replaced before anyone uses it."""
    write_engine = build_engine(make_settings(database_url))
    try:
        with write_engine.connect() as connection:
            pid = connection.exec_driver_sql("SELECT pg_backend_pid() AS mine").scalar_one()
            connection.commit()
        with write_engine.connect() as connection:
            # Checked out, nothing run yet: the backend's last statement is still ours.
            assert _last_statement_of(engine, pid) == "COMMIT"
            assert connection.exec_driver_sql("SELECT pg_backend_pid()").scalar_one() == pid
        _terminate_pooled_connections(engine, write_engine)
        with write_engine.connect() as connection:
            fresh = connection.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()
        assert fresh != pid
    finally:
        write_engine.dispose()


def _last_statement_of(admin: Engine, pid: int) -> str:
    with admin.connect() as connection:  # a new transaction: a fresh pg_stat_activity
        query = text("SELECT query FROM pg_stat_activity WHERE pid = :pid")
        return str(connection.execute(query, {"pid": pid}).scalar_one())


def _terminate_pooled_connections(admin: Engine, pooled: Engine) -> None:
    """End, from the server side, the connection `pooled` holds idle (it holds one here)."""
    with pooled.connect() as connection:
        pid = connection.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()
    with admin.connect() as connection:
        ended = connection.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        assert ended.scalar_one() is True
    deadline = time.monotonic() + 5
    while _backend_alive(admin, pid):
        assert time.monotonic() < deadline, "the backend did not end"
        time.sleep(0.02)


def _backend_alive(admin: Engine, pid: int) -> bool:
    with admin.connect() as connection:  # a new transaction: a fresh pg_stat_activity
        query = text("SELECT count(*) FROM pg_stat_activity WHERE pid = :pid")
        return bool(connection.execute(query, {"pid": pid}).scalar_one())
