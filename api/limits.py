"""Rate limits (Flask-Limiter): per verified user, else per client IP; Redis when configured.

Every route gets the application-wide limit; a route that is cheap to abuse or expensive to
serve declares a tighter one on itself (`@endpoint(..., limit="rate_limit_uploads")`), by
the name of the setting that holds it. With Redis down the limits fall back to per-process
memory and requests keep being served.
"""

from __future__ import annotations

from flask import Flask, request
from flask_limiter import Limiter

from api.auth import verified_identity
from api.context import components
from api.endpoint import declared
from services.base.errors import TrellisError
from services.base.settings import Settings

EXEMPT = ("health.healthz", "health.readyz", "openapi.openapi_json")


def caller_key() -> str:
    """The verified user (verified once per request, then by the route too), else the IP."""
    if request.headers.get("Authorization"):
        try:
            return "user:" + verified_identity().sub
        except TrellisError:
            pass  # the route will refuse it with 401; count it against the address
    return f"ip:{request.remote_addr}"


def _application_limit() -> str:
    settings = components().settings
    if caller_key().startswith("user:"):
        return settings.rate_limit_default
    return settings.rate_limit_anonymous


def tighter_limit(settings: Settings, name: str, view: str) -> str:
    """The value of the rate-limit setting a route names; an unknown name stops start-up."""
    if not name.startswith("rate_limit_") or name not in Settings.model_fields:
        raise ValueError(f"{view}: limit={name!r} names no rate-limit setting")
    return getattr(settings, name)


def register_rate_limits(app: Flask) -> Limiter:
    settings = app.extensions["trellis"].settings
    app.config.update(
        RATELIMIT_ENABLED=settings.rate_limit_enabled,
        RATELIMIT_STORAGE_URI=settings.redis_url or "memory://",
        RATELIMIT_STORAGE_OPTIONS={"socket_connect_timeout": 0.2, "socket_timeout": 0.2},
        RATELIMIT_IN_MEMORY_FALLBACK_ENABLED=True,
        RATELIMIT_SWALLOW_ERRORS=True,
        # No X-RateLimit-* headers: reading the window back for them costs a second Redis
        # round trip on every request (the profile in BENCHMARKS.md). The 429 handler in
        # api/errors.py sets Retry-After itself.
        RATELIMIT_HEADERS_ENABLED=False,
        RATELIMIT_KEY_PREFIX=settings.rate_limit_key_prefix,
    )
    limiter = Limiter(caller_key, application_limits=[_application_limit])
    limiter.init_app(app)
    # The decorated views hold the limiter only weakly; disabled, init_app registers no
    # hook that would keep it alive, and a limited route would then fail with a 500.
    app.extensions["trellis.limiter"] = limiter
    for name in EXEMPT:
        if name in app.view_functions:
            app.view_functions[name] = limiter.exempt(app.view_functions[name])
    for name, view in list(app.view_functions.items()):
        spec = declared(view)
        if spec is not None and spec.limit is not None:
            limit = tighter_limit(settings, spec.limit, name)
            app.view_functions[name] = limiter.limit(limit)(view)
    return limiter
