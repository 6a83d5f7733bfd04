"""Count-then-insert limits under truly concurrent requests: several gunicorn worker
processes, each with its own connections, racing for the last places under a limit.

The session's stack runs gunicorn with the default limits, so this module starts a second
gunicorn on the same database and emulated AWS with 4 workers and small limits.
"""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests
from sqlalchemy import create_engine, func, select

from devstack.aws import push_applications
from devstack.cognito import add_user, sign_in
from devstack.processes import base_env, free_port, start_gunicorn, stop
from models import Notification, SyncDataset
from tests.e2e.conftest import Stack

pytestmark = pytest.mark.e2e

WORKERS = 4
NOTIFICATIONS_PER_HOUR = 5
MAX_DATASETS = 5
CONCURRENT = 20


@pytest.fixture(scope="module")
def crowded(stack: Stack) -> Iterator[str]:
    """A second gunicorn, 4 worker processes, small limits, on the stack's database."""
    env = base_env(
        APP_ENV="test",
        DATABASE_URL=stack.database_url,
        UPLOADS_BUCKET=stack.bucket,
        AWS_ENDPOINT_URL_SNS=f"http://127.0.0.1:{stack.sns_proxy.port}",
        **stack.pool.trellis_env(),
        **push_applications(stack.moto_url),
        WEB_CONCURRENCY=str(WORKERS),
        PROVIDER_NOTIFICATIONS_PER_HOUR=str(NOTIFICATIONS_PER_HOUR),
        SYNC_MAX_DATASETS=str(MAX_DATASETS),
        # Only the limit under test answers 429 here, not the per-minute request limiter.
        RATE_LIMIT_DEFAULT="10000/minute",
        RATE_LIMIT_NOTIFICATIONS="10000/minute",
        # The stack's own relay delivers what this one enqueues: no second relay that could
        # reach SNS past the proxy while another test has cut it.
        OUTBOX_RELAY_IN_WEB="false",
    )
    port = free_port()
    process = start_gunicorn(port, env, log=stack.logs / "gunicorn-crowded.log")
    try:
        children = Path(f"/proc/{process.pid}/task/{process.pid}/children")
        if children.exists():  # Linux: the arbiter's worker processes
            assert len(children.read_text().split()) == WORKERS
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(process)


def new_user(stack: Stack, role: str) -> str:
    """A Cognito user of its own, so no other test's rows count against the limit."""
    username = f"{role}-{uuid.uuid4().hex[:12]}"
    add_user(stack.pool, username, email=f"{username}@e2e.trellis.local", groups=[f"{role}s"])
    return username


def client(base_url: str, token: str) -> requests.Session:
    """A session with a connection already open (to some worker), ready to fire."""
    http = requests.Session()
    http.headers["Authorization"] = f"Bearer {token}"
    assert http.get(f"{base_url}/healthz", timeout=10).status_code == 200
    return http


def race(
    base_url: str,
    token: str,
    send: Callable[[requests.Session, int], requests.Response],
) -> list[requests.Response]:
    """CONCURRENT requests on as many connections, released together by a barrier."""
    sessions = [client(base_url, token) for _ in range(CONCURRENT)]
    barrier = threading.Barrier(CONCURRENT)

    def fire(i: int) -> requests.Response:
        barrier.wait(timeout=30)
        return send(sessions[i], i)

    with ThreadPoolExecutor(CONCURRENT) as pool:
        responses = list(pool.map(fire, range(CONCURRENT)))
    for http in sessions:
        http.close()
    return responses


def count_rows(stack: Stack, statement) -> int:  # type: ignore[no-untyped-def]
    engine = create_engine(stack.database_url.replace("postgresql://", "postgresql+psycopg2://"))
    try:
        with engine.connect() as connection:
            return connection.scalar(statement) or 0
    finally:
        engine.dispose()


