"""Every error leaves Trellis as RFC 9457 application/problem+json, built here and only here."""

from __future__ import annotations

import logging
from typing import Any

import orjson
from flask import Flask, Response, g, request
from sqlalchemy import exc as sa_exc
from werkzeug.exceptions import HTTPException
from werkzeug.http import HTTP_STATUS_CODES

from api.schemas.common import Problem
from api.schemas.problems import (
    ActiveBookingsProblem,
    ExportInProgressProblem,
    SyncConflictProblem,
    ValidationProblem,
)
from services.base.errors import (
    AccountClosed,
    AccountDeleted,
    AccountDeletionScheduled,
    AccountHasActiveBookings,
    AccountSuspended,
    Blocked,
    Conflict,
    ExportInProgress,
    Forbidden,
    InvalidToken,
    NotFound,
    RateLimited,
    ReauthenticationRequired,
    SlotTaken,
    SlotUnavailable,
    TrellisError,
    Unavailable,
    ValidationFailed,
)
from services.base.idempotency import KeyInProgress, KeyReused
from services.realtime.feed import ChangesExpired
from services.sync import SyncConflict

log = logging.getLogger("trellis.errors")

PROBLEM_MIMETYPE = "application/problem+json"
DATABASE_RETRY_AFTER_SECONDS = 5

# Problem types Trellis defines itself; plain HTTP errors use "about:blank" (RFC 9457 §4.2.1).
# Subclasses come before their bases: the first match wins.
_TYPES: dict[type[TrellisError], tuple[int, str, str]] = {
    KeyInProgress: (409, "/problems/idempotency-key-in-use", "Request still in progress"),
    KeyReused: (422, "/problems/idempotency-key-reused", "Idempotency-Key reused"),
    SyncConflict: (409, "/problems/sync-conflict", "Records changed on the server"),
    ChangesExpired: (410, "/problems/changes-expired", "Changes expired"),
    NotFound: (404, "/problems/not-found", "Not found"),
    Blocked: (403, "/problems/blocked", "Blocked"),
    AccountSuspended: (403, "/problems/account-suspended", "Account suspended"),
    Forbidden: (403, "/problems/forbidden", "Forbidden"),
    AccountHasActiveBookings: (
        409,
        "/problems/account-has-active-bookings",
        "Bookings in progress",
    ),
    AccountDeletionScheduled: (
        409,
        "/problems/account-deletion-scheduled",
        "Your account is scheduled for deletion",
    ),
    AccountDeleted: (409, "/problems/account-deleted", "Account deleted"),
    ExportInProgress: (409, "/problems/export-in-progress", "Data export in progress"),
    SlotTaken: (409, "/problems/slot-taken", "Time already booked"),
    SlotUnavailable: (409, "/problems/slot-unavailable", "Time not available"),
    Conflict: (409, "/problems/conflict", "Conflict"),
    ValidationFailed: (422, "/problems/validation-failed", "Request validation failed"),
    Unavailable: (503, "/problems/unavailable", "Service temporarily unavailable"),
    RateLimited: (429, "/problems/rate-limited", "Too many requests"),
    AccountClosed: (401, "/problems/account-closed", "Account deleted"),
    InvalidToken: (401, "/problems/invalid-token", "Unauthorized"),
    ReauthenticationRequired: (
        401,
        "/problems/reauthentication-required",
        "Sign in again",
    ),
}


# Problem types whose body has members of their own, and the schema documenting them: the
# routes that declare the error (`@endpoint(errors=(SyncConflict,))`) reference it in
# /openapi.json. `_trellis_error` below renders these members.
PROBLEM_SCHEMAS: dict[type[TrellisError], type[Problem]] = {
    ValidationFailed: ValidationProblem,
    SyncConflict: SyncConflictProblem,
    AccountHasActiveBookings: ActiveBookingsProblem,
    ExportInProgress: ExportInProgressProblem,
}


def problem_type(error: type[TrellisError]) -> tuple[int, str, str]:
    """(status, type, title) of the problem a domain error becomes; ValueError if none."""
    for cls, spec in _TYPES.items():
        if issubclass(error, cls):
            return spec
    raise ValueError(f"{error.__name__} maps to no problem type in api/errors.py")


def problem_schema(error: type[TrellisError]) -> type[Problem]:
    """The schema of a domain error's problem: its own if it has members, else Problem."""
    return next((s for cls, s in PROBLEM_SCHEMAS.items() if issubclass(error, cls)), Problem)


def problem_types() -> list[tuple[int, str, str]]:
    """Every problem type Trellis defines, for the documentation."""
    return sorted(set(_TYPES.values()))


class MissingToken(InvalidToken):
    """No credentials at all: RFC 6750 says answer with a challenge but no error code."""

    def __init__(self) -> None:
        super().__init__("no bearer token")
        self.detail = "Send a Cognito token as 'Authorization: Bearer <token>'."


