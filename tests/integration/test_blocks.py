"""Blocks (/v1/blocks): what a block stops between two users, either way, and what it leaves.

Once either of two users blocked the other: no new booking (403), no message (403), no
provider notification (403), all `/problems/blocked`; the provider is missing from the other's
search and their profile is 404. Bookings they already share stay readable and cancellable.
Lifting the block restores everything.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.support.actors import Actor, booking_body
from tests.support.bookings import booking_in, ensure_profile

BLOCKED = "/problems/blocked"
SEARCH = "/v1/providers?category=cleaning&lat=52.52&lng=13.405&radius_km=50"


def _ok(response: Any, status: int = 200) -> Any:
    assert response.status_code == status, response.get_data(as_text=True)
    return response.get_json()


def _blocked(response: Any, detail: str) -> None:
    assert response.status_code == 403, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    problem = response.get_json()
    assert (problem["type"], problem["title"], problem["detail"]) == (BLOCKED, "Blocked", detail)


def _search_ids(viewer: Actor, path: str = SEARCH) -> set[str]:
    return {hit["id"] for hit in _ok(viewer.get(path))["items"]}


def _note(user_id: str) -> dict[str, Any]:
    return {"user_id": user_id, "title": "Running late", "body": "Ten minutes", "data": {}}


@pytest.fixture
def pair(actors):  # type: ignore[no-untyped-def]
    """A consumer and a provider (with a profile), and another provider nobody blocks."""
    consumer, provider, other = actors("consumer"), actors("provider"), actors("provider")
    ensure_profile(provider)
    ensure_profile(other, display_name="Other Olga")
    return consumer, provider, other


@pytest.mark.parametrize("blocker", ["consumer", "provider"])
def test_a_block_either_way_stops_everything_new_until_it_is_lifted(pair, blocker: str) -> None:  # type: ignore[no-untyped-def]
    consumer, provider, other = pair
    # Shared before the block: one to talk about, one for each party to cancel.
    accepted = booking_in("accepted", consumer, provider)
    to_cancel_by_consumer = booking_in("requested", consumer, provider)
    to_cancel_by_provider = booking_in("accepted", consumer, provider)
    messages = f"/v1/bookings/{accepted}/messages"
    assert _ok(consumer.post(messages, json={"body": "Before"}), 201)["seq"] == 1
    assert provider.id in _search_ids(consumer)

    me, them = (consumer, provider) if blocker == "consumer" else (provider, consumer)
    block = _ok(me.post("/v1/blocks", json={"user_id": them.id}), 201)
    assert block["user_id"] == them.id and block["created_at"]

    # Nothing new passes, in either direction, and the answer does not say who blocked.
    _blocked(
        consumer.post("/v1/bookings", json=booking_body(provider.id)),
        "You cannot book this provider.",
    )
    for sender in (consumer, provider):
        _blocked(sender.post(messages, json={"body": "Hello?"}), "You cannot message this user.")
    _blocked(
        provider.post("/v1/notifications", json=_note(consumer.id)), "You cannot notify this user."
    )
    # The provider is gone from the consumer's search (every shape of it) and profile.
    for path in (
        SEARCH,
        "/v1/providers",
        "/v1/providers?category=cleaning",
        "/v1/providers?q=spotless",
    ):
        found = _search_ids(consumer, path)
        assert provider.id not in found, path
    assert other.id in _search_ids(consumer)
    missing = consumer.get(f"/v1/providers/{provider.id}")
    assert missing.status_code == 404
    unknown = consumer.get(f"/v1/providers/{uuid.uuid4()}")
    assert missing.get_json()["detail"] == unknown.get_json()["detail"]
    _ok(consumer.get(f"/v1/providers/{other.id}"))
    # Someone else still finds and books the provider.
    assert provider.id in _search_ids(other)

    # What they already share stays readable, and either party may cancel.
    for party in (consumer, provider):
        assert _ok(party.get(f"/v1/bookings/{accepted}"))["status"] == "accepted"
        assert [m["body"] for m in _ok(party.get(messages))["items"]] == ["Before"]
        listed = {b["id"] for b in _ok(party.get("/v1/bookings"))["items"]}
        assert {accepted, to_cancel_by_consumer, to_cancel_by_provider} <= listed
    reason = {"reason": "Not any more"}
    cancelled = consumer.post(f"/v1/bookings/{to_cancel_by_consumer}/cancel", json=reason)
    assert _ok(cancelled)["status"] == "cancelled"
    cancelled = provider.post(f"/v1/bookings/{to_cancel_by_provider}/cancel", json=reason)
    assert _ok(cancelled)["status"] == "cancelled"

    # Only the blocker can lift it.
    assert them.delete(f"/v1/blocks/{me.id}").status_code == 404
    response = me.delete(f"/v1/blocks/{them.id}")
    assert response.status_code == 204 and response.get_data() == b""
    assert _ok(me.get("/v1/blocks"))["items"] == []

    # Everything is possible again; the refused messages took no number.
    _ok(consumer.post("/v1/bookings", json=booking_body(provider.id)), 201)
    assert _ok(provider.post(messages, json={"body": "After"}), 201)["seq"] == 2
    _ok(provider.post("/v1/notifications", json=_note(consumer.id)), 201)
    assert provider.id in _search_ids(consumer)
    assert _ok(consumer.get(f"/v1/providers/{provider.id}"))["id"] == provider.id


def test_while_either_block_stands_the_pair_stays_blocked(pair) -> None:  # type: ignore[no-untyped-def]
    consumer, provider, _ = pair
    booking = booking_in("accepted", consumer, provider)
    _ok(consumer.post("/v1/blocks", json={"user_id": provider.id}), 201)
    _ok(provider.post("/v1/blocks", json={"user_id": consumer.id}), 201)
    assert consumer.delete(f"/v1/blocks/{provider.id}").status_code == 204
    # The provider's block still stands.
    _blocked(
        consumer.post(f"/v1/bookings/{booking}/messages", json={"body": "Hi"}),
        "You cannot message this user.",
    )
    assert provider.id not in _search_ids(consumer)
    assert consumer.get(f"/v1/providers/{provider.id}").status_code == 404
    assert provider.delete(f"/v1/blocks/{consumer.id}").status_code == 204
    _ok(consumer.post(f"/v1/bookings/{booking}/messages", json={"body": "Hi"}), 201)


def test_providers_who_block_each_other_vanish_from_each_others_search(actors) -> None:  # type: ignore[no-untyped-def]
    first, second = actors("consumer", "provider"), actors("consumer", "provider")
    onlooker = actors("consumer")
    ensure_profile(first)
    ensure_profile(second, display_name="Second Sid")
    assert {first.id, second.id} <= _search_ids(first)
    _ok(second.post("/v1/blocks", json={"user_id": first.id}), 201)
    assert second.id not in _search_ids(first) and first.id in _search_ids(first)
    assert first.id not in _search_ids(second) and second.id in _search_ids(second)
    assert {first.id, second.id} <= _search_ids(onlooker)
    assert first.get(f"/v1/providers/{second.id}").status_code == 404
    assert second.get(f"/v1/providers/{first.id}").status_code == 404
    _blocked(
        first.post("/v1/bookings", json=booking_body(second.id)), "You cannot book this provider."
    )


def test_blocking_again_answers_the_same_block(pair) -> None:  # type: ignore[no-untyped-def]
    consumer, provider, _ = pair
    first = _ok(consumer.post("/v1/blocks", json={"user_id": provider.id}), 201)
    again = _ok(consumer.post("/v1/blocks", json={"user_id": provider.id}), 201)
    assert again == first
    assert _ok(consumer.get("/v1/blocks"))["items"] == [first]


def test_blocking_yourself_is_422_naming_user_id(pair) -> None:  # type: ignore[no-untyped-def]
    consumer, _, _ = pair
    response = consumer.post("/v1/blocks", json={"user_id": consumer.id})
    assert response.status_code == 422
    problem = response.get_json()
    assert problem["type"] == "/problems/validation-failed"
    assert [(e["field"], e["code"]) for e in problem["errors"]] == [("user_id", "self_block")]
    assert _ok(consumer.get("/v1/blocks"))["items"] == []


def test_an_unknown_user_is_404(pair) -> None:  # type: ignore[no-untyped-def]
    consumer, _, _ = pair
    response = consumer.post("/v1/blocks", json={"user_id": str(uuid.uuid4())})
    assert response.status_code == 404
    assert response.get_json()["type"] == "/problems/not-found"
    assert _ok(consumer.get("/v1/blocks"))["items"] == []


def test_unblocking_without_a_block_is_404(pair) -> None:  # type: ignore[no-untyped-def]
    consumer, provider, _ = pair
    assert consumer.delete(f"/v1/blocks/{provider.id}").status_code == 404
    assert consumer.delete(f"/v1/blocks/{uuid.uuid4()}").status_code == 404
    _ok(consumer.post("/v1/blocks", json={"user_id": provider.id}), 201)
    assert consumer.delete(f"/v1/blocks/{provider.id}").status_code == 204
    assert consumer.delete(f"/v1/blocks/{provider.id}").status_code == 404


def test_the_list_pages_newest_first(actors) -> None:  # type: ignore[no-untyped-def]
    me = actors("consumer")
    others = [actors("consumer") for _ in range(5)]
    for someone in others:
        _ok(me.post("/v1/blocks", json={"user_id": someone.id}), 201)
    expected = [someone.id for someone in reversed(others)]
    page = _ok(me.get("/v1/blocks?limit=2"))
    got = [b["user_id"] for b in page["items"]]
    pages = 1
    while page["next_cursor"]:
        page = _ok(me.get(f"/v1/blocks?limit=2&cursor={page['next_cursor']}"))
        got += [b["user_id"] for b in page["items"]]
        pages += 1
    assert got == expected and pages == 3
    whole = _ok(me.get("/v1/blocks?limit=5"))
    assert [b["user_id"] for b in whole["items"]] == expected and whole["next_cursor"] is None
    stamps = [b["created_at"] for b in whole["items"]]
    assert stamps == sorted(stamps, reverse=True)
    # A cursor belongs to its owner's list.
    cursor = _ok(me.get("/v1/blocks?limit=1"))["next_cursor"]
    foreign = others[0].get(f"/v1/blocks?cursor={cursor}")
    assert foreign.status_code == 422
    assert foreign.get_json()["errors"][0]["field"] == "cursor"


def test_others_cannot_see_or_lift_a_block(actors) -> None:  # type: ignore[no-untyped-def]
    blocker, blocked, stranger = actors("consumer"), actors("consumer"), actors("consumer", "admin")
    block = _ok(blocker.post("/v1/blocks", json={"user_id": blocked.id}), 201)
    for someone in (blocked, stranger):
        assert _ok(someone.get("/v1/blocks"))["items"] == []
        gone = someone.delete(f"/v1/blocks/{blocked.id}")
        unknown = someone.delete(f"/v1/blocks/{uuid.uuid4()}")
        assert gone.status_code == unknown.status_code == 404
        assert gone.get_json()["detail"] == unknown.get_json()["detail"]
    assert blocked.delete(f"/v1/blocks/{blocker.id}").status_code == 404
    assert _ok(blocker.get("/v1/blocks"))["items"] == [block]


def test_an_idempotency_key_replays_the_block(pair) -> None:  # type: ignore[no-untyped-def]
    consumer, provider, other = pair
    key = {"Idempotency-Key": "block-key-0001"}
    first = consumer.post("/v1/blocks", json={"user_id": provider.id}, headers=key)
    assert first.status_code == 201
    replay = consumer.post("/v1/blocks", json={"user_id": provider.id}, headers=key)
    assert replay.status_code == 201
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert replay.get_data() == first.get_data()
    reused = consumer.post("/v1/blocks", json={"user_id": other.id}, headers=key)
    assert reused.status_code == 422
    assert reused.get_json()["type"] == "/problems/idempotency-key-reused"
    assert [b["user_id"] for b in _ok(consumer.get("/v1/blocks"))["items"]] == [provider.id]
