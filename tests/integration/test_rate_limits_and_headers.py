"""Rate limits on real Redis (and without it), and the security headers."""

from __future__ import annotations

import gc
import uuid
from collections.abc import Callable

import pytest
import redis
from flask import Flask

from tests.conftest import BuildComponents, make_app, make_settings
from tests.support.actors import make_actor

REDIS = "redis://127.0.0.1:6379/0"


@pytest.fixture
def limited_app(build: BuildComponents, database_url: str) -> Callable[..., Flask]:
    """`limited_app(redis_url, RATE_LIMIT_...="2/minute")`: an app with its own limits."""

    def make(redis_url: str | None, **limits: str) -> Flask:
        settings = make_settings(
            database_url,
            REDIS_URL=redis_url or "",
            RATE_LIMIT_KEY_PREFIX=f"test-{uuid.uuid4().hex[:8]}",
            **limits,
        )
        return make_app(build(settings))

    return make


@pytest.fixture(scope="module")
def redis_server() -> None:
    assert redis.Redis.from_url(REDIS).ping(), "Redis must run at 127.0.0.1:6379 (see .ci/run)"


def test_per_user_limit_on_redis(limited_app, signing_key, redis_server) -> None:  # type: ignore[no-untyped-def]
    app = limited_app(REDIS, RATE_LIMIT_DEFAULT="3/minute")
    alice = make_actor(app.test_client(), signing_key, "consumer")
    bob = make_actor(app.test_client(), signing_key, "consumer")
    statuses = [alice.get("/v1/me").status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    refused = alice.get("/v1/me")
    assert refused.content_type == "application/problem+json"
    assert refused.get_json()["type"] == "/problems/rate-limited"
    assert 1 <= int(refused.headers["Retry-After"]) <= 61  # the window end, rounded up
    assert bob.get("/v1/me").status_code == 200  # per user, not global
    assert app.test_client().get("/healthz").status_code == 200  # probes are exempt
    keys = redis.Redis.from_url(REDIS).keys(
        f"*{app.extensions['trellis'].settings.rate_limit_key_prefix}*"
    )
    assert keys, "the counters live in Redis"


def test_anonymous_callers_are_limited_per_address(limited_app, signing_key, redis_server) -> None:  # type: ignore[no-untyped-def]
    app = limited_app(REDIS, RATE_LIMIT_ANONYMOUS="2/minute")
    client = app.test_client()
    here = {"REMOTE_ADDR": "203.0.113.7"}
    there = {"REMOTE_ADDR": "198.51.100.9"}
    assert [client.get("/v1/me", environ_base=here).status_code for _ in range(3)] == [
        401,
        401,
        429,
    ]
    assert client.get("/v1/me", environ_base=there).status_code == 401
    # A garbage token is anonymous too: it cannot buy a fresh budget.
    garbage = {"Authorization": "Bearer x.y.z"}
    assert client.get("/v1/me", headers=garbage, environ_base=here).status_code == 429


def test_static_files_are_not_counted(limited_app, redis_server) -> None:  # type: ignore[no-untyped-def]
    """A page loads several static files: they spend none of the address's budget."""
    app = limited_app(REDIS, RATE_LIMIT_ANONYMOUS="2/minute")
    client = app.test_client()
    assert [client.get("/static/admin/dashboard.css").status_code for _ in range(4)] == [200] * 4
    assert [client.get("/v1/me").status_code for _ in range(3)] == [401, 401, 429]


TIGHTER_ROUTES = {
    "create upload": ("RATE_LIMIT_UPLOADS", "/v1/uploads", {"purpose": "avatar"}),
    "complete upload": ("RATE_LIMIT_UPLOADS", f"/v1/uploads/{uuid.uuid4()}/complete", None),
    "register device": ("RATE_LIMIT_NOTIFICATIONS", "/v1/devices", {"platform": "ios"}),
    "send notification": ("RATE_LIMIT_NOTIFICATIONS", "/v1/notifications", {"title": "t"}),
}


@pytest.mark.parametrize("route", TIGHTER_ROUTES)
def test_each_tighter_limit_holds_on_its_route(  # type: ignore[no-untyped-def]
    limited_app, signing_key, redis_server, route: str
) -> None:
    """The third call within the minute is refused whatever the first two answered (the
    limit counts before the route runs); the caller's other routes keep the default."""
    setting, path, body = TIGHTER_ROUTES[route]
    app = limited_app(REDIS, **{setting: "2/minute"})
    user = make_actor(app.test_client(), signing_key, "consumer", "provider")
    statuses = [user.post(path, json=body).status_code for _ in range(3)]
    assert 429 not in statuses[:2] and statuses[2] == 429, statuses
    refused = user.post(path, json=body)
    assert refused.mimetype == "application/problem+json" and "Retry-After" in refused.headers
    assert user.get("/v1/me").status_code == 200  # only this route is tighter


def test_limits_switched_off_leave_every_route_working(limited_app, signing_key) -> None:  # type: ignore[no-untyped-def]
    app = limited_app(REDIS, RATE_LIMIT_ENABLED="false", RATE_LIMIT_UPLOADS="1/minute")
    gc.collect()  # the limiter must outlive a collection: its views hold it weakly
    user = make_actor(app.test_client(), signing_key, "consumer")
    body = {"purpose": "avatar", "content_type": "image/png", "size_bytes": 10}
    assert [user.post("/v1/uploads", json=body).status_code for _ in range(3)] == [201] * 3


def test_routes_share_no_tighter_budget(limited_app, signing_key, redis_server) -> None:  # type: ignore[no-untyped-def]
    app = limited_app(REDIS, RATE_LIMIT_UPLOADS="2/minute")
    user = make_actor(app.test_client(), signing_key, "consumer")
    body = {"purpose": "avatar", "content_type": "image/png", "size_bytes": 10}
    assert [user.post("/v1/uploads", json=body).status_code for _ in range(3)] == [201, 201, 429]
    complete = f"/v1/uploads/{uuid.uuid4()}/complete"
    assert user.post(complete).status_code == 404  # its own counter, not the create route's


def test_redis_down_falls_back_to_memory_and_keeps_serving(limited_app, signing_key) -> None:  # type: ignore[no-untyped-def]
    app = limited_app("redis://127.0.0.1:1/0", RATE_LIMIT_DEFAULT="3/minute")
    user = make_actor(app.test_client(), signing_key, "consumer")
    assert [user.get("/v1/me").status_code for _ in range(4)] == [200, 200, 200, 429]


def test_503_keeps_its_own_retry_after(build) -> None:  # type: ignore[no-untyped-def]
    app = make_app(build(make_settings("postgresql://postgres@127.0.0.1:1/down")))
    response = app.test_client().get("/readyz")
    assert response.status_code == 503 and response.headers["Retry-After"] == "5"


def test_security_headers(client, tokens) -> None:  # type: ignore[no-untyped-def]
    api = client.get("/v1/me", headers=tokens.header())
    assert api.headers["Cache-Control"] == "no-store"
    assert api.headers["X-Content-Type-Options"] == "nosniff"
    assert api.headers["Strict-Transport-Security"].startswith("max-age=")
    assert api.headers["Content-Security-Policy"].startswith("default-src 'none'")
    problem = client.get("/v1/me")
    assert problem.headers["Cache-Control"] == "no-store"
    docs = client.get("/docs/")
    assert "frame-ancestors 'none'" in docs.headers["Content-Security-Policy"]
    assert "default-src 'self'" in docs.headers["Content-Security-Policy"]
