"""Deep links are Trellis's: a provider's notification data cannot carry one (nor any other
key Trellis sets), Trellis links provider notifications to the booking the two share, and
the outbox forwards no link outside Trellis's own scheme."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from models import Notification, OutboxMessage
from services.base.unit_of_work import transaction
from services.components import Components
from services.messaging import notifications, outbox
from tests.support.bookings import booking_in, ensure_profile
from tests.support.fakes import FakePush

EVIL = "https://evil.example/pay-now"
IOS_TOKEN = "a" * 64
ANDROID_TOKEN = "fcm-token:" + "b" * 40


@pytest.fixture
def pair(actors):  # type: ignore[no-untyped-def]
    """A consumer and a provider with a booking, both with a phone of each kind."""
    consumer, provider = actors("consumer"), actors("provider")
    ensure_profile(provider)
    booking_id = booking_in("requested", consumer, provider)
    for actor in (consumer, provider):
        for platform, token in (("ios", IOS_TOKEN), ("android", ANDROID_TOKEN)):
            token = f"{token}{actor.id[:8]}".replace("-", "")
            registered = actor.post("/v1/devices", json={"platform": platform, "token": token})
            assert registered.status_code == 200, registered.get_data(as_text=True)
    return consumer, provider, booking_id


def note(consumer: Any, **data: str) -> dict[str, Any]:
    return {"user_id": consumer.id, "title": "Running late", "body": "10 minutes", "data": data}


def pushed_data(push: FakePush) -> list[tuple[dict[str, str], dict[str, str]]]:
    """(APNs `trellis` dictionary, FCM `data`) of every published push."""
    found = []
    for _, message in push.published:
        document = json.loads(message)
        apns = json.loads(document["APNS"])["trellis"]
        fcm = json.loads(document["GCM"])["fcmV1Message"]["message"]["data"]
        found.append((apns, fcm))
    return found


def counts(session: Session) -> tuple[int, int]:
    return (
        session.scalar(select(func.count()).select_from(Notification)) or 0,
        session.scalar(select(func.count()).select_from(OutboxMessage)) or 0,
    )


# Keys are case-sensitive in JSON, but an app may look a key up ignoring case or after
# renaming it (iOS's convertFromSnakeCase reads `deep_link` as `deepLink`; Gson and JS
# camel-casing do the same): every spelling that could reach the same property is refused.
RESERVED_SPELLINGS = [
    "deep_link",
    "Deep_Link",
    "DEEP_LINK",
    "deepLink",
    "deep-link",
    "deep.link",
    "kind",
    "notification_id",
    "outbox_id",
    "booking_id",
    "bookingId",
    "seq",
    "SEQ",
]


@pytest.mark.parametrize("key", RESERVED_SPELLINGS)
def test_a_provider_cannot_set_a_key_trellis_sets(  # type: ignore[no-untyped-def]
    pair, key: str, push: FakePush, components: Components, session: Session
) -> None:
    consumer, provider, _ = pair
    outbox.drain_all(components.sessions, components.push)
    before, published = counts(session), len(push.published)
    response = provider.post("/v1/notifications", json=note(consumer, eta="10", **{key: EVIL}))
    assert response.status_code == 422, response.get_data(as_text=True)
    assert response.headers["Content-Type"].startswith("application/problem+json")
    [error] = response.get_json()["errors"]
    assert error["field"] == f"data.{key}"
    assert "Trellis" in error["message"] and error["code"] == "reserved_key"
    assert counts(session) == before  # nothing stored, nothing queued
    outbox.drain_all(components.sessions, components.push)
    assert len(push.published) == published  # nothing pushed
    assert all(EVIL not in message for _, message in push.published)


def test_a_key_with_a_space_is_refused_by_the_key_pattern(pair, session: Session) -> None:  # type: ignore[no-untyped-def]
    consumer, provider, _ = pair
    before = counts(session)
    response = provider.post("/v1/notifications", json=note(consumer, **{" deep_link": EVIL}))
    assert response.status_code == 422
    fields = [e["field"] for e in response.get_json()["errors"]]
    assert fields and all(f.startswith("data. deep_link") for f in fields), fields
    assert counts(session) == before


def test_trellis_links_a_provider_notification_to_the_booking_they_share(  # type: ignore[no-untyped-def]
    pair, push: FakePush, components: Components
) -> None:
    consumer, provider, first_booking = pair
    latest = booking_in("requested", consumer, provider)  # the newest booking is the target
    outbox.drain_all(components.sessions, components.push)
    push.published.clear()
    sent = provider.post("/v1/notifications", json=note(consumer, eta="10"))
    assert sent.status_code == 201, sent.get_data(as_text=True)
    link = f"trellis://bookings/{latest}"
    expected = {"eta": "10", "booking_id": latest, "deep_link": link}
    assert sent.get_json()["data"] == expected
    inbox = consumer.get("/v1/notifications").get_json()["items"]
    assert inbox[0]["kind"] == "provider.message" and inbox[0]["data"] == expected
    outbox.drain_all(components.sessions, components.push)
    pushes = pushed_data(push)
    assert len(pushes) == 2  # the consumer's two phones
    for apns, fcm in pushes:
        assert apns == fcm
        assert apns["deep_link"] == link and apns["booking_id"] == latest
        assert apns["kind"] == "provider.message" and apns["eta"] == "10"
    assert first_booking != latest


def test_trellis_made_links_still_reach_message_and_booking_notifications(  # type: ignore[no-untyped-def]
    pair, push: FakePush, components: Components
) -> None:
    consumer, provider, booking_id = pair
    outbox.drain_all(components.sessions, components.push)
    push.published.clear()
    posted = provider.post(f"/v1/bookings/{booking_id}/messages", json={"body": "On my way"})
    assert posted.status_code == 201, posted.get_data(as_text=True)
    accepted = provider.post(f"/v1/bookings/{booking_id}/accept", json={})
    assert accepted.status_code == 200, accepted.get_data(as_text=True)
    inbox = consumer.get("/v1/notifications").get_json()["items"]
    links = {n["kind"]: n["data"]["deep_link"] for n in inbox}
    assert links == {
        "message.new": f"trellis://bookings/{booking_id}/messages",
        "booking.accepted": f"trellis://bookings/{booking_id}",
    }
    outbox.drain_all(components.sessions, components.push)
    pushed = {apns["kind"]: apns["deep_link"] for apns, _ in pushed_data(push)}
    assert pushed == links


def test_the_outbox_forwards_no_link_outside_trellis_scheme() -> None:
    """Defence in depth: whatever a row holds (one written before the schema refused
    provider links, a future bug), a push carries only a trellis:// link."""
    for link in (EVIL, "javascript:alert(1)", "TRELLIS-evil://x", "trellis:/x", "//evil.example"):
        message = OutboxMessage(
            id=uuid.uuid4(),
            notification_id=uuid.uuid4(),
            payload={
                "kind": "provider.message",
                "title": "t",
                "body": "b",
                "data": {"deep_link": link, "eta": "5"},
            },
        )
        document = json.loads(outbox.sns_message("ios", message, 1))
        apns = json.loads(document["APNS"])["trellis"]
        fcm = json.loads(document["GCM"])["fcmV1Message"]["message"]["data"]
        for data in (apns, fcm):
            assert "deep_link" not in data, link
            assert data["eta"] == "5" and data["kind"] == "provider.message"
    for key in ("deepLink", "Deep_Link", "DEEP-LINK"):  # another spelling, even of ours
        message = OutboxMessage(
            id=uuid.uuid4(), payload={"kind": "k", "data": {key: "trellis://bookings/1"}}
        )
        apns = json.loads(json.loads(outbox.sns_message("ios", message, 0))["APNS"])["trellis"]
        assert key not in apns and "deep_link" not in apns
    kept = OutboxMessage(
        id=uuid.uuid4(), payload={"kind": "k", "data": {"deep_link": "trellis://bookings/1"}}
    )
    apns = json.loads(json.loads(outbox.sns_message("android", kept, 0))["APNS"])["trellis"]
    assert apns["deep_link"] == "trellis://bookings/1"


def test_an_old_row_with_a_foreign_link_shows_none_in_the_inbox(  # type: ignore[no-untyped-def]
    pair, sessions, push: FakePush, components: Components
) -> None:
    consumer, provider, _ = pair
    outbox.drain_all(components.sessions, components.push)
    push.published.clear()
    with transaction(sessions) as session:  # as a provider could store it before the fix
        notifications.notify(
            session,
            user_id=uuid.UUID(consumer.id),
            kind="provider.message",
            title="Pay now",
            body="or lose your booking",
            data={"deep_link": EVIL},
            sender_id=uuid.UUID(provider.id),
        )
    [entry] = [
        n for n in consumer.get("/v1/notifications").get_json()["items"] if n["title"] == "Pay now"
    ]
    assert entry["data"] == {}
    outbox.drain_all(components.sessions, components.push)
    assert push.published and all(EVIL not in message for _, message in push.published)