def problem(
    status: int,
    detail: str,
    *,
    type_: str = "about:blank",
    title: str | None = None,
    headers: dict[str, str] | None = None,
    **extensions: Any,
) -> Response:
    """A problem+json response; `extensions` become extra members (e.g. `errors`)."""
    body: dict[str, Any] = {
        "type": type_,
        "title": title or HTTP_STATUS_CODES.get(status, "Error"),
        "status": status,
        "detail": detail,
        "instance": request.path,
    }
    request_id = g.get("request_id")
    if request_id:
        body["request_id"] = request_id
    body.update(extensions)
    response = Response(orjson.dumps(body), status=status, mimetype=PROBLEM_MIMETYPE)
    response.headers.update(headers or {})
    return response


def _http_error(exc: HTTPException) -> Response:
    status = exc.code or 500
    headers = {k: v for k, v in exc.get_headers() if k.lower() not in ("content-type",)}
    custom = exc.description != type(exc).description
    detail = exc.description if custom else _HTTP_DETAILS.get(status, exc.description)
    if status == 429:  # the rate limiter's refusal (api/limits.py), with its Retry-After
        _, type_, title = _TYPES[RateLimited]
        headers.setdefault("Retry-After", "60")
        return problem(status, _HTTP_DETAILS[429], type_=type_, title=title, headers=headers)
    return problem(status, detail or "", headers=headers)


_HTTP_DETAILS = {
    400: "The request could not be understood; check its syntax.",
    404: "There is no resource at this path. The API lives under /v1.",
    405: "This path does not accept this method; the Allow header lists the ones it does.",
    413: "The request body is larger than this service accepts.",
    415: "Send the request body as JSON with 'Content-Type: application/json'.",
    429: "Too many requests; slow down and retry after the Retry-After seconds.",
}


def problem_for(exc: Exception) -> Response:
    """The problem+json response an expected error maps to (used to store idempotent outcomes)."""
    if isinstance(exc, HTTPException):
        return _http_error(exc)
    if isinstance(exc, TrellisError):
        return _trellis_error(exc)
    raise exc


def _trellis_error(exc: TrellisError) -> Response:
    status, type_, title = next(
        (spec for cls, spec in _TYPES.items() if isinstance(exc, cls)),
        (500, "about:blank", None),
    )
    headers: dict[str, str] = {}
    extensions: dict[str, Any] = {}
    if isinstance(exc, InvalidToken):
        log.info("token rejected", extra={"reason": exc.reason})
        challenge = 'Bearer realm="trellis"'
        if not isinstance(exc, MissingToken):
            challenge += ', error="invalid_token"'
        headers["WWW-Authenticate"] = challenge
    if isinstance(exc, ReauthenticationRequired):
        # RFC 9470 (OAuth 2.0 step-up authentication): the token is fine, the sign-in
        # behind it too old; max_age says how recent a new one must be.
        headers["WWW-Authenticate"] = (
            'Bearer realm="trellis", error="insufficient_user_authentication", '
            'error_description="A more recent sign-in is required", '
            f"max_age={exc.max_age_seconds}"
        )
    if isinstance(exc, RateLimited):
        headers["Retry-After"] = str(exc.retry_after)
    if isinstance(exc, Unavailable):
        headers["Retry-After"] = str(exc.retry_after)
        log.warning("dependency unavailable", extra={"detail": exc.detail}, exc_info=exc.__cause__)
    if isinstance(exc, SyncConflict):
        extensions["conflicts"] = [
            {
                "key": r.key,
                "value": r.value,
                "sync_count": r.sync_count,
                "deleted": r.deleted,
                "last_modified": r.last_modified.isoformat().replace("+00:00", "Z"),
                "device_id": r.device_id,
            }
            for r in exc.records
        ]
    if isinstance(exc, AccountHasActiveBookings):
        extensions["booking_ids"] = [str(booking_id) for booking_id in exc.booking_ids]
    if isinstance(exc, ExportInProgress):
        extensions["export_id"] = str(exc.export_id)
    if isinstance(exc, ValidationFailed):
        extensions["errors"] = [
            {"field": e.field, "message": e.message, "code": e.code} for e in exc.errors
        ]
    return problem(status, exc.detail, type_=type_, title=title, headers=headers, **extensions)


def _database_down(exc: Exception) -> Response:
    log.error("database unavailable", exc_info=exc)
    status, type_, title = _TYPES[Unavailable]
    return problem(
        status,
        "The database is not reachable; retry shortly.",
        type_=type_,
        title=title,
        headers={"Retry-After": str(DATABASE_RETRY_AFTER_SECONDS)},
    )


def _unexpected(exc: Exception) -> Response:
    log.exception("unhandled error")
    return problem(500, "Something went wrong on our side; the request id helps us find it.")


# Connection loss, pool exhaustion, statement timeouts: the client should retry.
DATABASE_ERRORS = (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.TimeoutError)


def register_error_handlers(app: Flask) -> None:
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(TrellisError, _trellis_error)
    for db_error in DATABASE_ERRORS:
        app.register_error_handler(db_error, _database_down)
    app.register_error_handler(Exception, _unexpected)
