"""Security headers on every response."""

from __future__ import annotations

from flask import Flask, Response, request

API_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'"
# Swagger UI's page (from flask-swagger-ui) configures itself in an inline script.
DOCS_CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
    "form-action 'none'"
)


def _secure(response: Response) -> Response:
    headers = response.headers
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("Strict-Transport-Security", "max-age=63072000; includeSubDomains")
    headers.setdefault("Referrer-Policy", "no-referrer")
    headers.setdefault("X-Frame-Options", "DENY")
    if "Content-Security-Policy" not in headers:
        docs = request.path.startswith("/docs")
        headers["Content-Security-Policy"] = DOCS_CSP if docs else API_CSP
    # Anything answered to a signed-in caller, and every API answer, is private and live;
    # but for an answer its route made public on purpose (GET /v1/config, the same for all).
    public = headers.get("Cache-Control", "").startswith("public")
    if not public and ("Authorization" in request.headers or request.path.startswith("/v1/")):
        headers["Cache-Control"] = "no-store"
    return response


def register_security_headers(app: Flask) -> None:
    app.after_request(_secure)
