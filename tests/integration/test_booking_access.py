"""Who sees what: a stranger gets 404 on every booking route; parties and admins do not."""

from __future__ import annotations

import uuid

import pytest
from flask import Flask

from tests.support.actors import booking_body
from tests.support.bookings import booking_in, ensure_profile

# A valid body for each booking route, so that only authorisation can refuse the call.
VALID_BODIES = {
    "cancel": {"reason": "Plans changed"},
    "messages": {"body": "Hello"},
    "review": {"rating": 5, "comment": "Great"},
    "reschedule": {"starts_at": "2099-01-05T10:00:00Z"},
}


def booking_routes(app: Flask) -> list[tuple[str, str]]:
    routes = []
    for rule in app.url_map.iter_rules():
        if "<uuid:booking_id>" in rule.rule:
            for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
                routes.append((method, rule.rule))
    return sorted(routes)


def test_the_matrix_covers_every_booking_route(app: Flask) -> None:
    paths = {path for _, path in booking_routes(app)}
    suffixes = {p.rsplit("/", 1)[-1] for p in paths}
    assert {"accept", "decline", "start", "complete", "cancel", "messages", "review"} <= suffixes
    assert {
        f"/v1/bookings/<uuid:booking_id>/reschedule{s}" for s in ("", "/accept", "/decline")
    } <= paths
    assert len(booking_routes(app)) >= 12


@pytest.mark.parametrize("state", ["requested", "completed"])
def test_a_stranger_gets_404_on_every_booking_route(app: Flask, actors, state: str) -> None:  # type: ignore[no-untyped-def]
    consumer, provider = actors("consumer"), actors("provider")
    # Holding every role does not make someone a party to other people's bookings.
    stranger = actors("consumer", "provider")
    ensure_profile(provider)
    booking_id = booking_in(state, consumer, provider)
    for method, rule in booking_routes(app):
        path = rule.replace("<uuid:booking_id>", booking_id)
        body = VALID_BODIES.get(path.rsplit("/", 1)[-1])
        call = stranger.get if method == "GET" else stranger.post
        response = call(path, json=body) if body is not None else call(path)
        assert response.status_code == 404, (method, rule, response.get_data(as_text=True))
        assert response.get_json()["type"] == "/problems/not-found"


def test_unknown_booking_is_404_for_everyone(actors) -> None:  # type: ignore[no-untyped-def]
    admin = actors("admin")
    assert admin.get(f"/v1/bookings/{uuid.uuid4()}").status_code == 404


def test_parties_and_admins_can_read(actors) -> None:  # type: ignore[no-untyped-def]
    consumer, provider, admin = actors("consumer"), actors("provider"), actors("admin")
    ensure_profile(provider)
    booking_id = booking_in("accepted", consumer, provider)
    for reader in (consumer, provider, admin):
        assert reader.get(f"/v1/bookings/{booking_id}").status_code == 200
        assert reader.get(f"/v1/bookings/{booking_id}/messages").status_code == 200


def test_only_consumers_create_bookings(actors) -> None:  # type: ignore[no-untyped-def]
    provider, other_provider = actors("provider"), actors("provider")
    ensure_profile(provider)
    response = other_provider.post("/v1/bookings", json=booking_body(provider.id))
    assert response.status_code == 403
    assert response.get_json()["type"] == "/problems/forbidden"


def test_malformed_booking_id_is_404(actors) -> None:  # type: ignore[no-untyped-def]
    assert actors("consumer").get("/v1/bookings/not-a-uuid").status_code == 404
