"""Serialise a response straight to JSON bytes: a schema (pydantic-core, no dict round trip),
or, on the hot lists, plain values with orjson checked against their schema."""

from __future__ import annotations

from typing import Any

import orjson
from flask import Response
from pydantic import BaseModel, ValidationError

from api.context import components
from api.json import ORJSON_OPTIONS


def json_response(body: BaseModel, status: int = 200) -> Response:
    return Response(body.model_dump_json(), status=status, mimetype="application/json")


class ResponseContractBroken(AssertionError):
    """A response built from plain values is not what its schema would answer."""


def values_response(schema: type[BaseModel], values: dict[str, Any], status: int = 200) -> Response:
    """`values` (dicts, lists, str, numbers, UUIDs, datetimes, dataclasses) as JSON, shaped
    as `schema`.

    For the hot routes: building a pydantic model per item and dumping it cost more than
    the rest of a 20-item list's request (BENCHMARKS.md, lever 6); orjson writes the same
    JSON from plain values in a fraction of that. `schema` stays the contract: OpenAPI
    documents it, and with RESPONSE_CHECKS on (the test suite) every answer made here is
    parsed by `schema` and must equal what `schema` itself would write, field for field, so
    the two cannot drift apart unnoticed.
    """
    # orjson refuses what it cannot write exactly (a Decimal, an integer beyond 64 bits:
    # request bodies cannot carry one in, api/validation.py): a bug to see, not to hide.
    body = orjson.dumps(values, option=ORJSON_OPTIONS)
    if components().settings.response_checks:
        _check(schema, body)
    return Response(body, status=status, mimetype="application/json")


def _check(schema: type[BaseModel], body: bytes) -> None:
    # Parsed by the schema (a wrong type or a missing field fails here), then written by it:
    # a field the schema does not know, or one it would write differently, shows as a change.
    try:
        expected = orjson.loads(schema.model_validate_json(body).model_dump_json())
    except ValidationError as exc:
        broken = f"{schema.__name__}: {body[:2000]!r} fails it: {exc}"
        raise ResponseContractBroken(broken) from None
    if orjson.loads(body) != expected:
        raise ResponseContractBroken(
            f"{schema.__name__}: the answer {body[:2000]!r} differs from the schema's own "
            f"{orjson.dumps(expected)[:2000]!r}"
        )
