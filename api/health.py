"""Liveness and readiness probes for the load balancer and operators."""

from __future__ import annotations

from flask import Blueprint

from api.context import components
from api.endpoint import endpoint
from api.schemas.me import Health, Readiness, ReplicaHealth
from services.base.db import check_database

bp = Blueprint("health", __name__)


@bp.get("/healthz")
@endpoint(summary="Liveness", tags=("health",), auth=False, response=Health)
def healthz() -> Health:
    """The process is up. Touches nothing else, so a database blip never fails the ALB check."""
    return Health(status="ok")


@bp.get("/readyz")
@endpoint(summary="Readiness", tags=("health",), auth=False, response=Readiness, errors=(503,))
def readyz() -> Readiness:
    """The primary answers; 503 problem+json with Retry-After when it does not.

    Replicas are detail only: a replica that is down or lagging is skipped, not fatal.
    """
    built = components()
    check_database(built.engine)
    if built.reads is None:
        return Readiness(status="ready")
    replicas = [
        ReplicaHealth(name=s.name, state=s.state, lag_seconds=s.lag_seconds, error=s.error)
        for s in built.reads.statuses()
    ]
    return Readiness(status="ready", replicas=replicas)
