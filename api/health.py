"""Liveness and readiness probes for the load balancer and operators."""

from __future__ import annotations

from flask import Blueprint

from api.context import components
from api.endpoint import endpoint
from api.schemas.me import Health
from services.db import check_database

bp = Blueprint("health", __name__)


@bp.get("/healthz")
@endpoint(summary="Liveness", tags=("health",), auth=False, response=Health)
def healthz() -> Health:
    """The process is up. Touches nothing else, so a database blip never fails the ALB check."""
    return Health(status="ok")


@bp.get("/readyz")
@endpoint(summary="Readiness", tags=("health",), auth=False, response=Health, errors=(503,))
def readyz() -> Health:
    """The database answers; 503 problem+json with Retry-After when it does not."""
    check_database(components().engine)
    return Health(status="ready")
