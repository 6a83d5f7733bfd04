"""`make run`'s entry point (python -m devstack.run) as real processes on spare ports: a
second instance refuses at once and leaves the first alone; after Ctrl-C and a restart the
demo users are the same users, with their profile and bookings."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests
from websockets.sync.client import connect

from devstack.cognito import LocalPool, cognito_client, sign_in
from devstack.processes import ROOT, free_port, stop

pytestmark = pytest.mark.e2e


@dataclass
class Checkout:
    """What one `make run` works with: its state directory, database and ports."""

    state: Path
    database: Path
    port: int
    moto_port: int
    realtime_port: int = field(default_factory=free_port)

    def env(self, **extra: str) -> dict[str, str]:
        return {
            **os.environ,
            "TRELLIS_LOCAL_DIR": str(self.state),
            "DATABASE_URL": f"sqlite:///{self.database}",
            "PORT": str(self.port),
            "MOTO_PORT": str(self.moto_port),
            "REALTIME_PORT": str(self.realtime_port),
            **extra,
        }

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def pool(self) -> LocalPool:
        return LocalPool.load(self.state / "pool.json")


@pytest.fixture
def checkout(tmp_path: Path) -> Checkout:
    return Checkout(tmp_path / "state", tmp_path / "dev.db", free_port(), free_port())


@pytest.fixture
def running() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Every `make run` a test starts is stopped at the end, whatever happened."""
    processes: list[subprocess.Popen[bytes]] = []
    yield processes
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                stop(process)


def start(
    checkout: Checkout, running: list[subprocess.Popen[bytes]], log: Path
) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [sys.executable, "-m", "devstack.run"],
        cwd=ROOT,
        env=checkout.env(),
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    running.append(process)
    deadline = time.monotonic() + 120
    while "Trellis is running" not in log.read_text():
        assert process.poll() is None, log.read_text()
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.2)
    return process


def run_again(checkout: Checkout) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "devstack.run"],
        cwd=ROOT,
        env=checkout.env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    return result, time.monotonic() - started


def call(checkout: Checkout, token: str, method: str, path: str, **kwargs: object) -> dict:
    response = requests.request(
        method,
        checkout.base_url + path,
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
        **kwargs,  # type: ignore[arg-type]
    )
    assert response.status_code in (200, 201), (method, path, response.text)
    return response.json()


def user_pools(checkout: Checkout) -> list[str]:
    pool = checkout.pool()
    client = cognito_client(pool.endpoint_url, pool.region)
    return [p["Id"] for p in client.list_user_pools(MaxResults=60)["UserPools"]]


