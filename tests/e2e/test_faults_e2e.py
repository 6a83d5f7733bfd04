"""Live fault injection: Trellis under gunicorn while the links to PostgreSQL, Redis, the
JWKS URL and SNS are refused, blackholed or cut by proxies (tests/support/faultstack.py).

Every assertion is on a real outcome: the status, media type and headers a client gets, how
long it waited (timed against the service's own configured timeouts), the rows in
PostgreSQL and the pushes the emulated SNS received.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from threading import Thread
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, text

from tests.support.actors import booking_body, profile_body
from tests.support.faultstack import (
    FaultStack,
    fault_stack,
    new_user,
    wait_until,
    warm_every_worker,
)
from tests.support.tokens import SigningKey, claims_for, encode

pytestmark = pytest.mark.e2e

# Added to every configured timeout a bound is derived from: the machine has 2 shared cores.
# Still far below gunicorn's 30 s worker timeout, the thing a hung request would hit.
SLACK_SECONDS = 3.0
# Answers that need no timeout at all (a refused link) must come at least this fast.
PROMPT_SECONDS = 2.0
ANONYMOUS_LIMIT = 10  # per minute, per process while Redis is down (see the Redis test)


@pytest.fixture(scope="module")
def faults() -> Iterator[FaultStack]:
    with fault_stack("trellis_faults", RATE_LIMIT_ANONYMOUS=f"{ANONYMOUS_LIMIT}/minute") as stack:
        yield stack


@dataclass
class LogWindow:
    """The part of gunicorn's log one test wrote."""

    path: Path
    start: int

    def text(self) -> str:
        with self.path.open("rb") as handle:
            handle.seek(self.start)
            return handle.read().decode(errors="replace")


@pytest.fixture(autouse=True)
def healed(faults: FaultStack) -> Iterator[LogWindow]:
    """Each test starts and ends with every link up, and leaves no 500 or hung worker."""
    faults.heal()
    log = faults.logs / "gunicorn.log"
    window = LogWindow(log, log.stat().st_size)
    yield window
    faults.heal()
    written = window.text()
    assert "WORKER TIMEOUT" not in written  # gunicorn kills a worker stuck for 30 s
    assert "Error handling request" not in written  # an exception escaped Flask: HTML 500
    assert not server_errors(written), server_errors(written)[:3]


def server_errors(log: str) -> list[dict[str, Any]]:
    """Access-log lines with a 5xx other than the documented 503, and unhandled errors."""
    bad = []
    for line in log.splitlines():
        if not line.startswith("{"):
            continue
        record = json.loads(line)
        status = record.get("status")
        if record.get("message") == "unhandled error" or (
            isinstance(status, int) and status >= 500 and status != 503
        ):
            bad.append(record)
    return bad


class Api:
    """A signed-in user of the live service. Each call opens a new connection, so calls
    spread over both gunicorn workers as separate phones' requests would."""

    def __init__(self, stack: FaultStack, token: str | None, *, source: str = "127.0.0.1") -> None:
        self.base = stack.base_url
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.source = source  # another loopback address is another client IP to the limiter
        # Longer than gunicorn's worker timeout: a hung request shows as slow, not as lost.
        self.timeout = 45.0

    def call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return self.timed(method, path, **kwargs)[0]

    def timed(self, method: str, path: str, **kwargs: Any) -> tuple[httpx.Response, float]:
        headers = {**self.headers, **kwargs.pop("headers", {})}
        started = time.perf_counter()
        transport = httpx.HTTPTransport(local_address=self.source)
        with httpx.Client(transport=transport, timeout=self.timeout) as client:
            response = client.request(method, self.base + path, headers=headers, **kwargs)
        return response, time.perf_counter() - started


def assert_unavailable(response: httpx.Response) -> None:
    """The documented outage answer: 503 problem+json with a positive Retry-After."""
    assert response.status_code == 503, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert int(response.headers["retry-after"]) > 0
    body = response.json()
    assert body["status"] == 503 and body["type"] == "/problems/unavailable"


def sql(stack: FaultStack, query: str, **params: Any) -> list[Any]:
    """Rows from PostgreSQL directly, never through the proxy under test."""
    engine = create_engine(stack.database_url)
    try:
        with engine.connect() as connection:
            return list(connection.execute(text(query), params))
    finally:
        engine.dispose()


def key_header() -> dict[str, str]:
    return {"Idempotency-Key": str(uuid.uuid4())}


