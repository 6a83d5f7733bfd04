"""Bookings, their transitions, messages and reviews (/v1/bookings...).

Anyone who is neither a party of a booking nor an admin gets 404 on every route here.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from flask import Blueprint, Response

from api.auth import current_user
from api.context import components, unit
from api.endpoint import endpoint
from api.responses import values_response
from api.schemas.marketplace import (
    Booking,
    BookingCreate,
    BookingListQuery,
    BookingPage,
    CancelRequest,
    Message,
    MessageCreate,
    MessagePage,
    MessageQuery,
    Reason,
    RescheduleRequest,
    Review,
    ReviewCreate,
)
from services.marketplace import bookings, messages, reschedule, reviews
from services.marketplace.process import TimerPolicy

bp = Blueprint("bookings", __name__, url_prefix="/v1/bookings")
_MINUTE = timedelta(minutes=1)


def _booking(view: bookings.BookingView) -> dict[str, Any]:
    """A booking as `Booking` writes it, in plain values (api/responses.py): its history,
    move and proposal views are dataclasses with the schema's very fields, which orjson
    writes as they are."""
    return {
        "id": view.id,
        "consumer_id": view.consumer_id,
        "provider_id": view.provider_id,
        "category": view.category,
        "scheduled_at": view.scheduled_at,
        "ends_at": view.ends_at,
        "duration_minutes": (view.ends_at - view.scheduled_at) // _MINUTE,
        "location": {"lat": view.lat, "lng": view.lng, "address": view.address},
        "notes": view.notes,
        "status": view.status,
        "created_at": view.created_at,
        "updated_at": view.updated_at,
        "reschedule": view.reschedule,
        "history": view.history,
        "consumer": _party(view.consumer),
        "provider": _party(view.provider),
    }


def _party(party: bookings.PartyView | None) -> dict[str, Any] | None:
    if party is None:
        return None
    return {
        "id": party.id,
        "display_name": party.display_name,
        "deleted": party.deleted,
        "avatar_url": components().avatar_urls.url(party.avatar_key),
    }


@bp.post("")
@endpoint(
    summary="Book a provider",
    tags=("bookings",),
    writes=True,
    roles=("consumer",),
    body=BookingCreate,
    response=Booking,
    status=201,
    idempotent=True,
    location=True,
)
def create_booking(body: BookingCreate) -> Response:
    """Needs the consumer role. The provider must offer the category; the time must be ahead.
    403 (`/problems/blocked`) once either of you blocked the other; 409
    (`/problems/account-deletion-scheduled`) while your account's deletion is scheduled.
    `scheduled_at` is the start; the booking lasts `duration_minutes` (default: the
    provider's `default_duration_minutes`, else 60) and the response carries `ends_at`. Once
    the provider has set availability, the start must be one of their free slots (GET
    /v1/providers/{id}/slots), else 409 `/problems/slot-unavailable`."""
    data = bookings.NewBooking(
        provider_id=body.provider_id,
        category=body.category,
        scheduled_at=body.scheduled_at,
        lat=body.location.lat,
        lng=body.location.lng,
        address=body.location.address,
        notes=body.notes,
        duration_minutes=body.duration_minutes,
    )
    view = bookings.create_booking(
        unit().session,
        consumer=current_user(),
        data=data,
        step_minutes=components().settings.slot_step_minutes,
        policy=_policy(),
    )
    response = values_response(Booking, _booking(view), 201)
    response.headers["Location"] = f"/v1/bookings/{view.id}"
    return response


@bp.get("")
@endpoint(
    summary="Your bookings, newest first",
    tags=("bookings",),
    query=BookingListQuery,
    response=BookingPage,
)
def list_bookings(query: BookingListQuery) -> dict[str, Any]:
    page = bookings.list_bookings(
        unit().session,
        viewer=current_user(),
        role=query.role,
        status=query.status,
        cursor=query.cursor,
        limit=query.limit,
    )
    return {"items": [_booking(v) for v in page.items], "next_cursor": page.next_cursor}


@bp.get("/<uuid:booking_id>")
@endpoint(summary="One booking with its history", tags=("bookings",), response=Booking)
def get_booking(booking_id: uuid.UUID) -> dict[str, Any]:
    return _booking(
        bookings.get_booking(unit().session, booking_id=booking_id, viewer=current_user())
    )


def _policy() -> TimerPolicy:
    return TimerPolicy.of(components().settings)


def _transition(
    booking_id: uuid.UUID, action: bookings.Action, reason: str | None
) -> dict[str, Any]:
    view = bookings.transition(
        unit().session,
        booking_id=booking_id,
        action=action,
        actor=current_user(),
        reason=reason,
        policy=_policy(),
    )
    return _booking(view)


_PROVIDER_ACTIONS: tuple[tuple[bookings.Action, str], ...] = (
    ("accept", "The provider accepts a requested booking"),
    ("decline", "The provider declines a requested booking"),
    ("start", "The provider starts an accepted booking"),
    ("complete", "The provider completes a booking in progress"),
)


def _provider_action(action: bookings.Action, summary: str) -> None:
    def view(booking_id: uuid.UUID, body: Reason) -> dict[str, Any]:
        return _transition(booking_id, action, body.reason)

    view.__name__ = f"{action}_booking"
    view.__doc__ = "403 for anyone but the booking's provider; 409 from any other state." + (
        " Accepting a time that overlaps another accepted or in-progress booking of yours"
        " (your buffer included) is 409 `/problems/slot-taken`."
        if action == "accept"
        else ""
    )
    bp.post(f"/<uuid:booking_id>/{action}")(
        endpoint(
            summary=summary,
            tags=("bookings",),
            writes=True,
            body=Reason,
            body_optional=True,
            response=Booking,
            idempotent=True,
            errors=(403, 409),
        )(view)
    )


for _action, _summary in _PROVIDER_ACTIONS:
    _provider_action(_action, _summary)


@bp.post("/<uuid:booking_id>/cancel")
@endpoint(
    summary="Either party cancels a requested or accepted booking",
    tags=("bookings",),
    writes=True,
    body=CancelRequest,
    response=Booking,
    idempotent=True,
    errors=(409,),
)
def cancel_booking(booking_id: uuid.UUID, body: CancelRequest) -> dict[str, Any]:
    """The consumer, the provider or an admin; a reason is required."""
    return _transition(booking_id, "cancel", body.reason)


@bp.post("/<uuid:booking_id>/reschedule")
@endpoint(
    summary="Either party proposes another time for a requested or accepted booking",
    tags=("bookings",),
    writes=True,
    body=RescheduleRequest,
    response=Booking,
    idempotent=True,
    errors=(403, 409),
)
def propose_reschedule(booking_id: uuid.UUID, body: RescheduleRequest) -> dict[str, Any]:
    """The consumer or the provider (403 for admins); the booking's `reschedule` shows the
    proposal and the other party is notified. 409 while another proposal is pending (at
    most one: it must be answered first) or when the booking is in another state; 422 for
    a start in the past or more than a year ahead; 409 `/problems/slot-unavailable` when
    the provider set availability and the new time is not one of their free slots."""
    view = reschedule.propose(
        unit().session,
        booking_id=booking_id,
        actor=current_user(),
        starts_at=body.starts_at,
        duration_minutes=body.duration_minutes,
        step_minutes=components().settings.slot_step_minutes,
    )
    return _booking(view)


def _answer(booking_id: uuid.UUID, *, accept: bool) -> dict[str, Any]:
    view = reschedule.answer(
        unit().session,
        booking_id=booking_id,
        actor=current_user(),
        accept=accept,
        step_minutes=components().settings.slot_step_minutes,
        policy=_policy(),
    )
    return _booking(view)


@bp.post("/<uuid:booking_id>/reschedule/accept")
@endpoint(
    summary="The other party accepts the proposed time: the booking moves",
    tags=("bookings",),
    writes=True,
    response=Booking,
    idempotent=True,
    errors=(403, 409),
)
def accept_reschedule(booking_id: uuid.UUID) -> dict[str, Any]:
    """403 for the party who proposed it (and admins); 409 when none is pending, when the
    time has passed, `/problems/slot-taken` when it overlaps another accepted booking of
    the provider, `/problems/slot-unavailable` when it is no longer a free slot. The
    history gets a `rescheduled` entry; the reminder and expiry follow the new start."""
    return _answer(booking_id, accept=True)


@bp.post("/<uuid:booking_id>/reschedule/decline")
@endpoint(
    summary="The other party declines the proposed time",
    tags=("bookings",),
    writes=True,
    response=Booking,
    idempotent=True,
    errors=(403, 409),
)
def decline_reschedule(booking_id: uuid.UUID) -> dict[str, Any]:
    """403 for the party who proposed it (and admins); 409 when none is pending."""
    return _answer(booking_id, accept=False)


@bp.post("/<uuid:booking_id>/messages")
@endpoint(
    summary="Send a message to the other party",
    tags=("messages",),
    writes=True,
    body=MessageCreate,
    response=Message,
    status=201,
    idempotent=True,
    errors=(403,),
)
def post_message(booking_id: uuid.UUID, body: MessageCreate) -> dict[str, Any]:
    """Only the two parties, and not once either blocked the other (403,
    `/problems/blocked`); admins may read but not write (403). 409
    `/problems/account-deleted` once the other party scheduled their account's deletion,
    `/problems/account-deletion-scheduled` while yours is."""
    view = messages.post_message(
        unit().session,
        booking_id=booking_id,
        sender=current_user(),
        body=body.body,
        content=components().content_filter,
    )
    return _message(view)


def _message(view: messages.MessageView) -> dict[str, Any]:
    return {
        "id": view.id,
        "booking_id": view.booking_id,
        "seq": view.seq,
        "sender_id": view.sender_id,
        "body": view.body,
        "removed": view.removed,
        "created_at": view.created_at,
    }


@bp.get("/<uuid:booking_id>/messages")
@endpoint(
    summary="Messages of a booking, oldest first",
    tags=("messages",),
    query=MessageQuery,
    response=MessagePage,
)
def list_messages(booking_id: uuid.UUID, query: MessageQuery) -> dict[str, Any]:
    """Poll cheaply: keep `poll_cursor` and ask again with `after=` it for only new messages."""
    page = messages.list_messages(
        unit().session,
        booking_id=booking_id,
        viewer=current_user(),
        after=query.after,
        limit=query.limit,
    )
    return {
        "items": [_message(m) for m in page.items],
        "next_cursor": page.next_cursor,
        "poll_cursor": page.poll_cursor,
    }


@bp.post("/<uuid:booking_id>/review")
@endpoint(
    summary="Review a completed booking",
    tags=("reviews",),
    writes=True,
    body=ReviewCreate,
    response=Review,
    status=201,
    idempotent=True,
    errors=(403, 409),
)
def post_review(booking_id: uuid.UUID, body: ReviewCreate) -> Review:
    """The booking's consumer, once, after it is completed and until REVIEW_WINDOW_DAYS
    (default 14) after its completion (409 after); updates the provider's rating.
    409 (`/problems/account-deletion-scheduled`) while your account's deletion is scheduled."""
    view = reviews.post_review(
        unit().session,
        booking_id=booking_id,
        author=current_user(),
        rating=body.rating,
        comment=body.comment,
        content=components().content_filter,
        window=_policy().review_window,
    )
    return Review.model_validate(view, from_attributes=True)
