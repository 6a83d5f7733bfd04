"""Over HTTP, every forged or malformed token is a 401 problem+json that reveals nothing."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time

import pytest
from cryptography.hazmat.primitives import serialization
from flask.testing import FlaskClient

from tests.conftest import Tokens
from tests.support.tokens import KID, FakeJwksFetcher, SigningKey, b64url, claims_for, encode

HEADER = {"kid": KID, "alg": "RS256"}


def forged_tokens(key: SigningKey) -> dict[str, str]:
    now = time.time()
    good = claims_for(now=now)
    pem = key.private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    hs_head = b64url(json.dumps({"alg": "HS256", "kid": KID}).encode())
    body = b64url(json.dumps(good).encode())
    hs_sig = b64url(hmac.new(pem, f"{hs_head}.{body}".encode(), hashlib.sha256).digest())
    header, _, signature = encode(HEADER, good, key).split(".")
    escalated = b64url(json.dumps({**good, "cognito:groups": ["admins"]}).encode())
    no_exp = dict(good)
    del no_exp["exp"]
    nested = '{"alg":"RS256","kid":"' + KID + '","x":' + "[" * 2000 + "]" * 2000 + "}"
    return {
        "alg none": f"{b64url(json.dumps({'alg': 'none', 'kid': KID}).encode())}.{body}.",
        "hs256 with public key": f"{hs_head}.{body}.{hs_sig}",
        "unknown kid": encode({"kid": "nope", "alg": "RS256"}, good, key),
        "expired": encode(HEADER, claims_for(now=now - 7200), key),
        "future iat": encode(HEADER, claims_for(now=now + 3600), key),
        "wrong issuer": encode(
            HEADER,
            {**good, "iss": "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_Other"},
            key,
        ),
        "wrong client": encode(HEADER, {**good, "client_id": "someone-else"}, key),
        "token_use mismatch": encode(HEADER, {**good, "token_use": "refresh"}, key),
        "missing exp": encode(HEADER, no_exp, key),
        "tampered payload": f"{header}.{escalated}.{signature}",
        "other key": encode(HEADER, good, SigningKey(kid=KID)),
        "two segments": f"{header}.{body}",
        "garbage": "not-a-jwt",
        "oversize": encode(HEADER, {**good, "pad": "x" * 9000}, key),
        "nested header": f"{b64url(nested.encode())}.{body}.{signature}",
    }


CASES = list(forged_tokens(SigningKey()).keys())


@pytest.mark.parametrize("case", CASES)
def test_forged_token_is_401_problem_json(
    client: FlaskClient, signing_key: SigningKey, case: str, caplog: pytest.LogCaptureFixture
) -> None:
    token = forged_tokens(signing_key)[case]
    with caplog.at_level(logging.INFO):
        response = client.get("/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401
    assert response.content_type == "application/problem+json"
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="trellis", error="invalid_token"'
    problem = response.get_json()
    assert problem["status"] == 401 and problem["type"] == "/problems/invalid-token"
    assert problem["detail"] == "The access token is missing, malformed, expired or not valid here."
    assert token not in caplog.text  # never log the token itself


@pytest.mark.parametrize(
    "header", ["Basic dXNlcjpwYXNz", "Bearer", "Bearer ", "Token abc.def.ghi", "bearer"]
)
def test_malformed_authorization_header_is_401(client: FlaskClient, header: str) -> None:
    response = client.get("/v1/me", headers={"Authorization": header})
    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]


def test_missing_header_is_a_plain_challenge(client: FlaskClient) -> None:
    response = client.get("/v1/me")
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="trellis"'


def test_scheme_is_case_insensitive(client: FlaskClient, tokens: Tokens) -> None:
    response = client.get("/v1/me", headers={"Authorization": f"bearer {tokens.token()}"})
    assert response.status_code == 200


def test_token_in_query_string_is_ignored(client: FlaskClient, tokens: Tokens) -> None:
    assert client.get(f"/v1/me?access_token={tokens.token()}").status_code == 401


def test_no_signing_keys_is_503_with_retry_after(
    client: FlaskClient, jwks: FakeJwksFetcher, tokens: Tokens
) -> None:
    jwks.down = True
    response = client.get("/v1/me", headers=tokens.header())
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "10"
    assert response.content_type == "application/problem+json"


def test_jwks_outage_after_warm_up_keeps_serving(
    client: FlaskClient, jwks: FakeJwksFetcher, tokens: Tokens
) -> None:
    assert client.get("/v1/me", headers=tokens.header()).status_code == 200
    jwks.down = True
    assert client.get("/v1/me", headers=tokens.header("someone-else")).status_code == 200
    assert jwks.fetches == 1
