"""Fetching a Cognito user pool's JSON Web Key Set over HTTPS."""

from __future__ import annotations

from typing import Any, Protocol

import orjson
import urllib3

MAX_JWKS_BYTES = 64 * 1024


class JwksUnavailable(Exception):
    """The JWKS could not be fetched or was not a key set."""


class JwksFetcher(Protocol):
    def fetch(self) -> list[dict[str, Any]]:
        """Return the `keys` array of the JWKS, or raise JwksUnavailable."""
        ...


class HttpJwksFetcher:
    """Fetches the JWKS from one URL with a short timeout and a size cap."""

    def __init__(self, url: str, *, timeout_seconds: float) -> None:
        self.url = url
        self._http = urllib3.PoolManager(
            timeout=urllib3.Timeout(total=timeout_seconds),
            retries=urllib3.Retry(total=1, backoff_factor=0.1, redirect=0),
        )

    def fetch(self) -> list[dict[str, Any]]:
        try:
            response = self._http.request("GET", self.url, preload_content=False)
            try:
                body = response.read(MAX_JWKS_BYTES + 1, decode_content=True)
            finally:
                response.release_conn()
        except urllib3.exceptions.HTTPError as exc:
            raise JwksUnavailable(f"GET {self.url} failed: {exc}") from exc
        if response.status != 200:
            raise JwksUnavailable(f"GET {self.url} answered {response.status}")
        if len(body) > MAX_JWKS_BYTES:
            raise JwksUnavailable(f"JWKS at {self.url} is larger than {MAX_JWKS_BYTES} bytes")
        try:
            document = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise JwksUnavailable(f"JWKS at {self.url} is not JSON") from exc
        keys = document.get("keys") if isinstance(document, dict) else None
        if not isinstance(keys, list):
            raise JwksUnavailable(f"JWKS at {self.url} has no keys array")
        return [key for key in keys if isinstance(key, dict)]
