"""Throwaway PostgreSQL databases for tests: created fresh, migrated with alembic, dropped."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, select, text
from sqlalchemy.engine import URL, make_url

from models import Base
from services.base.settings import TEST_DATABASE_URL, normalize_database_url

ROOT = Path(__file__).resolve().parents[2]


def server_url() -> URL:
    """TEST_DATABASE_URL (default: the local PostgreSQL `test` database); never SQLite."""
    url = make_url(normalize_database_url(os.environ.get("TEST_DATABASE_URL", TEST_DATABASE_URL)))
    if url.get_backend_name() != "postgresql":
        raise RuntimeError(
            "TEST_DATABASE_URL must be a PostgreSQL URL: the suite tests on PostgreSQL"
        )
    return url


def alembic_config() -> Config:
    config = Config(str(ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(ROOT / "migrations"))
    config.attributes["configure_logger"] = False
    return config


@contextmanager
def fresh_database(prefix: str = "trellis_test", *, migrate: bool = True) -> Iterator[str]:
    """Create an empty database next to TEST_DATABASE_URL, optionally migrated; drop it after."""
    base = server_url()
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        admin.dispose()
        raise RuntimeError(
            f"PostgreSQL at {base.render_as_string(hide_password=True)} is not usable for tests "
            f"({exc.__class__.__name__}). Start it, or point TEST_DATABASE_URL at one whose role "
            "may CREATE DATABASE. The suite never falls back to SQLite."
        ) from exc
    url = base.set(database=name).render_as_string(hide_password=False)
    try:
        if migrate:
            migrate_to_head(url)
        yield url
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def migrate_to_head(url: str) -> None:
    engine = create_engine(url)
    try:
        with engine.begin() as connection:
            config = alembic_config()
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
    finally:
        engine.dispose()


def strings_in_database(engine: Engine, *, tombstone: uuid.UUID) -> str:
    """Every value of every row of every table but the tombstone's users row, as one string
    to search for what a purge must have removed."""
    found: list[str] = []
    with engine.connect() as connection:
        for table in Base.metadata.sorted_tables:
            rows = select(table)
            if table.name == "users":
                rows = rows.where(table.c.id != tombstone)
            for row in connection.execute(rows):
                found.extend(repr(value) for value in row)
    return "\n".join(found)
