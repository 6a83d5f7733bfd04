"""The apps' configuration: GET /v1/config and `flask client-config` say what the settings
say, agree with each other, are cacheable, and `--amplify` is an amplify_outputs.json."""

from __future__ import annotations

import json
from typing import Any

import pytest
from flask import Flask
from jsonschema import Draft202012Validator

from services.base.settings import Settings, SettingsError, load_settings
from tests.conftest import BuildComponents, make_app, make_settings
from tests.integration.test_openapi import assert_headers_declared
from tests.support.actors import make_actor
from tests.support.tokens import CLIENT_ID, POOL_ID, SigningKey

# The apps' client first; the tokens the tests mint are for the test pool and that client.
CLIENT_IDS = f"{CLIENT_ID},dashboardclient0123456789"


@pytest.fixture
def configured(build: BuildComponents, database_url: str) -> Flask:
    settings = make_settings(
        database_url,
        COGNITO_APP_CLIENT_IDS=CLIENT_IDS,
        AWS_REGION="eu-central-1",  # S3/SNS elsewhere: the apps need the pool's region
        API_PUBLIC_URL="https://api.example.com/",
        REALTIME_PUBLIC_URL="wss://live.example.com/v1",
        UPLOAD_LIMITS='{"avatar": {"max_bytes": 1048576, "content_types": ["image/png"]}}',
    )
    return make_app(build(settings))


def expected_uploads() -> dict[str, Any]:
    documents = ["application/pdf", "image/heic", "image/jpeg", "image/png", "image/webp"]
    return {
        "avatar": {"max_bytes": 1048576, "content_types": ["image/png"]},  # UPLOAD_LIMITS
        "booking_attachment": {"max_bytes": 20 * 2**20, "content_types": documents},
        "provider_document": {"max_bytes": 20 * 2**20, "content_types": documents},
    }


def test_the_endpoint_says_what_the_settings_say(configured: Flask) -> None:
    response = configured.test_client().get("/v1/config")  # no token
    assert response.status_code == 200
    assert response.get_json() == {
        "region": "us-east-1",  # the pool's (POOL_ID), not AWS_REGION
        "user_pool_id": POOL_ID,
        "app_client_id": CLIENT_ID,
        "api_base_url": "https://api.example.com",
        "realtime_url": "wss://live.example.com/v1",
        "uploads": expected_uploads(),
        "auth": {
            "aws_region": "us-east-1",
            "user_pool_id": POOL_ID,
            "user_pool_client_id": CLIENT_ID,
        },
        "amplify_outputs_version": "1.4",
    }


def test_the_upload_limits_are_the_ones_uploads_enforce(
    configured: Flask, signing_key: SigningKey
) -> None:
    """At the limit the config announces an upload is issued; past it, or of another type,
    POST /v1/uploads refuses it naming the field."""
    client = configured.test_client()
    avatar = client.get("/v1/config").get_json()["uploads"]["avatar"]
    user = make_actor(client, signing_key, "consumer")

    def ask(content_type: str, size: int) -> Any:
        body = {"purpose": "avatar", "content_type": content_type, "size_bytes": size}
        return user.post("/v1/uploads", json=body)

    assert ask(avatar["content_types"][0], avatar["max_bytes"]).status_code == 201
    too_big = ask(avatar["content_types"][0], avatar["max_bytes"] + 1)
    assert too_big.status_code == 422
    assert [e["field"] for e in too_big.get_json()["errors"]] == ["size_bytes"]
    other_type = ask("image/jpeg", 1000)
    assert "image/jpeg" not in avatar["content_types"] and other_type.status_code == 422
    assert [e["field"] for e in other_type.get_json()["errors"]] == ["content_type"]


def test_the_base_url_defaults_to_the_requests_own(app: Flask) -> None:
    client = app.test_client()
    body = client.get("/v1/config", base_url="https://trellis.test:8443").get_json()
    assert body["api_base_url"] == "https://trellis.test:8443"
    assert body["realtime_url"] is None
    assert body["uploads"]["avatar"]["max_bytes"] == 5 * 2**20  # the default


def test_it_is_cacheable_with_an_etag(configured: Flask) -> None:
    client = configured.test_client()
    first = client.get("/v1/config")
    assert first.headers["Cache-Control"] == "public, max-age=300"
    etag = first.headers["ETag"]
    assert etag.startswith('"') and len(etag) > 10
    # With a token too: the answer is the same for everyone, so still public.
    again = client.get("/v1/config", headers={"If-None-Match": etag, "Authorization": "Bearer x"})
    assert again.status_code == 304 and again.get_data() == b""
    assert again.headers["ETag"] == etag
    stale = client.get("/v1/config", headers={"If-None-Match": '"something-else"'})
    assert stale.status_code == 200 and stale.get_json() == first.get_json()
    # Other API answers stay private.
    assert client.get("/healthz").headers.get("Cache-Control") in (None, "no-store")
    assert client.get("/v1/me").headers["Cache-Control"] == "no-store"


