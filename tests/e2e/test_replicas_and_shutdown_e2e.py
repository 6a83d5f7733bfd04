"""gunicorn as deployed: reads from a streaming standby, and a SIGTERM that waits for the
request in flight (what a rolling deploy sends) instead of cutting it."""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests
from sqlalchemy import create_engine, text

from devstack.cognito import sign_in
from devstack.processes import base_env, free_port, start_gunicorn, stop
from tests.e2e.conftest import Stack
from tests.support.standby import StreamingPair, streaming_pair

pytestmark = pytest.mark.e2e


def _bearer(stack: Stack, user: str = "consumer") -> dict[str, str]:
    return {"Authorization": f"Bearer {sign_in(stack.pool, user)['access']}"}


def _until(check: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"not true within {timeout}s")


def _gunicorn(stack: Stack, log: Path, **env: str) -> tuple[str, subprocess.Popen[bytes]]:
    port = free_port()
    process = start_gunicorn(
        port,
        base_env(APP_ENV="test", OUTBOX_RELAY_IN_WEB="false", **stack.pool.trellis_env(), **env),
        log=log,
    )
    return f"http://127.0.0.1:{port}", process


@pytest.fixture(scope="module")
def pair() -> Iterator[StreamingPair]:
    with streaming_pair() as started:
        yield started


def _routes(log: Path) -> list[str | None]:
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    return [line.get("db") for line in lines if line.get("logger") == "trellis.access"]


def test_gunicorn_reads_from_the_standby_and_keeps_read_your_writes(
    stack: Stack, pair: StreamingPair
) -> None:
    log = stack.logs / "gunicorn-replica.log"
    base, process = _gunicorn(
        stack,
        log,
        DATABASE_URL=pair.primary.url,
        DATABASE_READ_URL=pair.standby.url,
        REDIS_URL="redis://127.0.0.1:6379/0",
        RATE_LIMIT_KEY_PREFIX=f"e2e-replica-{free_port()}",
    )
    try:
        headers = _bearer(stack)
        assert requests.get(f"{base}/v1/me", headers=headers, timeout=10).status_code == 200
        pair.wait_caught_up()
        _until(
            lambda: (
                requests.get(f"{base}/readyz", timeout=10).json()["replicas"][0]["state"] == "ok"
            )
        )
        me = requests.get(f"{base}/v1/me", headers=headers, timeout=10)
        assert me.status_code == 200
        _until(lambda: _routes(log)[-1:] != [None])
        assert str(_routes(log)[-1]).startswith("replica:")

        pair.pause_replay()
        try:
            patched = requests.patch(
                f"{base}/v1/me",
                headers=headers,
                json={"display_name": "Through gunicorn"},
                timeout=10,
            )
            assert patched.status_code == 200
            me = requests.get(f"{base}/v1/me", headers=headers, timeout=10)
            assert me.json()["display_name"] == "Through gunicorn"  # not the stale replica's
            _until(lambda: len(_routes(log)) >= 4)
            assert _routes(log)[-1] == "primary"
        finally:
            pair.resume_replay()
    finally:
        stop(process)


def test_sigterm_lets_the_request_in_flight_finish(stack: Stack) -> None:
    base, process = _gunicorn(
        stack, stack.logs / "gunicorn-shutdown.log", DATABASE_URL=stack.database_url
    )
    try:
        headers = _bearer(stack)
        me = requests.get(f"{base}/v1/me", headers=headers, timeout=10).json()
        engine = create_engine(
            stack.database_url.replace("postgresql://", "postgresql+psycopg2://")
        )
        answers: list[requests.Response] = []
        with engine.connect() as blocker:
            # Hold the user's row so the PATCH below waits inside the database, in flight.
            blocker.execute(text("SELECT 1 FROM users WHERE id = :id FOR UPDATE"), {"id": me["id"]})
            patch = threading.Thread(
                target=lambda: answers.append(
                    requests.patch(
                        f"{base}/v1/me",
                        headers=headers,
                        json={"display_name": "Finished"},
                        timeout=30,
                    )
                )
            )
            patch.start()
            _until(lambda: _waiting_on_a_lock(blocker))
            process.send_signal(signal.SIGTERM)  # what the platform sends on a deploy
            time.sleep(1.0)
            # Still finishing the request, not gone. (New connections are not served from
            # now on; the load balancer has deregistered the instance before a deploy.)
            assert process.poll() is None
            blocker.rollback()  # release the row
        patch.join(30)
        engine.dispose()
        assert answers and answers[0].status_code == 200, answers
        assert answers[0].json()["display_name"] == "Finished"
        assert process.wait(30) == 0
    finally:
        stop(process)


def _waiting_on_a_lock(connection: object) -> bool:
    # pg_stat_activity is a snapshot kept for the whole transaction: clear it to see news.
    query = text(
        "SELECT pg_stat_clear_snapshot(), (SELECT count(*) FROM pg_stat_activity"
        " WHERE wait_event_type = 'Lock' AND datname = current_database())"
    )
    return bool(connection.execute(query).one()[1])  # type: ignore[attr-defined]
