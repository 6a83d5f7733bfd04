"""One decorator per route that authenticates, validates, calls the view and serialises.

The same declaration feeds /openapi.json (api/openapi.py), so the spec cannot drift from
what the route accepts and returns. Order matters and is fixed here: authentication (401,
403) before idempotency replay before input validation (path and query 422, then the body:
400, 415, 422).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import wraps
from typing import Any

from flask import Response, request
from pydantic import BaseModel

from api.auth import authenticate
from api.context import read_again_after_disconnect, read_on_primary_after_failure
from api.errors import DATABASE_ERRORS
from api.idempotency import run_idempotently
from api.responses import json_response
from api.validation import parse_json, parse_path, parse_query, read_body

ENDPOINT_ATTRIBUTE = "__trellis_endpoint__"


@dataclass(frozen=True)
class Endpoint:
    """What a route accepts and returns; read by the wrapper and by the OpenAPI builder."""

    summary: str
    tags: tuple[str, ...]
    auth: bool
    roles: tuple[str, ...]
    path: type[BaseModel] | None
    body: type[BaseModel] | None
    body_optional: bool
    query: type[BaseModel] | None
    response: type[BaseModel] | None
    status: int
    idempotent: bool
    errors: tuple[int, ...]
    description: str


def endpoint(
    *,
    summary: str,
    tags: tuple[str, ...],
    auth: bool = True,
    roles: tuple[str, ...] = (),
    path: type[BaseModel] | None = None,
    body: type[BaseModel] | None = None,
    body_optional: bool = False,
    query: type[BaseModel] | None = None,
    response: type[BaseModel] | None = None,
    status: int = 200,
    idempotent: bool = False,
    errors: tuple[int, ...] = (),
) -> Callable[[Callable[..., Any]], Callable[..., Response]]:
    """Declare a route: `roles` limits it to callers with one of them (403 otherwise).

    `path` describes path arguments the URL converter does not pin down (e.g. an enum in a
    plain `<role>` segment): they are validated like the query (422) and documented.
    """

    def decorate(view: Callable[..., Any]) -> Callable[..., Response]:
        spec = Endpoint(
            summary=summary,
            tags=tags,
            auth=auth,
            roles=roles,
            path=path,
            body=body,
            body_optional=body_optional,
            query=query,
            response=response,
            status=status,
            idempotent=idempotent,
            errors=errors,
            description=(view.__doc__ or "").strip(),
        )

        @wraps(view)
        def wrapper(**path: Any) -> Response:
            while True:
                try:
                    return _serve(view, spec, path)
                except DATABASE_ERRORS as exc:
                    # A read is safe to run again: on a fresh connection after its pooled one
                    # was dead (routed anew), and on the primary after a replica failed under
                    # it. Each of the two allows one more attempt per request.
                    if read_again_after_disconnect(exc) or read_on_primary_after_failure(exc):
                        continue
                    raise

        setattr(wrapper, ENDPOINT_ATTRIBUTE, spec)
        return wrapper

    return decorate


def _serve(view: Callable[..., Any], spec: Endpoint, path: dict[str, Any]) -> Response:
    if spec.auth:
        authenticate(spec.roles)
    if spec.idempotent and "Idempotency-Key" in request.headers:
        return run_idempotently(lambda: _call(view, spec, path))
    return _call(view, spec, path)


def _call(view: Callable[..., Any], spec: Endpoint, path: dict[str, Any]) -> Response:
    kwargs = dict(path)
    if spec.path is not None:
        kwargs.update(parse_path(spec.path, path))
    if spec.query is not None:
        kwargs["query"] = parse_query(spec.query)
    if spec.body is not None:
        empty = spec.body_optional and not read_body()
        kwargs["body"] = spec.body() if empty else parse_json(spec.body)
    result = view(**kwargs)
    if isinstance(result, Response):
        return result
    if result is None:
        return Response(status=204)
    return json_response(result, spec.status)
