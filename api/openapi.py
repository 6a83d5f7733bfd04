"""OpenAPI 3.1 document built from the routes' @endpoint declarations, and offline docs."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import orjson
from flask import Blueprint, Flask, Response, current_app
from flask_swagger_ui import get_swaggerui_blueprint
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema
from werkzeug.routing import Rule

from api.endpoint import ENDPOINT_ATTRIBUTE, Endpoint
from api.errors import PROBLEM_SCHEMAS, problem_schema, problem_type, problem_types
from api.idempotency import KEY_PATTERN
from api.limits import EXEMPT
from api.schemas.common import Problem
from api.schemas.examples import anchor, examples_from
from services.base.errors import TrellisError, ValidationFailed
from services.base.idempotency import KeyInProgress, KeyReused

API_VERSION = "1.0.0"
PROBLEM_JSON = "application/problem+json"
_PATH_ARGUMENT = re.compile(r"<(?:(?P<converter>\w+)(?:\([^)]*\))?:)?(?P<name>\w+)>")
_CONVERTER_SCHEMAS = {
    "uuid": {"type": "string", "format": "uuid"},
    "int": {"type": "integer"},
    "default": {"type": "string"},
}
_ERROR_TEXT = {
    400: "Malformed request (e.g. invalid JSON)",
    401: "Missing or invalid token",
    403: "Your role may not do this",
    404: "Not found, or not yours",
    409: "Conflicts with the current state, or the same Idempotency-Key is in use",
    410: "Gone: what you asked for is past its retention period",
    413: "Body too large",
    415: "Body is not application/json",
    429: "Too many requests; retry after Retry-After seconds",
    422: "Invalid fields (see `errors`), or Idempotency-Key reused with another request",
    503: "A dependency is down; retry after Retry-After seconds",
}
# Response headers, declared once under components/headers and referenced where they occur.
_HEADERS: dict[str, dict[str, Any]] = {
    "X-Request-Id": {
        "description": (
            "This request's id: the X-Request-Id you sent if it is 1-128 safe characters, "
            "else one generated. Quote it when reporting a problem."
        ),
        "schema": {"type": "string"},
    },
    "Retry-After": {
        "description": "Seconds to wait before trying again (RFC 9110 §10.2.3).",
        "schema": {"type": "integer", "minimum": 0},
    },
    "WWW-Authenticate": {
        "description": (
            'The Bearer challenge (RFC 6750): `error="invalid_token"` for a refused token; '
            '`error="insufficient_user_authentication"` with `max_age` when a more recent '
            "sign-in is needed (RFC 9470)."
        ),
        "schema": {"type": "string"},
    },
    "Location": {
        "description": "The path of the resource this request created.",
        "schema": {"type": "string", "format": "uri-reference"},
    },
    "ETag": {
        "description": "This answer's version: send it back as If-None-Match for a 304.",
        "schema": {"type": "string"},
    },
    "Cache-Control": {
        "description": "How long the answer may be kept without asking again.",
        "schema": {"type": "string"},
    },
    "Idempotent-Replayed": {
        "description": (
            "`true` when this is the stored answer to an earlier request with the same "
            "Idempotency-Key; absent when the request ran."
        ),
        "schema": {"type": "string", "enum": ["true"]},
    },
}
# Answered before the Idempotency-Key is looked at: never a replay.
_BEFORE_IDEMPOTENCY = frozenset({401, 429})

# Where an error can come from: a domain error class, or None for a plain problem.
_Source = type[TrellisError] | None

bp = Blueprint("openapi", __name__)


@bp.get("/openapi.json")
def openapi_json() -> Response:
    # Rebuilt each hour: its examples of times are computed from now (api/schemas/examples.py).
    now = datetime.now(UTC)
    hour = anchor(now)
    cached = current_app.extensions.get("trellis.openapi")
    if cached is None or cached[0] != hour:
        cached = (hour, orjson.dumps(build(current_app, now)))
        current_app.extensions["trellis.openapi"] = cached
    return Response(cached[1], mimetype="application/json")


def register_docs(app: Flask) -> None:
    """/openapi.json and Swagger UI at /docs, served from the package (no CDN)."""
    app.register_blueprint(bp)
    # validatorUrl None: Swagger UI would otherwise send the spec's URL to validator.swagger.io.
    config = {"app_name": "Trellis API", "validatorUrl": None}
    app.register_blueprint(get_swaggerui_blueprint("/docs", "/openapi.json", config=config))


def build(app: Flask, now: datetime | None = None) -> dict[str, Any]:
    """The whole document. Deterministic: same routes, schemas and hour, same bytes."""
    with examples_from(now or datetime.now(UTC)):
        return _document(app)


def _document(app: Flask) -> dict[str, Any]:
    operations: list[tuple[str, str, Endpoint, Rule]] = []
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        spec = getattr(app.view_functions[rule.endpoint], ENDPOINT_ATTRIBUTE, None)
        if spec is None or not spec.documented:
            continue
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            operations.append((_path_of(rule), method.lower(), spec, rule))
    refs, schemas = _schemas(operations)
    paths: dict[str, dict[str, Any]] = {}
    for path, method, spec, rule in operations:
        paths.setdefault(path, {})[method] = _operation(spec, rule, method, refs, schemas)
    _describe_problem_types(schemas)
    _without_null_defaults(schemas)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Trellis API",
            "version": API_VERSION,
            "description": (
                "Back-end for two-sided mobile marketplaces. Authenticate with a Cognito ID "
                "or access token. Errors are RFC 9457 problem+json. Lists return "
                "`{items, next_cursor}`; pass `next_cursor` back as `cursor`."
            ),
        },
        "paths": paths,
        "components": {
            # Query and path models are inlined as parameters: only what is referenced stays.
            "schemas": _referenced(schemas, paths),
            "headers": _HEADERS,
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": "A Cognito user pool ID or access token.",
                }
            },
        },
    }


def _path_of(rule: Rule) -> str:
    return _PATH_ARGUMENT.sub(lambda m: "{" + m["name"] + "}", rule.rule)


def _schemas(
    operations: list[tuple[str, str, Endpoint, Rule]],
) -> tuple[dict[tuple[type[BaseModel], str], dict[str, Any]], dict[str, Any]]:
    wanted: set[tuple[type[BaseModel], str]] = {(Problem, "serialization")}
    wanted |= {(schema, "serialization") for schema in PROBLEM_SCHEMAS.values()}
    for _, _, spec, _ in operations:
        if spec.body:
            wanted.add((spec.body, "validation"))
        if spec.path:
            wanted.add((spec.path, "validation"))
        if spec.query:
            wanted.add((spec.query, "validation"))
        if spec.response:
            wanted.add((spec.response, "serialization"))
    ordered = sorted(wanted, key=lambda pair: (pair[0].__name__, pair[1]))
    refs, definitions = models_json_schema(
        ordered,  # type: ignore[arg-type]
        ref_template="#/components/schemas/{model}",
    )
    return refs, definitions.get("$defs", {})  # type: ignore[return-value]


def _refs_in(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value.rsplit("/", 1)[-1]
            else:
                yield from _refs_in(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs_in(value)


def _referenced(schemas: dict[str, Any], paths: dict[str, Any]) -> dict[str, Any]:
    """The schemas the paths reference, directly or through other schemas, in order."""
    seen: set[str] = set()
    pending = list(_refs_in(paths))
    while pending:
        name = pending.pop()
        if name not in seen and name in schemas:
            seen.add(name)
            pending.extend(_refs_in(schemas[name]))
    return {name: schema for name, schema in schemas.items() if name in seen}


def _without_null_defaults(node: Any) -> None:
    """Drop `default: null` (pydantic's for `x: T | None = None`): an absent optional member
    already means that, and openapi-generator (the TypeScript, Kotlin and Swift SDKs) warns
    "Failed to get the schema name: null" on it inside a closed request body."""
    if isinstance(node, list):
        for item in node:
            _without_null_defaults(item)
    elif isinstance(node, dict):
        if "default" in node and node["default"] is None:
            del node["default"]
        for value in node.values():
            _without_null_defaults(value)


def _describe_problem_types(schemas: dict[str, Any]) -> None:
    listed = "; ".join(f"`{type_}` ({status}, {title})" for status, type_, title in problem_types())
    member = schemas["Problem"]["properties"]["type"]
    member["description"] = f"{member['description']}. Trellis's types: {listed}."


def _operation(
    spec: Endpoint,
    rule: Rule,
    method: str,
    refs: dict[tuple[type[BaseModel], str], Any],
    schemas: dict[str, Any],
) -> dict[str, Any]:
    operation: dict[str, Any] = {
        # The view's name: generated clients turn it into the method name (get_me, ...).
        "operationId": rule.endpoint.rsplit(".", 1)[-1],
        "summary": spec.summary,
        "tags": list(spec.tags),
        "security": [{"bearerAuth": []}] if spec.auth else [],
        "parameters": _parameters(spec, rule, refs, schemas),
        "responses": _responses(spec, rule, refs),
    }
    if spec.description:
        operation["description"] = spec.description
    if spec.body:
        operation["requestBody"] = {
            "required": not spec.body_optional,
            "content": {"application/json": {"schema": refs[(spec.body, "validation")]}},
        }
    return operation


def _parameters(
    spec: Endpoint,
    rule: Rule,
    refs: dict[tuple[type[BaseModel], str], Any],
    schemas: dict[str, Any],
) -> list[dict[str, Any]]:
    declared = _fields(spec.path, refs, schemas) if spec.path else {}
    parameters: list[dict[str, Any]] = []
    for match in _PATH_ARGUMENT.finditer(rule.rule):
        converter = _CONVERTER_SCHEMAS.get(match["converter"] or "default", {"type": "string"})
        field_schema = declared.get(match["name"], converter)
        parameters.append(_parameter(match["name"], "path", True, field_schema))
    if spec.query:
        required = set(spec.query.model_json_schema().get("required", []))
        for name, field_schema in _fields(spec.query, refs, schemas).items():
            parameters.append(_parameter(name, "query", name in required, field_schema))
    if spec.localized:
        parameters.append(
            {
                "name": "Accept-Language",
                "in": "header",
                "required": False,
                "description": (
                    "The language of Trellis's own texts (en, de; RFC 9110 §12.5.4, e.g. "
                    "`de-DE,de;q=0.9`). Without one we have: your most recently seen "
                    "device's locale, else English."
                ),
                "schema": {"type": "string", "maxLength": 200},
            }
        )
    if spec.cacheable:
        parameters.append(
            {
                "name": "If-None-Match",
                "in": "header",
                "required": False,
                "description": "The ETag of the copy you have: 304 if it is still current.",
                "schema": {"type": "string"},
            }
        )
    if spec.idempotent:
        parameters.append(
            {
                "name": "Idempotency-Key",
                "in": "header",
                "required": False,
                "description": (
                    "Makes retries safe: a retry with the same key and body returns the "
                    "first response without running again (kept 24 h, per user). Printable "
                    "ASCII without spaces, e.g. a UUID."
                ),
                "schema": {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": 255,
                    "pattern": KEY_PATTERN,
                },
            }
        )
    return parameters


def _fields(
    model: type[BaseModel],
    refs: dict[tuple[type[BaseModel], str], Any],
    schemas: dict[str, Any],
) -> dict[str, dict[str, Any]]:
    """A query or path model's properties, from the same generation as the components (so
    a property's $ref names a schema that is there)."""
    name = refs[(model, "validation")]["$ref"].rsplit("/", 1)[-1]
    properties: dict[str, dict[str, Any]] = schemas[name].get("properties", {})
    return properties


def _parameter(
    name: str, where: str, required: bool, field_schema: dict[str, Any]
) -> dict[str, Any]:
    parameter: dict[str, Any] = {
        "name": name,
        "in": where,
        "required": required,
        "schema": {k: v for k, v in field_schema.items() if k != "description"},
    }
    if "description" in field_schema:
        parameter["description"] = field_schema["description"]
    return parameter


def _header_refs(*names: str) -> dict[str, Any]:
    return {name: {"$ref": f"#/components/headers/{name}"} for name in names}


def _responses(
    spec: Endpoint, rule: Rule, refs: dict[tuple[type[BaseModel], str], Any]
) -> dict[str, Any]:
    replayed = ("Idempotent-Replayed",) if spec.idempotent else ()
    responses: dict[str, Any] = {}
    cached = ("ETag", "Cache-Control") if spec.cacheable else ()
    for status in (spec.status, *spec.also):
        location = ("Location",) if spec.location and status == spec.status else ()
        response: dict[str, Any] = {
            "description": "Done" if spec.response is None else spec.summary,
            "headers": _header_refs("X-Request-Id", *location, *replayed, *cached),
        }
        if spec.response is not None:
            schema = refs[(spec.response, "serialization")]
            response["content"] = {"application/json": {"schema": schema}}
        responses[str(status)] = response
    if spec.cacheable:
        responses["304"] = {
            "description": "Not modified: the copy whose ETag you sent is current",
            "headers": _header_refs("X-Request-Id", *cached),
        }
    for status, sources in sorted(_error_sources(spec, rule).items()):
        headers = ["X-Request-Id"]
        if status == 401:
            headers.append("WWW-Authenticate")
        if status in (429, 503):
            headers.append("Retry-After")
        if spec.idempotent and status not in _BEFORE_IDEMPOTENCY:
            headers.append("Idempotent-Replayed")  # a refusal is replayed too
        responses[str(status)] = {
            "description": _error_text(spec, status),
            "headers": _header_refs(*headers),
            "content": {PROBLEM_JSON: {"schema": _problem_schema(sources, refs)}},
        }
    responses["default"] = {
        "description": "Unexpected error",
        "headers": _header_refs("X-Request-Id"),
        "content": {PROBLEM_JSON: {"schema": refs[(Problem, "serialization")]}},
    }
    return responses


def _error_text(spec: Endpoint, status: int) -> str:
    text = _ERROR_TEXT[status]
    if status == 401 and spec.max_auth_age is not None:
        text += "; or signed in too long ago for this (sign in again)"
    named = [
        problem_type(error)
        for error in spec.errors
        if not isinstance(error, int) and problem_type(error)[0] == status
    ]
    if named:
        text += ". " + "; ".join(f"`{type_}`: {title}" for _, type_, title in named)
    return text


def _problem_schema(
    sources: list[_Source], refs: dict[tuple[type[BaseModel], str], Any]
) -> dict[str, Any]:
    """One problem schema, or anyOf the specific ones first and then the plain Problem:
    anyOf, not oneOf, since a body of a specific type is a valid plain Problem too."""
    models = list(dict.fromkeys(Problem if s is None else problem_schema(s) for s in sources))
    models.sort(key=lambda model: model is Problem)
    if len(models) == 1:
        return refs[(models[0], "serialization")]  # type: ignore[no-any-return]
    return {"anyOf": [refs[(model, "serialization")] for model in models]}


def _error_sources(spec: Endpoint, rule: Rule) -> dict[int, list[_Source]]:
    """Each error status the route can answer, with what can cause it."""
    sources: dict[int, list[_Source]] = {}

    def add(status: int, source: _Source = None) -> None:
        sources.setdefault(status, []).append(source)

    for error in spec.errors:
        if isinstance(error, int):
            # Every 422 Trellis answers is a validation problem (or an Idempotency-Key
            # reused, below).
            add(error, ValidationFailed if error == 422 else None)
        else:
            add(problem_type(error)[0], error)
    if spec.auth:
        for status in (401, 429, 503):  # every signed-in route is rate-limited
            add(status)
    elif rule.endpoint not in EXEMPT:
        add(429)  # anonymous callers are limited per address (RATE_LIMIT_ANONYMOUS)
    if spec.roles:
        add(403)
    if rule.arguments:
        add(404)
    if spec.body:
        for status in (400, 413, 415):
            add(status)
    if spec.body or spec.query or spec.path:
        add(422, ValidationFailed)
    if spec.idempotent:
        add(409, KeyInProgress)
        add(422, ValidationFailed)  # a malformed Idempotency-Key names the header
        add(422, KeyReused)
    return sources
