"""The whole marketplace journey over HTTP with real Cognito tokens: find, book, accept,
message, start, complete, review."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
import requests

from devstack.cognito import sign_in
from tests.e2e.conftest import Stack

pytestmark = pytest.mark.e2e


class Client:
    def __init__(self, stack: Stack, username: str) -> None:
        self.base = stack.base_url
        self.session = requests.Session()
        token = sign_in(stack.pool, username)["access"]
        self.session.headers["Authorization"] = f"Bearer {token}"

    def call(self, method: str, path: str, expect: int, **kwargs: object) -> dict:
        response = self.session.request(method, self.base + path, timeout=10, **kwargs)  # type: ignore[arg-type]
        assert response.status_code == expect, (method, path, response.text)
        return response.json() if response.content else {}


def test_consumer_and_provider_complete_the_journey(stack: Stack) -> None:
    consumer, provider = Client(stack, "consumer"), Client(stack, "provider")
    provider_id = provider.call(
        "PUT",
        "/v1/me/provider-profile",
        200,
        json={
            "display_name": "Spotless Sam",
            "bio": "Flats and offices, eco products",
            "categories": ["cleaning", "windows"],
            "location": {"lat": 52.52, "lng": 13.405},
            "service_radius_km": 15,
            "hourly_rate_cents": 2500,
            "currency": "EUR",
        },
    )["id"]

    found = consumer.call(
        "GET", "/v1/providers?category=cleaning&lat=52.51&lng=13.40&radius_km=5&q=eco", 200
    )
    assert [p["id"] for p in found["items"]] == [provider_id]
    assert 0 < found["items"][0]["distance_km"] < 5

    when = (datetime.now(UTC) + timedelta(days=3)).isoformat()
    booking = {
        "provider_id": provider_id,
        "category": "cleaning",
        "scheduled_at": when,
        "location": {"lat": 52.5, "lng": 13.4, "address": "Alexanderplatz 1"},
        "notes": "Two rooms",
    }
    key = {"Idempotency-Key": str(uuid.uuid4())}
    created = consumer.call("POST", "/v1/bookings", 201, json=booking, headers=key)
    retried = consumer.call("POST", "/v1/bookings", 201, json=booking, headers=key)
    assert retried["id"] == created["id"]
    booking_id = created["id"]

    provider.call("POST", f"/v1/bookings/{booking_id}/accept", 200)
    consumer.call("POST", f"/v1/bookings/{booking_id}/messages", 201, json={"body": "See you!"})
    inbox = provider.call("GET", f"/v1/bookings/{booking_id}/messages", 200)
    assert [m["body"] for m in inbox["items"]] == ["See you!"]
    provider.call("POST", f"/v1/bookings/{booking_id}/start", 200)
    done = provider.call("POST", f"/v1/bookings/{booking_id}/complete", 200)
    assert [e["to_status"] for e in done["history"]] == [
        "requested",
        "accepted",
        "in_progress",
        "completed",
    ]
    consumer.call("POST", f"/v1/bookings/{booking_id}/review", 201, json={"rating": 5})
    profile = consumer.call("GET", f"/v1/providers/{provider_id}", 200)
    assert (profile["rating_average"], profile["rating_count"]) == (5.0, 1)

    mine = consumer.call("GET", "/v1/bookings?role=consumer", 200)
    assert mine["items"][0]["id"] == booking_id and mine["items"][0]["status"] == "completed"
    spec = requests.get(f"{stack.base_url}/openapi.json", timeout=10).json()
    assert spec["openapi"] == "3.1.0"
