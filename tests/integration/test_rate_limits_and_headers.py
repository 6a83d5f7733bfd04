"""Rate limits on real Redis (and without it), and the security headers."""

from __future__ import annotations

import uuid

import pytest
import redis
from flask import Flask

from api import create_app
from services.components import build_components
from tests.conftest import make_settings
from tests.support.actors import make_actor
from tests.support.fakes import FakePush, FakeStore
from tests.support.tokens import FakeJwksFetcher

REDIS = "redis://127.0.0.1:6379/0"


def limited_app(database_url: str, signing_key, redis_url: str | None, **limits: str) -> Flask:  # type: ignore[no-untyped-def]
    settings = make_settings(
        database_url,
        REDIS_URL=redis_url or "",
        RATE_LIMIT_KEY_PREFIX=f"test-{uuid.uuid4().hex[:8]}",
        **limits,
    )
    built = build_components(
        settings, jwks_fetcher=FakeJwksFetcher(signing_key), store=FakeStore(), push=FakePush()
    )
    app = create_app(components=built)
    app.config["TESTING"] = True
    return app


@pytest.fixture(scope="module")
def redis_server() -> None:
    assert redis.Redis.from_url(REDIS).ping(), "Redis must run at 127.0.0.1:6379 (see .ci/run)"


def test_per_user_limit_on_redis(database_url: str, signing_key, redis_server) -> None:  # type: ignore[no-untyped-def]
    app = limited_app(database_url, signing_key, REDIS, RATE_LIMIT_DEFAULT="3/minute")
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
    keys = redis.Redis.from_url(REDIS).keys(f"*{app.config['RATELIMIT_KEY_PREFIX']}*")
    assert keys, "the counters live in Redis"


def test_anonymous_callers_are_limited_per_address(
    database_url: str, signing_key, redis_server
) -> None:  # type: ignore[no-untyped-def]
    app = limited_app(database_url, signing_key, REDIS, RATE_LIMIT_ANONYMOUS="2/minute")
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


def test_tighter_limit_on_uploads(database_url: str, signing_key, redis_server) -> None:  # type: ignore[no-untyped-def]
    app = limited_app(database_url, signing_key, REDIS, RATE_LIMIT_UPLOADS="2/minute")
    user = make_actor(app.test_client(), signing_key, "consumer")
    body = {"purpose": "avatar", "content_type": "image/png", "size_bytes": 10}
    assert [user.post("/v1/uploads", json=body).status_code for _ in range(3)] == [201, 201, 429]
    assert user.get("/v1/me").status_code == 200  # only the upload route is tighter


def test_redis_down_falls_back_to_memory_and_keeps_serving(database_url: str, signing_key) -> None:  # type: ignore[no-untyped-def]
    app = limited_app(
        database_url, signing_key, "redis://127.0.0.1:1/0", RATE_LIMIT_DEFAULT="3/minute"
    )
    user = make_actor(app.test_client(), signing_key, "consumer")
    assert [user.get("/v1/me").status_code for _ in range(4)] == [200, 200, 200, 429]


def test_503_keeps_its_own_retry_after(signing_key) -> None:  # type: ignore[no-untyped-def]
    app = limited_app("postgresql://postgres@127.0.0.1:1/down", signing_key, None)
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