@pytest.fixture(scope="module")
def provider(faults: FaultStack) -> tuple[Api, str]:
    """A provider with a profile that consumers can book; its id."""
    api = Api(faults, new_user(faults, "provider"))
    response = api.call("PUT", "/v1/me/provider-profile", json=profile_body())
    assert response.status_code == 200, response.text
    return api, response.json()["id"]


def signed_in_consumer(faults: FaultStack) -> Api:
    consumer = Api(faults, new_user(faults, "consumer"))
    assert consumer.call("GET", "/v1/me").status_code == 200  # the user row exists
    return consumer


@dataclass(frozen=True)
class Booking:
    """One booking request as an app sends it, and sends it again: same key, same body."""

    headers: dict[str, str]
    body: dict[str, Any]

    @property
    def key(self) -> str:
        return self.headers["Idempotency-Key"]

    def kwargs(self) -> dict[str, Any]:
        return {"json": self.body, "headers": self.headers}


def booking_request(provider_id: str) -> Booking:
    headers = key_header()
    # The key in the row's notes: duplicates per key are found by SQL.
    return Booking(headers, booking_body(provider_id, notes=headers["Idempotency-Key"]))


def book(consumer: Api, request: Booking) -> httpx.Response:
    return consumer.call("POST", "/v1/bookings", **request.kwargs())


def bookings_noted(stack: FaultStack, notes: str) -> list[str]:
    rows = sql(stack, "SELECT id FROM bookings WHERE notes = :notes", notes=notes)
    return [str(row.id) for row in rows]


# ---------------------------------------------------------------- PostgreSQL


def test_database_refused_answers_503_at_once_and_the_retried_write_lands_once(
    faults: FaultStack, provider: tuple[Api, str]
) -> None:
    consumer, (_, provider_id) = signed_in_consumer(faults), provider
    request = booking_request(provider_id)
    faults.db.set("refuse")
    for method, path, kwargs in (
        ("GET", "/v1/me", {}),
        ("GET", "/readyz", {}),
        ("GET", "/v1/bookings", {}),
        ("POST", "/v1/bookings", request.kwargs()),
    ):
        response, seconds = consumer.timed(method, path, **kwargs)
        assert_unavailable(response)
        assert seconds < PROMPT_SECONDS, (path, seconds)  # refused: nothing to wait out
    assert consumer.call("GET", "/healthz").status_code == 200  # liveness never touches it

    faults.db.set("pass")
    created = book(consumer, request)  # the app retries with the same key
    assert created.status_code == 201, created.text
    assert bookings_noted(faults, request.key) == [created.json()["id"]]


def test_database_blackholed_answers_503_within_the_connect_timeout(
    faults: FaultStack, provider: tuple[Api, str]
) -> None:
    consumer, (_, provider_id) = signed_in_consumer(faults), provider
    connect_timeout = faults.settings.db_connect_timeout_seconds
    request = booking_request(provider_id)
    # Open connections are dropped; new ones are accepted and never answered, which only
    # libpq's connect_timeout can end (an established link has no read timeout to bound it).
    faults.db.set("blackhole")
    calls: list[tuple[str, str, dict[str, Any]]] = [
        ("GET", "/v1/me", {}),
        ("GET", "/readyz", {}),
        ("GET", "/v1/sync/datasets", {}),
        ("POST", "/v1/bookings", request.kwargs()),
    ]
    with ThreadPoolExecutor(len(calls)) as pool:  # at once: one worker's threads all wait
        results = list(pool.map(lambda c: consumer.timed(c[0], c[1], **c[2]), calls))
    for (_, path, _), (response, seconds) in zip(calls, results, strict=True):
        assert_unavailable(response)
        # At least the connect timeout (the blackhole held it), never much more.
        assert connect_timeout * 0.9 <= seconds <= connect_timeout + SLACK_SECONDS, (path, seconds)

    faults.db.set("pass")
    assert consumer.call("GET", "/readyz").status_code == 200
    created = book(consumer, request)
    assert created.status_code == 201, created.text
    assert bookings_noted(faults, request.key) == [created.json()["id"]]


