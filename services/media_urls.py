"""Where an app fetches an avatar: one URL per stored key, made in one place.

With `ASSETS_CDN_BASE_URL` set the URL is `{base}/{key}` on the CloudFront distribution
(infra/foundation.yml lets it read the avatars, nothing else, through origin access
control). Without it, a presigned GET of the object, valid `DOWNLOAD_URL_EXPIRY_SECONDS`.

An avatar's key is new with every upload (`users/<id>/avatar/<uuid>`), so a replaced
avatar's URL is never returned again, and a CDN never serves the old picture under the new
URL. Presigning is local HMAC work, but a search page shows 20 faces: a URL is signed once
per key and period (a fifth of its lifetime) and handed out for that period, so every URL
returned still has at least four fifths of its lifetime left, and an app's image cache sees
the same URL for the same picture for a while. Measured here: botocore signs one in ~500 µs
(10 ms a search page), a cached one costs ~1 µs; `make bench` scenario b, worker CPU per
request, no avatars / signed every time / cached: 2.75, 5.63, 3.20 ms and 1.97, 4.96, 3.59 ms
in two interleaved passes on a busy machine.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from services.aws.s3 import ObjectStore, StorageUnavailable

log = logging.getLogger(__name__)
CACHE_MAX_KEYS = 20_000  # then the cache starts over: a bound on memory, not a working set


class AvatarUrls:
    def __init__(
        self,
        store: ObjectStore,
        *,
        cdn_base_url: str | None,
        expires_in: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._cdn = cdn_base_url.rstrip("/") if cdn_base_url else None
        self._expires_in = expires_in
        self._period = max(1, expires_in // 5)
        self._clock = clock
        self._lock = threading.Lock()
        self._bucket = -1
        self._urls: dict[str, str] = {}

    def url(self, key: str | None) -> str | None:
        """The URL of the object at `key`; None for no key, and when S3's signer cannot
        sign (no credentials): a missing face is no reason to fail the page."""
        if key is None:
            return None
        if self._cdn is not None:
            return f"{self._cdn}/{key}"
        bucket = int(self._clock() // self._period)
        with self._lock:
            if bucket != self._bucket or len(self._urls) >= CACHE_MAX_KEYS:
                self._bucket, self._urls = bucket, {}
            url = self._urls.get(key)
        if url is not None:
            return url
        try:
            url = self._store.presign_get(key=key, expires_in=self._expires_in)
        except StorageUnavailable as exc:
            log.warning("avatar URL left out: S3 cannot sign (%s)", exc)
            return None
        with self._lock:
            if self._bucket == bucket:
                self._urls[key] = url
        return url
