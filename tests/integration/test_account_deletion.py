"""DELETE /v1/me schedules the account's deletion; DELETE /v1/me/deletion cancels it.

Through the HTTP API on PostgreSQL: the recent sign-in it needs, the refusal while a booking
is in progress, the bookings it cancels (and the other party told), the account hidden from
everyone else until the deletion is cancelled, and what the user can still do meanwhile.
"""

from __future__ import annotations

import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError
from sqlalchemy import Engine, select, text
from sqlalchemy.orm import Session

from models import Booking, Notification, OutboxMessage, ProviderProfile, User
from tests.conftest import make_app, make_settings
from tests.support.actors import Actor, booking_body, make_actor, profile_body
from tests.support.bookings import booking_in, ensure_profile
from tests.support.tokens import claims_for, encode, token_for

REAUTH = "/problems/reauthentication-required"
ACTIVE_BOOKINGS = "/problems/account-has-active-bookings"
SCHEDULED = "/problems/account-deletion-scheduled"
DELETED = "/problems/account-deleted"


def headers_signed_in(actor: Actor, *, ago: int | None, **extra: str) -> dict[str, str]:
    """A valid token of the actor whose sign-in (`auth_time`) was `ago` seconds ago; None:
    a token without auth_time."""
    if ago is None:
        claims = claims_for(actor.sub, groups=actor.groups, username=actor.sub)
        del claims["auth_time"]
        token = encode({"kid": actor.key.kid, "alg": "RS256", "typ": "JWT"}, claims, actor.key)
    else:
        token = token_for(
            actor.key,
            actor.sub,
            groups=actor.groups,
            username=actor.sub,
            auth_time=int(time.time()) - ago,
        )
    return {"Authorization": f"Bearer {token}", **extra}


def at(value: str) -> datetime:
    assert value.endswith("Z"), value
    return datetime.fromisoformat(value)


def row(session: Session, actor: Actor) -> User:
    user = session.get(User, uuid.UUID(actor.id))
    assert user is not None
    return user


def status_of(actor: Actor, booking_id: str) -> str:
    response = actor.get(f"/v1/bookings/{booking_id}")
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()["status"]


def search_ids(viewer: Actor) -> list[str]:
    response = viewer.get("/v1/providers?category=cleaning")
    assert response.status_code == 200, response.get_data(as_text=True)
    return [hit["id"] for hit in response.get_json()["items"]]


def schedule(actor: Actor, **headers: str) -> dict[str, Any]:
    response = actor.delete("/v1/me", headers=headers)
    assert response.status_code == 202, response.get_data(as_text=True)
    return response.get_json()


def problem_type(response: Any) -> str:
    assert response.mimetype == "application/problem+json", response.get_data(as_text=True)
    return response.get_json()["type"]


# --- a recent sign-in -----------------------------------------------------------------------


@pytest.mark.parametrize("ago", [901, 3600, None])
def test_an_old_or_unknown_sign_in_must_sign_in_again(actors, session: Session, ago) -> None:  # type: ignore[no-untyped-def]
    user = actors("consumer")
    response = user.client.delete("/v1/me", headers=headers_signed_in(user, ago=ago))
    assert response.status_code == 401
    assert problem_type(response) == REAUTH
    assert "sign in again" in response.get_json()["detail"]
    challenge = response.headers["WWW-Authenticate"]
    assert 'error="insufficient_user_authentication"' in challenge and "max_age=900" in challenge
    assert row(session, user).purge_at is None
    assert user.get("/v1/me").get_json()["deletion"] is None


def test_a_sign_in_within_the_limit_is_enough(actors) -> None:  # type: ignore[no-untyped-def]
    user = actors("consumer")
    response = user.client.delete("/v1/me", headers=headers_signed_in(user, ago=880))
    assert response.status_code == 202, response.get_data(as_text=True)