def test_a_connection_cut_mid_request_fails_that_request_cleanly_and_the_next_succeeds(
    faults: FaultStack, provider: tuple[Api, str]
) -> None:
    consumer, (_, provider_id) = signed_in_consumer(faults), provider
    booking = book(consumer, booking_request(provider_id))
    assert booking.status_code == 201, booking.text
    booking_id = booking.json()["id"]
    with ThreadPoolExecutor(8) as pool:  # fill both workers' pools with open connections
        assert {
            r.status_code for r in pool.map(lambda _: consumer.call("GET", "/v1/me"), range(16))
        } == {200}

    headers = key_header()
    body = {"body": f"cut {headers['Idempotency-Key']}"}
    engine = create_engine(faults.database_url)
    try:
        with engine.connect() as holder, ThreadPoolExecutor(1) as pool:
            # Hold the booking's row lock, so the message request waits inside PostgreSQL
            # (lock_booking's SELECT ... FOR UPDATE) while its connection is cut.
            holder.execute(
                text("SELECT id FROM bookings WHERE id = :id FOR UPDATE"), {"id": booking_id}
            )
            pending = pool.submit(
                consumer.timed,
                "POST",
                f"/v1/bookings/{booking_id}/messages",
                json=body,
                headers=headers,
            )
            wait_until(
                lambda: lock_waiters(faults) > 0, timeout=10, what="the request waiting on the lock"
            )
            faults.db.cut()
            response, seconds = pending.result(timeout=60)
            holder.rollback()
    finally:
        engine.dispose()
    assert_unavailable(response)
    assert seconds < PROMPT_SECONDS + SLACK_SECONDS
    assert message_count(faults, body["body"]) == 0  # the cut request left nothing behind

    # Every pooled connection died in the cut; the write pool replaces them on checkout (a
    # closed socket reads as readable, services/base/db.py), the reads retry once, so
    # not one of the next requests fails, on either worker.
    statuses = [consumer.call("GET", "/v1/me").status_code for _ in range(16)]
    assert statuses == [200] * 16
    retried = consumer.call(
        "POST", f"/v1/bookings/{booking_id}/messages", json=body, headers=headers
    )
    assert retried.status_code == 201, retried.text  # the failed attempt freed its key
    assert message_count(faults, body["body"]) == 1