def test_the_route_is_documented_with_its_schema(configured: Flask) -> None:
    client = configured.test_client()
    spec = client.get("/openapi.json").get_json()
    operation = spec["paths"]["/v1/config"]["get"]
    assert operation["security"] == [] and operation["operationId"] == "get_client_config"
    ok = operation["responses"]["200"]
    assert ok["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ClientConfig"
    }
    assert {"ETag", "Cache-Control", "X-Request-Id"} <= set(ok["headers"])
    assert "304" in operation["responses"] and "429" in operation["responses"]
    assert any(p["name"] == "If-None-Match" for p in operation["parameters"])
    response = client.get("/v1/config")
    schema = {**ok["content"]["application/json"]["schema"], "components": spec["components"]}
    Draft202012Validator(schema).validate(response.get_json())
    assert_headers_declared(spec, "/v1/config", "get", response)
    assert_headers_declared(
        spec,
        "/v1/config",
        "get",
        client.get("/v1/config", headers={"If-None-Match": response.headers["ETag"]}),
    )


def test_the_command_prints_what_the_endpoint_answers(configured: Flask) -> None:
    printed = configured.test_cli_runner().invoke(args=["client-config"])
    assert printed.exit_code == 0, printed.output
    assert json.loads(printed.output) == configured.test_client().get("/v1/config").get_json()
    other = configured.test_cli_runner().invoke(
        args=["client-config", "--api-base-url", "https://staging.example.com/"]
    )
    assert json.loads(other.output)["api_base_url"] == "https://staging.example.com"


# What amplify_outputs.json (Amplify Gen 2's client-config schema, version 1.x) requires of a
# file with an `auth` section: written from its published schema, the members checked here.
AMPLIFY_OUTPUTS = {
    "type": "object",
    "additionalProperties": False,
    "required": ["version"],
    "properties": {
        "$schema": {"type": "string"},
        "version": {"type": "string", "pattern": r"^1(\.\d+)?$"},
        "analytics": {"type": "object"},
        "data": {"type": "object"},
        "geo": {"type": "object"},
        "notifications": {"type": "object"},
        "storage": {"type": "object"},
        "custom": {"type": "object"},
        "auth": {
            "type": "object",
            "required": ["aws_region", "user_pool_id", "user_pool_client_id"],
            "properties": {
                "aws_region": {"type": "string"},
                "user_pool_id": {"type": "string"},
                "user_pool_client_id": {"type": "string"},
                "identity_pool_id": {"type": "string"},
            },
        },
    },
}


def test_amplify_prints_an_amplify_outputs_file(configured: Flask) -> None:
    printed = configured.test_cli_runner().invoke(args=["client-config", "--amplify"])
    assert printed.exit_code == 0, printed.output
    outputs = json.loads(printed.output)
    Draft202012Validator(AMPLIFY_OUTPUTS).validate(outputs)
    endpoint = configured.test_client().get("/v1/config").get_json()
    assert outputs["version"] == endpoint["amplify_outputs_version"] == "1.4"
    assert outputs["auth"] == endpoint["auth"]
    assert outputs["custom"] == {
        "trellis": {
            "api_base_url": endpoint["api_base_url"],
            "realtime_url": endpoint["realtime_url"],
            "uploads": endpoint["uploads"],
        }
    }


def test_the_command_needs_a_base_url(app: Flask) -> None:
    refused = app.test_cli_runner().invoke(args=["client-config"])
    assert refused.exit_code == 2
    assert "API_PUBLIC_URL" in refused.output


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("API_PUBLIC_URL", "api.example.com"),
        ("API_PUBLIC_URL", "ftp://api.example.com"),
        ("API_PUBLIC_URL", "https://api example.com"),
        ("REALTIME_PUBLIC_URL", "tcp://live.example.com"),
    ],
)
def test_public_urls_must_be_urls(name: str, value: str) -> None:
    environ = {"APP_ENV": "test", "COGNITO_USER_POOL_ID": POOL_ID, "COGNITO_APP_CLIENT_IDS": "x"}
    with pytest.raises(SettingsError, match=name):
        load_settings({**environ, name: value})


def test_public_urls_lose_a_trailing_slash() -> None:
    settings = Settings.model_validate(
        {
            "APP_ENV": "test",
            "COGNITO_USER_POOL_ID": POOL_ID,
            "COGNITO_APP_CLIENT_IDS": "x",
            "API_PUBLIC_URL": "https://api.example.com/trellis/",
            "REALTIME_PUBLIC_URL": "wss://live.example.com/",
        }
    )
    assert settings.api_public_url == "https://api.example.com/trellis"
    assert settings.realtime_public_url == "wss://live.example.com"
