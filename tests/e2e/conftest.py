"""The real stack as processes: moto_server, PostgreSQL, gunicorn serving application.py."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from devstack.cognito import LocalPool, provision
from devstack.processes import base_env, free_port, migrate, start_gunicorn, start_moto, stop
from tests.support.database import fresh_database


@dataclass(frozen=True)
class Stack:
    base_url: str
    pool: LocalPool
    database_url: str
    logs: Path


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    logs = Path(tempfile.mkdtemp(prefix="trellis-e2e-"))
    moto = gunicorn = None
    try:
        moto_port = free_port()
        moto = start_moto(moto_port, log=logs / "moto.log")
        pool = provision(f"http://127.0.0.1:{moto_port}")
        with fresh_database("trellis_e2e", migrate=False) as database_url:
            env = base_env(APP_ENV="test", DATABASE_URL=database_url, **pool.trellis_env())
            migrate(env)  # through the alembic CLI, as a deployment runs it
            port = free_port()
            gunicorn = start_gunicorn(port, env, log=logs / "gunicorn.log")
            yield Stack(f"http://127.0.0.1:{port}", pool, database_url, logs)
            stop(gunicorn)
    finally:
        stop(gunicorn)
        stop(moto)