def lock_waiters(stack: FaultStack) -> int:
    # Asked on a connection of its own: a transaction sees one snapshot of pg_stat_activity.
    query = (
        "SELECT count(*) AS n FROM pg_stat_activity "
        "WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    return int(sql(stack, query)[0].n)


def message_count(stack: FaultStack, body: str) -> int:
    return int(sql(stack, "SELECT count(*) AS n FROM messages WHERE body = :b", b=body)[0].n)


# ---------------------------------------------------------------- Redis


def test_redis_down_requests_are_answered_and_limits_fall_back_to_memory(
    faults: FaultStack,
) -> None:
    user = Api(faults, new_user(faults, "consumer"))
    assert user.call("GET", "/v1/me").status_code == 200
    wait_until(
        lambda: any("user:" in key for key in faults.redis_keys()),
        timeout=10,
        what="the limiter's counters in Redis (through the proxy)",
    )
    for mode in ("refuse", "blackhole"):
        faults.redis.set(mode)
        for _ in range(10):
            response, seconds = user.timed("GET", "/v1/me")
            assert response.status_code == 200, (mode, response.text)
            assert seconds < PROMPT_SECONDS, (mode, seconds)

    # Still limited while Redis is gone: each worker counts in its own memory, so at most
    # workers x the limit get through before 429s.
    faults.redis.set("refuse")
    anonymous = Api(faults, None, source="127.0.0.23")  # a bucket no other test touches
    responses = [anonymous.call("GET", "/v1/me") for _ in range(ANONYMOUS_LIMIT * 3)]
    statuses = [r.status_code for r in responses]
    assert set(statuses) == {401, 429}, statuses
    assert statuses.count(401) <= ANONYMOUS_LIMIT * faults.workers
    limited = next(r for r in responses if r.status_code == 429)
    assert limited.headers["content-type"] == "application/problem+json"
    assert int(limited.headers["retry-after"]) > 0

    faults.redis.set("pass")
    newcomer = Api(faults, new_user(faults, "consumer"))
    sub = claims_of(newcomer)["sub"]

    def counted_in_redis() -> bool:
        assert newcomer.call("GET", "/v1/me").status_code == 200
        return any(sub in key for key in faults.redis_keys())

    # The limiter tries the dead Redis again after exponential pauses (at most 32 s).
    wait_until(counted_in_redis, timeout=60, interval=1, what="the limiter back on Redis")


def claims_of(api: Api) -> dict[str, Any]:
    import base64

    payload = api.headers["Authorization"].split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


# ---------------------------------------------------------------- JWKS


def test_jwks_down_keys_already_fetched_keep_working(faults: FaultStack) -> None:
    token = new_user(faults, "consumer")
    user = Api(faults, token)
    # Each worker fetches the JWKS once, on its first token; new connections reach both.
    fetches = warm_every_worker(faults, token)
    jwks_timeout = faults.settings.jwks_timeout_seconds
    for mode in ("refuse", "blackhole"):
        faults.jwks.set(mode)
        statuses = [user.call("GET", "/v1/me").status_code for _ in range(10)]
        assert statuses == [200] * 10, mode
        # A user never seen before: a new token, signed with the key already cached.
        newcomer = Api(faults, new_user(faults, "consumer"))
        assert newcomer.call("GET", "/v1/me").status_code == 200, mode
    # A token naming a key nobody has: at most one refetch (blackholed, bounded), then 401.
    forged = encode(
        {"kid": "rotated-key", "alg": "RS256", "typ": "JWT"}, claims_for("intruder"), SigningKey()
    )
    response, seconds = Api(faults, forged).timed("GET", "/v1/me")
    assert response.status_code == 401, response.text
    assert seconds <= 2 * jwks_timeout + SLACK_SECONDS  # urllib3 tries twice, each bounded
    assert user.call("GET", "/v1/me").status_code == 200  # the known key never waited on it
    assert faults.jwks_fetches() == fetches  # nothing reached the JWKS while it was down


# ---------------------------------------------------------------- SNS


def test_sns_down_writes_succeed_the_outbox_holds_and_every_push_arrives_after(
    faults: FaultStack,
) -> None:
    consumer = signed_in_consumer(faults)
    provider = Api(faults, new_user(faults, "provider"))
    profile = provider.call("PUT", "/v1/me/provider-profile", json=profile_body())
    provider_id = profile.json()["id"]
    for api, platform, token in (
        (consumer, "ios", uuid.uuid4().hex * 2),
        (provider, "android", "fcm:" + uuid.uuid4().hex),
    ):
        device = api.call("POST", "/v1/devices", json={"platform": platform, "token": token})
        assert device.status_code == 200, device.text
    users = [str(consumer.call("GET", "/v1/me").json()["id"]), provider_id]

    faults.sns.set("refuse")
    for _ in range(3):  # each round: a booking, its acceptance and a message: three pushes
        round_trip(consumer, provider, provider_id)
    wait_until(
        lambda: outbox(faults, users) == (9, 9, 9),
        timeout=30,
        what="nine pushes held, each tried by the relay",
    )

    faults.sns.set("blackhole")  # a relay now waits on SNS: requests must not
    for _ in range(2):
        round_trip(consumer, provider, provider_id)
    assert outbox(faults, users)[:2] == (15, 15)

    faults.sns.set("pass")
    wait_until(lambda: outbox(faults, users)[1] == 0, timeout=90, what="the outbox drained")
    received = pushed_outbox_ids(faults)
    expected = sql(
        faults,
        "SELECT o.id, d.endpoint_arn FROM outbox_messages o JOIN devices d "
        "ON d.user_id = o.user_id WHERE o.user_id = ANY(CAST(:users AS uuid[]))",
        users=users,
    )
    assert len(expected) == 15
    missing = [r for r in expected if str(r.id) not in received.get(r.endpoint_arn, set())]
    assert not missing  # every push reached its device's endpoint (at least once)


def round_trip(consumer: Api, provider: Api, provider_id: str) -> None:
    """Book, accept, message: each answered promptly while SNS is down."""
    booking, seconds = consumer.timed(
        "POST", "/v1/bookings", json=booking_body(provider_id), headers=key_header()
    )
    assert booking.status_code == 201 and seconds < PROMPT_SECONDS, (booking.text, seconds)
    booking_id = booking.json()["id"]
    accepted, seconds = provider.timed("POST", f"/v1/bookings/{booking_id}/accept")
    assert accepted.status_code == 200 and seconds < PROMPT_SECONDS, (accepted.text, seconds)
    message, seconds = consumer.timed(
        "POST", f"/v1/bookings/{booking_id}/messages", json={"body": "on my way"}
    )
    assert message.status_code == 201 and seconds < PROMPT_SECONDS, (message.text, seconds)


def outbox(stack: FaultStack, users: list[str]) -> tuple[int, int, int]:
    """(rows, undelivered, undelivered rows the relay has tried) for these users."""
    row = sql(
        stack,
        "SELECT count(*) AS total, count(*) FILTER (WHERE delivered_at IS NULL) AS waiting, "
        "count(*) FILTER (WHERE delivered_at IS NULL AND attempts > 0 AND last_error IS NOT NULL)"
        " AS tried FROM outbox_messages WHERE user_id = ANY(CAST(:users AS uuid[]))",
        users=users,
    )[0]
    return int(row.total), int(row.waiting), int(row.tried)


def pushed_outbox_ids(stack: FaultStack) -> dict[str, set[str]]:
    """Endpoint ARN -> the outbox ids of every push SNS received for it (APNs or FCM)."""
    return {
        arn: {outbox_id_of(message) for message in messages}
        for arn, messages in stack.sns_messages().items()
    }


def outbox_id_of(message: dict[str, Any]) -> str:
    if "APNS" in message:
        return str(json.loads(message["APNS"])["trellis"]["outbox_id"])
    return str(json.loads(message["GCM"])["fcmV1Message"]["message"]["data"]["outbox_id"])


def test_sns_answering_garbage_holds_the_outbox_and_records_each_attempt(
    faults: FaultStack,
) -> None:
    """An HTML error page where SNS's XML should be (a load balancer's 502 page, say) is
    retried per message with backoff, like an outage; it never stalls the relay."""
    consumer = signed_in_consumer(faults)
    provider = Api(faults, new_user(faults, "provider"))
    provider_id = provider.call("PUT", "/v1/me/provider-profile", json=profile_body()).json()["id"]
    device = {"platform": "android", "token": "fcm:" + uuid.uuid4().hex}
    assert provider.call("POST", "/v1/devices", json=device).status_code == 200
    users = [provider_id]
    garbage = ThreadingHTTPServer(("127.0.0.1", 0), ErrorPage)
    Thread(target=garbage.serve_forever, daemon=True).start()
    moto = faults.sns.target
    try:
        faults.sns.target = ("127.0.0.1", garbage.server_address[1])
        faults.sns.cut()  # keep-alive connections to the real SNS end here
        for _ in range(3):
            booked = consumer.call(
                "POST", "/v1/bookings", json=booking_body(provider_id), headers=key_header()
            )
            assert booked.status_code == 201, booked.text
        wait_until(
            lambda: outbox(faults, users) == (3, 3, 3),
            timeout=30,
            what="three pushes held, each attempt recorded on its row",
        )
    finally:
        faults.sns.target = moto
        faults.sns.cut()
        garbage.shutdown()
    wait_until(lambda: outbox(faults, users)[1] == 0, timeout=60, what="the outbox drained")


class ErrorPage(BaseHTTPRequestHandler):
    """Answers every request with an HTML 500, as a broken hop in front of SNS would."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        page = b"<!doctype html><title>500 Internal Server Error</title>"
        self.send_response(500)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(page)))
        self.end_headers()
        self.wfile.write(page)

    def log_message(self, format: str, *args: Any) -> None:
        pass


# ---------------------------------------------------------------- cuts aimed at one round trip
# A time-based cut lands anywhere; the soak found two places where it hurt (a finished
# request turned into gunicorn's HTML 500; a retry refused 409 for 60 s). The proxy's
# tripwire aims the cut there, so these outcomes are the same on every run.


def test_a_cut_before_teardown_still_answers_the_finished_request(faults: FaultStack) -> None:
    consumer = signed_in_consumer(faults)
    # A write request refused after authentication read the caller: its transaction is
    # closed (rolled back) at teardown. (GETs read in autocommit: nothing to close.)
    faults.db.arm(b"ROLLBACK")
    response = consumer.call("POST", "/v1/bookings", json={"provider_id": "not-a-uuid"})
    assert faults.db.tripped.is_set()  # the cut landed after the work, before the answer
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert consumer.call("GET", "/v1/me").status_code == 200  # the pool replaced it


def test_a_cut_at_the_idempotent_commit_frees_the_key_for_the_retry(
    faults: FaultStack, provider: tuple[Api, str]
) -> None:
    consumer, (_, provider_id) = signed_in_consumer(faults), provider
    request = booking_request(provider_id)
    # The INSERT that stores the key's answer, in the transaction holding the booking (its
    # state is a bound value: in the plain and the prepared form alike).
    faults.db.arm(b"'completed'")
    first = book(consumer, request)
    assert faults.db.tripped.is_set()
    assert_unavailable(first)
    assert bookings_noted(faults, request.key) == []  # nothing committed
    retried = book(consumer, request)  # at once: not 409 until the key goes stale (60 s)
    assert retried.status_code == 201, retried.text
    assert bookings_noted(faults, request.key) == [retried.json()["id"]]