def test_after_signing_in_again_the_same_idempotency_key_runs(actors) -> None:  # type: ignore[no-untyped-def]
    """The 401 is not the key's stored answer: the retry after signing in is served."""
    user = actors("consumer")
    stale = headers_signed_in(user, ago=5000, **{"Idempotency-Key": "delete-me-1"})
    assert user.client.delete("/v1/me", headers=stale).status_code == 401
    retry = user.delete("/v1/me", headers={"Idempotency-Key": "delete-me-1"})
    assert retry.status_code == 202, retry.get_data(as_text=True)
    assert "Idempotent-Replayed" not in retry.headers


# --- bookings -------------------------------------------------------------------------------


def test_bookings_in_progress_refuse_it_and_nothing_changes(actors, session: Session) -> None:  # type: ignore[no-untyped-def]
    consumer, provider = actors("consumer"), actors("provider")
    ensure_profile(provider)
    started = [booking_in("in_progress", consumer, provider) for _ in range(2)]
    requested = booking_in("requested", consumer, provider)
    accepted = booking_in("accepted", consumer, provider)
    inbox_before = len(provider.get("/v1/notifications?limit=100").get_json()["items"])

    for who in (consumer, provider):
        refused = who.delete("/v1/me")
        assert refused.status_code == 409
        assert problem_type(refused) == ACTIVE_BOOKINGS
        assert refused.get_json()["booking_ids"] == started  # oldest first

    assert status_of(consumer, requested) == "requested"
    assert status_of(consumer, accepted) == "accepted"
    assert row(session, consumer).purge_at is None and row(session, provider).purge_at is None
    assert provider.id in search_ids(consumer)
    assert len(provider.get("/v1/notifications?limit=100").get_json()["items"]) == inbox_before


def test_requested_and_accepted_bookings_are_cancelled_and_the_other_party_told(  # type: ignore[no-untyped-def]
    actors, session: Session
) -> None:
    consumer, first, second = actors("consumer"), actors("provider"), actors("provider")
    ensure_profile(first)
    ensure_profile(second)
    requested = booking_in("requested", consumer, first)
    accepted = booking_in("accepted", consumer, second)
    completed = booking_in("completed", consumer, first)
    declined = booking_in("declined", consumer, second)

    schedule(consumer)

    assert status_of(consumer, requested) == "cancelled"
    assert status_of(consumer, accepted) == "cancelled"
    assert status_of(consumer, completed) == "completed"
    assert status_of(consumer, declined) == "declined"
    last = consumer.get(f"/v1/bookings/{accepted}").get_json()["history"][-1]
    assert last["reason"] == "account deleted"
    assert (last["actor_id"], last["actor_role"]) == (consumer.id, "consumer")
    for provider, booking_id in ((first, requested), (second, accepted)):
        note = provider.get("/v1/notifications").get_json()["items"][0]
        assert note["kind"] == "booking.cancelled"
        assert note["data"]["booking_id"] == booking_id
        assert "account deleted" in note["body"]
        pushes = session.scalars(
            select(OutboxMessage).where(OutboxMessage.user_id == uuid.UUID(provider.id))
        ).all()
        assert [p.payload["kind"] for p in pushes].count("booking.cancelled") == 1
    # Nothing goes to the one who is leaving.
    leaving = uuid.UUID(consumer.id)
    kinds = session.scalars(select(Notification.kind).where(Notification.user_id == leaving))
    assert "booking.cancelled" not in list(kinds)


def test_a_provider_leaving_cancels_their_bookings_too(actors, session: Session) -> None:  # type: ignore[no-untyped-def]
    consumer, provider = actors("consumer"), actors("provider")
    ensure_profile(provider)
    booking_id = booking_in("accepted", consumer, provider)
    schedule(provider)
    assert status_of(consumer, booking_id) == "cancelled"
    note = consumer.get("/v1/notifications").get_json()["items"][0]
    assert (note["kind"], note["sender_id"]) == ("booking.cancelled", provider.id)
    booking = session.get(Booking, uuid.UUID(booking_id))
    assert booking is not None and booking.status == "cancelled"


