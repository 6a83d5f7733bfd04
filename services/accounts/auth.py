"""Cognito JWT verification, to the standard of awslabs/aws-jwt-verify.

python-jose checks the RS256 signature; everything else a hostile token can try (size,
shape, algorithm, key id, claim types, issuer, client, token use, times) is checked here, and
every failure becomes InvalidToken so that no exception from hostile input escapes as a 500.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import math
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import orjson
from jose import jwk
from jose.backends.base import Key

from services.aws.jwks import JwksFetcher, JwksUnavailable
from services.base.errors import InvalidToken, Unavailable

log = logging.getLogger(__name__)

MAX_TOKEN_BYTES = 8 * 1024
REFETCH_PENALTY_SECONDS = 10.0
GROUP_ROLES = {"consumers": "consumer", "providers": "provider", "admins": "admin"}

_SEGMENT = re.compile(r"^[A-Za-z0-9_-]+$")


def _is_string(value: object) -> bool:
    return isinstance(value, str)


def _is_strings(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


def _is_string_or_strings(value: object) -> bool:
    return isinstance(value, str) or _is_strings(value)


def _is_number(value: object) -> bool:  # bool is an int in Python, never a time in a token
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


_STRING = ("a string", _is_string)
_NUMBER = ("a number", _is_number)
# Every claim Trellis or aws-jwt-verify knows, and the type it must have when present; a
# claim of the wrong type refuses the token (never coerced, never silently ignored).
CLAIM_TYPES: dict[str, tuple[str, Callable[[object], bool]]] = {
    "iss": _STRING,
    "sub": _STRING,
    "aud": ("a string or a list of strings", _is_string_or_strings),
    "client_id": _STRING,
    "token_use": _STRING,
    "exp": _NUMBER,
    "iat": _NUMBER,
    "nbf": _NUMBER,
    "auth_time": _NUMBER,
    "scope": _STRING,
    "jti": _STRING,
    "origin_jti": _STRING,
    "event_id": _STRING,
    "cognito:groups": ("a list of strings", _is_strings),
    "cognito:username": _STRING,
    "username": _STRING,
    "email": _STRING,
}


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a verified token says the caller is."""

    sub: str
    roles: frozenset[str]
    email: str | None
    token_use: str
    expires_at: int
    issued_at: float = 0.0
    username: str | None = None
    # When the user last signed in (`auth_time`, epoch seconds); a refreshed token keeps
    # it. None when the token does not say: a recent sign-in cannot then be shown.
    auth_time: float | None = None


def roles_from_groups(groups: Iterable[str]) -> frozenset[str]:
    """Map `cognito:groups` to Trellis roles; unknown groups grant nothing."""
    return frozenset(GROUP_ROLES[group] for group in groups if group in GROUP_ROLES)


class JwksCache:
    """kid → constructed public key, refetched at most once per penalty window.

    Keys are constructed once (about 2.5x cheaper than passing the JWK dict per call).
    An unknown kid triggers one refetch, then none for `penalty_seconds`, so a flood of
    tokens with random kids cannot turn into a flood of requests to Cognito. A failed
    refetch keeps the keys already cached.
    """

    def __init__(
        self,
        fetcher: JwksFetcher,
        *,
        penalty_seconds: float = REFETCH_PENALTY_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fetcher = fetcher
        self._penalty = penalty_seconds
        self._clock = clock
        self._keys: dict[str, Key] = {}
        self._last_fetch: float | None = None
        self._lock = threading.Lock()

    def key_for(self, kid: str) -> Key:
        """The key for `kid`; InvalidToken if unknown, Unavailable if no keys can be had."""
        key = self._keys.get(kid)
        if key is not None:
            return key
        with self._lock:
            key = self._keys.get(kid)
            if key is None and self._may_fetch():
                self._refresh()
                key = self._keys.get(kid)
        if key is not None:
            return key
        if not self._keys:
            raise Unavailable("Token signing keys cannot be fetched right now.", retry_after=10)
        raise InvalidToken(f"unknown kid {kid[:64]!r}")

    def _may_fetch(self) -> bool:
        return self._last_fetch is None or self._clock() - self._last_fetch >= self._penalty

    def _refresh(self) -> None:
        self._last_fetch = self._clock()
        try:
            documents = self._fetcher.fetch()
        except JwksUnavailable as exc:
            log.warning("jwks fetch failed", extra={"error": str(exc)})
            return
        keys = dict(self._keys)
        for document in documents:
            kid, key = _construct(document)
            if key is not None:
                keys[kid] = key
        self._keys = keys


def _construct(document: dict[str, Any]) -> tuple[str, Key | None]:
    kid = document.get("kid")
    usable = (
        isinstance(kid, str)
        and document.get("kty") == "RSA"
        and document.get("use", "sig") == "sig"
        and document.get("alg", "RS256") == "RS256"
    )
    if not usable:
        return "", None
    try:
        return kid, jwk.construct(document, "RS256")
    except Exception as exc:  # jose raises several types on a malformed key
        log.warning("jwks key skipped", extra={"kid": kid, "error": str(exc)})
        return kid, None


class VerifiedTokens:
    """sha256(token) -> Identity, least recently used first out, thread-safe."""

    def __init__(self, size: int = 10_000) -> None:
        self._size = size
        self._entries: OrderedDict[bytes, Identity] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, digest: bytes) -> Identity | None:
        with self._lock:
            identity = self._entries.get(digest)
            if identity is not None:
                self._entries.move_to_end(digest)
            return identity

    def put(self, digest: bytes, identity: Identity) -> None:
        with self._lock:
            self._entries[digest] = identity
            self._entries.move_to_end(digest)
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)


