"""CORS (off unless configured) and the client address behind the load balancer (ProxyFix)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask

from tests.conftest import BuildComponents, make_settings
from tests.conftest import make_app as app_for

APP_ORIGIN = "https://app.example.com"


@pytest.fixture
def make_app(build: BuildComponents, database_url: str) -> Callable[..., Flask]:
    """Apps with their own settings."""
    return lambda **overrides: app_for(build(make_settings(database_url, **overrides)))


def _preflight(app: Flask, origin: str) -> Any:
    return app.test_client().options(
        "/v1/bookings",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type, idempotency-key",
        },
    )


def test_cors_is_off_by_default(make_app: Callable[..., Flask], tokens: Any) -> None:
    app = make_app()
    assert "Access-Control-Allow-Origin" not in _preflight(app, APP_ORIGIN).headers
    response = app.test_client().get("/v1/me", headers={"Origin": APP_ORIGIN, **tokens.header()})
    assert response.status_code == 200
    assert not [k for k, _ in response.headers if k.startswith("Access-Control-")]


def test_configured_origins_get_cors_and_others_do_not(
    make_app: Callable[..., Flask], tokens: Any
) -> None:
    app = make_app(CORS_ORIGINS=f"{APP_ORIGIN}, https://admin.example.com")
    preflight = _preflight(app, APP_ORIGIN)
    assert preflight.status_code == 200
    assert preflight.headers["Access-Control-Allow-Origin"] == APP_ORIGIN
    allowed = preflight.headers["Access-Control-Allow-Headers"].lower()
    assert {"authorization", "content-type", "idempotency-key"} <= {
        h.strip() for h in allowed.split(",")
    }
    assert "POST" in preflight.headers["Access-Control-Allow-Methods"]
    assert preflight.headers["Access-Control-Max-Age"] == "600"
    assert "Access-Control-Allow-Credentials" not in preflight.headers

    response = app.test_client().get("/v1/me", headers={"Origin": APP_ORIGIN, **tokens.header()})
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == APP_ORIGIN
    assert "Retry-After" in response.headers["Access-Control-Expose-Headers"]
    assert "Origin" in response.headers["Vary"]

    stranger = _preflight(app, "https://evil.example")
    assert "Access-Control-Allow-Origin" not in stranger.headers
    admin_page = app.test_client().get("/admin/", headers={"Origin": APP_ORIGIN})
    assert "Access-Control-Allow-Origin" not in admin_page.headers  # /v1/ only


def test_a_malformed_origin_is_refused_at_start_up(database_url: str) -> None:
    with pytest.raises(ValueError, match="not an origin"):
        make_settings(database_url, CORS_ORIGINS="app.example.com/path")


def _anonymous(app: Flask, forwarded_for: str | None) -> int:
    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}
    response = app.test_client().get(
        "/v1/me", headers=headers, environ_base={"REMOTE_ADDR": "127.0.0.1"}
    )
    return response.status_code


def test_behind_the_load_balancer_each_client_address_has_its_own_limit(
    make_app: Callable[..., Flask],
) -> None:
    app = make_app(PROXY_HOPS="2", RATE_LIMIT_ANONYMOUS="2/minute")
    alice, bob = "198.51.100.1, 10.0.0.9", "198.51.100.2, 10.0.0.9"
    assert [_anonymous(app, alice) for _ in range(3)] == [401, 401, 429]
    assert _anonymous(app, bob) == 401  # another client: its own budget
    # A client cannot buy a new budget by sending its own X-Forwarded-For entries.
    assert _anonymous(app, "203.0.113.50, " + alice) == 429


def test_without_trusted_proxies_forwarded_for_is_ignored(make_app: Callable[..., Flask]) -> None:
    app = make_app(RATE_LIMIT_ANONYMOUS="2/minute")
    codes = [_anonymous(app, f"198.51.100.{n}, 10.0.0.9") for n in range(3)]
    assert codes == [401, 401, 429]  # all from one socket address: one budget