# --- the answer and GET /v1/me --------------------------------------------------------------


def test_the_answer_and_me_show_the_purge_time(actors, session: Session) -> None:  # type: ignore[no-untyped-def]
    user = actors("consumer")
    assert user.get("/v1/me").get_json()["deletion"] is None
    before = datetime.now(UTC)
    body = schedule(user)
    after = datetime.now(UTC)
    assert set(body) == {"status", "requested_at", "purge_at"}
    assert body["status"] == "scheduled"
    assert before <= at(body["requested_at"]) <= after
    assert at(body["purge_at"]) - at(body["requested_at"]) == timedelta(hours=72)
    assert user.get("/v1/me").get_json()["deletion"] == body
    stored = row(session, user)
    assert stored.purge_at == at(body["purge_at"])
    assert stored.deletion_requested_at == at(body["requested_at"])


def test_asking_again_keeps_the_first_purge_time(actors) -> None:  # type: ignore[no-untyped-def]
    user = actors("consumer")
    first = schedule(user)
    time.sleep(0.01)
    assert schedule(user) == first


def test_an_idempotency_key_replays_the_answer(actors) -> None:  # type: ignore[no-untyped-def]
    user = actors("consumer")
    first = user.delete("/v1/me", headers={"Idempotency-Key": "bye-1"})
    assert first.status_code == 202
    replay = user.delete("/v1/me", headers={"Idempotency-Key": "bye-1"})
    assert replay.status_code == 202
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert replay.get_json() == first.get_json()


def test_a_grace_of_zero_hours_closes_the_account_at_once(  # type: ignore[no-untyped-def]
    build, database_url, signing_key
) -> None:
    app = make_app(build(make_settings(database_url, ACCOUNT_DELETION_GRACE_HOURS="0")))
    user = make_actor(app.test_client(), signing_key, "consumer")
    before = datetime.now(UTC)
    body = schedule(user)
    assert before <= at(body["purge_at"]) <= datetime.now(UTC)
    assert body["purge_at"] == body["requested_at"]
    # From purge_at on the account is gone for its tokens, purged yet or not: no cancelling.
    for response in (user.delete("/v1/me/deletion"), user.get("/v1/me")):
        assert response.status_code == 401
        assert problem_type(response) == "/problems/account-closed"


@pytest.mark.parametrize(
    "name, value",
    [
        ("ACCOUNT_DELETION_GRACE_HOURS", "-1"),
        ("ACCOUNT_DELETION_MAX_AUTH_AGE_SECONDS", "0"),
    ],
)
def test_settings_out_of_range_are_refused(database_url: str, name: str, value: str) -> None:
    with pytest.raises(ValidationError):
        make_settings(database_url, **{name: value})


# --- hidden from everyone else --------------------------------------------------------------


def test_a_provider_leaves_search_and_their_profile_is_404(actors) -> None:  # type: ignore[no-untyped-def]
    consumer, provider = actors("consumer"), actors("provider")
    ensure_profile(provider)
    assert provider.id in search_ids(consumer)
    schedule(provider)
    assert provider.id not in search_ids(consumer)
    assert consumer.get(f"/v1/providers/{provider.id}").status_code == 404
    booked = consumer.post("/v1/bookings", json=booking_body(provider.id))
    assert booked.status_code == 422
    assert booked.get_json()["errors"][0]["code"] == "provider_unknown"
    own = provider.get("/v1/me/provider-profile")
    assert own.status_code == 200 and own.get_json()["active"] is False


def test_role_changes_do_not_bring_the_profile_back(actors, session: Session) -> None:  # type: ignore[no-untyped-def]
    consumer, provider = actors("consumer"), actors("provider")
    ensure_profile(provider)
    schedule(provider)
    provider.groups = []  # a token without the provider group...
    assert provider.get("/v1/me").get_json()["roles"] == []
    provider.groups = ["providers"]  # ...then one with it again
    assert provider.get("/v1/me").get_json()["roles"] == ["provider"]
    profile = session.get(ProviderProfile, uuid.UUID(provider.id))
    assert profile is not None and profile.active is False
    assert provider.id not in search_ids(consumer)


