"""Mint Cognito-shaped JWTs with our own RSA key, including deliberately broken ones."""

from __future__ import annotations

import base64
import json
import time
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from services.aws.jwks import JwksUnavailable

POOL_ID = "us-east-1_TestPool1"
ISSUER = f"https://cognito-idp.us-east-1.amazonaws.com/{POOL_ID}"
CLIENT_ID = "testclient0123456789abcdef"
KID = "test-key-1"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _int_b64(value: int) -> str:
    return b64url(value.to_bytes((value.bit_length() + 7) // 8, "big"))


@dataclass
class SigningKey:
    kid: str = KID
    private: rsa.RSAPrivateKey = field(
        default_factory=lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048)
    )

    def jwk(self) -> dict[str, Any]:
        numbers = self.private.public_key().public_numbers()
        return {
            "kty": "RSA",
            "kid": self.kid,
            "alg": "RS256",
            "use": "sig",
            "n": _int_b64(numbers.n),
            "e": _int_b64(numbers.e),
        }

    def sign(self, message: bytes) -> bytes:
        return self.private.sign(message, padding.PKCS1v15(), hashes.SHA256())


def encode(header: dict[str, Any] | str, claims: dict[str, Any] | str, key: SigningKey) -> str:
    """A JWS compact token; str header/claims are used verbatim (for malformed cases)."""
    h = header if isinstance(header, str) else json.dumps(header)
    c = claims if isinstance(claims, str) else json.dumps(claims)
    signing_input = f"{b64url(h.encode())}.{b64url(c.encode())}"
    return f"{signing_input}.{b64url(key.sign(signing_input.encode()))}"


def claims_for(
    sub: str = "user-sub-1",
    *,
    token_use: str = "access",
    groups: list[str] | None = None,
    email: str | None = None,
    now: float | None = None,
    lifetime: int = 3600,
    **extra: Any,
) -> dict[str, Any]:
    now = int(time.time() if now is None else now)
    claims: dict[str, Any] = {
        "sub": sub,
        "iss": ISSUER,
        "token_use": token_use,
        "iat": now,
        "auth_time": now,
        "exp": now + lifetime,
        "jti": f"jti-{sub}-{now}",
    }
    if token_use == "id":
        claims["aud"] = CLIENT_ID
        if email:
            claims["email"] = email
    else:
        claims["client_id"] = CLIENT_ID
        claims["scope"] = "aws.cognito.signin.user.admin"
    if groups is not None:
        claims["cognito:groups"] = groups
    claims.update(extra)
    return claims


def token_for(key: SigningKey, sub: str = "user-sub-1", **kwargs: Any) -> str:
    return encode({"kid": key.kid, "alg": "RS256", "typ": "JWT"}, claims_for(sub, **kwargs), key)


class FakeJwksFetcher:
    """Serves a key set from memory; counts fetches; can be switched off to simulate outages."""

    def __init__(self, *keys: SigningKey) -> None:
        self.keys = list(keys)
        self.fetches = 0
        self.down = False

    def fetch(self) -> list[dict[str, Any]]:
        self.fetches += 1
        if self.down:
            raise JwksUnavailable("simulated outage")
        return [key.jwk() for key in self.keys]
