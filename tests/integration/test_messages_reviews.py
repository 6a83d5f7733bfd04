"""Messages (ordering, polling, who may write) and reviews (once, completed, ratings)."""

from __future__ import annotations

import pytest

from tests.support.bookings import booking_in, ensure_profile


@pytest.fixture
def booking(actors):  # type: ignore[no-untyped-def]
    consumer, provider, admin = actors("consumer"), actors("provider"), actors("admin")
    ensure_profile(provider)
    return consumer, provider, admin, booking_in("accepted", consumer, provider)


def test_messages_come_back_oldest_first_with_numbers(booking) -> None:  # type: ignore[no-untyped-def]
    consumer, provider, _, booking_id = booking
    path = f"/v1/bookings/{booking_id}/messages"
    for i, sender in enumerate([consumer, provider, consumer]):
        response = sender.post(path, json={"body": f"m{i}"})
        assert response.status_code == 201
        assert response.get_json()["seq"] == i + 1
    body = provider.get(path).get_json()
    assert [m["body"] for m in body["items"]] == ["m0", "m1", "m2"]
    assert [m["sender_id"] for m in body["items"]] == [consumer.id, provider.id, consumer.id]
    assert body["next_cursor"] is None


def test_polling_returns_only_new_messages(booking) -> None:  # type: ignore[no-untyped-def]
    consumer, provider, _, booking_id = booking
    path = f"/v1/bookings/{booking_id}/messages"
    empty = provider.get(path).get_json()
    assert empty["items"] == [] and empty["poll_cursor"]
    consumer.post(path, json={"body": "first"})
    first = provider.get(f"{path}?after={empty['poll_cursor']}").get_json()
    assert [m["body"] for m in first["items"]] == ["first"]
    nothing_new = provider.get(f"{path}?after={first['poll_cursor']}").get_json()
    assert nothing_new["items"] == [] and nothing_new["poll_cursor"] == first["poll_cursor"]
    consumer.post(path, json={"body": "second"})
    second = provider.get(f"{path}?after={first['poll_cursor']}").get_json()
    assert [m["body"] for m in second["items"]] == ["second"]


def test_long_conversations_page(booking) -> None:  # type: ignore[no-untyped-def]
    consumer, provider, _, booking_id = booking
    path = f"/v1/bookings/{booking_id}/messages"
    for i in range(5):
        consumer.post(path, json={"body": str(i)})
    page = provider.get(f"{path}?limit=2").get_json()
    got = [m["body"] for m in page["items"]]
    while page["next_cursor"]:
        page = provider.get(f"{path}?limit=2&after={page['next_cursor']}").get_json()
        got += [m["body"] for m in page["items"]]
    assert got == ["0", "1", "2", "3", "4"]
    exact = provider.get(f"{path}?limit=5").get_json()
    assert len(exact["items"]) == 5 and exact["next_cursor"] is None


def test_admins_read_but_do_not_write(booking) -> None:  # type: ignore[no-untyped-def]
    consumer, _, admin, booking_id = booking
    path = f"/v1/bookings/{booking_id}/messages"
    consumer.post(path, json={"body": "hello"})
    assert admin.get(path).get_json()["items"][0]["body"] == "hello"
    refused = admin.post(path, json={"body": "moderator here"})
    assert refused.status_code == 403


@pytest.mark.parametrize(
    "body", [{"body": ""}, {"body": "   "}, {"body": "x" * 4001}, {}, {"body": 5}]
)
def test_message_body_is_validated(booking, body) -> None:  # type: ignore[no-untyped-def]
    consumer, _, _, booking_id = booking
    response = consumer.post(f"/v1/bookings/{booking_id}/messages", json=body)
    assert response.status_code == 422
    assert response.get_json()["errors"][0]["field"] == "body"


def test_foreign_or_garbage_after_cursor_is_422(booking, actors) -> None:  # type: ignore[no-untyped-def]
    consumer, provider, _, booking_id = booking
    other = booking_in("accepted", consumer, provider)
    foreign = consumer.get(f"/v1/bookings/{other}/messages").get_json()["poll_cursor"]
    for after in (foreign, "garbage", "eyJzIjoxfQ"):
        response = consumer.get(f"/v1/bookings/{booking_id}/messages?after={after}")
        assert response.status_code == 422
        assert response.get_json()["errors"][0]["field"] == "after"


def test_a_hidden_booking_is_404_before_its_cursor_is_read(booking, actors) -> None:  # type: ignore[no-untyped-def]
    consumer, _, _, booking_id = booking
    consumer.post(f"/v1/bookings/{booking_id}/messages", json={"body": "private"})
    stranger = actors("consumer")
    for query in ("", "?after=garbage", f"?after={consumer_poll(consumer, booking_id)}"):
        response = stranger.get(f"/v1/bookings/{booking_id}/messages{query}")
        assert response.status_code == 404, query
        assert "private" not in response.get_data(as_text=True)


def consumer_poll(actor, booking_id: str) -> str:  # type: ignore[no-untyped-def]
    return actor.get(f"/v1/bookings/{booking_id}/messages?limit=1").get_json()["poll_cursor"]


def test_review_flow_and_rating_average(actors) -> None:  # type: ignore[no-untyped-def]
    consumer, provider, admin = actors("consumer"), actors("provider"), actors("admin")
    ensure_profile(provider)
    first = booking_in("completed", consumer, provider)
    second = booking_in("completed", consumer, provider)
    assert provider.post(f"/v1/bookings/{first}/review", json={"rating": 5}).status_code == 403
    assert admin.post(f"/v1/bookings/{first}/review", json={"rating": 5}).status_code == 403
    response = consumer.post(f"/v1/bookings/{first}/review", json={"rating": 5, "comment": "Top"})
    assert response.status_code == 201 and response.get_json()["rating"] == 5
    again = consumer.post(f"/v1/bookings/{first}/review", json={"rating": 1})
    assert again.status_code == 409
    consumer.post(f"/v1/bookings/{second}/review", json={"rating": 4})
    profile = consumer.get(f"/v1/providers/{provider.id}").get_json()
    assert (profile["rating_average"], profile["rating_count"]) == (4.5, 2)


@pytest.mark.parametrize("state", ["requested", "accepted", "in_progress", "declined", "cancelled"])
def test_reviews_wait_for_completion(actors, state: str) -> None:  # type: ignore[no-untyped-def]
    consumer, provider = actors("consumer"), actors("provider")
    ensure_profile(provider)
    booking_id = booking_in(state, consumer, provider)
    response = consumer.post(f"/v1/bookings/{booking_id}/review", json={"rating": 3})
    assert response.status_code == 409
    assert consumer.get(f"/v1/providers/{provider.id}").get_json()["rating_count"] == 0


@pytest.mark.parametrize("rating", [0, 6, 4.5, "5", None])
def test_rating_must_be_1_to_5(actors, rating) -> None:  # type: ignore[no-untyped-def]
    consumer, provider = actors("consumer"), actors("provider")
    ensure_profile(provider)
    booking_id = booking_in("completed", consumer, provider)
    response = consumer.post(f"/v1/bookings/{booking_id}/review", json={"rating": rating})
    assert response.status_code == 422