def test_no_message_or_notification_reaches_the_account(actors, session: Session) -> None:  # type: ignore[no-untyped-def]
    consumer, provider = actors("consumer"), actors("provider")
    ensure_profile(provider)
    booking_id = booking_in("completed", consumer, provider)
    schedule(consumer)
    leaving = uuid.UUID(consumer.id)
    inbox = session.scalars(select(Notification.id).where(Notification.user_id == leaving)).all()
    pushes = session.scalars(select(OutboxMessage.id).where(OutboxMessage.user_id == leaving)).all()

    message = provider.post(f"/v1/bookings/{booking_id}/messages", json={"body": "Still there?"})
    assert message.status_code == 409 and problem_type(message) == DELETED
    note = {"user_id": consumer.id, "title": "Hello", "body": "A new slot", "data": {}}
    notified = provider.post("/v1/notifications", json=note)
    assert notified.status_code == 404 and problem_type(notified) == "/problems/not-found"

    assert consumer.get(f"/v1/bookings/{booking_id}/messages").get_json()["items"] == []
    after = session.scalars(select(Notification.id).where(Notification.user_id == leaving)).all()
    assert sorted(after) == sorted(inbox)
    assert sorted(
        session.scalars(select(OutboxMessage.id).where(OutboxMessage.user_id == leaving)).all()
    ) == sorted(pushes)


# --- what the leaving user can still do -----------------------------------------------------


def test_the_leaving_user_reads_but_sends_nothing_new(actors) -> None:  # type: ignore[no-untyped-def]
    consumer, provider, other = actors("consumer"), actors("provider"), actors("provider")
    ensure_profile(provider)
    ensure_profile(other)
    booking_id = booking_in("completed", consumer, provider)
    schedule(consumer)

    assert consumer.get("/v1/me").status_code == 200
    assert consumer.get(f"/v1/bookings/{booking_id}").status_code == 200
    assert consumer.get("/v1/bookings").get_json()["items"][0]["id"] == booking_id
    assert consumer.get("/v1/notifications").status_code == 200
    refused = [
        consumer.post("/v1/bookings", json=booking_body(other.id)),
        consumer.post(f"/v1/bookings/{booking_id}/messages", json={"body": "Thanks!"}),
        consumer.post(f"/v1/bookings/{booking_id}/review", json={"rating": 5, "comment": "Great"}),
    ]
    for response in refused:
        assert response.status_code == 409, response.get_data(as_text=True)
        assert problem_type(response) == SCHEDULED
        assert "DELETE /v1/me/deletion" in response.get_json()["detail"]
    assert len(consumer.get("/v1/bookings").get_json()["items"]) == 1


def test_a_leaving_provider_cannot_notify_or_change_their_profile(actors) -> None:  # type: ignore[no-untyped-def]
    consumer, provider = actors("consumer"), actors("provider")
    ensure_profile(provider)
    booking_in("completed", consumer, provider)
    schedule(provider)
    note = {"user_id": consumer.id, "title": "Hello", "body": "A new slot", "data": {}}
    for response in (
        provider.post("/v1/notifications", json=note),
        provider.put("/v1/me/provider-profile", json=profile_body(display_name="Back")),
    ):
        assert response.status_code == 409, response.get_data(as_text=True)
        assert problem_type(response) == SCHEDULED
    assert provider.get("/v1/me/provider-profile").get_json()["display_name"] == "Spotless Sam"


