"""Read replicas against a real streaming hot standby started by the suite.

Each test proves an outcome a client sees: data from the replica (older while replay is
paused), its own writes at once (read-your-writes), the primary when the replica is down
or too far behind, 503 when the primary is down, and recovery after each fault.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask, Response
from flask.testing import FlaskClient

from api import create_app
from api.context import database_route
from services.analytics import export
from services.components import build_components
from tests.conftest import dispose, make_settings
from tests.support.exports import FakeExportSink
from tests.support.fakes import FakeGroups, FakePush, FakeStore
from tests.support.proxy import FaultyProxy
from tests.support.standby import StreamingPair, streaming_pair
from tests.support.tokens import SigningKey, token_for

REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture(scope="module")
def pair() -> Iterator[StreamingPair]:
    with streaming_pair() as started:
        yield started


class Reader:
    """A test client whose requests record where their database work went."""

    def __init__(self, app: Flask, key: SigningKey) -> None:
        self.client: FlaskClient = app.test_client()
        self.key = key
        self.routes: list[str | None] = []

        @app.after_request
        def _record(response: Response) -> Response:
            self.routes.append(database_route())
            return response

    def as_(self, sub: str, method: str, path: str, **kwargs: Any) -> Any:
        token = token_for(self.key, sub, groups=["consumers"], username=sub)
        headers = {"Authorization": f"Bearer {token}", **kwargs.pop("headers", {})}
        return self.client.open(path, method=method, headers=headers, **kwargs)

    @property
    def last_route(self) -> str | None:
        return self.routes[-1]


@pytest.fixture
def reader_for(
    pair: StreamingPair, signing_key: SigningKey, jwks: Any
) -> Iterator[Callable[..., Reader]]:
    built_apps: list[Any] = []

    def make(read_url: str | None = None, **overrides: str) -> Reader:
        settings = make_settings(
            pair.primary.url,
            DATABASE_READ_URL=read_url or pair.standby.url,
            REDIS_URL=overrides.pop("REDIS_URL", REDIS_URL),
            RATE_LIMIT_KEY_PREFIX=overrides.pop(
                "RATE_LIMIT_KEY_PREFIX", f"trellis-test-{uuid.uuid4().hex[:8]}"
            ),
            DB_CONNECT_TIMEOUT_SECONDS="2",
            DB_REPLICA_MAX_LAG_SECONDS=overrides.pop("max_lag", "60"),
            DB_REPLICA_RETRY_SECONDS=overrides.pop("retry", "1"),
            DB_REPLICA_CHECK_SECONDS="0.2",
            **overrides,
        )
        built = build_components(
            settings, jwks_fetcher=jwks, store=FakeStore(), push=FakePush(), groups=FakeGroups()
        )
        built_apps.append(built)
        app = create_app(components=built)
        app.config["TESTING"] = True
        return Reader(app, signing_key)

    yield make
    for built in built_apps:
        dispose(built)


def _until(check: Callable[[], bool], timeout: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"{what} did not hold within {timeout}s")


def _new_user(reader: Reader, pair: StreamingPair) -> str:
    sub = f"sub-{uuid.uuid4().hex[:10]}"
    assert reader.as_(sub, "GET", "/v1/me").status_code == 200
    pair.wait_caught_up()
    return sub


def _rename_behind_the_apps_back(pair: StreamingPair, sub: str, name: str) -> None:
    pair.primary.query(f"UPDATE users SET display_name = '{name}' WHERE cognito_sub = '{sub}'")


def _replica_state(reader: Reader) -> dict[str, Any]:
    response = reader.client.get("/readyz")
    assert response.status_code == 200, response.get_data(as_text=True)
    (replica,) = response.get_json()["replicas"]
    return replica


def test_reads_use_the_replica_and_a_users_own_writes_show_at_once(
    reader_for: Callable[..., Reader], pair: StreamingPair
) -> None:
    reader = reader_for()
    alice = _new_user(reader, pair)
    reader.as_(alice, "GET", "/v1/me")
    assert reader.last_route is not None and reader.last_route.startswith("replica:")

    pair.pause_replay()
    try:
        # A change the replica has not replayed: reads still come from the replica...
        _rename_behind_the_apps_back(pair, alice, "Changed elsewhere")
        response = reader.as_(alice, "GET", "/v1/me")
        assert response.get_json()["display_name"] is None
        assert reader.last_route.startswith("replica:")

        # ...but once Alice writes herself, her reads go where her write is.
        patched = reader.as_(alice, "PATCH", "/v1/me", json={"display_name": "Alice"})
        assert patched.status_code == 200 and reader.last_route == "primary"
        response = reader.as_(alice, "GET", "/v1/me")
        assert response.get_json()["display_name"] == "Alice"
        assert reader.last_route == "primary"

        # Bob never wrote: his reads stay on the replica, lag and all.
        bob = f"sub-{uuid.uuid4().hex[:10]}"
        assert reader.as_(bob, "GET", "/v1/me").status_code == 200  # created on the primary
        assert reader.as_(alice, "GET", "/v1/me").get_json()["display_name"] == "Alice"
    finally:
        pair.resume_replay()
    pair.wait_caught_up()
    # Replayed past Alice's write: she is back on the replica, and sees her change there.
    _until(
        lambda: reader.as_(alice, "GET", "/v1/me") and reader.last_route != "primary",
        what="reads back on the replica",
    )
    assert reader.as_(alice, "GET", "/v1/me").get_json()["display_name"] == "Alice"


def test_the_write_marks_are_shared_through_redis(
    reader_for: Callable[..., Reader], pair: StreamingPair
) -> None:
    """A write on one instance sends that user's reads on another to the primary."""
    one, other = reader_for(), reader_for()
    other_prefix = other.client.application.extensions["trellis"].settings.rate_limit_key_prefix
    # Two instances of one deployment share the prefix; build the second with the first's.
    shared = reader_for(RATE_LIMIT_KEY_PREFIX=other_prefix)
    carol = _new_user(other, pair)
    pair.pause_replay()
    try:
        patched = other.as_(carol, "PATCH", "/v1/me", json={"display_name": "Carol"})
        assert patched.status_code == 200
        response = shared.as_(carol, "GET", "/v1/me")
        assert response.get_json()["display_name"] == "Carol" and shared.last_route == "primary"
        # An instance of another deployment (another prefix) knows nothing of it.
        one.as_(carol, "GET", "/v1/me")
        assert one.last_route.startswith("replica:")
    finally:
        pair.resume_replay()
    pair.wait_caught_up()


