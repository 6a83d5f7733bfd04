"""Drive a booking into any state through the HTTP API."""

from __future__ import annotations

from datetime import datetime

from api.context import EXTENSION
from services.marketplace import timers
from services.marketplace.process import TimerPolicy
from tests.support.actors import Actor, booking_body, profile_body

# The legal path from `requested` to each state: (who acts, action).
PATHS: dict[str, list[tuple[str, str]]] = {
    "requested": [],
    "accepted": [("provider", "accept")],
    "declined": [("provider", "decline")],
    "in_progress": [("provider", "accept"), ("provider", "start")],
    "completed": [("provider", "accept"), ("provider", "start"), ("provider", "complete")],
    "cancelled": [("consumer", "cancel")],
    # Nobody answers: the expiry timer fires (the runner with its clock moved past it).
    "expired": [("system", "expire")],
}

BODIES = {"cancel": {"reason": "Plans changed"}}


def ensure_profile(provider: Actor, **overrides: object) -> None:
    response = provider.put("/v1/me/provider-profile", json=profile_body(**overrides))
    assert response.status_code == 200, response.get_data(as_text=True)


def booking_in(state: str, consumer: Actor, provider: Actor) -> str:
    """A new booking of `consumer` with `provider`, moved to `state`; returns its id."""
    response = consumer.post("/v1/bookings", json=booking_body(provider.id))
    assert response.status_code == 201, response.get_data(as_text=True)
    booking_id = response.get_json()["id"]
    parties = {"consumer": consumer, "provider": provider}
    for who, action in PATHS[state]:
        if who == "system":
            expire_now(consumer, datetime.fromisoformat(response.get_json()["scheduled_at"]))
            continue
        step = parties[who].post(f"/v1/bookings/{booking_id}/{action}", json=BODIES.get(action, {}))
        assert step.status_code == 200, step.get_data(as_text=True)
    return booking_id


def expire_now(actor: Actor, starts_at: datetime) -> None:
    """Run the booking timers with the clock at `starts_at` (every request due by then
    expires)."""
    built = actor.client.application.extensions[EXTENSION]
    stats = timers.run_due(built.sessions, TimerPolicy.of(built.settings), now=starts_at)
    assert stats.fired >= 1, stats
