"""One decorator per route: the request's whole lifecycle, in one place.

authenticate (401, 403) -> open the unit of work the route declared (reads or writes) ->
idempotency replay -> validate input (path and query 422, then the body: 400, 415, 422)
-> the view calls a service -> commit -> serialise -> close the unit (roll back what was
not committed). docs/architecture.md tells the rules a new route follows.

The same declaration feeds /openapi.json (api/openapi.py), so the spec cannot drift from
what the route accepts and returns, and the rate limiter (api/limits.py) reads `limit`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import wraps
from typing import Any

from flask import Flask, Response, request
from pydantic import BaseModel

from api.auth import authenticate, require_recent_sign_in, verified_identity
from api.context import components, open_unit, unit
from api.errors import DATABASE_ERRORS, problem_type
from api.idempotency import run_idempotently
from api.responses import json_response, values_response
from api.validation import parse_json, parse_path, parse_query, read_body
from services.base.errors import TrellisError
from services.base.settings import Settings

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
    # HTTP statuses, or the domain errors the route raises (their status and problem schema
    # come from api/errors.py): a 409 on /v1/sync/... documents `conflicts` that way.
    errors: tuple[int | type[TrellisError], ...]
    description: str
    writes: bool
    limit: str | None
    max_auth_age: str | None = None
    # Other success statuses the view may answer with the same `response` schema (it returns
    # json_response(..., status) for them), e.g. 200 for a report that was already open.
    also: tuple[int, ...] = ()
    documented: bool = True
    # The success response carries a Location header (the view sets it): documented.
    location: bool = False
    # The view answers with Cache-Control, an ETag, and 304 to a matching If-None-Match.
    cacheable: bool = False
    # Trellis's own texts in the answer follow Accept-Language (documented as a parameter).
    localized: bool = False


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
    errors: tuple[int | type[TrellisError], ...] = (),
    writes: bool = False,
    limit: str | None = None,
    max_auth_age: str | None = None,
    also: tuple[int, ...] = (),
    documented: bool = True,
    location: bool = False,
    cacheable: bool = False,
    localized: bool = False,
) -> Callable[[Callable[..., Any]], Callable[..., Response]]:
    """Declare a route: `roles` limits it to callers with one of them (403 otherwise).

    `writes=True`: the view works on a transactional session on the primary, committed
    after it returns; otherwise on a read session where a write raises (a read that must
    write asks the unit for `writer()`). Routes for POST, PUT, PATCH and DELETE must say
    `writes=True` (the app factory checks). `limit` names the setting of a tighter rate
    limit for this route (checked at start-up). `max_auth_age` names the setting of the
    most seconds since the caller signed in (the token's `auth_time`) for a sensitive
    action: older (or unknown) is 401 `/problems/reauthentication-required`, checked before
    the Idempotency-Key is claimed so that the retry after signing in runs. `path`
    describes path arguments the URL converter does not pin down (e.g. an enum in a plain
    `<role>` segment): they are validated like the query (422) and documented.
    `documented=False` leaves the route out of /openapi.json: a page for people (HTML,
    e.g. POST /account/delete), not an operation of the JSON API. `errors` lists statuses
    or domain errors (`SyncConflict`): an error's problem schema is then documented.
    `location=True`: the view sets a Location header on its success response;
    `cacheable=True`: Cache-Control and an ETag, and 304 for If-None-Match;
    `localized=True`: Trellis's own texts in the answer follow Accept-Language. The view
    returns an instance of `response`, or (on hot routes, api/responses.py) a dict of plain
    values shaped as it, written with orjson and checked against it under RESPONSE_CHECKS;
    a Response; or None for 204. One tag each:
    generated clients group operations by it, and /docs shows an operation once per tag.
    """
    if len(tags) != 1:
        raise ValueError(f"{summary!r}: give exactly one tag, not {tags!r}")
    for error in errors:
        if not isinstance(error, int):
            problem_type(error)  # ValueError for an error that maps to no problem
    if idempotent and not writes:
        raise ValueError(f"{summary!r}: an idempotent endpoint writes; declare writes=True")
    if max_auth_age is not None and (not auth or max_auth_age not in Settings.model_fields):
        raise ValueError(f"{summary!r}: max_auth_age={max_auth_age!r} names no setting")

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
            writes=writes,
            limit=limit,
            max_auth_age=max_auth_age,
            also=also,
            documented=documented,
            location=location,
            cacheable=cacheable,
            localized=localized,
        )

        @wraps(view)
        def wrapper(**path: Any) -> Response:
            identity = verified_identity() if spec.auth else None  # 401 before any database
            unit = open_unit(writes=spec.writes, subject=identity.sub if identity else None)
            try:
                while True:
                    try:
                        return _serve(view, spec, path)
                    except DATABASE_ERRORS as exc:
                        # A read is safe to run again (once on a fresh connection, once on
                        # the primary after a replica failed); a write never is.
                        if not unit.retry_read(exc):
                            raise
            finally:
                unit.close()

        setattr(wrapper, ENDPOINT_ATTRIBUTE, spec)
        return wrapper

    return decorate


def _serve(view: Callable[..., Any], spec: Endpoint, path: dict[str, Any]) -> Response:
    if spec.auth:
        authenticate(spec.roles)
    if spec.max_auth_age is not None:
        require_recent_sign_in(getattr(components().settings, spec.max_auth_age))
    if spec.idempotent and "Idempotency-Key" in request.headers:
        # Commits the work together with the stored response (api/idempotency.py).
        return run_idempotently(lambda: _call(view, spec, path))
    response = _call(view, spec, path)
    unit().commit()  # the view returned: its work stands, whatever status it answers
    return response


def _call(view: Callable[..., Any], spec: Endpoint, path: dict[str, Any]) -> Response:
    kwargs = dict(path)
    if spec.path is not None:
        kwargs.update(parse_path(spec.path, path))
    if spec.query is not None:
        kwargs["query"] = parse_query(spec.query)
    if spec.body is not None:
        empty = spec.body_optional and not read_body()
        kwargs["body"] = spec.body() if empty else parse_json(spec.body)
    unit().begin_work()
    result = view(**kwargs)
    if isinstance(result, Response):
        return result
    if result is None:
        return Response(status=204)
    if isinstance(result, BaseModel):
        return json_response(result, spec.status)
    if spec.response is None:
        raise TypeError(f"{view.__name__} answered plain values but declares no response schema")
    return values_response(spec.response, result, spec.status)


def declared(view: Callable[..., Any]) -> Endpoint | None:
    """The @endpoint declaration of a view function, if it has one."""
    return getattr(view, ENDPOINT_ATTRIBUTE, None)


SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def check_declarations(app: Flask) -> None:
    """Stop start-up if a route that changes state did not declare `writes=True`: its view
    would run on a read session and every write of it would fail at run time."""
    for rule in app.url_map.iter_rules():
        spec = declared(app.view_functions[rule.endpoint])
        unsafe = set(rule.methods or ()) - SAFE_METHODS
        if spec is not None and unsafe and not spec.writes:
            methods = ", ".join(sorted(unsafe))
            raise ValueError(f"{rule.endpoint} ({methods} {rule.rule}): declare writes=True")