def test_a_role_revoked_by_an_admin_holds_at_once_on_the_replica(
    reader_for: Callable[..., Reader], pair: StreamingPair, signing_key: SigningKey
) -> None:
    reader = reader_for()
    admin_sub, dave = f"admin-{uuid.uuid4().hex[:8]}", f"sub-{uuid.uuid4().hex[:10]}"
    admin_token = token_for(signing_key, admin_sub, groups=["admins"], username=admin_sub)
    admin = {"Authorization": f"Bearer {admin_token}"}
    provider_token = token_for(
        signing_key, dave, groups=["providers"], username=dave, now=time.time() - 5
    )
    dave_headers = {"Authorization": f"Bearer {provider_token}"}
    dave_id = reader.client.get("/v1/me", headers=dave_headers).get_json()["id"]
    pair.wait_caught_up()
    pair.pause_replay()
    try:
        revoked = reader.client.delete(f"/v1/admin/users/{dave_id}/roles/provider", headers=admin)
        assert revoked.status_code == 200, revoked.get_data(as_text=True)
        response = reader.client.get("/v1/me", headers=dave_headers)
        assert response.get_json()["roles"] == [] and reader.last_route == "primary"
    finally:
        pair.resume_replay()
    pair.wait_caught_up()


def test_a_replica_beyond_the_lag_bound_is_skipped_until_it_catches_up(
    reader_for: Callable[..., Reader], pair: StreamingPair
) -> None:
    reader = reader_for(max_lag="1")
    erin = _new_user(reader, pair)
    _until(lambda: _replica_state(reader)["state"] == "ok", what="replica ok")
    pair.pause_replay()
    try:
        _rename_behind_the_apps_back(pair, erin, "Fresh")
        _until(lambda: _replica_state(reader)["state"] == "lagging", what="replica lagging")
        assert _replica_state(reader)["lag_seconds"] > 1
        response = reader.as_(erin, "GET", "/v1/me")
        assert response.get_json()["display_name"] == "Fresh" and reader.last_route == "primary"
    finally:
        pair.resume_replay()
    _until(lambda: _replica_state(reader)["state"] == "ok", what="replica ok again")
    reader.as_(erin, "GET", "/v1/me")
    assert reader.last_route.startswith("replica:")


