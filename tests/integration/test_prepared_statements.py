"""Server-side prepared statements (DB_PREPARED_STATEMENTS, services/base/db.py) on PostgreSQL:
a statement a connection runs again is PREPAREd there and EXECUTEd with the same answers; one
PostgreSQL refuses to prepare stays plain without breaking the transaction; off, nothing is
prepared (for RDS Proxy and PgBouncer in transaction mode)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, Integer, Uuid, bindparam, column, select, table, text
from sqlalchemy.dialects.postgresql import ARRAY

from services.base import db
from services.base.db import build_engine
from tests.conftest import make_settings
from tests.support.actors import make_actor

# uuid[] from a list of strings, a timestamp, a LIKE with a literal %: the values psycopg2
# binds must reach the prepared parameters' types.
PROBE = text(
    "SELECT n, id, at FROM (VALUES (1, CAST(:one AS uuid), CAST(:at AS timestamptz)),"
    " (2, CAST(:two AS uuid), CAST(:at AS timestamptz) + interval '1 hour')) AS v(n, id, at)"
    " WHERE id = ANY(:ids) AND 'a%b' LIKE 'a%' AND at >= :since ORDER BY n"
).bindparams(bindparam("ids", type_=ARRAY(Uuid)))  # sent as ARRAY['...']::UUID[]


def _prepared_here(connection) -> list[str]:  # type: ignore[no-untyped-def]
    rows = connection.exec_driver_sql("SELECT statement FROM pg_prepared_statements")
    return [r.statement for r in rows]


def test_a_statement_run_again_is_prepared_and_answers_the_same(database_url: str) -> None:
    engine = build_engine(make_settings(database_url), autocommit=True)
    one, two = uuid.uuid4(), uuid.uuid4()
    at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    values = {"one": one, "two": two, "at": at, "ids": [str(one), str(two)], "since": at}
    try:
        with engine.connect() as connection:
            answers = [connection.execute(PROBE, values).all() for _ in range(3)]
            prepared = _prepared_here(connection)
    finally:
        engine.dispose()
    assert answers[0] == answers[1] == answers[2]
    assert [(n, i) for n, i, _ in answers[0]] == [(1, one), (2, two)]
    assert answers[0][1][2] == at + timedelta(hours=1)
    assert len(prepared) == 1 and "$5" in prepared[0] and "LIKE 'a%'" in prepared[0]


def test_a_statement_postgresql_will_not_prepare_leaves_the_transaction_working(
    database_url: str,
) -> None:
    """`:x IS NULL` alone gives $1 no type: the PREPARE is refused inside a savepoint, the
    statement runs plain, and the transaction around it commits."""
    engine = build_engine(make_settings(database_url))
    name = f"prepared_probe_{uuid.uuid4().hex[:8]}"
    untyped = text("SELECT 1 WHERE :x IS NULL")
    try:
        with engine.begin() as connection:
            connection.exec_driver_sql(f"CREATE TABLE {name} (n int)")
            answers = [connection.execute(untyped, {"x": None}).scalar() for _ in range(3)]
            insert = text(f"INSERT INTO {name} (n) VALUES (:n)")
            for n in range(3):
                connection.execute(insert, {"n": n})
            prepared = _prepared_here(connection)
        with engine.connect() as connection:
            kept = connection.execute(select(column("n")).select_from(table(name))).scalars()
            assert sorted(kept) == [0, 1, 2]
            connection.exec_driver_sql(f"DROP TABLE {name}")
            connection.commit()
    finally:
        engine.dispose()
    assert answers == [1, 1, 1]
    assert len(prepared) == 1 and "INSERT INTO" in prepared[0]  # the insert, not the probe


def test_switched_off_nothing_is_prepared(database_url: str) -> None:
    settings = make_settings(database_url, DB_PREPARED_STATEMENTS="false")
    engine = build_engine(settings, autocommit=True)
    query = select(bindparam("n", type_=Integer) + 1)
    try:
        with engine.connect() as connection:
            assert [connection.execute(query, {"n": n}).scalar() for n in range(3)] == [1, 2, 3]
            assert _prepared_here(connection) == []
    finally:
        engine.dispose()


def test_once_the_process_knows_enough_statements_a_new_one_is_not_prepared(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A statement the process cannot keep a prepared form of stays plain text: it would get
    a new name, and a new PREPARE, on every run (services/base/db.py _form)."""
    monkeypatch.setattr(db, "_KNOWN_STATEMENTS", len(db._forms))
    engine = build_engine(make_settings(database_url), autocommit=True)
    query = text("SELECT CAST(:n AS integer) + 7")  # preparable: its parameter is typed
    try:
        with engine.connect() as connection:
            assert [connection.execute(query, {"n": n}).scalar() for n in range(4)] == [7, 8, 9, 10]
            assert _prepared_here(connection) == []
    finally:
        engine.dispose()


def test_requests_run_on_prepared_statements(app, signing_key, engine: Engine) -> None:  # type: ignore[no-untyped-def]
    """The caller's row and the bookings list, on the read pool, after their first run."""
    user = make_actor(app.test_client(), signing_key, "consumer")
    for _ in range(3):
        assert user.get("/v1/bookings?limit=20").status_code == 200
    read_engine = app.extensions["trellis"].read_sessions.kw["bind"]
    with read_engine.connect() as connection:
        prepared = " ".join(_prepared_here(connection))
    assert "FROM users" in prepared and "FROM bookings" in prepared
