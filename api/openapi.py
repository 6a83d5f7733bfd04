"""OpenAPI 3.1 document built from the routes' @endpoint declarations, and offline docs."""

from __future__ import annotations

import re
from typing import Any

import orjson
from flask import Blueprint, Flask, Response, current_app
from flask_swagger_ui import get_swaggerui_blueprint
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema
from werkzeug.routing import Rule

from api.endpoint import ENDPOINT_ATTRIBUTE, Endpoint
from api.idempotency import KEY_PATTERN
from api.schemas.common import Problem

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
    413: "Body too large",
    415: "Body is not application/json",
    429: "Too many requests; retry after Retry-After seconds",
    422: "Invalid fields (see `errors`), or Idempotency-Key reused with another request",
    503: "A dependency is down; retry after Retry-After seconds",
}

bp = Blueprint("openapi", __name__)


@bp.get("/openapi.json")
def openapi_json() -> Response:
    document = current_app.extensions.get("trellis.openapi")
    if document is None:
        document = current_app.extensions["trellis.openapi"] = orjson.dumps(build(current_app))
    return Response(document, mimetype="application/json")


def register_docs(app: Flask) -> None:
    """/openapi.json and Swagger UI at /docs, served from the package (no CDN)."""
    app.register_blueprint(bp)
    # validatorUrl None: Swagger UI would otherwise send the spec's URL to validator.swagger.io.
    config = {"app_name": "Trellis API", "validatorUrl": None}
    app.register_blueprint(get_swaggerui_blueprint("/docs", "/openapi.json", config=config))


def build(app: Flask) -> dict[str, Any]:
    """The whole document. Deterministic: same routes and schemas, same bytes."""
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
        paths.setdefault(path, {})[method] = _operation(spec, rule, method, refs)
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
            "schemas": schemas,
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


def _operation(
    spec: Endpoint, rule: Rule, method: str, refs: dict[tuple[type[BaseModel], str], Any]
) -> dict[str, Any]:
    operation: dict[str, Any] = {
        # The view's name: generated clients turn it into the method name (get_me, ...).
        "operationId": rule.endpoint.rsplit(".", 1)[-1],
        "summary": spec.summary,
        "tags": list(spec.tags),
        "security": [{"bearerAuth": []}] if spec.auth else [],
        "parameters": _parameters(spec, rule, refs),
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
    spec: Endpoint, rule: Rule, refs: dict[tuple[type[BaseModel], str], Any]
) -> list[dict[str, Any]]:
    declared = _fields(spec.path) if spec.path else {}
    parameters: list[dict[str, Any]] = []
    for match in _PATH_ARGUMENT.finditer(rule.rule):
        converter = _CONVERTER_SCHEMAS.get(match["converter"] or "default", {"type": "string"})
        field_schema = declared.get(match["name"], converter)
        parameters.append(_parameter(match["name"], "path", True, field_schema))
    if spec.query:
        required = set(spec.query.model_json_schema().get("required", []))
        for name, field_schema in _fields(spec.query).items():
            parameters.append(_parameter(name, "query", name in required, field_schema))
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


def _fields(model: type[BaseModel]) -> dict[str, dict[str, Any]]:
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    return schema.get("properties", {})


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


def _responses(
    spec: Endpoint, rule: Rule, refs: dict[tuple[type[BaseModel], str], Any]
) -> dict[str, Any]:
    responses: dict[str, Any] = {}
    if spec.response is None:
        responses[str(spec.status)] = {"description": "Done"}
    else:
        for status in (spec.status, *spec.also):
            responses[str(status)] = {
                "description": spec.summary,
                "content": {"application/json": {"schema": refs[(spec.response, "serialization")]}},
            }
    problem = {"content": {PROBLEM_JSON: {"schema": refs[(Problem, "serialization")]}}}
    for status in sorted(_error_statuses(spec, rule)):
        text = _ERROR_TEXT[status]
        if status == 401 and spec.max_auth_age is not None:
            text += "; or signed in too long ago for this (sign in again)"
        responses[str(status)] = {"description": text, **problem}
    responses["default"] = {"description": "Unexpected error", **problem}
    return responses


def _error_statuses(spec: Endpoint, rule: Rule) -> set[int]:
    statuses = set(spec.errors)
    if spec.auth:
        statuses |= {401, 429, 503}  # every signed-in route is rate-limited
    if spec.roles:
        statuses.add(403)
    if rule.arguments:
        statuses.add(404)
    if spec.body:
        statuses |= {400, 413, 415, 422}
    if spec.query or spec.path:
        statuses.add(422)
    if spec.idempotent:
        statuses |= {409, 422}
    return statuses
