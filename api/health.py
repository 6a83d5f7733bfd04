"""Liveness and readiness probes for the load balancer and operators."""

from __future__ import annotations

from flask import Blueprint, Response

from api.context import components
from api.responses import json_response
from api.schemas import Health
from services.db import check_database

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> Response:
    """Process is up. Touches nothing else, so a database blip never fails the ALB check."""
    return json_response(Health(status="ok"))


@bp.get("/readyz")
def readyz() -> Response:
    """Database answers; 503 problem+json with Retry-After when it does not."""
    check_database(components().engine)
    return json_response(Health(status="ready"))