class TokenVerifier:
    """Verifies Cognito ID and access tokens for one user pool and its app clients."""

    def __init__(
        self,
        *,
        keys: JwksCache,
        issuer: str,
        client_ids: Iterable[str],
        token_use: str = "any",
        leeway_seconds: int = 60,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._keys = keys
        self._issuer = issuer
        self._client_ids = frozenset(client_ids)
        self._token_uses = {"access", "id"} if token_use == "any" else {token_use}
        self._leeway = leeway_seconds
        self._clock = clock
        self._verified = VerifiedTokens()

    def verify(self, token: str) -> Identity:
        """Return the caller's Identity, or raise InvalidToken (or Unavailable: no keys).

        A token verified before is answered from a bounded cache until it expires: an app
        sends the same token for up to an hour, and RS256 costs ~100x a dictionary lookup.
        """
        if len(token) > MAX_TOKEN_BYTES:
            raise InvalidToken("token too large")
        digest = hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()
        identity = self._verified.get(digest)
        if identity is not None and identity.expires_at > self._clock():
            return identity
        identity = self._verify(token)
        self._verified.put(digest, identity)
        return identity

    def _verify(self, token: str) -> Identity:
        header_b64, payload_b64, signature_b64 = _split(token)
        header = _decode_json(header_b64, "header")
        if header.get("alg") != "RS256":
            raise InvalidToken(f"alg {str(header.get('alg'))[:16]!r} is not RS256")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid or len(kid) > 256:
            raise InvalidToken("kid missing or malformed")
        key = self._keys.key_for(kid)
        signing_input = f"{header_b64}.{payload_b64}".encode("ascii")
        if not _signature_ok(key, signing_input, _b64decode(signature_b64, "signature")):
            raise InvalidToken("bad signature")
        return self._identity(_decode_json(payload_b64, "payload"))

    def _identity(self, claims: dict[str, Any]) -> Identity:
        _check_claim_types(claims)
        if claims.get("iss") != self._issuer:
            raise InvalidToken("issuer mismatch")
        token_use = claims.get("token_use")
        if token_use not in self._token_uses:
            raise InvalidToken(f"token_use {str(token_use)[:16]!r} not accepted")
        client = claims.get("aud") if token_use == "id" else claims.get("client_id")
        if not isinstance(client, str) or client not in self._client_ids:
            raise InvalidToken("client not accepted")
        exp, iat = _number(claims, "exp"), _number(claims, "iat")
        now = self._clock()
        if exp <= now:
            raise InvalidToken("expired")
        if iat > now + self._leeway:
            raise InvalidToken("issued in the future")
        nbf = claims.get("nbf")
        if nbf is not None and _number(claims, "nbf") > now + self._leeway:
            raise InvalidToken("not yet valid")
        sub = claims.get("sub")
        if sub is None or not 0 < len(sub) <= 128:
            raise InvalidToken("sub missing or malformed")
        username = claims.get("cognito:username" if token_use == "id" else "username")
        return Identity(
            sub=sub,
            roles=roles_from_groups(claims.get("cognito:groups", ())),
            email=claims.get("email") if token_use == "id" else None,
            token_use=token_use,
            expires_at=int(exp),
            issued_at=iat,
            username=username if username is not None and len(username) <= 128 else None,
            auth_time=_number(claims, "auth_time") if "auth_time" in claims else None,
        )


def _split(token: str) -> tuple[str, str, str]:
    if len(token) > MAX_TOKEN_BYTES:
        raise InvalidToken("token too large")
    parts = token.split(".")
    if len(parts) != 3 or not all(_SEGMENT.match(part) for part in parts):
        raise InvalidToken("not three base64url segments")
    return parts[0], parts[1], parts[2]


def _b64decode(segment: str, what: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    except (binascii.Error, ValueError) as exc:
        raise InvalidToken(f"{what} is not base64url") from exc


def _decode_json(segment: str, what: str) -> dict[str, Any]:
    try:
        value = orjson.loads(_b64decode(segment, what))
    except (orjson.JSONDecodeError, RecursionError) as exc:
        raise InvalidToken(f"{what} is not JSON") from exc
    if not isinstance(value, dict):
        raise InvalidToken(f"{what} is not a JSON object")
    return value


def _check_claim_types(claims: dict[str, Any]) -> None:
    for name, (expected, has_type) in CLAIM_TYPES.items():
        if name in claims and not has_type(claims[name]):
            raise InvalidToken(f"{name} is not {expected}")


def _number(claims: dict[str, Any], name: str) -> float:
    value = claims.get(name)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidToken(f"{name} missing or not numeric")
    number = float(value)
    if not math.isfinite(number):
        raise InvalidToken(f"{name} not finite")
    return number


def _signature_ok(key: Key, signing_input: bytes, signature: bytes) -> bool:
    try:
        return bool(key.verify(signing_input, signature))
    except Exception:  # a hostile signature must never surface as a 500
        return False