def test_concurrent_provider_notifications_stay_within_the_hourly_limit(
    stack: Stack, crowded: str
) -> None:
    consumer_token = sign_in(stack.pool, new_user(stack, "consumer"))["access"]
    provider_token = sign_in(stack.pool, new_user(stack, "provider"))["access"]
    consumer, provider = (client(crowded, t) for t in (consumer_token, provider_token))
    consumer_id = consumer.get(f"{crowded}/v1/me", timeout=10).json()["id"]
    profile = provider.put(
        f"{crowded}/v1/me/provider-profile",
        json={
            "display_name": "Racer",
            "categories": ["cleaning"],
            "location": {"lat": 52.5, "lng": 13.4},
            "service_radius_km": 10,
            "hourly_rate_cents": 2000,
            "currency": "EUR",
        },
        timeout=10,
    )
    assert profile.status_code == 200, profile.text
    provider_id = profile.json()["id"]
    booking = consumer.post(
        f"{crowded}/v1/bookings",
        json={
            "provider_id": provider_id,
            "category": "cleaning",
            "scheduled_at": (datetime.now(UTC) + timedelta(days=1)).isoformat(),
            "location": {"lat": 52.5, "lng": 13.4},
        },
        timeout=10,
    )
    assert booking.status_code == 201, booking.text

    def send(http: requests.Session, i: int) -> requests.Response:
        return http.post(
            f"{crowded}/v1/notifications",
            json={"user_id": consumer_id, "title": f"Update {i}", "body": "On my way"},
            timeout=60,
        )

    responses = race(crowded, provider_token, send)
    statuses = Counter(r.status_code for r in responses)
    stored = count_rows(
        stack,
        select(func.count())
        .select_from(Notification)
        .where(
            Notification.sender_id == uuid.UUID(provider_id),
            Notification.user_id == uuid.UUID(consumer_id),
            Notification.kind == "provider.message",
        ),
    )
    print(f"\nnotifications: {dict(statuses)}, stored {stored} (limit {NOTIFICATIONS_PER_HOUR})")
    assert statuses == {201: NOTIFICATIONS_PER_HOUR, 429: CONCURRENT - NOTIFICATIONS_PER_HOUR}
    assert stored == NOTIFICATIONS_PER_HOUR
    for refused in (r for r in responses if r.status_code == 429):
        assert refused.headers["Content-Type"].startswith("application/problem+json")
        assert refused.headers["Retry-After"] == "3600"
        assert refused.json()["status"] == 429


def test_concurrent_new_datasets_stay_within_the_per_user_limit(stack: Stack, crowded: str) -> None:
    token = sign_in(stack.pool, new_user(stack, "consumer"))["access"]
    me = client(crowded, token).get(f"{crowded}/v1/me", timeout=10).json()["id"]

    def create(http: requests.Session, i: int) -> requests.Response:
        return http.post(
            f"{crowded}/v1/sync/datasets/race-{i}",
            json={"records": [{"op": "replace", "key": "k", "value": i, "sync_count": 0}]},
            timeout=60,
        )

    responses = race(crowded, token, create)
    statuses = Counter(r.status_code for r in responses)
    stored = count_rows(
        stack,
        select(func.count()).select_from(SyncDataset).where(SyncDataset.user_id == uuid.UUID(me)),
    )
    print(f"\ndatasets: {dict(statuses)}, stored {stored} (limit {MAX_DATASETS})")
    assert statuses == {200: MAX_DATASETS, 422: CONCURRENT - MAX_DATASETS}
    assert stored == MAX_DATASETS
    for refused in (r for r in responses if r.status_code == 422):
        assert refused.headers["Content-Type"].startswith("application/problem+json")
        assert [e["code"] for e in refused.json()["errors"]] == ["limit_datasets"]


def test_devices_creating_the_same_last_dataset_at_once_all_succeed(
    stack: Stack, crowded: str
) -> None:
    """One place left and every device creates the same dataset: it is one dataset, so
    none of them is over the limit (the check after the lock finds it created)."""
    token = sign_in(stack.pool, new_user(stack, "consumer"))["access"]
    http = client(crowded, token)
    for i in range(MAX_DATASETS - 1):
        created = http.post(
            f"{crowded}/v1/sync/datasets/old-{i}",
            json={"records": [{"op": "replace", "key": "k", "value": i, "sync_count": 0}]},
            timeout=10,
        )
        assert created.status_code == 200, created.text

    def write(http: requests.Session, i: int) -> requests.Response:
        return http.post(
            f"{crowded}/v1/sync/datasets/shared",
            json={"records": [{"op": "replace", "key": f"k{i}", "value": i, "sync_count": 0}]},
            timeout=60,
        )

    responses = race(crowded, token, write)
    assert Counter(r.status_code for r in responses) == {200: CONCURRENT}
    assert sorted(r.json()["sync_count"] for r in responses) == list(range(1, CONCURRENT + 1))
