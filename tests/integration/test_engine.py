"""The engine's connections carry the timeouts that keep a thread from waiting for good."""

from __future__ import annotations

from sqlalchemy import text

from services.base.db import build_engine
from tests.conftest import make_settings


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
