"""Provider availability (/v1/me/availability) and bookable slots (/v1/providers/{id}/slots)."""

from __future__ import annotations

import uuid

from flask import Blueprint

from api.auth import current_user
from api.context import components, unit
from api.endpoint import endpoint
from api.schemas.scheduling import Availability, AvailabilityIn, Slot, SlotPage, SlotQuery
from models.base import utcnow
from services.marketplace import availability, slots

bp = Blueprint("availability", __name__, url_prefix="/v1")


def _availability(view: availability.AvailabilityView) -> Availability:
    # The stored document is JSON (dates as text): validated leniently, unlike a request.
    return Availability.model_validate(
        {**view.document, "updated_at": view.updated_at}, strict=False
    )


@bp.put("/me/availability")
@endpoint(
    summary="Set your availability",
    tags=("scheduling",),
    writes=True,
    roles=("provider",),
    body=AvailabilityIn,
    response=Availability,
)
def put_availability(body: AvailabilityIn) -> Availability:
    """Needs the provider role. Replaces the whole document: weekly hours (several intervals
    a day; touching ones join), date exceptions (the date's intervals instead of the weekly
    ones; `[]` is a day off), all in `time_zone`'s local time, plus the booking rules. From
    then on a booking request must fit a free slot (409 `/problems/slot-unavailable`).
    422 naming the field for an unknown zone, a bad date, an end not after its start, an
    interval overlapping another of the same day (`weekly.3.start`) or a date given twice."""
    view = availability.put_availability(
        unit().session, provider_id=current_user().id, document=body.model_dump(mode="json")
    )
    return _availability(view)


@bp.get("/me/availability")
@endpoint(
    summary="Your availability",
    tags=("scheduling",),
    roles=("provider",),
    response=Availability,
    errors=(404,),
)
def get_availability() -> Availability:
    """404 until you have set it with PUT: until then consumers may request any time and
    your slots list is empty."""
    return _availability(
        availability.get_availability(unit().session, provider_id=current_user().id)
    )


@bp.get("/providers/<uuid:provider_id>/slots")
@endpoint(
    summary="A provider's free slots",
    tags=("scheduling",),
    query=SlotQuery,
    response=SlotPage,
    errors=(404,),
)
def get_slots(provider_id: uuid.UUID, query: SlotQuery) -> SlotPage:
    """Free slots of `duration_minutes` starting in [`from`, `to`) (default: now and 7 days
    later; at most 31 days, 422 otherwise), oldest first, in UTC, on a grid of
    `SLOT_STEP_MINUTES` (default 30) from the start of each available interval: inside the
    provider's availability, not overlapping their accepted or in-progress bookings plus
    buffer, at least `min_notice_minutes` and at most `max_days_ahead` days ahead. Correct
    across daylight-saving changes. `time_zone` null: the provider set no availability (any
    time may be requested). 404 as for the profile (unknown, inactive, blocked)."""
    found = slots.provider_slots(
        unit().session,
        provider_id=provider_id,
        viewer=current_user(),
        from_=query.from_,
        to=query.to,
        duration_minutes=query.duration_minutes,
        step_minutes=components().settings.slot_step_minutes,
        now=utcnow(),
    )
    return SlotPage(
        time_zone=found.time_zone,
        duration_minutes=found.duration_minutes,
        items=[Slot(starts_at=s, ends_at=e) for s, e in found.items],
    )