def test_a_booking_racing_the_deletion_waits_for_it_and_is_refused(actors, engine: Engine) -> None:  # type: ignore[no-untyped-def]
    """A booking being made while the provider's deletion is being scheduled waits for it
    (the provider's row is held FOR SHARE first), then sees the profile hidden."""
    consumer, provider = actors("consumer"), actors("provider")
    ensure_profile(provider)
    provider_id = provider.id
    answers: list[Any] = []
    with engine.connect() as connection, connection.begin():
        # What scheduling does first: the user's row, then (later) the profile.
        connection.execute(
            text("SELECT id FROM users WHERE id = :id FOR NO KEY UPDATE"), {"id": provider_id}
        )
        connection.execute(
            text("UPDATE users SET purge_at = now(), deletion_requested_at = now() WHERE id = :id"),
            {"id": provider_id},
        )
        connection.execute(
            text("UPDATE provider_profiles SET active = false WHERE user_id = :id"),
            {"id": provider_id},
        )
        booking = threading.Thread(
            target=lambda: answers.append(
                consumer.post("/v1/bookings", json=booking_body(provider_id))
            )
        )
        booking.start()
        booking.join(1.0)
        assert booking.is_alive(), "the booking did not wait for the deletion"
    booking.join(10)
    assert len(answers) == 1
    assert answers[0].status_code == 422, answers[0].get_data(as_text=True)
    assert consumer.get("/v1/bookings").get_json()["items"] == []


# --- cancelling -----------------------------------------------------------------------------


def test_cancelling_makes_everything_visible_again(actors, session: Session) -> None:  # type: ignore[no-untyped-def]
    consumer, provider = actors("consumer"), actors("provider")
    ensure_profile(provider)
    booking_id = booking_in("requested", consumer, provider)
    schedule(provider)

    cancelled = provider.delete("/v1/me/deletion")
    assert cancelled.status_code == 204 and cancelled.get_data() == b""
    assert provider.get("/v1/me").get_json()["deletion"] is None
    stored = row(session, provider)
    assert stored.purge_at is None and stored.deletion_requested_at is None
    assert provider.id in search_ids(consumer)
    assert consumer.get(f"/v1/providers/{provider.id}").status_code == 200
    assert status_of(consumer, booking_id) == "cancelled"  # stays cancelled
    again = consumer.post("/v1/bookings", json=booking_body(provider.id))
    assert again.status_code == 201, again.get_data(as_text=True)
    new_id = again.get_json()["id"]
    sent = provider.post(f"/v1/bookings/{new_id}/messages", json={"body": "See you"})
    assert sent.status_code == 201, sent.get_data(as_text=True)


def test_cancelling_keeps_the_profile_hidden_without_the_provider_role(  # type: ignore[no-untyped-def]
    actors, session: Session
) -> None:
    consumer, provider = actors("consumer"), actors("provider")
    ensure_profile(provider)
    schedule(provider)
    provider.groups = ["consumers"]  # no longer a provider
    assert provider.delete("/v1/me/deletion").status_code == 204
    profile = session.get(ProviderProfile, uuid.UUID(provider.id))
    assert profile is not None and profile.active is False
    assert provider.id not in search_ids(consumer)


def test_cancelling_without_a_scheduled_deletion_is_404(actors) -> None:  # type: ignore[no-untyped-def]
    user = actors("consumer")
    missing = user.delete("/v1/me/deletion")
    assert missing.status_code == 404 and problem_type(missing) == "/problems/not-found"
    schedule(user)
    assert user.delete("/v1/me/deletion").status_code == 204
    assert user.delete("/v1/me/deletion").status_code == 404


# --- the contract ---------------------------------------------------------------------------


def test_the_routes_are_documented(client) -> None:  # type: ignore[no-untyped-def]
    paths = client.get("/openapi.json").get_json()["paths"]
    delete_me = paths["/v1/me"]["delete"]
    assert {"202", "401", "409", "422"} <= set(delete_me["responses"])
    assert "sign in again" in delete_me["responses"]["401"]["description"]
    assert any(p["name"] == "Idempotency-Key" for p in delete_me["parameters"])
    cancel = paths["/v1/me/deletion"]["delete"]
    assert {"204", "401", "404", "409"} <= set(cancel["responses"])
    me = client.get("/openapi.json").get_json()["components"]["schemas"]["Me"]
    assert "deletion" in me["properties"] and "deletion" in me["required"]
