"""The realtime WebSocket end to end: moto_server's Cognito tokens, gunicorn writing, the
realtime process (`python -m realtime`) streaming, PostgreSQL's LISTEN/NOTIFY between them.

Live delivery between two users; a socket dead while 50 changes commit resumes with all of
them in order (and changes committed during the replay arrive once); an expired token, a
revoked role and a suspension close the socket; killing the listening connection loses
nothing; garbage and oversized frames are refused."""

from __future__ import annotations

import base64
import gzip
import json
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import moto.cognitoidp
import psycopg2
import pytest
import requests
from jose import jwt
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from devstack.cognito import add_user, sign_in
from devstack.processes import base_env, free_port, start_realtime, stop
from tests.e2e.conftest import Stack
from tests.support.actors import booking_body, profile_body

pytestmark = pytest.mark.e2e

WAIT = 15.0  # generous: two cores shared with other work


@pytest.fixture(scope="module")
def realtime(stack: Stack) -> Iterator[str]:
    port = free_port()
    env = base_env(
        APP_ENV="test",
        DATABASE_URL=stack.database_url,
        REALTIME_RECHECK_SECONDS="1",
        REALTIME_MAX_SOCKETS_PER_USER="3",
        **stack.pool.trellis_env(),
    )
    process = start_realtime(port, env, log=stack.logs / "realtime.log")
    try:
        yield f"ws://127.0.0.1:{port}/v1/realtime"
    finally:
        stop(process)


def token(stack: Stack, username: str) -> str:
    return sign_in(stack.pool, username)["access"]


def api(stack: Stack, access: str) -> requests.Session:
    http = requests.Session()
    http.headers["Authorization"] = f"Bearer {access}"
    return http


