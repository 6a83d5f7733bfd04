"""The Idempotency-Key header: fingerprint the request and let services/idempotency run it."""

from __future__ import annotations

import contextlib
import hashlib
import re
from collections.abc import Callable
from datetime import timedelta

import orjson
from flask import Response, request
from werkzeug.exceptions import HTTPException

from api.auth import current_user
from api.context import components, unit
from api.errors import problem_for
from api.validation import read_body
from services.base import idempotency
from services.base.errors import FieldError, TrellisError, ValidationFailed

# Printable ASCII without spaces, as Stripe and the IETF draft's examples use (UUIDs fit).
KEY_PATTERN = r"^[\x21-\x7e]{1,255}$"
_KEY = re.compile(KEY_PATTERN)


def run_idempotently(view: Callable[[], Response]) -> Response:
    """Run `view` at most once per (caller, Idempotency-Key); replay its response after."""
    key = request.headers["Idempotency-Key"]
    if not _KEY.match(key):
        raise ValidationFailed(
            "The Idempotency-Key header is malformed.",
            [FieldError("Idempotency-Key", "1-255 printable ASCII characters, no spaces")],
        )
    stored = idempotency.run(
        unit(),
        user_id=current_user().id,
        key=key,
        fingerprint=_fingerprint(),
        ttl=timedelta(hours=components().settings.idempotency_ttl_hours),
        work=lambda: _capture(view),
    )
    response = Response(stored.body, status=stored.status, content_type=stored.content_type)
    response.headers.update(stored.headers)
    if stored.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return response


def _capture(view: Callable[[], Response]) -> idempotency.Outcome:
    raised = False
    try:
        response = view()
    except (TrellisError, HTTPException) as exc:  # refusals are outcomes worth replaying
        response, raised = problem_for(exc), True
    kept = {name: response.headers[name] for name in ("Location",) if name in response.headers}
    stored = idempotency.StoredResponse(
        response.status_code, response.get_data(), response.content_type or "", kept
    )
    return idempotency.Outcome(stored, raised)


def _fingerprint() -> str:
    body = read_body()
    # The same JSON with other whitespace or key order is the same request.
    with contextlib.suppress(orjson.JSONDecodeError):
        body = orjson.dumps(orjson.loads(body), option=orjson.OPT_SORT_KEYS)
    digest = hashlib.sha256(f"{request.method} {request.path}\n".encode())
    digest.update(body)
    return digest.hexdigest()
