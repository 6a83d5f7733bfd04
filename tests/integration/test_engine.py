"""The engine's connections carry the timeouts that keep a thread from waiting for good."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import Column, MetaData, Table, create_engine, select, text

from models.base import UTCDateTime
from services.base.db import build_engine
from tests.conftest import make_settings
from tests.support.database import fresh_database


def test_connections_have_bounded_waits(database_url: str) -> None:
    engine = build_engine(make_settings(database_url, DB_STATEMENT_TIMEOUT_MS="7000"))
    try:
        with engine.connect() as connection:
            parameters = connection.connection.dbapi_connection.get_dsn_parameters()  # type: ignore[union-attr]
            statement_timeout = connection.execute(text("SHOW statement_timeout")).scalar()
    finally:
        engine.dispose()
    assert parameters["connect_timeout"] == "3"
    assert (parameters["keepalives"], parameters["keepalives_idle"]) == ("1", "10")
    assert (parameters["keepalives_interval"], parameters["keepalives_count"]) == ("5", "3")
    assert parameters["tcp_user_timeout"] == "25000"
    assert statement_timeout == "7s"


def test_timestamps_come_back_in_utc_whatever_the_servers_time_zone() -> None:
    """The connections set TimeZone=UTC: models/base.py UTCDateTime skips its per-value work
    on PostgreSQL because of it, and the JSON of every timestamp ends in Z."""
    with fresh_database("trellis_tz", migrate=False) as url:
        admin = create_engine(url, isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            name = connection.execute(text("SELECT current_database()")).scalar()
            connection.execute(text(f"ALTER DATABASE \"{name}\" SET TimeZone = 'Asia/Kolkata'"))
        admin.dispose()
        engine = build_engine(make_settings(url))
        table = Table("stamps", MetaData(), Column("at", UTCDateTime()))
        moment = datetime(2030, 1, 2, 3, 4, 5, 600_000, tzinfo=UTC)
        try:
            with engine.begin() as connection:
                zone = connection.execute(text("SHOW TimeZone")).scalar()
                table.create(connection)
                connection.execute(table.insert(), [{"at": moment}])
                read = connection.execute(select(table.c.at)).scalar_one()
                as_text = connection.execute(text("SELECT at::text FROM stamps")).scalar_one()
        finally:
            engine.dispose()
    assert zone == "UTC"
    assert read == moment and read.utcoffset() == timedelta(0)
    assert read.tzinfo is UTC  # what pydantic and orjson write as Z
    assert as_text == "2030-01-02 03:04:05.6+00"


def test_a_statements_uuids_are_read_once_each(database_url: str) -> None:
    """One uuid.UUID per distinct value in a statement's rows (services/base/db.py), equal to
    what psycopg2's own reader makes; NULL stays None and arrays are read too."""
    engine = build_engine(make_settings(database_url))
    one, other = uuid.uuid4(), uuid.uuid4()
    statement = text(
        "SELECT v::uuid AS id, NULL::uuid AS nothing, ARRAY[v::uuid, CAST(:other AS uuid)] AS ids"
        " FROM (VALUES (:one), (:one), (:other)) AS t(v)"
    )
    try:
        with engine.connect() as connection:
            rows = connection.execute(statement, {"one": str(one), "other": str(other)}).all()
            again = connection.execute(statement, {"one": str(one), "other": str(other)}).all()
    finally:
        engine.dispose()
    assert [row.id for row in rows] == [one, one, other]
    assert all(isinstance(row.id, uuid.UUID) for row in rows)
    assert rows[0].id is rows[1].id  # the same object: read once
    assert rows[0].nothing is None
    assert rows[2].ids == [other, other] and rows[0].ids == [one, other]
    assert again[0].id == one and again[0].id is not rows[0].id  # nothing kept past a statement
