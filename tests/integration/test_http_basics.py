"""Health probes, problem+json for every error, request ids and access logs."""

from __future__ import annotations

import json
import logging

import pytest
from flask import Flask
from flask.testing import FlaskClient
from pythonjsonlogger.orjson import OrjsonFormatter

from api import create_app
from services.components import build_components
from tests.conftest import Tokens, make_settings
from tests.support.tokens import FakeJwksFetcher, SigningKey

DOWN_DB = "postgresql://postgres@127.0.0.1:1/nowhere"


def assert_problem(response, status: int) -> dict:  # type: ignore[no-untyped-def]
    assert response.status_code == status
    assert response.content_type == "application/problem+json"
    body = response.get_json()
    assert {"type", "title", "status", "detail"} <= body.keys()
    assert body["status"] == status
    text = response.get_data(as_text=True)
    assert "Traceback" not in text and "SELECT" not in text and "psycopg2" not in text
    return body


def test_healthz_needs_no_database_and_no_token(signing_key: SigningKey) -> None:
    app = create_app(
        components=build_components(
            make_settings(DOWN_DB), jwks_fetcher=FakeJwksFetcher(signing_key)
        )
    )
    response = app.test_client().get("/healthz")
    assert response.status_code == 200 and response.get_json() == {"status": "ok"}


def test_readyz_checks_the_database(client: FlaskClient) -> None:
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ready", "replicas": []}


@pytest.fixture
def app_without_db(signing_key: SigningKey) -> Flask:
    settings = make_settings(DOWN_DB, DB_CONNECT_TIMEOUT_SECONDS="1")
    return create_app(
        components=build_components(settings, jwks_fetcher=FakeJwksFetcher(signing_key))
    )


def test_readyz_is_503_when_the_database_is_down(app_without_db: Flask) -> None:
    response = app_without_db.test_client().get("/readyz")
    assert_problem(response, 503)
    assert response.headers["Retry-After"].isdigit()


def test_api_call_is_503_when_the_database_is_down(app_without_db: Flask, tokens: Tokens) -> None:
    response = app_without_db.test_client().get("/v1/me", headers=tokens.header())
    body = assert_problem(response, 503)
    assert body["type"] == "/problems/unavailable"
    assert response.headers["Retry-After"] == "5"


def test_unknown_route_is_404_problem(client: FlaskClient) -> None:
    assert_problem(client.get("/v2/nothing"), 404)


def test_wrong_method_is_405_with_allow(client: FlaskClient) -> None:
    response = client.put("/v1/me")  # GET, PATCH and DELETE exist; PUT does not
    assert_problem(response, 405)
    assert set(response.headers["Allow"].split(", ")) >= {"GET", "PATCH", "DELETE"}


def test_body_over_the_limit_is_413(client: FlaskClient, tokens: Tokens) -> None:
    big = json.dumps({"display_name": "x" * 2_000_000})
    assert_problem(
        client.patch("/v1/me", data=big, content_type="application/json", headers=tokens.header()),
        413,
    )


def test_unhandled_error_is_500_without_internals(
    app: Flask, caplog: pytest.LogCaptureFixture
) -> None:
    @app.get("/boom")
    def boom() -> str:
        raise RuntimeError("secret internals: SELECT * FROM users")

    app.config["TESTING"] = False  # let the error handler, not the test client, see it
    response = app.test_client().get("/boom", headers={"X-Request-Id": "req-500"})
    body = assert_problem(response, 500)
    assert "secret" not in response.get_data(as_text=True)
    assert body["request_id"] == "req-500"
    assert "secret internals" in caplog.text  # the log keeps what the client does not see


def test_request_id_is_taken_echoed_or_generated(client: FlaskClient) -> None:
    assert (
        client.get("/healthz", headers={"X-Request-Id": "abc-123"}).headers["X-Request-Id"]
        == "abc-123"
    )
    trace = "Root=1-67891233-abcdef012345678912345678"
    assert (
        client.get("/healthz", headers={"X-Amzn-Trace-Id": trace}).headers["X-Request-Id"] == trace
    )
    generated = client.get("/healthz", headers={"X-Request-Id": "bad id\twith spaces"}).headers[
        "X-Request-Id"
    ]
    assert len(generated) == 32 and " " not in generated
    assert (
        client.get("/healthz").headers["X-Request-Id"]
        != client.get("/healthz").headers["X-Request-Id"]
    )


def test_one_json_access_line_per_request(
    client: FlaskClient, tokens: Tokens, caplog: pytest.LogCaptureFixture
) -> None:
    token = tokens.token("sub-log")
    with caplog.at_level(logging.INFO, logger="trellis.access"):
        response = client.get(
            "/v1/me", headers={"Authorization": f"Bearer {token}", "X-Request-Id": "r-1"}
        )
    records = [r for r in caplog.records if r.name == "trellis.access"]
    assert len(records) == 1
    line = json.loads(OrjsonFormatter("{message}", style="{").format(records[0]))
    assert line["request_id"] == "r-1"
    assert line["method"] == "GET" and line["route"] == "/v1/me" and line["status"] == 200
    assert line["user_id"] == response.get_json()["id"]
    assert isinstance(line["latency_ms"], float)
    assert token not in caplog.text
