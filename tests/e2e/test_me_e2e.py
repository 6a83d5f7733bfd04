"""gunicorn + moto_server + PostgreSQL, real Cognito-issued tokens, a real HTTP client."""

from __future__ import annotations

import base64
import json

import pytest
import requests
from sqlalchemy import create_engine, select

from devstack.cognito import add_user, cognito_client, provision, sign_in
from models import User
from tests.e2e.conftest import Stack

pytestmark = pytest.mark.e2e


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_consumer_reads_me_with_a_real_access_token(stack: Stack) -> None:
    token = sign_in(stack.pool, "consumer")["access"]
    response = requests.get(f"{stack.base_url}/v1/me", headers=bearer(token), timeout=10)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["roles"] == ["consumer"]
    engine = create_engine(stack.database_url.replace("postgresql://", "postgresql+psycopg2://"))
    with engine.connect() as connection:
        row = connection.execute(select(User.id, User.roles).where(User.id == body["id"])).one()
    engine.dispose()
    assert row.roles == ["consumer"]


def test_id_tokens_work_too_and_roles_come_from_groups(stack: Stack) -> None:
    for username, role in (("provider", "provider"), ("admin", "admin")):
        token = sign_in(stack.pool, username)["id"]
        response = requests.get(f"{stack.base_url}/v1/me", headers=bearer(token), timeout=10)
        assert response.status_code == 200, response.text
        assert response.json()["roles"] == [role]


def test_profile_edit_round_trip(stack: Stack) -> None:
    headers = bearer(sign_in(stack.pool, "consumer")["access"])
    patched = requests.patch(
        f"{stack.base_url}/v1/me", json={"display_name": "Casey"}, headers=headers, timeout=10
    )
    assert patched.status_code == 200 and patched.json()["display_name"] == "Casey"
    again = requests.get(f"{stack.base_url}/v1/me", headers=headers, timeout=10)
    assert again.json()["display_name"] == "Casey"


def test_tampered_cognito_token_is_401(stack: Stack) -> None:
    header, payload, signature = sign_in(stack.pool, "consumer")["access"].split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["cognito:groups"] = ["admins"]
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    response = requests.get(
        f"{stack.base_url}/v1/me", headers=bearer(f"{header}.{forged}.{signature}"), timeout=10
    )
    assert response.status_code == 401
    assert response.headers["Content-Type"] == "application/problem+json"
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="trellis", error="invalid_token"'


def test_token_from_another_pool_with_the_same_key_is_401(stack: Stack) -> None:
    # moto signs every pool with one key: only the issuer check tells these tokens apart.
    other = provision(stack.pool.endpoint_url)
    token = sign_in(other, "consumer")["access"]
    response = requests.get(f"{stack.base_url}/v1/me", headers=bearer(token), timeout=10)
    assert response.status_code == 401


def test_token_for_another_app_client_is_401(stack: Stack) -> None:
    client = cognito_client(stack.pool.endpoint_url, stack.pool.region)
    other_client = client.create_user_pool_client(
        UserPoolId=stack.pool.pool_id,
        ClientName="not-configured",
        ExplicitAuthFlows=["ALLOW_ADMIN_USER_PASSWORD_AUTH"],
    )["UserPoolClient"]["ClientId"]
    add_user(stack.pool, "elsewhere", email="e@demo.trellis.local", groups=["consumers"])
    result = client.admin_initiate_auth(
        UserPoolId=stack.pool.pool_id,
        ClientId=other_client,
        AuthFlow="ADMIN_USER_PASSWORD_AUTH",
        AuthParameters={"USERNAME": "elsewhere", "PASSWORD": "Trellis-demo-1!"},
    )["AuthenticationResult"]
    for token in (result["AccessToken"], result["IdToken"]):
        response = requests.get(f"{stack.base_url}/v1/me", headers=bearer(token), timeout=10)
        assert response.status_code == 401


def test_chunked_body_over_the_limit_is_413(stack: Stack) -> None:
    headers = bearer(sign_in(stack.pool, "consumer")["access"])

    def body():  # a generator makes requests send Transfer-Encoding: chunked, no Content-Length
        yield b'{"display_name": "'
        for _ in range(120):
            yield b"x" * 10_000
        yield b'"}'

    response = requests.patch(
        f"{stack.base_url}/v1/me",
        data=body(),
        headers={**headers, "Content-Type": "application/json"},
        timeout=10,
    )
    assert response.status_code == 413
    assert response.headers["Content-Type"] == "application/problem+json"


def test_errors_and_request_ids_over_the_wire(stack: Stack) -> None:
    response = requests.get(
        f"{stack.base_url}/nowhere", headers={"X-Request-Id": "e2e-1"}, timeout=10
    )
    assert response.status_code == 404
    assert response.headers["X-Request-Id"] == "e2e-1"
    assert response.json()["request_id"] == "e2e-1"
    assert requests.get(f"{stack.base_url}/readyz", timeout=10).json() == {
        "status": "ready",
        "replicas": [],
    }


def test_access_log_is_json_with_the_request_id_and_no_token(stack: Stack) -> None:
    token = sign_in(stack.pool, "consumer")["access"]
    requests.get(
        f"{stack.base_url}/v1/me", headers={**bearer(token), "X-Request-Id": "log-me"}, timeout=10
    )
    lines = (stack.logs / "gunicorn.log").read_text().splitlines()
    records = [json.loads(line) for line in lines if line.startswith("{")]
    mine = [r for r in records if r.get("request_id") == "log-me"]
    assert len(mine) == 1
    assert mine[0]["route"] == "/v1/me" and mine[0]["status"] == 200 and mine[0]["user_id"]
    assert token not in "\n".join(lines)
