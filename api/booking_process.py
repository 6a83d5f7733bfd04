"""GET /v1/booking-process: the booking state machine as this deployment runs it."""

from __future__ import annotations

from flask import Blueprint, Response, request

from api.context import components
from api.endpoint import endpoint
from api.responses import json_response
from api.schemas.booking_process import BookingProcess
from services.marketplace.process import TimerPolicy, describe

bp = Blueprint("booking_process", __name__, url_prefix="/v1")

# Changes only with a deployment (the timers' settings): apps and CDNs may keep it a while.
MAX_AGE_SECONDS = 300


@bp.get("/booking-process")
@endpoint(
    summary="The booking process: states, actions, who may take them, timers",
    tags=("bookings",),
    auth=False,
    response=BookingProcess,
    cacheable=True,
)
def get_booking_process() -> Response:
    """No token needed: the same for every caller and nothing personal in it, so an app
    can read it before sign-in and a CDN may cache it. Generated from the table the API
    enforces (services/marketplace/process.py): the states, each action with the states it
    is taken in, the state it leads to, who may take it and its route, the timers with the
    setting that times each and its current value, the review window and rescheduling.
    `Cache-Control: public, max-age=300` and an ETag (If-None-Match: 304)."""
    body = BookingProcess.model_validate(describe(TimerPolicy.of(components().settings)))
    response = json_response(body)
    response.headers["Cache-Control"] = f"public, max-age={MAX_AGE_SECONDS}"
    response.add_etag()
    return response.make_conditional(request)
