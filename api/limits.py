"""Rate limits: per verified user, else per client IP; one Redis round trip a request.

Every route gets the application-wide budget (`RATE_LIMIT_DEFAULT` for a verified user,
`RATE_LIMIT_ANONYMOUS` for anyone else, by address); a route that is cheap to abuse or
expensive to serve declares a tighter one on itself (`@endpoint(..., limit="rate_limit_uploads")`),
by the name of the setting that holds it, counted on a window of its own.

Fixed windows from the `limits` library, used directly: a hit is one `EVALSHA` (INCR, and
EXPIRE on a new window), shared by every worker through Redis. Past a limit the request is
a 429 problem+json whose Retry-After is the breached window's end (one more round trip,
on refusals only). With Redis down (or no REDIS_URL) the windows are counted in this
process's memory and requests keep being served; Redis is tried again after 1, 2, 4 ... 32
seconds.
"""

from __future__ import annotations

import logging
import math
import threading
import time

from flask import Flask, request
from limits import RateLimitItem, parse_many
from limits.storage import MemoryStorage, RedisStorage
from limits.strategies import FixedWindowRateLimiter
from werkzeug.exceptions import TooManyRequests

from api.auth import verified_identity
from api.endpoint import declared
from services.base.errors import TrellisError
from services.base.settings import Settings

log = logging.getLogger(__name__)

# Probes, the API description and static files: never limited (a load balancer polls the
# probes; a page loads several static files).
EXEMPT = frozenset({"health.healthz", "health.readyz", "openapi.openapi_json", "static"})
REDIS_TIMEOUT_SECONDS = 0.2
LONGEST_REDIS_PAUSE_SECONDS = 32
APPLICATION = "app"  # the scope of the application-wide window; routes use their endpoint


def caller_key() -> str:
    """The verified user (verified once per request, then by the route too), else the IP."""
    if request.headers.get("Authorization"):
        try:
            return "user:" + verified_identity().sub
        except TrellisError:
            pass  # the route will refuse it with 401; count it against the address
    return f"ip:{request.remote_addr}"


def tighter_limit(settings: Settings, name: str, view: str) -> str:
    """The value of the rate-limit setting a route names; an unknown name stops start-up."""
    if not name.startswith("rate_limit_") or name not in Settings.model_fields:
        raise ValueError(f"{view}: limit={name!r} names no rate-limit setting")
    return str(getattr(settings, name))


class RateLimiter:
    """Counts each request against its caller's windows; refuses past one with a 429."""

    def __init__(self, settings: Settings, routes: dict[str, tuple[RateLimitItem, ...]]) -> None:
        self.prefix = settings.rate_limit_key_prefix
        self.user_limits = tuple(parse_many(settings.rate_limit_default))
        self.anonymous_limits = tuple(parse_many(settings.rate_limit_anonymous))
        self.routes = routes  # endpoint -> its tighter limits, from the declarations
        self.memory = FixedWindowRateLimiter(MemoryStorage())
        self.redis: FixedWindowRateLimiter | None = None
        if settings.redis_url:
            storage = RedisStorage(
                settings.redis_url,
                socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
                socket_timeout=REDIS_TIMEOUT_SECONDS,
            )
            self.redis = FixedWindowRateLimiter(storage)
            self.redis_errors = storage.base_exceptions
        self._failures = 0  # Redis failures in a row
        self._next_redis_try = 0.0  # monotonic time; while ahead, count in memory
        self._lock = threading.Lock()

    def check_request(self) -> None:
        """The before-request hook: raise 429 when the caller is past one of its limits."""
        endpoint = request.endpoint
        if endpoint is None or endpoint in EXEMPT:
            return  # no route (a 404 or 405 of its own) or a probe
        caller = caller_key()
        scoped = self.user_limits if caller.startswith("user:") else self.anonymous_limits
        refused = self._hit(scoped, caller, APPLICATION)
        route = self.routes.get(endpoint)
        if refused is None and route is not None:
            refused = self._hit(route, caller, endpoint)
        if refused is not None:
            raise TooManyRequests(retry_after=refused)

    def _hit(self, items: tuple[RateLimitItem, ...], caller: str, scope: str) -> int | None:
        """None within every window of `items`, else the seconds until the breached one resets."""
        if self.redis is not None and time.monotonic() >= self._next_redis_try:
            try:
                refused = self._count(self.redis, items, caller, scope)
            except self.redis_errors as exc:
                self._redis_failed(exc)
            else:
                if self._failures:
                    self._redis_back()
                return refused
        return self._count(self.memory, items, caller, scope)

    def _count(
        self, counter: FixedWindowRateLimiter, items: tuple[RateLimitItem, ...], *key: str
    ) -> int | None:
        for item in items:
            if not counter.hit(item, self.prefix, *key):
                reset_at = counter.get_window_stats(item, self.prefix, *key).reset_time
                return max(1, math.ceil(reset_at - time.time()))
        return None

    def _redis_failed(self, exc: Exception) -> None:
        with self._lock:
            pause = min(2**self._failures, LONGEST_REDIS_PAUSE_SECONDS)
            self._failures += 1
            self._next_redis_try = time.monotonic() + pause
        log.warning(
            "rate limits counted in memory: Redis failed",
            extra={"error": repr(exc), "retry_in_s": pause},
        )

    def _redis_back(self) -> None:
        with self._lock:
            self._failures = 0
        log.info("rate limits counted in Redis again")


def register_rate_limits(app: Flask) -> RateLimiter | None:
    """Check every route's declared limit (an unknown setting name stops start-up); then,
    when limits are on, count every request before its view runs."""
    settings = app.extensions["trellis"].settings
    routes: dict[str, tuple[RateLimitItem, ...]] = {}
    for name, view in app.view_functions.items():
        spec = declared(view)
        if spec is not None and spec.limit is not None:
            routes[name] = tuple(parse_many(tighter_limit(settings, spec.limit, name)))
    if not settings.rate_limit_enabled:
        return None
    limiter = RateLimiter(settings, routes)
    app.extensions["trellis.limiter"] = limiter
    app.before_request(limiter.check_request)
    return limiter