def ok(response: requests.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json() if response.content else None


def dial(url: str, **options: Any) -> ClientConnection:
    """A client socket held open across calls (not a `with` block)."""
    return connect(url, open_timeout=WAIT, **options).__enter__()


def open_socket(url: str, access: str, *, in_header: bool = False) -> ClientConnection:
    """Authenticated: in the first frame, or as Sec-WebSocket-Protocol's bearer entry."""
    if in_header:
        ws = dial(url, subprotocols=["trellis.v1", f"bearer.{access}"])  # type: ignore[list-item]
        assert ws.subprotocol == "trellis.v1"
    else:
        ws = dial(url)
        ws.send(json.dumps({"type": "auth", "token": access}))
    hello = receive(ws)
    assert hello["type"] == "authenticated", hello
    return ws


def receive(ws: ClientConnection, timeout: float = WAIT) -> dict[str, Any]:
    return json.loads(ws.recv(timeout=timeout))


def subscribe(ws: ClientConnection, after: int | None = None) -> int:
    ws.send(json.dumps({"type": "subscribe"} | ({} if after is None else {"after": after})))
    answer = receive(ws)
    assert answer["type"] == "subscribed", answer
    return int(answer["after"])


def changes(ws: ClientConnection, count: int, timeout: float = WAIT) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while len(got) < count:
        frame = receive(ws, max(0.01, deadline - time.monotonic()))
        if frame["type"] == "change":
            got.append(frame)
    return got


def until(ws: ClientConnection, kind: str, timeout: float = WAIT) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        frame = receive(ws, max(0.01, deadline - time.monotonic()))
        if frame["type"] == "change" and frame["kind"] == kind:
            return frame


def closed_with(ws: ClientConnection, timeout: float = WAIT) -> int | None:
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ws.recv(timeout=max(0.01, deadline - time.monotonic()))
    except ConnectionClosed as exc:
        return exc.rcvd.code if exc.rcvd else None
    except TimeoutError:
        return None
    return None


def consecutive(frames: list[dict[str, Any]], after: int) -> bool:
    return [f["seq"] for f in frames] == list(range(after + 1, after + 1 + len(frames)))


def new_booking(stack: Stack, consumer: requests.Session, provider: requests.Session) -> str:
    ok(provider.put(f"{stack.base_url}/v1/me/provider-profile", json=profile_body()))
    provider_id = ok(provider.get(f"{stack.base_url}/v1/me"))["id"]
    body = booking_body(provider_id)
    return str(ok(consumer.post(f"{stack.base_url}/v1/bookings", json=body), 201)["id"])


@pytest.fixture(scope="module")
def booking(stack: Stack) -> str:
    return new_booking(
        stack, api(stack, token(stack, "consumer")), api(stack, token(stack, "provider"))
    )


def post_messages(stack: Stack, access: str, booking_id: str, count: int, label: str) -> None:
    http = api(stack, access)
    for n in range(count):
        body = {"body": f"{label} {n}"}
        ok(http.post(f"{stack.base_url}/v1/bookings/{booking_id}/messages", json=body), 201)


def test_two_users_see_each_others_messages_and_booking_moves_live(
    stack: Stack, realtime: str
) -> None:
    consumer_token, provider_token = token(stack, "consumer"), token(stack, "provider")
    consumer, provider = api(stack, consumer_token), api(stack, provider_token)
    mine = open_socket(realtime, consumer_token)
    theirs = open_socket(realtime, provider_token, in_header=True)
    try:
        mine_after, theirs_after = subscribe(mine), subscribe(theirs)
        booking_id = new_booking(stack, consumer, provider)
        asked = until(theirs, "booking")
        assert asked["data"]["booking_id"] == booking_id
        assert asked["data"]["event"] == "requested"
        ok(provider.post(f"{stack.base_url}/v1/bookings/{booking_id}/accept"))
        moved = [f for f in changes(mine, 2) if f["kind"] == "booking"]
        assert [f["data"]["status"] for f in moved] == ["requested", "accepted"]
        sent = ok(
            consumer.post(
                f"{stack.base_url}/v1/bookings/{booking_id}/messages", json={"body": "Hi!"}
            ),
            201,
        )
        message = until(theirs, "message")
        assert message["data"]["message_id"] == sent["id"]
        # Each socket's numbers are its user's feed, strictly one by one.
        feed = ok(consumer.get(f"{stack.base_url}/v1/changes", params={"after": mine_after}))
        assert [i["seq"] for i in feed["items"]] == list(
            range(mine_after + 1, mine_after + 1 + len(feed["items"]))
        )
        rest = ok(provider.get(f"{stack.base_url}/v1/changes", params={"after": theirs_after}))
        assert message["seq"] in [i["seq"] for i in rest["items"]]
    finally:
        mine.close()
        theirs.close()


def test_a_dead_socket_resumes_fifty_changes_in_order_without_duplicates(
    stack: Stack, realtime: str, booking: str
) -> None:
    consumer_token = token(stack, "consumer")
    ws = open_socket(realtime, consumer_token)
    last = subscribe(ws)
    ws.close()  # the phone went into a tunnel
    post_messages(stack, consumer_token, booking, 50, "offline")
    ws = open_socket(realtime, consumer_token)
    try:
        assert subscribe(ws, after=last) == last
        # More commit while the 50 are replayed: they must come after, once each.
        writer = threading.Thread(
            target=post_messages, args=(stack, consumer_token, booking, 10, "during")
        )
        writer.start()
        frames = changes(ws, 60)
        writer.join()
        assert consecutive(frames, last)
        bodies_seen = [f["data"]["message_id"] for f in frames]
        assert len(set(bodies_seen)) == 60
        with pytest.raises(TimeoutError):
            ws.recv(timeout=1.5)  # nothing more: no duplicate trails behind
    finally:
        ws.close()


def moto_signed(stack: Stack, real_token: str, lifetime: int) -> str:
    """A token like the real one but expiring in `lifetime` s, signed with the key moto
    signs all its tokens with (it ships inside the moto package)."""
    claims = json.loads(base64.urlsafe_b64decode(real_token.split(".")[1] + "=="))
    header = json.loads(base64.urlsafe_b64decode(real_token.split(".")[0] + "=="))
    path = Path(moto.cognitoidp.__file__).parent / "resources" / "jwks-private.json.gz"
    document = json.loads(gzip.decompress(path.read_bytes()))
    key = document.get("keys", [document])[0]
    now = int(time.time())
    claims |= {"iat": now, "auth_time": now, "exp": now + lifetime, "jti": str(uuid.uuid4())}
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": header["kid"]})


def test_an_expired_token_closes_the_socket_unless_renewed(stack: Stack, realtime: str) -> None:
    real = token(stack, "consumer")
    short = open_socket(realtime, moto_signed(stack, real, 6))
    renewed = open_socket(realtime, moto_signed(stack, real, 6))
    try:
        subscribe(short)
        subscribe(renewed)
        assert receive(short)["type"] == "auth_expiring"
        assert receive(renewed)["type"] == "auth_expiring"
        renewed.send(json.dumps({"type": "auth", "token": moto_signed(stack, real, 60)}))
        assert receive(renewed)["type"] == "authenticated"
        assert closed_with(short) == 4401
        renewed.send(json.dumps({"type": "ping"}))
        assert receive(renewed)["type"] == "pong"  # still open past the first token's expiry
    finally:
        short.close()
        renewed.close()


def database(stack: Stack) -> psycopg2.extensions.connection:
    return psycopg2.connect(stack.database_url.replace("postgresql+psycopg2://", "postgresql://"))


def fresh_user(stack: Stack, groups: list[str]) -> tuple[str, str]:
    username = f"rt-{uuid.uuid4().hex[:10]}"
    add_user(stack.pool, username, email=f"{username}@demo.trellis.local", groups=groups)
    access = token(stack, username)
    user_id = ok(api(stack, access).get(f"{stack.base_url}/v1/me"))["id"]
    return access, user_id


def test_a_revoked_role_closes_the_socket(stack: Stack, realtime: str) -> None:
    access, user_id = fresh_user(stack, ["providers"])
    ws = open_socket(realtime, access)
    try:
        subscribe(ws)
        admin = api(stack, token(stack, "admin"))
        ok(admin.delete(f"{stack.base_url}/v1/admin/users/{user_id}/roles/provider"))
        started = time.monotonic()
        assert closed_with(ws) == 4403
        assert time.monotonic() - started < 5  # the feed's role change: at once
    finally:
        ws.close()


def test_a_suspended_account_is_closed_within_seconds(stack: Stack, realtime: str) -> None:
    access, user_id = fresh_user(stack, ["consumers"])
    ws = open_socket(realtime, access)
    try:
        subscribe(ws)
        with database(stack) as connection, connection.cursor() as cursor:
            # Any path that suspends (a report's suspend_user, an operator): the re-check.
            cursor.execute("UPDATE users SET suspended_at = now() WHERE id = %s", (user_id,))
        assert closed_with(ws, timeout=5) == 4403
    finally:
        ws.close()
    refused = dial(realtime)
    try:
        refused.send(json.dumps({"type": "auth", "token": access}))
        assert closed_with(refused) == 4403  # the REST API's rule: suspended is 403
    finally:
        refused.close()


def test_losing_the_listening_connection_loses_nothing(
    stack: Stack, realtime: str, booking: str
) -> None:
    consumer_token = token(stack, "consumer")
    ws = open_socket(realtime, consumer_token)
    try:
        last = subscribe(ws)
        with database(stack) as connection, connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = 'trellis-realtime-listen' "
                "AND datname = current_database()"  # not another run's listener
            )
            assert cursor.fetchall() == [(True,)]
        post_messages(stack, consumer_token, booking, 10, "while deaf")
        frames = changes(ws, 10)
        assert consecutive(frames, last)
        post_messages(stack, consumer_token, booking, 3, "listening again")
        assert consecutive(changes(ws, 3), last + 10)
    finally:
        ws.close()


