"""Serialise a response schema straight to JSON bytes (pydantic-core, no dict round trip)."""

from __future__ import annotations

from flask import Response
from pydantic import BaseModel


def json_response(body: BaseModel, status: int = 200) -> Response:
    return Response(body.model_dump_json(), status=status, mimetype="application/json")
