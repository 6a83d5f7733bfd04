"""Creating and listing bookings: validation, ordering, filters, cursor pagination."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from models import Booking, BookingEvent
from tests.support.actors import booking_body
from tests.support.bookings import booking_in, ensure_profile


def test_create_writes_the_booking_and_its_first_event(actors, session: Session) -> None:  # type: ignore[no-untyped-def]
    consumer, provider = actors("consumer"), actors("provider")
    ensure_profile(provider)
    response = consumer.post("/v1/bookings", json=booking_body(provider.id))
    assert response.status_code == 201
    body = response.get_json()
    assert response.headers["Location"] == f"/v1/bookings/{body['id']}"
    assert body["status"] == "requested" and body["consumer_id"] == consumer.id
    row = session.get(Booking, body["id"])
    assert row is not None and row.status == "requested"
    events = session.scalar(select(func.count()).where(BookingEvent.booking_id == row.id))
    assert events == 1


def test_a_booking_shows_who_its_parties_are_but_lists_do_not(actors) -> None:  # type: ignore[no-untyped-def]
    consumer, provider = actors("consumer"), actors("provider")
    ensure_profile(provider, display_name="Sam Cleans")
    named = consumer.client.patch(
        "/v1/me", headers=consumer.headers(), json={"display_name": "Cora"}
    )
    assert named.status_code == 200, named.get_data(as_text=True)
    created = consumer.post("/v1/bookings", json=booking_body(provider.id)).get_json()
    expected = {
        "consumer": {
            "id": consumer.id,
            "display_name": "Cora",
            "deleted": False,
            "avatar_url": None,
        },
        "provider": {
            "id": provider.id,
            "display_name": "Sam Cleans",
            "deleted": False,
            "avatar_url": None,
        },
    }
    assert {k: created[k] for k in expected} == expected
    for viewer in (consumer, provider):
        seen = viewer.get(f"/v1/bookings/{created['id']}").get_json()
        assert {k: seen[k] for k in expected} == expected
    accepted = provider.post(f"/v1/bookings/{created['id']}/accept", json={}).get_json()
    assert {k: accepted[k] for k in expected} == expected
    listed = consumer.get("/v1/bookings").get_json()["items"]
    assert [(b["consumer"], b["provider"]) for b in listed] == [(None, None)]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"category": "plumbing"}, "category"),
        ({"scheduled_at": "2020-01-01T10:00:00Z"}, "scheduled_at"),
        ({"scheduled_at": (datetime.now(UTC) + timedelta(days=400)).isoformat()}, "scheduled_at"),
        ({"scheduled_at": "2030-01-01T10:00:00"}, "scheduled_at"),  # no time zone
        ({"scheduled_at": "tomorrow"}, "scheduled_at"),
        ({"location": {"lat": 91, "lng": 0}}, "location.lat"),
        ({"location": {"lat": 1}}, "location.lng"),
        ({"notes": "x" * 2001}, "notes"),
        ({"provider_id": "not-a-uuid"}, "provider_id"),
        ({"category": "Not A Slug"}, "category"),
        ({"extra": 1}, "extra"),
    ],
)
def test_create_rejects_bad_input(actors, session: Session, change: dict, field: str) -> None:  # type: ignore[no-untyped-def]
    consumer, provider = actors("consumer"), actors("provider")
    ensure_profile(provider)
    response = consumer.post("/v1/bookings", json={**booking_body(provider.id), **change})
    assert response.status_code == 422, response.get_data(as_text=True)
    assert field in [e["field"] for e in response.get_json()["errors"]]
    assert session.scalar(select(func.count()).select_from(Booking)) == 0


def test_unknown_inactive_or_self_provider_is_refused(actors) -> None:  # type: ignore[no-untyped-def]
    both = actors("consumer", "provider")
    ensure_profile(both)
    response = both.post("/v1/bookings", json=booking_body(both.id))
    assert response.status_code == 422
    assert response.get_json()["errors"][0]["code"] == "self_booking"
    consumer, never_set_up = actors("consumer"), actors("provider")
    response = consumer.post("/v1/bookings", json=booking_body(never_set_up.id))
    assert response.status_code == 422
    assert response.get_json()["errors"][0]["field"] == "provider_id"


def test_list_is_newest_first_and_pages_without_gaps(actors) -> None:  # type: ignore[no-untyped-def]
    consumer, provider = actors("consumer"), actors("provider")
    ensure_profile(provider)
    created = [booking_in("requested", consumer, provider) for _ in range(7)]
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        query = "/v1/bookings?limit=3" + (f"&cursor={cursor}" if cursor else "")
        body = consumer.get(query).get_json()
        seen += [item["id"] for item in body["items"]]
        assert all(item["history"] is None for item in body["items"])
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert pages == 3
    assert seen == list(reversed(created))


def test_list_of_both_roles_merges_them_newest_first_without_gaps(actors) -> None:  # type: ignore[no-untyped-def]
    """Bookings as consumer and as provider page together (two index walks merged)."""
    both, consumer, provider = (
        actors("consumer", "provider"),
        actors("consumer"),
        actors("provider"),
    )
    ensure_profile(both)
    ensure_profile(provider)
    created: list[str] = []
    accepted: set[str] = set()
    for i in range(7):
        if i % 2:  # as consumer
            created.append(booking_in("requested", both, provider))
        else:  # as provider, two of them accepted
            created.append(booking_in("accepted" if i in (2, 4) else "requested", consumer, both))
            if i in (2, 4):
                accepted.add(created[-1])
    seen: list[str] = []
    cursor = None
    while True:
        query = "/v1/bookings?limit=2" + (f"&cursor={cursor}" if cursor else "")
        body = both.get(query).get_json()
        seen += [item["id"] for item in body["items"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(created))
    requested = both.get("/v1/bookings?status=requested&limit=50").get_json()["items"]
    assert [b["id"] for b in requested] == [c for c in reversed(created) if c not in accepted]


def test_list_exact_page_ends_with_null_cursor(actors) -> None:  # type: ignore[no-untyped-def]
    consumer, provider = actors("consumer"), actors("provider")
    ensure_profile(provider)
    for _ in range(2):
        booking_in("requested", consumer, provider)
    body = consumer.get("/v1/bookings?limit=2").get_json()
    assert len(body["items"]) == 2 and body["next_cursor"] is None


def test_list_filters_by_role_and_status(actors) -> None:  # type: ignore[no-untyped-def]
    consumer, provider, other = (
        actors("consumer"),
        actors("consumer", "provider"),
        actors("consumer"),
    )
    ensure_profile(provider)
    accepted = booking_in("accepted", consumer, provider)
    requested = booking_in("requested", consumer, provider)
    booking_in("requested", other, provider)
    as_provider = provider.get("/v1/bookings?role=provider").get_json()["items"]
    assert len(as_provider) == 3
    assert provider.get("/v1/bookings?role=consumer").get_json()["items"] == []
    only_accepted = consumer.get("/v1/bookings?status=accepted").get_json()["items"]
    assert [b["id"] for b in only_accepted] == [accepted]
    assert [b["id"] for b in consumer.get("/v1/bookings?status=requested").get_json()["items"]] == [
        requested
    ]
    assert other.get("/v1/bookings").get_json()["items"][0]["consumer_id"] == other.id


@pytest.mark.parametrize(
    "query",
    [
        "limit=0",
        "limit=101",
        "limit=x",
        "status=lost",
        "role=admin",
        "cursor=garbage",
        "colour=red",
    ],
)
def test_list_rejects_bad_query(actors, query: str) -> None:  # type: ignore[no-untyped-def]
    response = actors("consumer").get(f"/v1/bookings?{query}")
    assert response.status_code == 422
    assert response.content_type == "application/problem+json"


def test_cursor_of_another_filter_is_refused(actors) -> None:  # type: ignore[no-untyped-def]
    consumer, provider = actors("consumer"), actors("provider")
    ensure_profile(provider)
    for _ in range(3):
        booking_in("requested", consumer, provider)
    cursor = consumer.get("/v1/bookings?limit=1").get_json()["next_cursor"]
    response = consumer.get(f"/v1/bookings?limit=1&status=requested&cursor={cursor}")
    assert response.status_code == 422
    assert response.get_json()["errors"][0]["field"] == "cursor"
    other = actors("consumer")
    assert other.get(f"/v1/bookings?limit=1&cursor={cursor}").status_code == 422
