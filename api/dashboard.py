"""The admin dashboard at /admin/: a static page whose script calls the summary API, and
its Reports view the moderation API (open reports, resolved with an action and a note).

Everything it needs is served from api/static/admin/ (no CDN, no web fonts). The page holds
no secret: the admin pastes a token, which stays in the tab's sessionStorage and goes only
to this origin's API as a bearer header. A strict Content-Security-Policy forbids inline
scripts and styles and any other origin.
"""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, Response, send_from_directory

ASSETS = Path(__file__).parent / "static" / "admin"
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; font-src 'none'; object-src 'none'; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'"
)

bp = Blueprint("dashboard", __name__, url_prefix="/admin")


@bp.get("/")
def dashboard() -> Response:
    return send_from_directory(ASSETS, "index.html", max_age=0)


@bp.get("/<path:name>")
def dashboard_asset(name: str) -> Response:
    """The page's script and style sheet (404 for anything else, and for paths out of it)."""
    return send_from_directory(ASSETS, name, max_age=300)


@bp.after_request
def _secure(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["X-Frame-Options"] = "DENY"
    return response
