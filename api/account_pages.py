"""The public account-deletion page, /account/delete, for people rather than apps.

Google Play requires a web page where a user can ask for their account's deletion. GET
explains how to delete the account in the app (the steps, the grace period, what goes and
what the other party keeps) and shows a form; its POST records a request for operators
(services/accounts/deletion_requests.py, listed at GET /v1/admin/deletion-requests).

The page is HTML rendered from api/templates/account/ with Jinja's autoescaping, so the
app's name (APP_NAME) and whatever a visitor typed are escaped. It runs no script at all;
its Content-Security-Policy is the dashboard's, without scripts or connections and with the
form allowed to post to this origin. Every answer on these paths, errors included (422,
413, 429, 503), is an HTML page, never problem+json: a person reads it.

The POST answers the same page with the same status whatever the address (registered or
not, asked before or not) and never reads users, so it cannot be used to find accounts.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from flask import Blueprint, Response, render_template, request, send_from_directory
from pydantic import ValidationError
from werkzeug.exceptions import HTTPException

from api.context import components, unit
from api.endpoint import endpoint
from api.errors import DATABASE_ERRORS, DATABASE_RETRY_AFTER_SECONDS, problem_for
from api.schemas.deletion_requests import (
    EMAIL_MAX_LENGTH,
    NOTE_MAX_LENGTH,
    DeletionRequestForm,
)
from api.validation import read_body
from services.accounts import deletion_requests

log = logging.getLogger("trellis.account_pages")

ASSETS = Path(__file__).parent / "static" / "account"
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; style-src 'self'; img-src 'self'; font-src 'none'; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
_FIELD_LABELS = {"email": "Email address", "note": "Note"}

bp = Blueprint("account_pages", __name__, url_prefix="/account", template_folder="templates")


@bp.get("/delete")
def deletion_page() -> Response:
    return _page(200)


@bp.post("/delete")
@endpoint(
    summary="Ask for an account's deletion (the web form)",
    tags=("account",),
    auth=False,
    writes=True,
    limit="rate_limit_deletion_requests",
    documented=False,  # an HTML page for people, not an operation of the JSON API
)
def request_deletion() -> Response:
    """No CSRF token: there is no session, cookie or other ambient authority here. A forged
    submission can only file a request that anyone may file, which an operator confirms
    with the address's owner before acting; the per-IP rate limit bounds the volume."""
    read_body()  # 413 past MAX_BODY_BYTES, chunked bodies included, as on every route
    values = {name: request.form.get(name, "") for name in _FIELD_LABELS}
    try:
        form = DeletionRequestForm.model_validate(values)
    except ValidationError as exc:
        return _page(422, values=values, errors=_errors(exc))
    deletion_requests.record(unit().session, email=form.email, note=form.note)
    return _page(200, sent=True)


@bp.get("/static/<path:name>")
def asset(name: str) -> Response:
    """The page's style sheet and icon (404 for anything else, and for paths out of it)."""
    return send_from_directory(ASSETS, name, max_age=300)


def _page(status: int, **context: Any) -> Response:
    settings = components().settings
    html = render_template(
        "account/delete.html",
        app_name=settings.app_name,
        grace_hours=settings.account_deletion_grace_hours,
        auth_minutes=max(1, settings.account_deletion_max_auth_age_seconds // 60),
        retention_days=settings.deletion_requests_retention_days,
        email_max=EMAIL_MAX_LENGTH,
        note_max=NOTE_MAX_LENGTH,
        values=context.pop("values", {}),
        errors=context.pop("errors", {}),
        **context,
    )
    return Response(html, status=status, mimetype="text/html")


def _errors(exc: ValidationError) -> dict[str, str]:
    """Field -> a sentence a person can act on (the first problem of each field)."""
    found: dict[str, str] = {}
    for error in exc.errors(include_url=False, include_input=False):
        field = str(error["loc"][0]) if error["loc"] else "email"
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "missing" or (field == "email" and error["type"] == "string_too_short"):
            message = "enter your email address"
        found.setdefault(field, f"{_FIELD_LABELS.get(field, field)}: {message}.")
    return found


def _error_page(status: int, title: str, retry_after: str | None = None) -> Response:
    settings = components().settings
    html = render_template(
        "account/error.html",
        app_name=settings.app_name,
        status=status,
        title=title,
        retry_after=retry_after,
    )
    response = Response(html, status=status, mimetype="text/html")
    if retry_after is not None:
        response.headers["Retry-After"] = retry_after
    return response


@bp.errorhandler(HTTPException)
def _http_error(exc: HTTPException) -> Response:
    """413, 429 and the like, as a page. A 429's Retry-After is the JSON API's own."""
    status = exc.code or 500
    retry_after = problem_for(exc).headers.get("Retry-After") if status == 429 else None
    return _error_page(status, exc.name, retry_after)


def _database_down(exc: Exception) -> Response:
    log.error("database unavailable", exc_info=exc)
    return _error_page(503, "Service Unavailable", str(DATABASE_RETRY_AFTER_SECONDS))


for _database_error in DATABASE_ERRORS:
    bp.register_error_handler(_database_error, _database_down)


@bp.after_request
def _secure(response: Response) -> Response:
    # nosniff, no-referrer and DENY come from api/security.py, as on every answer.
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    if request.endpoint != "account_pages.asset":
        # What a visitor typed comes back in the page: never kept by a cache.
        response.headers["Cache-Control"] = "no-store"
    return response
