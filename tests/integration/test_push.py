"""Devices on moto's SNS, the inbox, and the outbox under failure, on PostgreSQL."""

from __future__ import annotations

import json
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import boto3
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from models import Device, Notification, OutboxMessage
from models.base import utcnow
from services.aws.sns import SnsPush
from services.base.unit_of_work import transaction
from services.components import Components
from services.messaging import notifications, outbox
from tests.conftest import BuildComponents, make_app
from tests.support.actors import make_actor
from tests.support.aws import REGION, emulated_aws, platform_applications
from tests.support.bookings import booking_in, ensure_profile
from tests.support.fakes import FakePush

IOS_TOKEN = "a" * 64
ANDROID_TOKEN = "fcm-token:" + "b" * 40


@pytest.fixture
def sns(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with emulated_aws():
        yield boto3.client("sns", region_name=REGION)


@pytest.fixture
def components(build: BuildComponents, request: pytest.FixtureRequest) -> Components:
    """With `sns` among a test's fixtures, the app pushes through moto's SNS."""
    if "sns" not in request.fixturenames:
        return build()
    request.getfixturevalue("sns")  # the emulator is up before the adapter is built
    return build(push=SnsPush(region=REGION, applications=platform_applications()))


def device(actor, platform: str = "ios", token: str = IOS_TOKEN, **extra: Any) -> Any:  # type: ignore[no-untyped-def]
    return actor.post("/v1/devices", json={"platform": platform, "token": token, **extra})


def outbox_ids(push: FakePush) -> list[str]:
    ids = []
    for _, message in push.published:
        apns = json.loads(json.loads(message)["APNS"])
        ids.append(apns["trellis"]["outbox_id"])
    return ids


# --- devices on moto's SNS -------------------------------------------------------------


def test_register_creates_an_endpoint_and_is_idempotent(actors, sns, session: Session) -> None:  # type: ignore[no-untyped-def]
    user = actors("consumer")
    first = device(user, app_version="1.2.0", locale="de-DE")
    assert first.status_code == 200, first.get_data(as_text=True)
    again = device(user, app_version="1.3.0")
    assert again.get_json()["id"] == first.get_json()["id"]
    assert again.get_json()["app_version"] == "1.3.0"
    row = session.get(Device, uuid.UUID(first.get_json()["id"]))
    session.refresh(row)
    attributes = sns.get_endpoint_attributes(EndpointArn=row.endpoint_arn)["Attributes"]
    assert attributes["Token"] == IOS_TOKEN and attributes["Enabled"] == "true"
    assert [d["id"] for d in user.get("/v1/devices").get_json()["items"]] == [
        first.get_json()["id"]
    ]


def test_a_disabled_endpoint_is_re_enabled_by_registering_again(
    actors, sns, session: Session
) -> None:  # type: ignore[no-untyped-def]
    user = actors("consumer")
    device_id = device(user).get_json()["id"]
    arn = session.get(Device, uuid.UUID(device_id)).endpoint_arn
    sns.set_endpoint_attributes(EndpointArn=arn, Attributes={"Enabled": "false"})
    device(user)
    assert sns.get_endpoint_attributes(EndpointArn=arn)["Attributes"]["Enabled"] == "true"


def test_a_token_that_moves_to_another_user_is_reassigned(actors, sns) -> None:  # type: ignore[no-untyped-def]
    alice, bob = actors("consumer"), actors("consumer")
    device_id = device(alice, "android", ANDROID_TOKEN).get_json()["id"]
    moved = device(bob, "android", ANDROID_TOKEN).get_json()
    assert moved["id"] == device_id
    assert alice.get("/v1/devices").get_json()["items"] == []
    assert [d["id"] for d in bob.get("/v1/devices").get_json()["items"]] == [device_id]


def test_delete_removes_the_endpoint(actors, sns, session: Session) -> None:  # type: ignore[no-untyped-def]
    user, other = actors("consumer"), actors("consumer")
    device_id = device(user).get_json()["id"]
    arn = session.get(Device, uuid.UUID(device_id)).endpoint_arn
    assert other.delete(f"/v1/devices/{device_id}").status_code == 404
    assert user.delete(f"/v1/devices/{device_id}").status_code == 204
    with pytest.raises(sns.exceptions.NotFoundException):
        sns.get_endpoint_attributes(EndpointArn=arn)
    assert user.get("/v1/devices").get_json()["items"] == []


def test_sns_disabled_endpoint_disables_the_device_and_is_not_retried(
    actors, sns, components, session: Session
) -> None:  # type: ignore[no-untyped-def]
    consumer, provider = actors("consumer"), actors("provider")
    ensure_profile(provider)
    device_id = device(provider).get_json()["id"]
    arn = session.get(Device, uuid.UUID(device_id)).endpoint_arn
    sns.set_endpoint_attributes(EndpointArn=arn, Attributes={"Enabled": "false"})
    booking_in("requested", consumer, provider)  # notifies the provider
    stats = outbox.drain_all(components.sessions, components.push)
    assert (stats.delivered, stats.devices_disabled, stats.retried) == (1, 1, 0)
    assert provider.get("/v1/devices").get_json()["items"][0]["enabled"] is False


def test_bad_device_input_is_422(actors, sns) -> None:  # type: ignore[no-untyped-def]
    user = actors("consumer")
    for body in (
        {"platform": "windows", "token": IOS_TOKEN},
        {"platform": "ios", "token": "short"},
        {"platform": "ios", "token": "has space" + "x" * 10},
        {"platform": "ios", "token": IOS_TOKEN, "locale": "not a locale"},
    ):
        assert user.post("/v1/devices", json=body).status_code == 422, body


# --- the inbox ----------------------------------------------------------------------------


def test_booking_changes_and_messages_land_in_the_other_partys_inbox(actors) -> None:  # type: ignore[no-untyped-def]
    consumer, provider = actors("consumer"), actors("provider")
    ensure_profile(provider)
    booking_id = booking_in("accepted", consumer, provider)
    consumer.post(f"/v1/bookings/{booking_id}/messages", json={"body": "See you at 9"})
    provider_inbox = provider.get("/v1/notifications").get_json()["items"]
    assert [n["kind"] for n in provider_inbox] == ["message.new", "booking.requested"]
    assert provider_inbox[0]["body"] == "See you at 9"
    assert provider_inbox[0]["data"]["booking_id"] == booking_id
    consumer_inbox = consumer.get("/v1/notifications").get_json()["items"]
    assert [n["kind"] for n in consumer_inbox] == ["booking.accepted"]
    assert consumer_inbox[0]["sender_id"] == provider.id


def test_read_one_read_all_and_the_unread_filter(actors) -> None:  # type: ignore[no-untyped-def]
    consumer, provider, stranger = actors("consumer"), actors("provider"), actors("consumer")
    ensure_profile(provider)
    for _ in range(3):
        booking_in("requested", consumer, provider)
    items = provider.get("/v1/notifications?unread=true").get_json()["items"]
    assert len(items) == 3
    assert stranger.post(f"/v1/notifications/{items[0]['id']}/read").status_code == 404
    read = provider.post(f"/v1/notifications/{items[0]['id']}/read")
    assert read.status_code == 200 and read.get_json()["read"] is True
    assert len(provider.get("/v1/notifications?unread=true").get_json()["items"]) == 2
    assert len(provider.get("/v1/notifications?unread=false").get_json()["items"]) == 1
    assert provider.post("/v1/notifications/read-all").get_json() == {"updated": 2}
    assert provider.get("/v1/notifications?unread=true").get_json()["items"] == []


def test_inbox_pages(actors) -> None:  # type: ignore[no-untyped-def]
    consumer, provider = actors("consumer"), actors("provider")
    ensure_profile(provider)
    for _ in range(5):
        booking_in("requested", consumer, provider)
    seen, cursor = [], None
    while True:
        url = "/v1/notifications?limit=2" + (f"&cursor={cursor}" if cursor else "")
        page = provider.get(url).get_json()
        seen += [n["id"] for n in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert len(seen) == len(set(seen)) == 5


def test_providers_notify_their_consumers_only_and_within_a_limit(actors, build, settings) -> None:  # type: ignore[no-untyped-def]
    consumer, provider, stranger = actors("consumer"), actors("provider"), actors("consumer")
    ensure_profile(provider)
    booking_in("requested", consumer, provider)
    note = {
        "user_id": consumer.id,
        "title": "Running late",
        "body": "10 minutes",
        "data": {"eta": "10"},
    }
    sent = provider.post("/v1/notifications", json=note)
    assert sent.status_code == 201 and sent.get_json()["kind"] == "provider.message"
    assert consumer.get("/v1/notifications").get_json()["items"][0]["title"] == "Running late"
    assert (
        provider.post("/v1/notifications", json={**note, "user_id": stranger.id}).status_code == 404
    )
    assert stranger.post("/v1/notifications", json=note).status_code == 403
    limited_app = make_app(
        build(settings.model_copy(update={"provider_notifications_per_hour": 2}))
    )
    provider.client = limited_app.test_client()
    assert provider.post("/v1/notifications", json=note).status_code == 201
    limited = provider.post("/v1/notifications", json=note)
    assert limited.status_code == 429 and limited.headers["Retry-After"] == "3600"


# --- the outbox ------------------------------------------------------------------------------


def test_nothing_is_enqueued_for_work_that_rolls_back(actors, sessions, session: Session) -> None:  # type: ignore[no-untyped-def]
    user_id = uuid.UUID(actors("consumer").id)
    with pytest.raises(RuntimeError), transaction(sessions) as session:
        notifications.notify(session, user_id=user_id, kind="k", title="t", body="b", data={})
        raise RuntimeError("the change failed after notifying")
    assert session.scalar(select(func.count()).select_from(OutboxMessage)) == 0
    assert session.scalar(select(func.count()).select_from(Notification)) == 0


def test_payloads_per_platform(actors, push: FakePush, session: Session, components) -> None:  # type: ignore[no-untyped-def]
    consumer, provider = actors("consumer"), actors("provider")
    ensure_profile(provider)
    device(provider, "ios", IOS_TOKEN)
    device(provider, "android", ANDROID_TOKEN)
    booking_id = booking_in("requested", consumer, provider)
    outbox.drain_all(components.sessions, components.push)
    assert len(push.published) == 2
    document = json.loads(push.published[0][1])
    apns = json.loads(document["APNS"])
    assert apns["aps"]["alert"]["title"] == "New booking request" and apns["aps"]["badge"] == 1
    assert apns["trellis"]["booking_id"] == booking_id
    assert apns["trellis"]["deep_link"] == f"trellis://bookings/{booking_id}"
    fcm = json.loads(document["GCM"])["fcmV1Message"]["message"]
    assert fcm["notification"]["title"] == "New booking request"
    assert fcm["data"]["outbox_id"] == apns["trellis"]["outbox_id"]
    assert all(isinstance(v, str) for v in fcm["data"].values())
    assert document["APNS_SANDBOX"] == document["APNS"]


def test_silent_push_has_no_alert(session: Session) -> None:
    message = OutboxMessage(
        id=uuid.uuid4(), payload={"kind": "sync", "silent": True, "data": {"n": 1}}
    )
    document = json.loads(outbox.sns_message("ios", message, 3))
    apns = json.loads(document["APNS"])
    assert apns["aps"] == {"content-available": 1} and apns["trellis"]["n"] == "1"
    fcm = json.loads(document["GCM"])["fcmV1Message"]["message"]
    assert "notification" not in fcm


def test_sns_outage_loses_nothing_and_delivers_once_after_recovery(
    actors, push: FakePush, session: Session, components
) -> None:  # type: ignore[no-untyped-def]
    consumer, provider = actors("consumer"), actors("provider")
    ensure_profile(provider)
    device(consumer, "ios", IOS_TOKEN)
    device(provider, "android", ANDROID_TOKEN)
    push.down = True
    bookings = [booking_in("completed", consumer, provider) for _ in range(3)]
    for booking_id in bookings:
        consumer.post(f"/v1/bookings/{booking_id}/messages", json={"body": "thanks"})
    expected = session.scalar(select(func.count()).select_from(Notification))
    assert expected == 3 * (4 + 1)  # requested, accepted, in_progress, completed + a message
    first = outbox.drain_all(components.sessions, components.push)
    assert (first.delivered, first.retried) == (0, expected)
    pending = session.scalars(select(OutboxMessage)).all()
    assert all(m.attempts == 1 and m.last_error and m.available_at > utcnow() for m in pending)
    # Still down a while later: the backoff doubles.
    second = outbox.drain(
        components.sessions, components.push, now=utcnow() + timedelta(minutes=10)
    )
    assert second.retried == expected
    assert {m.attempts for m in session.scalars(select(OutboxMessage))} == {2}
    push.down = False
    recovered = outbox.drain_all(
        components.sessions, components.push, now=utcnow() + timedelta(hours=1)
    )
    assert recovered.delivered == expected
    assert (
        session.scalar(
            select(func.count())
            .select_from(OutboxMessage)
            .where(OutboxMessage.delivered_at.is_(None))
        )
        == 0
    )
    ids = outbox_ids(push)
    assert len(ids) == len(set(ids)) == expected  # each push once to SNS (one device each)
    inbox = len(consumer.get("/v1/notifications?limit=100").get_json()["items"]) + len(
        provider.get("/v1/notifications?limit=100").get_json()["items"]
    )
    assert inbox == expected  # each exactly once in an inbox


@pytest.fixture
def flaky() -> FakePush:
    class OneDeviceDown(FakePush):
        def publish(self, *, arn: str, message: str) -> str:
            if self.down and arn == self.broken:
                from services.aws.sns import PushUnavailable

                raise PushUnavailable("one endpoint timing out")
            return super().publish(arn=arn, message=message)

    return OneDeviceDown()


def test_partial_failure_retries_only_the_devices_not_reached(
    build, signing_key, session: Session, sessions, flaky
) -> None:  # type: ignore[no-untyped-def]
    client = make_app(build(push=flaky)).test_client()
    consumer = make_actor(client, signing_key, "consumer")
    provider = make_actor(client, signing_key, "provider")
    ensure_profile(provider)
    device(provider, "ios", IOS_TOKEN)
    device(provider, "android", ANDROID_TOKEN)
    flaky.broken = session.scalars(
        select(Device.endpoint_arn).where(Device.platform == "android")
    ).one()
    flaky.down = True
    booking_in("requested", consumer, provider)
    assert outbox.drain_all(sessions, flaky).retried == 1
    flaky.down = False
    assert outbox.drain_all(sessions, flaky, now=utcnow() + timedelta(hours=1)).delivered == 1
    assert Counter(arn for arn, _ in flaky.published) == dict.fromkeys(flaky.endpoints, 1)


def test_two_relays_in_parallel_publish_each_message_once(
    client, signing_key, push: FakePush, sessions: sessionmaker[Session]
) -> None:  # type: ignore[no-untyped-def]
    consumer = make_actor(client, signing_key, "consumer")
    consumer.post("/v1/devices", json={"platform": "ios", "token": IOS_TOKEN})
    user_id = uuid.UUID(consumer.id)
    with transaction(sessions) as session:
        for i in range(300):
            notifications.notify(
                session, user_id=user_id, kind="test", title=f"t{i}", body="b", data={}
            )

    barrier = threading.Barrier(2)
    totals: list[outbox.DrainStats] = []

    def relay() -> None:
        barrier.wait()
        totals.append(outbox.drain_all(sessions, push, batch=20))

    threads = [threading.Thread(target=relay) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    ids = outbox_ids(push)
    assert len(ids) == 300 and len(set(ids)) == 300
    assert sum(t.delivered for t in totals) == 300


def test_an_sns_outage_on_delete_is_503_and_keeps_the_device(
    actors, push: FakePush, session: Session
) -> None:  # type: ignore[no-untyped-def]
    user = actors("consumer")
    device_id = device(user).get_json()["id"]
    arn = session.get(Device, uuid.UUID(device_id)).endpoint_arn
    push.down = True
    refused = user.delete(f"/v1/devices/{device_id}")
    assert refused.status_code == 503 and "Retry-After" in refused.headers
    assert [d["id"] for d in user.get("/v1/devices").get_json()["items"]] == [device_id]
    assert arn in push.endpoints
    push.down = False  # SNS is back: the retry deletes the endpoint, then the row
    assert user.delete(f"/v1/devices/{device_id}").status_code == 204
    assert arn not in push.endpoints
    assert user.get("/v1/devices").get_json()["items"] == []
