"""Migrations run both ways on PostgreSQL and SQLite, and match the models exactly."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect

from tests.support.database import ROOT, fresh_database


def alembic(database_url: str, *args: str) -> str:
    env = {**os.environ, "DATABASE_URL": database_url, "APP_ENV": "test"}
    result = subprocess.run(
        [sys.executable, "-m", "alembic", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout + result.stderr


def tables(database_url: str) -> set[str]:
    engine = create_engine(database_url.replace("postgresql://", "postgresql+psycopg2://", 1))
    try:
        return set(inspect(engine).get_table_names()) - {"alembic_version"}
    finally:
        engine.dispose()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'migrations.db'}"


def test_upgrade_downgrade_upgrade_on_postgresql() -> None:
    with fresh_database("trellis_migrate", migrate=False) as url:
        alembic(url, "upgrade", "head")
        assert "users" in tables(url)
        alembic(url, "downgrade", "base")
        assert tables(url) == set()
        alembic(url, "upgrade", "head")
        assert "users" in tables(url)


def test_upgrade_downgrade_on_sqlite(sqlite_url: str) -> None:
    alembic(sqlite_url, "upgrade", "head")
    assert "users" in tables(sqlite_url)
    alembic(sqlite_url, "downgrade", "base")
    assert tables(sqlite_url) == set()


def test_models_and_migrations_agree(database_url: str) -> None:
    # `alembic check` fails if autogenerate would emit anything: a model changed without a revision.
    assert "No new upgrade operations detected" in alembic(database_url, "check")
