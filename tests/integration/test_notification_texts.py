"""Pushes in each device's language and zone, the inbox in the reader's, from the events
the inbox stores (services/messaging/texts.py), on PostgreSQL with the real outbox relay."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from models import Notification
from services.components import Components
from services.messaging import outbox
from tests.support.actors import Actor, booking_body
from tests.support.bookings import booking_in, ensure_profile
from tests.support.fakes import FakePush

GERMAN_DAYS = ("Montag", "Dienstag", "Mittwoch", "Donnerstag", "Freitag", "Samstag", "Sonntag")
ENGLISH_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


def register(actor: Actor, token: str, platform: str = "ios", **extra: Any) -> dict[str, Any]:
    response = actor.post("/v1/devices", json={"platform": platform, "token": token, **extra})
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()  # type: ignore[no-any-return]


def pushes(push: FakePush, components: Components) -> dict[str, list[tuple[str, str]]]:
    """Deliver the outbox; (title, body) of each alert, by endpoint ARN."""
    push.published.clear()
    outbox.drain_all(components.sessions, components.push)
    sent: dict[str, list[tuple[str, str]]] = {}
    for arn, document in push.published:
        alert = json.loads(json.loads(document)["APNS"])["aps"]["alert"]
        fcm = json.loads(json.loads(document)["GCM"])["fcmV1Message"]["message"]
        assert fcm["notification"] == alert  # both platforms get the device's text
        sent.setdefault(arn, []).append((alert["title"], alert["body"]))
    return sent


def arn_of(session: Session, device_id: str) -> str:
    from models import Device

    device = session.get(Device, uuid.UUID(device_id))
    assert device is not None
    return device.endpoint_arn


def local(starts_at: str, zone: str) -> datetime:
    return datetime.fromisoformat(starts_at).astimezone(ZoneInfo(zone))


def test_each_device_reads_its_language_at_its_time(
    actors, push: FakePush, components: Components, session: Session
) -> None:  # type: ignore[no-untyped-def]
    consumer, provider = actors("consumer"), actors("provider")
    ensure_profile(provider)
    german = register(consumer, "d" * 64, locale="de-DE", time_zone="Europe/Berlin")
    american = register(
        consumer, "fcm:" + "e" * 40, "android", locale="en-US", time_zone="America/New_York"
    )
    french = register(consumer, "f" * 64, locale="fr-FR")  # no catalog, no zone
    assert german["time_zone"] == "Europe/Berlin" and german["locale"] == "de-DE"
    created = consumer.post("/v1/bookings", json=booking_body(provider.id))
    assert created.status_code == 201
    booking = created.get_json()
    # The provider works in Tokyo: a device that names no zone shows times there.
    rules = {"time_zone": "Asia/Tokyo", "weekly": []}
    assert provider.put("/v1/me/availability", json=rules).status_code == 200
    accepted = provider.post(f"/v1/bookings/{booking['id']}/accept", json={})
    assert accepted.status_code == 200, accepted.get_data(as_text=True)

    sent = pushes(push, components)
    starts = booking["scheduled_at"]
    berlin, new_york, tokyo = (
        local(starts, zone) for zone in ("Europe/Berlin", "America/New_York", "Asia/Tokyo")
    )
    [(title, body)] = sent[arn_of(session, german["id"])]
    assert title == "Buchung angenommen"
    assert body.startswith("Ihre Buchung (cleaning) am " + GERMAN_DAYS[berlin.weekday()])
    assert f"{berlin:%H:%M} ME" in body and body.endswith("wurde angenommen")  # MEZ / MESZ
    [(title, body)] = sent[arn_of(session, american["id"])]
    assert title == "Booking accepted"
    assert body.startswith("Your cleaning booking on " + ENGLISH_DAYS[new_york.weekday()])
    hour = new_york.strftime("%I:%M").lstrip("0") + "\u202f" + new_york.strftime("%p")
    assert f"{hour} E" in body and body.endswith("was accepted")  # EST / EDT
    [(title, body)] = sent[arn_of(session, french["id"])]
    assert title == "Booking accepted"  # no French catalog: English
    assert f"{tokyo.strftime('%I:%M').lstrip('0')}\u202f{tokyo:%p} +0900" in body

    # The inbox stores the event, not a text.
    note = session.scalars(
        select(Notification).where(Notification.user_id == uuid.UUID(consumer.id))
    ).one()
    assert note.message == {
        "id": "booking.accept",
        "params": {"category": "cleaning", "starts_at": starts.replace("Z", "+00:00")},
        "zone": "Asia/Tokyo",
    }


def test_the_inbox_speaks_accept_language_else_the_latest_device(
    actors, components: Components
) -> None:  # type: ignore[no-untyped-def]
    consumer, provider = actors("consumer"), actors("provider")
    ensure_profile(provider)
    booking_in("accepted", consumer, provider)

    def first(**headers: str) -> dict[str, Any]:
        response = consumer.client.get(
            "/v1/notifications", headers={**consumer.headers(), **headers}
        )
        assert response.status_code == 200
        return response.get_json()["items"][0]  # type: ignore[no-any-return]

    assert first()["title"] == "Booking accepted"  # no device, no header: English
    assert first(**{"Accept-Language": "de-CH, en;q=0.5"})["title"] == "Buchung angenommen"
    register(consumer, "1" * 64, locale="de-AT", time_zone="Europe/Vienna")
    item = first()
    assert item["title"] == "Buchung angenommen" and "wurde angenommen" in item["body"]
    assert first(**{"Accept-Language": "en-GB"})["title"] == "Booking accepted"
    # No language Trellis has: the device's.
    assert first(**{"Accept-Language": "fr-FR, it;q=0.8"})["title"] == "Buchung angenommen"
    read = consumer.client.post(
        f"/v1/notifications/{item['id']}/read",
        headers={**consumer.headers(), "Accept-Language": "en"},
    )
    assert read.status_code == 200 and read.get_json()["title"] == "Booking accepted"


def test_a_timer_tells_both_parties_in_their_languages(
    actors, push: FakePush, components: Components, session: Session
) -> None:  # type: ignore[no-untyped-def]
    consumer, provider = actors("consumer"), actors("provider")
    ensure_profile(provider)
    german = register(consumer, "2" * 64, locale="de", time_zone="Europe/Berlin")
    english = register(provider, "3" * 64, locale="en-US", time_zone="America/New_York")
    booking_in("expired", consumer, provider)  # no actor: both are told
    sent = pushes(push, components)
    assert sent[arn_of(session, german["id"])][-1][0] == "Buchungsanfrage abgelaufen"
    assert "ohne Antwort abgelaufen" in sent[arn_of(session, german["id"])][-1][1]
    assert sent[arn_of(session, english["id"])][-1][0] == "Booking request expired"


def test_a_providers_own_text_is_sent_as_written(
    actors, push: FakePush, components: Components, session: Session
) -> None:  # type: ignore[no-untyped-def]
    consumer, provider = actors("consumer"), actors("provider")
    ensure_profile(provider)
    booking_in("accepted", consumer, provider)
    german = register(consumer, "4" * 64, locale="de-DE", time_zone="Europe/Berlin")
    note = {"user_id": consumer.id, "title": "Running late", "body": "Ten minutes, sorry"}
    assert provider.post("/v1/notifications", json=note).status_code == 201
    sent = pushes(push, components)
    assert sent[arn_of(session, german["id"])][-1] == ("Running late", "Ten minutes, sorry")
    inbox = consumer.client.get(
        "/v1/notifications", headers={**consumer.headers(), "Accept-Language": "de"}
    ).get_json()["items"]
    assert (inbox[0]["title"], inbox[0]["body"]) == ("Running late", "Ten minutes, sorry")


def test_a_chat_message_keeps_its_words_and_translates_its_title(
    actors, push: FakePush, components: Components, session: Session
) -> None:  # type: ignore[no-untyped-def]
    consumer, provider = actors("consumer"), actors("provider")
    ensure_profile(provider)
    booking_id = booking_in("requested", consumer, provider)
    german = register(provider, "5" * 64, locale="de-DE")
    posted = consumer.post(f"/v1/bookings/{booking_id}/messages", json={"body": "Hi there"})
    assert posted.status_code == 201
    sent = pushes(push, components)
    assert sent[arn_of(session, german["id"])][-1] == ("Neue Nachricht", "Hi there")


def test_a_device_time_zone_must_be_an_iana_name(actors) -> None:  # type: ignore[no-untyped-def]
    consumer = actors("consumer")
    for zone in ("Mars/Olympus", "CEST+2", "", "x" * 65, 7):
        response = consumer.post(
            "/v1/devices", json={"platform": "ios", "token": "6" * 64, "time_zone": zone}
        )
        assert response.status_code == 422, (zone, response.get_data(as_text=True))
        assert [e["field"] for e in response.get_json()["errors"]] == ["time_zone"], zone
    assert register(consumer, "6" * 64, time_zone="UTC")["time_zone"] == "UTC"
    assert register(consumer, "6" * 64)["time_zone"] is None  # each registration says
