"""Parse a JSON body or a query string into a pydantic schema, or raise the right client error."""

from __future__ import annotations

from typing import Any, TypeVar, get_origin

from flask import request
from pydantic import BaseModel, ValidationError
from werkzeug.exceptions import BadRequest, RequestEntityTooLarge, UnsupportedMediaType

from services.base.errors import FieldError, ValidationFailed

M = TypeVar("M", bound=BaseModel)


def parse_json(schema: type[M]) -> M:
    """400 for malformed JSON, 415 for another media type, 422 naming each invalid field."""
    mimetype = request.mimetype
    if mimetype != "application/json" and not mimetype.endswith("+json"):
        raise UnsupportedMediaType()
    try:
        return schema.model_validate_json(read_body())
    except ValidationError as exc:
        raise _to_client_error(exc) from None


def parse_query(schema: type[M]) -> M:
    """422 naming each invalid or unknown query parameter."""
    values: dict[str, Any] = {}
    for name in request.args:
        field = schema.model_fields.get(name)
        is_list = field is not None and get_origin(field.annotation) is list
        values[name] = request.args.getlist(name) if is_list else request.args.get(name)
    try:
        return schema.model_validate(values)
    except ValidationError as exc:
        raise _to_client_error(exc) from None


def parse_path(schema: type[M], arguments: dict[str, Any]) -> dict[str, Any]:
    """The path arguments `schema` declares, validated; 422 naming each invalid one."""
    names = [name for name in schema.model_fields if name in arguments]
    try:
        parsed = schema.model_validate({name: arguments[name] for name in names})
    except ValidationError as exc:
        raise _to_client_error(exc) from None
    return {name: getattr(parsed, name) for name in names}


def read_body() -> bytes:
    """The request body, read once and cached; 413 past MAX_BODY_BYTES."""
    body = request.get_data(cache=True)  # 413 when Content-Length is over the limit
    limit = request.max_content_length
    # A chunked body (no Content-Length) is cut at the limit silently by Werkzeug: reaching
    # the limit means the client sent at least that much.
    if request.content_length is None and limit is not None and len(body) >= limit:
        raise RequestEntityTooLarge()
    return body


def _to_client_error(exc: ValidationError) -> Exception:
    errors = exc.errors(include_url=False, include_input=False)
    if any(error["type"] == "json_invalid" for error in errors):
        reason = errors[0]["ctx"].get("error", "") if errors[0].get("ctx") else ""
        return BadRequest(f"The request body is not valid JSON: {reason}.")
    fields = [
        FieldError(
            field=".".join(str(part) for part in error["loc"]) or "body",
            message=error["msg"].removeprefix("Value error, "),
            code=error["type"],
        )
        for error in errors
    ]
    names = ", ".join(dict.fromkeys(f.field for f in fields))
    return ValidationFailed(f"Fix these fields and send again: {names}.", fields)
