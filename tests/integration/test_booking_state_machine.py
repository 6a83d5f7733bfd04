"""Every state x every action x every kind of caller, against the rules in services/bookings."""

from __future__ import annotations

import pytest

from services.marketplace.bookings import STATUSES, TRANSITIONS
from tests.support.bookings import BODIES, booking_in, ensure_profile

CALLERS = ("consumer", "provider", "admin", "stranger")


def expected(state: str, action: str, caller: str) -> tuple[int, str]:
    """(status code, booking status afterwards), derived independently of the service code."""
    if caller == "stranger":
        return 404, state
    allowed_callers = {
        "accept": {"provider"},
        "decline": {"provider"},
        "start": {"provider"},
        "complete": {"provider"},
        "cancel": {"consumer", "provider", "admin"},
    }[action]
    if caller not in allowed_callers:
        return 403, state
    moves = {
        ("requested", "accept"): "accepted",
        ("requested", "decline"): "declined",
        ("requested", "cancel"): "cancelled",
        ("accepted", "start"): "in_progress",
        ("accepted", "cancel"): "cancelled",
        ("in_progress", "complete"): "completed",
    }
    if (state, action) not in moves:
        return 409, state
    return 200, moves[(state, action)]


def test_the_rules_table_matches_the_spec() -> None:
    assert set(TRANSITIONS) == {"accept", "decline", "start", "complete", "cancel"}
    assert len(STATUSES) == 7  # "expired" is reached by a timer only


@pytest.mark.parametrize("state", STATUSES)
@pytest.mark.parametrize("action", sorted(TRANSITIONS))
@pytest.mark.parametrize("caller", CALLERS)
def test_transition(actors, state: str, action: str, caller: str) -> None:  # type: ignore[no-untyped-def]
    consumer, provider = actors("consumer"), actors("provider")
    admin, stranger = actors("admin"), actors("consumer", "provider")
    ensure_profile(provider)
    booking_id = booking_in(state, consumer, provider)
    who = {"consumer": consumer, "provider": provider, "admin": admin, "stranger": stranger}
    status, after = expected(state, action, caller)

    response = who[caller].post(f"/v1/bookings/{booking_id}/{action}", json=BODIES.get(action, {}))

    assert response.status_code == status, response.get_data(as_text=True)
    if status != 200:
        assert response.content_type == "application/problem+json"
    current = consumer.get(f"/v1/bookings/{booking_id}").get_json()
    assert current["status"] == after
    history = current["history"]
    if status == 200:
        last = history[-1]
        assert (last["from_status"], last["to_status"]) == (state, after)
        assert last["actor_id"] == who[caller].id
        assert last["actor_role"] == caller
        if action == "cancel":
            assert last["reason"] == "Plans changed"
    else:
        assert history[-1]["to_status"] == state  # nothing recorded for a refused action


def test_cancel_needs_a_reason(actors) -> None:  # type: ignore[no-untyped-def]
    consumer, provider = actors("consumer"), actors("provider")
    ensure_profile(provider)
    booking_id = booking_in("requested", consumer, provider)
    for body in ({}, {"reason": ""}, {"reason": "   "}):
        response = consumer.post(f"/v1/bookings/{booking_id}/cancel", json=body)
        assert response.status_code == 422
        assert response.get_json()["errors"][0]["field"] == "reason"


def test_decline_reason_is_optional_and_recorded(actors) -> None:  # type: ignore[no-untyped-def]
    consumer, provider = actors("consumer"), actors("provider")
    ensure_profile(provider)
    first = booking_in("requested", consumer, provider)
    response = provider.post(f"/v1/bookings/{first}/decline", json={"reason": "Fully booked"})
    assert response.get_json()["history"][-1]["reason"] == "Fully booked"
    second = booking_in("requested", consumer, provider)
    assert provider.post(f"/v1/bookings/{second}/decline").status_code == 200