def test_a_second_make_run_refuses_at_once_and_leaves_the_first_alone(
    checkout: Checkout, running: list[subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    first = start(checkout, running, tmp_path / "first.log")
    token = sign_in(checkout.pool(), "consumer")["access"]
    pool_file = (checkout.state / "pool.json").read_bytes()
    pools = user_pools(checkout)
    me = call(checkout, token, "GET", "/v1/me")

    second, seconds = run_again(checkout)
    assert second.returncode == 1
    assert seconds < 10
    assert f"already running from {ROOT} (pid {first.pid}, " in second.stderr
    assert f"http://127.0.0.1:{checkout.port}, moto_server on port {checkout.moto_port}" in (
        second.stderr
    )
    assert "Starting" not in second.stdout  # it started nothing

    # Another checkout (its own state) on the same ports is refused for the port.
    elsewhere = Checkout(tmp_path / "other", tmp_path / "other.db", checkout.port, free_port())
    third, seconds = run_again(elsewhere)
    assert third.returncode == 1 and seconds < 10
    assert f"port {checkout.port} (for Trellis) is already in use" in third.stderr

    assert first.poll() is None
    assert (checkout.state / "pool.json").read_bytes() == pool_file
    assert user_pools(checkout) == pools == [checkout.pool().pool_id]
    assert call(checkout, token, "GET", "/v1/me") == me


def test_after_a_restart_the_demo_users_find_their_profile_and_bookings(
    checkout: Checkout, running: list[subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    first = start(checkout, running, tmp_path / "first.log")
    consumer = sign_in(checkout.pool(), "consumer")["access"]
    provider = sign_in(checkout.pool(), "provider")["access"]
    me = call(checkout, consumer, "GET", "/v1/me")
    profile = call(
        checkout,
        provider,
        "PUT",
        "/v1/me/provider-profile",
        json={
            "display_name": "Restart Rita",
            "categories": ["cleaning"],
            "location": {"lat": 52.52, "lng": 13.405},
            "service_radius_km": 15,
            "hourly_rate_cents": 2500,
            "currency": "EUR",
        },
    )
    booking = call(
        checkout,
        consumer,
        "POST",
        "/v1/bookings",
        json={
            "provider_id": profile["id"],
            "category": "cleaning",
            "scheduled_at": (datetime.now(UTC) + timedelta(days=3)).isoformat(),
            "location": {"lat": 52.5, "lng": 13.4, "address": "Alexanderplatz 1"},
        },
    )

    first.send_signal(signal.SIGINT)  # Ctrl-C
    assert first.wait(30) == 0
    second = start(checkout, running, tmp_path / "second.log")
    assert "moved to" not in (tmp_path / "second.log").read_text()

    fresh = sign_in(checkout.pool(), "consumer")["access"]
    assert call(checkout, fresh, "GET", "/v1/me")["id"] == me["id"]
    listed = call(checkout, fresh, "GET", "/v1/bookings")["items"]
    assert [b["id"] for b in listed] == [booking["id"]]
    provider_again = sign_in(checkout.pool(), "provider")["access"]
    assert call(checkout, provider_again, "GET", "/v1/me/provider-profile")["id"] == profile["id"]
    # Same pool, same signing key: a token issued before the restart is still good.
    assert call(checkout, consumer, "GET", "/v1/me")["id"] == me["id"]
    assert second.poll() is None


def test_a_database_used_by_other_identities_is_moved_aside(
    checkout: Checkout, running: list[subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    # A database from an older `make run` (random identities): its users are nobody now.
    checkout.database.write_bytes(b"")
    checkout.state.mkdir()
    (checkout.state / "identities.json").write_text(
        json.dumps({f"sqlite:///{checkout.database}": {"consumer": "an-older-sub"}})
    )
    start(checkout, running, tmp_path / "run.log")
    log = (tmp_path / "run.log").read_text()
    assert "dev.db was used with" in log and "a fresh one is created" in log
    (aside,) = checkout.database.parent.glob("dev.db.*.bak")
    assert aside.read_bytes() == b""
    assert checkout.database.stat().st_size > 0  # migrated afresh
    token = sign_in(checkout.pool(), "consumer")["access"]
    assert call(checkout, token, "GET", "/v1/me")["id"]  # a users row in the fresh database


def test_make_run_streams_changes_on_sqlite(
    checkout: Checkout, running: list[subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    """The realtime process starts with the rest and its URL is printed; on SQLite (no
    NOTIFY) it polls the feed: a change written through the API reaches the socket."""
    log = tmp_path / "run.log"
    start(checkout, running, log)
    url = f"ws://127.0.0.1:{checkout.realtime_port}/v1/realtime"
    assert url in log.read_text()
    token = sign_in(checkout.pool(), "consumer")["access"]
    with connect(url, open_timeout=10) as ws:
        ws.send(json.dumps({"type": "auth", "token": token}))
        assert json.loads(ws.recv(timeout=10))["type"] == "authenticated"
        ws.send(json.dumps({"type": "subscribe"}))
        after = json.loads(ws.recv(timeout=10))["after"]
        record = {"op": "replace", "key": "theme", "value": "dark", "sync_count": 0}
        call(checkout, token, "POST", "/v1/sync/datasets/prefs", json={"records": [record]})
        change = json.loads(ws.recv(timeout=10))
    assert change["type"] == "change" and change["seq"] == after + 1
    assert change["kind"] == "sync" and change["data"]["dataset"] == "prefs"
