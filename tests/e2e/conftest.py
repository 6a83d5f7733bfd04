"""The real stack as processes: moto_server, PostgreSQL, gunicorn serving application.py."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from devstack.aws import ensure_buckets, push_applications
from devstack.cognito import LocalPool, provision
from devstack.processes import base_env, free_port, migrate, start_gunicorn, start_moto, stop
from tests.support.database import fresh_database
from tests.support.log_scan import leaks_in
from tests.support.proxy import FaultyProxy


@dataclass(frozen=True)
class Stack:
    base_url: str
    pool: LocalPool
    database_url: str
    logs: Path
    sns_proxy: FaultyProxy  # SNS traffic goes through it, so tests can cut it
    bucket: str = "trellis-uploads-e2e"

    @property
    def moto_url(self) -> str:
        return self.pool.endpoint_url


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    logs = Path(tempfile.mkdtemp(prefix="trellis-e2e-"))
    moto = gunicorn = proxy = None
    try:
        moto_port = free_port()
        moto = start_moto(moto_port, log=logs / "moto.log")
        pool = provision(f"http://127.0.0.1:{moto_port}")
        proxy = FaultyProxy(moto_port)
        with fresh_database("trellis_e2e", migrate=False) as database_url:
            env = base_env(
                APP_ENV="test",
                RESPONSE_CHECKS="true",
                DATABASE_URL=database_url,
                UPLOADS_BUCKET=Stack.bucket,
                OUTBOX_MAX_BACKOFF_SECONDS="1",
                AWS_ENDPOINT_URL_SNS=f"http://127.0.0.1:{proxy.port}",
                **pool.trellis_env(),
                **push_applications(pool.endpoint_url),
            )
            migrate(env)  # through the alembic CLI, as a deployment runs it
            ensure_buckets(env)
            port = free_port()
            gunicorn = start_gunicorn(port, env, log=logs / "gunicorn.log")
            yield Stack(f"http://127.0.0.1:{port}", pool, database_url, logs, proxy)
            stop(gunicorn)
            for log in logs.glob("*.log"):  # every process's log, after the whole e2e run
                leaked = leaks_in(log.read_text(errors="replace"))
                assert not leaked, f"tokens in {log.name}: {leaked[:3]}"
    finally:
        stop(gunicorn)
        stop(moto)
        if proxy is not None:
            proxy.close()
