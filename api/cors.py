"""CORS for browser clients of /v1/ (Flask-Cors); off unless CORS_ORIGINS names origins.

Mobile apps need none of it; a web front-end on another origin does. Tokens travel in the
Authorization header, never in cookies, so credentials are not allowed.
"""

from __future__ import annotations

from flask import Flask
from flask_cors import CORS

from services.base.settings import Settings

ALLOWED_HEADERS = ["Authorization", "Content-Type", "Idempotency-Key", "X-Request-Id"]
EXPOSED_HEADERS = ["Retry-After", "X-Request-Id", "Location"]
PREFLIGHT_CACHE_SECONDS = 600


def register_cors(app: Flask, settings: Settings) -> None:
    if not settings.cors_origins:
        return
    origins = "*" if "*" in settings.cors_origins else list(settings.cors_origins)
    CORS(
        app,
        resources={r"/v1/*": {"origins": origins}},
        methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"],
        allow_headers=ALLOWED_HEADERS,
        expose_headers=EXPOSED_HEADERS,
        supports_credentials=False,
        max_age=PREFLIGHT_CACHE_SECONDS,
        vary_header=True,
    )