def test_a_replica_that_fails_under_a_read_is_skipped_and_used_again_later(
    reader_for: Callable[..., Reader], pair: StreamingPair
) -> None:
    proxy = FaultyProxy(pair.standby.port)
    try:
        reader = reader_for(
            read_url=pair.standby.url.replace(f":{pair.standby.port}/", f":{proxy.port}/")
        )
        frank = _new_user(reader, pair)
        reader.as_(frank, "GET", "/v1/me")
        assert reader.last_route.startswith("replica:")  # the pool now holds a connection

        proxy.set("refuse")  # cuts the pooled connection and refuses new ones
        response = reader.as_(frank, "GET", "/v1/me")
        assert response.status_code == 200 and reader.last_route == "primary"
        state = _replica_state(reader)
        assert state["state"] == "down" and state["error"]

        proxy.set("pass")
        _until(lambda: _replica_state(reader)["state"] == "ok", what="replica back")
        reader.as_(frank, "GET", "/v1/me")
        assert reader.last_route.startswith("replica:")
    finally:
        proxy.close()


def test_a_stopped_replica_falls_back_to_the_primary_and_recovers(
    reader_for: Callable[..., Reader], pair: StreamingPair
) -> None:
    reader = reader_for()
    gina = _new_user(reader, pair)
    pair.standby.stop("immediate")
    try:
        started = time.monotonic()
        response = reader.as_(gina, "GET", "/v1/me")
        assert response.status_code == 200 and reader.last_route == "primary"
        assert time.monotonic() - started < 10  # bounded by the connect timeout, not hung
        assert _replica_state(reader)["state"] == "down"
    finally:
        pair.standby.start()
    pair.wait_caught_up()
    _until(lambda: _replica_state(reader)["state"] == "ok", what="replica back")
    reader.as_(gina, "GET", "/v1/me")
    assert reader.last_route.startswith("replica:")


def test_primary_down_writes_answer_503_reads_go_on_and_both_recover(
    reader_for: Callable[..., Reader], pair: StreamingPair
) -> None:
    reader = reader_for()
    hana = _new_user(reader, pair)
    time.sleep(0.3)  # past the check interval, so the next read refreshes the status
    pair.primary.stop("fast")
    try:
        started = time.monotonic()
        write = reader.as_(hana, "PATCH", "/v1/me", json={"display_name": "Hana"})
        assert write.status_code == 503 and write.headers["Retry-After"]
        assert write.mimetype == "application/problem+json"
        assert time.monotonic() - started < 10
        read = reader.as_(hana, "GET", "/v1/me")  # the replica still answers reads
        assert read.status_code == 200 and reader.last_route.startswith("replica:")
        assert reader.client.get("/readyz").status_code == 503
    finally:
        pair.primary.start()
    write = reader.as_(hana, "PATCH", "/v1/me", json={"display_name": "Hana"})
    assert write.status_code == 200
    pair.wait_caught_up()
    assert reader.as_(hana, "GET", "/v1/me").get_json()["display_name"] == "Hana"


def test_unreadable_write_marks_send_signed_in_reads_to_the_primary(
    reader_for: Callable[..., Reader], pair: StreamingPair
) -> None:
    reader = reader_for(REDIS_URL="redis://127.0.0.1:1/0")  # nothing listens there
    ivan = f"sub-{uuid.uuid4().hex[:10]}"
    assert reader.as_(ivan, "GET", "/v1/me").status_code == 200
    assert reader.last_route == "primary"
    assert _replica_state(reader)["state"] == "ok"  # the replica is fine; the marks are not


def test_the_export_reads_a_caught_up_replica_and_never_misses_a_row(
    reader_for: Callable[..., Reader], pair: StreamingPair
) -> None:
    reader = reader_for(EXPORT_SAFETY_SECONDS="0")
    built = reader.client.application.extensions["trellis"]
    for _ in range(3):
        _new_user(reader, pair)
    users = pair.primary.query("SELECT count(*) FROM users")

    first = export.run_export(built.sessions, FakeExportSink(), built.settings, reads=built.reads)
    assert first.source.startswith("replica:") and first.tables["users"] == users

    pair.pause_replay()
    try:
        for _ in range(2):
            assert reader.as_(f"sub-{uuid.uuid4().hex[:10]}", "GET", "/v1/me").status_code == 200
        # The replica has not replayed the two new users: the run reads the primary instead.
        second = export.run_export(
            built.sessions, FakeExportSink(), built.settings, reads=built.reads
        )
        assert second.source == "primary" and second.tables["users"] == 2
    finally:
        pair.resume_replay()
    pair.wait_caught_up()