def test_garbage_and_oversized_frames_are_refused(stack: Stack, realtime: str) -> None:
    access = token(stack, "consumer")
    ws = open_socket(realtime, access)
    try:
        for garbage in (
            "not json",
            "[1]",
            '{"type": "launch"}',
            '{"type": "subscribe", "after": -1}',
        ):
            ws.send(garbage)
            answer = receive(ws)
            assert answer["type"] == "error" and answer["code"] == "bad_frame", answer
        ws.send(b"\x00binary")
        assert closed_with(ws) == 1008
    finally:
        ws.close()
    big = open_socket(realtime, access)
    try:
        big.send(json.dumps({"type": "ping", "pad": "x" * (16 * 1024)}))
        assert closed_with(big) == 1009
    finally:
        big.close()
    silent = dial(realtime)
    try:
        started = time.monotonic()
        assert closed_with(silent, timeout=10) == 4401  # no authentication within 5 s
        assert 4.5 <= time.monotonic() - started < 9
    finally:
        silent.close()
    bad = dial(realtime)
    try:
        bad.send(json.dumps({"type": "auth", "token": "not.a.token"}))
        assert closed_with(bad) == 4401
    finally:
        bad.close()
    url = realtime + "?token=" + access[:20]
    with pytest.raises(InvalidStatus, match="400"):
        dial(url)


def test_more_sockets_than_allowed_close_the_oldest(stack: Stack, realtime: str) -> None:
    access, _ = fresh_user(stack, ["consumers"])
    sockets = [open_socket(realtime, access) for _ in range(3)]
    newest = open_socket(realtime, access)  # REALTIME_MAX_SOCKETS_PER_USER=3 here
    try:
        assert closed_with(sockets[0]) == 4429
        for ws in (*sockets[1:], newest):
            ws.send(json.dumps({"type": "ping"}))
            assert receive(ws)["type"] == "pong"
    finally:
        for ws in (*sockets, newest):
            ws.close()
