"""Test users that act through the HTTP API with tokens minted for them."""

from __future__ import annotations

import itertools
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from tests.support.tokens import SigningKey, token_for

GROUPS = {"consumer": ["consumers"], "provider": ["providers"], "admin": ["admins"]}


@dataclass
class Actor:
    """A signed-in user: `alice.post("/v1/bookings", json=...)`."""

    client: FlaskClient
    key: SigningKey
    sub: str
    groups: list[str]
    _id: str | None = field(default=None, repr=False)

    def headers(self, **extra: str) -> dict[str, str]:
        token = token_for(self.key, self.sub, groups=self.groups, username=self.sub)
        return {"Authorization": f"Bearer {token}", **extra}

    @property
    def id(self) -> str:
        if self._id is None:
            response = self.get("/v1/me")
            assert response.status_code == 200, response.get_data(as_text=True)
            self._id = response.get_json()["id"]
        return self._id

    def get(self, path: str, **kwargs: Any) -> TestResponse:
        return self.client.get(path, headers=self.headers(**kwargs.pop("headers", {})), **kwargs)

    def post(self, path: str, **kwargs: Any) -> TestResponse:
        return self.client.post(path, headers=self.headers(**kwargs.pop("headers", {})), **kwargs)

    def put(self, path: str, **kwargs: Any) -> TestResponse:
        return self.client.put(path, headers=self.headers(**kwargs.pop("headers", {})), **kwargs)

    def delete(self, path: str, **kwargs: Any) -> TestResponse:
        return self.client.delete(path, headers=self.headers(**kwargs.pop("headers", {})), **kwargs)


def make_actor(client: FlaskClient, key: SigningKey, *roles: str, sub: str | None = None) -> Actor:
    groups = [g for role in roles for g in GROUPS[role]]
    return Actor(client, key, sub or f"sub-{uuid.uuid4().hex[:12]}", groups)


def profile_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "display_name": "Spotless Sam",
        "bio": "Flats and offices",
        "categories": ["cleaning"],
        "location": {"lat": 52.52, "lng": 13.405},
        "service_radius_km": 15,
        "hourly_rate_cents": 2500,
        "currency": "EUR",
    }
    body.update(overrides)
    return body


# Each booking_body gets its own hour: two bookings of one provider accepted in a test must not
# overlap (the exclusion constraint would refuse the second, 409 /problems/slot-taken).
_HOURS = itertools.count()


def booking_body(provider_id: str, **overrides: Any) -> dict[str, Any]:
    later = timedelta(days=2, hours=2 * (next(_HOURS) % 2000))  # at most ~167 days ahead
    when = (datetime.now(UTC) + later).isoformat()
    body: dict[str, Any] = {
        "provider_id": provider_id,
        "category": "cleaning",
        "scheduled_at": when,
        "location": {"lat": 52.5, "lng": 13.4, "address": "Alexanderplatz 1"},
        "notes": "Two rooms",
    }
    body.update(overrides)
    return body
