"""Every rule of Cognito token verification, with tokens minted (and forged) here."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization

from services.accounts.auth import JwksCache, TokenVerifier
from services.base.errors import InvalidToken
from tests.support.tokens import (
    CLIENT_ID,
    ISSUER,
    KID,
    FakeJwksFetcher,
    SigningKey,
    b64url,
    claims_for,
    encode,
    token_for,
)

NOW = 1_800_000_000.0
HEADER = {"kid": KID, "alg": "RS256", "typ": "JWT"}


@pytest.fixture(scope="module")
def key() -> SigningKey:
    return SigningKey()


def verifier_for(key: SigningKey, *, token_use: str = "any", leeway: int = 60) -> TokenVerifier:
    return TokenVerifier(
        keys=JwksCache(FakeJwksFetcher(key), clock=lambda: NOW),
        issuer=ISSUER,
        client_ids=[CLIENT_ID, "another-client"],
        token_use=token_use,
        leeway_seconds=leeway,
        clock=lambda: NOW,
    )


def claims(**kwargs: Any) -> dict[str, Any]:
    return claims_for(now=NOW, **kwargs)


def rejects(verifier: TokenVerifier, token: str) -> str:
    with pytest.raises(InvalidToken) as caught:
        verifier.verify(token)
    assert caught.value.detail == InvalidToken("x").detail  # the client never learns which check
    return caught.value.reason


def test_valid_access_token_gives_sub_and_roles(key: SigningKey) -> None:
    token = token_for(key, "abc", now=NOW, groups=["consumers", "providers", "beta-testers"])
    identity = verifier_for(key).verify(token)
    assert identity.sub == "abc"
    assert identity.roles == {"consumer", "provider"}
    assert identity.token_use == "access"
    assert identity.email is None
    assert identity.expires_at == int(NOW) + 3600


def test_valid_id_token_carries_email(key: SigningKey) -> None:
    token = token_for(key, "abc", now=NOW, token_use="id", groups=["admins"], email="a@x.io")
    identity = verifier_for(key).verify(token)
    assert (identity.email, identity.roles, identity.token_use) == ("a@x.io", {"admin"}, "id")


def test_token_without_groups_has_no_roles(key: SigningKey) -> None:
    assert verifier_for(key).verify(token_for(key, now=NOW)).roles == frozenset()


def test_alg_none_is_rejected(key: SigningKey) -> None:
    header = b64url(json.dumps({"alg": "none", "kid": KID}).encode())
    unsigned = f"{header}.{b64url(json.dumps(claims()).encode())}."
    assert "segments" in rejects(verifier_for(key), unsigned)
    with_junk_signature = unsigned + "AAAA"
    assert "alg" in rejects(verifier_for(key), with_junk_signature)


def test_hs256_signed_with_the_public_key_is_rejected(key: SigningKey) -> None:
    # The classic algorithm-confusion attack: HMAC keyed with the RSA public key.
    public_pem = key.private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = b64url(json.dumps({"alg": "HS256", "kid": KID}).encode())
    payload = b64url(json.dumps(claims()).encode())
    mac = hmac.new(public_pem, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    assert "alg" in rejects(verifier_for(key), f"{header}.{payload}.{b64url(mac)}")


@pytest.mark.parametrize("alg", ["RS384", "RS512", "ES256", "PS256", "rs256", None])
def test_any_alg_but_rs256_is_rejected(key: SigningKey, alg: str | None) -> None:
    token = encode({"kid": KID, "alg": alg}, claims(), key)
    assert "alg" in rejects(verifier_for(key), token)


def test_signature_by_another_key_with_a_known_kid_is_rejected(key: SigningKey) -> None:
    impostor = SigningKey(kid=KID)
    assert rejects(verifier_for(key), token_for(impostor, now=NOW)) == "bad signature"


def test_unknown_kid_is_rejected(key: SigningKey) -> None:
    token = encode({"kid": "not-in-jwks", "alg": "RS256"}, claims(), key)
    assert "unknown kid" in rejects(verifier_for(key), token)


@pytest.mark.parametrize("kid", [None, "", 42, "k" * 257])
def test_missing_or_malformed_kid_is_rejected(key: SigningKey, kid: object) -> None:
    header: dict[str, Any] = {"alg": "RS256"}
    if kid is not None:
        header["kid"] = kid
    assert "kid" in rejects(verifier_for(key), encode(header, claims(), key))


def test_expired_token_is_rejected(key: SigningKey) -> None:
    token = token_for(key, now=NOW - 3600, lifetime=3600)  # exp == now
    assert rejects(verifier_for(key), token) == "expired"


def test_iat_in_the_future_is_rejected_beyond_the_leeway(key: SigningKey) -> None:
    assert rejects(verifier_for(key), token_for(key, now=NOW + 61)) == "issued in the future"
    assert verifier_for(key).verify(token_for(key, now=NOW + 59)).sub == "user-sub-1"
    assert (
        rejects(verifier_for(key, leeway=0), token_for(key, now=NOW + 1)) == "issued in the future"
    )


def test_nbf_in_the_future_is_rejected(key: SigningKey) -> None:
    token = encode(HEADER, claims(nbf=NOW + 600), key)
    assert rejects(verifier_for(key), token) == "not yet valid"


def test_wrong_issuer_is_rejected(key: SigningKey) -> None:
    other_pool = "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_OtherPool"
    assert (
        rejects(verifier_for(key), encode(HEADER, claims(iss=other_pool), key)) == "issuer mismatch"
    )
    no_issuer = claims()
    del no_issuer["iss"]
    assert rejects(verifier_for(key), encode(HEADER, no_issuer, key)) == "issuer mismatch"


def test_wrong_client_is_rejected(key: SigningKey) -> None:
    verifier = verifier_for(key)
    assert (
        rejects(verifier, encode(HEADER, claims(client_id="stranger"), key))
        == "client not accepted"
    )
    id_claims = claims(token_use="id", aud="stranger")
    assert rejects(verifier, encode(HEADER, id_claims, key)) == "client not accepted"
    # aud does not stand in for client_id on an access token, nor client_id for aud.
    access_with_aud = claims(aud=CLIENT_ID)
    del access_with_aud["client_id"]
    assert rejects(verifier, encode(HEADER, access_with_aud, key)) == "client not accepted"
    id_with_list_aud = claims(token_use="id", aud=[CLIENT_ID])
    assert rejects(verifier, encode(HEADER, id_with_list_aud, key)) == "client not accepted"


def test_every_configured_client_is_accepted(key: SigningKey) -> None:
    token = encode(HEADER, claims(client_id="another-client"), key)
    assert verifier_for(key).verify(token).sub == "user-sub-1"


def test_token_use_must_match_the_setting(key: SigningKey) -> None:
    access, id_token = token_for(key, now=NOW), token_for(key, now=NOW, token_use="id")
    assert "token_use" in rejects(verifier_for(key, token_use="id"), access)
    assert "token_use" in rejects(verifier_for(key, token_use="access"), id_token)
    assert verifier_for(key, token_use="id").verify(id_token).token_use == "id"
    for bad in ("refresh", None, ["access"]):
        assert "token_use" in rejects(verifier_for(key), encode(HEADER, claims(token_use=bad), key))


@pytest.mark.parametrize("claim", ["exp", "iat"])
@pytest.mark.parametrize("value", ["missing", "1800003600", True, None, [1]])
def test_exp_and_iat_are_required_and_numeric(key: SigningKey, claim: str, value: object) -> None:
    body = claims()
    if value == "missing":
        del body[claim]
    else:
        body[claim] = value
    assert claim in rejects(verifier_for(key), encode(HEADER, body, key))


def test_tampered_payload_is_rejected(key: SigningKey) -> None:
    header, _, signature = token_for(key, "victim", now=NOW).split(".")
    forged = b64url(json.dumps(claims(sub="attacker", groups=["admins"])).encode())
    assert rejects(verifier_for(key), f"{header}.{forged}.{signature}") == "bad signature"


def test_tampered_header_is_rejected(key: SigningKey) -> None:
    _, payload, signature = token_for(key, now=NOW).split(".")
    header = b64url(json.dumps({"kid": KID, "alg": "RS256", "x": 1}).encode())
    assert rejects(verifier_for(key), f"{header}.{payload}.{signature}") == "bad signature"


@pytest.mark.parametrize(
    "token",
    [
        "",
        "abc",
        "a.b",
        "a.b.c.d",
        "..",
        "a..c",
        "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiIxIn0=.c2ln",  # padding is not base64url
        "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln+/",  # base64, not base64url
        "eyJhbGciOiJSUzI1NiJ9.eyJzd WIiOiIxIn0.c2ln",
        "ey\u00e9.b.c",
    ],
)
def test_malformed_segments_are_rejected(key: SigningKey, token: str) -> None:
    rejects(verifier_for(key), token)


@pytest.mark.parametrize(
    "header",
    ['["RS256"]', "not json", '{"alg": "RS256", "kid": "', "null", "\udcff"],
)
def test_header_that_is_not_a_json_object_is_rejected(key: SigningKey, header: str) -> None:
    encoded = base64.urlsafe_b64encode(header.encode("utf-8", "surrogatepass")).rstrip(b"=")
    payload = b64url(json.dumps(claims()).encode())
    assert "header" in rejects(verifier_for(key), f"{encoded.decode()}.{payload}.c2ln")


def test_payload_that_is_not_a_json_object_is_rejected(key: SigningKey) -> None:
    for payload in ('["sub"]', "nope", "12"):
        assert "payload" in rejects(verifier_for(key), encode(HEADER, payload, key))


def test_undecodable_signature_segment_is_rejected(key: SigningKey) -> None:
    header, payload, _ = token_for(key, now=NOW).split(".")
    assert rejects(verifier_for(key), f"{header}.{payload}.A") in {
        "bad signature",
        "signature is not base64url",
    }


def test_oversize_token_is_rejected_before_parsing(key: SigningKey) -> None:
    token = encode(HEADER, claims(padding="x" * 9000), key)
    assert rejects(verifier_for(key), token) == "token too large"


def test_deeply_nested_header_is_rejected_without_crashing(key: SigningKey) -> None:
    nested = '{"alg":"RS256","kid":"' + KID + '","x":' + "[" * 2500 + "]" * 2500 + "}"
    token = f"{b64url(nested.encode())}.{b64url(json.dumps(claims()).encode())}.c2ln"
    assert len(token) < 8192
    assert "header" in rejects(verifier_for(key), token)


@pytest.mark.parametrize("groups", ["admins", [1], {"admins": True}])
def test_malformed_groups_are_rejected(key: SigningKey, groups: object) -> None:
    assert "groups" in rejects(verifier_for(key), encode(HEADER, claims(groups=groups), key))


@pytest.mark.parametrize("sub", [None, "", 5, "s" * 129])
def test_missing_or_malformed_sub_is_rejected(key: SigningKey, sub: object) -> None:
    body = claims()
    body["sub"] = sub
    assert "sub" in rejects(verifier_for(key), encode(HEADER, body, key))


def test_real_clock_accepts_a_fresh_token(key: SigningKey) -> None:
    verifier = TokenVerifier(
        keys=JwksCache(FakeJwksFetcher(key)), issuer=ISSUER, client_ids=[CLIENT_ID]
    )
    assert verifier.verify(token_for(key, now=time.time())).sub == "user-sub-1"


def test_a_verified_token_is_cached_until_it_expires(key: SigningKey) -> None:
    clock = [NOW]
    fetcher = FakeJwksFetcher(key)
    verifier = TokenVerifier(
        keys=JwksCache(fetcher, clock=lambda: clock[0]),
        issuer=ISSUER,
        client_ids=[CLIENT_ID],
        clock=lambda: clock[0],
    )
    token = token_for(key, now=NOW, lifetime=60)
    first = verifier.verify(token)
    fetcher.keys = []  # a cache hit needs neither the key nor the signature check
    assert verifier.verify(token) is first
    clock[0] = NOW + 60  # expired: the cache does not keep it alive
    with pytest.raises(InvalidToken):
        verifier.verify(token)


def test_the_cache_never_admits_a_bad_token(key: SigningKey) -> None:
    verifier = verifier_for(key)
    header, payload, signature = token_for(key, now=NOW).split(".")
    verifier.verify(f"{header}.{payload}.{signature}")
    for _ in range(2):  # failing twice: nothing about the failure was remembered as success
        assert rejects(verifier, f"{header}.{payload}.{signature[:-4]}AAAA") == "bad signature"


# Each claim the verifier or aws-jwt-verify knows must have its type when present: a token
# signed by the pool but with a number where a string belongs is refused, never coerced.
WRONGLY_TYPED = [
    ("iss", 1),
    ("sub", 3),
    ("sub", ["user-sub-1"]),
    ("aud", 123),
    ("aud", [123]),
    ("aud", ["ok", 5]),
    ("aud", {"client": CLIENT_ID}),
    ("client_id", 1),
    ("client_id", [CLIENT_ID]),
    ("token_use", 1),
    ("exp", True),
    ("exp", "1800003600"),
    ("iat", "x"),
    ("iat", False),
    ("nbf", "0"),
    ("nbf", None),
    ("auth_time", "1"),
    ("auth_time", True),
    ("scope", 1),
    ("scope", ["aws.cognito.signin.user.admin"]),
    ("jti", 2),
    ("jti", None),
    ("cognito:groups", "admins"),
    ("cognito:groups", [1]),
    ("cognito:groups", ["admins", None]),
    ("cognito:username", 7),
    ("username", ["user"]),
    ("username", 7),
    ("email", 5),
    ("email", ["a@x.io"]),
    ("origin_jti", 4),
    ("event_id", {"id": "e"}),
]


@pytest.mark.parametrize("token_use", ["access", "id"])
@pytest.mark.parametrize(("claim", "value"), WRONGLY_TYPED, ids=lambda v: repr(v)[:24])
def test_a_wrongly_typed_claim_is_refused(
    key: SigningKey, token_use: str, claim: str, value: object
) -> None:
    body = claims(token_use=token_use)
    body[claim] = value
    assert claim in rejects(verifier_for(key), encode(HEADER, body, key))


@pytest.mark.parametrize("token_use", ["access", "id"])
def test_every_known_claim_correctly_typed_is_accepted(key: SigningKey, token_use: str) -> None:
    body = claims(
        token_use=token_use,
        groups=["admins"],
        email="a@x.io",
        nbf=NOW - 10,
        auth_time=NOW - 10.5,
        scope="openid aws.cognito.signin.user.admin",
        origin_jti="origin-1",
        event_id="event-1",
        username="user-1",
        **{"cognito:username": "user-1"},
    )
    body["aud" if token_use == "id" else "client_id"] = CLIENT_ID
    if token_use == "access":
        body["aud"] = [CLIENT_ID, "https://api.example.com"]  # a list of strings is an aud too
    identity = verifier_for(key).verify(encode(HEADER, body, key))
    assert (identity.sub, identity.roles, identity.username) == ("user-sub-1", {"admin"}, "user-1")
    assert identity.email == ("a@x.io" if token_use == "id" else None)


def test_an_id_token_aud_that_is_a_list_of_strings_is_a_foreign_client(key: SigningKey) -> None:
    # The right type, but Cognito's ID token names one client: the list is not accepted as it.
    body = claims(token_use="id", aud=[CLIENT_ID, "another-client"])
    assert rejects(verifier_for(key), encode(HEADER, body, key)) == "client not accepted"
