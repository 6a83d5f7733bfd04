"""Reschedule: one party proposes another time, the other accepts (the booking moves) or
declines; at most one proposal pending; the exclusion constraint and availability hold."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from models import BookingTimer, Notification
from models.base import utcnow
from tests.support.actors import Actor, booking_body
from tests.support.bookings import booking_in, ensure_profile


def parties(actors) -> tuple[Actor, Actor]:  # type: ignore[no-untyped-def]
    consumer, provider = actors("consumer"), actors("provider")
    ensure_profile(provider)
    return consumer, provider


def later(hours: float) -> datetime:
    return (utcnow() + timedelta(hours=hours)).replace(microsecond=0)


def propose(actor: Actor, booking_id: str, starts: datetime, **extra: object):  # type: ignore[no-untyped-def]
    body = {"starts_at": starts.isoformat(), **extra}
    return actor.post(f"/v1/bookings/{booking_id}/reschedule", json=body)


@pytest.mark.parametrize("state", ["requested", "accepted"])
def test_proposed_by_one_accepted_by_the_other_moves_the_booking(
    actors, session: Session, state: str
) -> None:  # type: ignore[no-untyped-def]
    consumer, provider = parties(actors)
    booking_id = booking_in(state, consumer, provider)
    before = consumer.get(f"/v1/bookings/{booking_id}").get_json()
    new_start = later(500)

    proposed = propose(consumer, booking_id, new_start, duration_minutes=90)
    assert proposed.status_code == 200, proposed.get_data(as_text=True)
    pending = proposed.get_json()["reschedule"]
    assert pending["proposed_by"] == "consumer"
    assert datetime.fromisoformat(pending["starts_at"]) == new_start
    assert datetime.fromisoformat(pending["ends_at"]) == new_start + timedelta(minutes=90)
    told = session.scalars(
        select(Notification.user_id).where(Notification.body.like("A new time is proposed%"))
    ).all()
    assert told == [uuid.UUID(provider.id)]
    # At most one pending: a second proposal, by either party, is 409.
    assert propose(provider, booking_id, later(600)).status_code == 409
    # The proposer cannot answer their own proposal.
    assert consumer.post(f"/v1/bookings/{booking_id}/reschedule/accept").status_code == 403

    accepted = provider.post(f"/v1/bookings/{booking_id}/reschedule/accept")
    assert accepted.status_code == 200, accepted.get_data(as_text=True)
    moved = accepted.get_json()
    assert moved["reschedule"] is None
    assert moved["status"] == state
    assert datetime.fromisoformat(moved["scheduled_at"]) == new_start
    assert moved["duration_minutes"] == 90
    last = moved["history"][-1]
    assert last["kind"] == "rescheduled"
    assert (last["from_status"], last["to_status"]) == (state, state)
    assert (last["actor_role"], last["actor_id"]) == ("provider", provider.id)
    assert last["move"]["from_starts_at"] == before["scheduled_at"]
    assert datetime.fromisoformat(last["move"]["to_starts_at"]) == new_start
    # The timers follow the new start.
    due = dict(
        session.execute(
            select(BookingTimer.kind, BookingTimer.due_at).where(
                BookingTimer.booking_id == uuid.UUID(booking_id)
            )
        ).all()
    )
    if state == "accepted":
        assert due == {"remind": new_start - timedelta(minutes=60)}
    else:
        created = datetime.fromisoformat(before["created_at"])
        assert due == {"expire": created + timedelta(hours=24)}
    # Nothing pending any more.
    assert provider.post(f"/v1/bookings/{booking_id}/reschedule/decline").status_code == 409


def test_declining_keeps_the_time(actors) -> None:  # type: ignore[no-untyped-def]
    consumer, provider = parties(actors)
    booking_id = booking_in("accepted", consumer, provider)
    before = consumer.get(f"/v1/bookings/{booking_id}").get_json()
    assert propose(provider, booking_id, later(300)).status_code == 200
    assert provider.post(f"/v1/bookings/{booking_id}/reschedule/decline").status_code == 403
    declined = consumer.post(f"/v1/bookings/{booking_id}/reschedule/decline")
    assert declined.status_code == 200
    after = declined.get_json()
    assert after["reschedule"] is None
    assert after["scheduled_at"] == before["scheduled_at"]
    assert [e["kind"] for e in after["history"]] == ["transition", "transition"]
    # Declined: a new proposal is welcome.
    assert propose(provider, booking_id, later(301)).status_code == 200


def test_who_may_and_when(actors) -> None:  # type: ignore[no-untyped-def]
    consumer, provider = parties(actors)
    admin, stranger = actors("admin"), actors("consumer", "provider")
    booking_id = booking_in("accepted", consumer, provider)
    assert propose(stranger, booking_id, later(300)).status_code == 404
    assert propose(admin, booking_id, later(300)).status_code == 403
    assert consumer.post(f"/v1/bookings/{booking_id}/reschedule/accept").status_code == 409
    for state in ("in_progress", "completed", "cancelled", "declined"):
        other = booking_in(state, consumer, provider)
        response = propose(consumer, other, later(300))
        assert response.status_code == 409, state
        assert response.content_type == "application/problem+json"


def test_a_cancel_drops_the_pending_proposal(actors) -> None:  # type: ignore[no-untyped-def]
    consumer, provider = parties(actors)
    booking_id = booking_in("accepted", consumer, provider)
    assert propose(provider, booking_id, later(300)).status_code == 200
    cancelled = consumer.post(f"/v1/bookings/{booking_id}/cancel", json={"reason": "No"})
    assert cancelled.get_json()["reschedule"] is None
    assert consumer.post(f"/v1/bookings/{booking_id}/reschedule/accept").status_code == 409


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"starts_at": "2020-01-01T09:00:00Z"}, "not_future"),
        ({"starts_at": (utcnow() + timedelta(days=400)).isoformat()}, "too_far_ahead"),
        ({"starts_at": (utcnow() + timedelta(days=3)).isoformat(), "duration_minutes": 4}, None),
        ({"starts_at": "2026-12-30T09:00:00"}, None),  # no zone
        ({}, None),
    ],
)
def test_bad_proposals_are_422_with_the_field(actors, body: dict, code: str | None) -> None:  # type: ignore[no-untyped-def,type-arg]
    consumer, provider = parties(actors)
    booking_id = booking_in("requested", consumer, provider)
    response = consumer.post(f"/v1/bookings/{booking_id}/reschedule", json=body)
    assert response.status_code == 422, response.get_data(as_text=True)
    problem = response.get_json()
    fields = {e["field"] for e in problem["errors"]}
    assert fields & {"starts_at", "duration_minutes"}
    if code is not None:
        assert [e["code"] for e in problem["errors"]] == [code]


def test_moving_into_a_taken_time_is_slot_taken(actors) -> None:  # type: ignore[no-untyped-def]
    consumer, provider = parties(actors)
    first = booking_in("accepted", consumer, provider)
    taken = consumer.get(f"/v1/bookings/{first}").get_json()["scheduled_at"]
    second = booking_in("accepted", consumer, provider)
    before = consumer.get(f"/v1/bookings/{second}").get_json()
    assert propose(consumer, second, datetime.fromisoformat(taken)).status_code == 200
    response = provider.post(f"/v1/bookings/{second}/reschedule/accept")
    assert response.status_code == 409
    assert response.get_json()["type"] == "/problems/slot-taken"
    after = consumer.get(f"/v1/bookings/{second}").get_json()
    assert after["scheduled_at"] == before["scheduled_at"]  # nothing moved
    assert after["reschedule"] is not None  # still pending: rolled back as a whole


def test_outside_availability_is_slot_unavailable(actors) -> None:  # type: ignore[no-untyped-def]
    consumer, provider = parties(actors)
    booking_id = booking_in("requested", consumer, provider)
    rules = {
        "time_zone": "UTC",
        "weekly": [{"weekday": d, "start": "09:00", "end": "17:00"} for d in range(7)],
        "exceptions": [],
    }
    assert provider.put("/v1/me/availability", json=rules).status_code == 200
    night = (utcnow() + timedelta(days=5)).replace(hour=2, minute=0, second=0, microsecond=0)
    response = propose(consumer, booking_id, night)
    assert response.status_code == 409
    assert response.get_json()["type"] == "/problems/slot-unavailable"
    day = night.replace(hour=10)
    assert propose(consumer, booking_id, day).status_code == 200


def test_booking_body_still_books(actors) -> None:  # type: ignore[no-untyped-def]
    consumer, provider = parties(actors)
    created = consumer.post("/v1/bookings", json=booking_body(provider.id)).get_json()
    assert created["reschedule"] is None
    listed = consumer.get("/v1/bookings").get_json()["items"]
    assert [b["reschedule"] for b in listed] == [None]
