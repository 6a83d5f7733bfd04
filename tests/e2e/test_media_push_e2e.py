"""Uploads posted for real to the emulated S3, and push through the outbox while SNS fails."""

from __future__ import annotations

import json
import time
import urllib.request
import uuid
from datetime import UTC, datetime, timedelta

import boto3
import pytest
import requests
from sqlalchemy import create_engine, func, select

from devstack.cognito import sign_in
from models import Notification, OutboxMessage
from tests.e2e.conftest import Stack

pytestmark = pytest.mark.e2e

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 2040


def session_for(stack: Stack, username: str) -> requests.Session:
    http = requests.Session()
    http.headers["Authorization"] = f"Bearer {sign_in(stack.pool, username)['access']}"
    return http


def s3(stack: Stack):  # type: ignore[no-untyped-def]
    return boto3.client(
        "s3",
        endpoint_url=stack.moto_url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def start_upload(stack: Stack, http: requests.Session, **overrides: object) -> dict:
    body = {"purpose": "avatar", "content_type": "image/png", "size_bytes": len(PNG), **overrides}
    response = http.post(f"{stack.base_url}/v1/uploads", json=body, timeout=10)
    assert response.status_code == 201, response.text
    return response.json()


def post_file(upload: dict, content: bytes, content_type: str) -> None:
    """What the phone does: a multipart POST of the policy fields and the file, to S3."""
    fields = dict(upload["upload"]["fields"])
    fields["Content-Type"] = content_type
    files = {"file": ("photo", content, content_type)}
    response = requests.post(upload["upload"]["url"], data=fields, files=files, timeout=10)
    assert response.status_code in (200, 201, 204), response.text


def test_a_real_upload_becomes_ready_and_downloads(stack: Stack) -> None:
    http = session_for(stack, "consumer")
    upload = start_upload(stack, http, filename="me.png")
    post_file(upload, PNG, "image/png")
    done = http.post(f"{stack.base_url}/v1/uploads/{upload['id']}/complete", timeout=10)
    assert done.status_code == 200 and done.json()["status"] == "ready", done.text
    url = http.get(f"{stack.base_url}/v1/uploads/{upload['id']}", timeout=10).json()["download_url"]
    assert requests.get(url, timeout=10).content == PNG
    head = s3(stack).head_object(Bucket=stack.bucket, Key=upload["upload"]["fields"]["key"])
    assert head["ServerSideEncryption"] == "aws:kms"


@pytest.mark.parametrize(
    ("content", "content_type"), [(PNG[:-1], "image/png"), (PNG, "image/jpeg")]
)
def test_a_file_unlike_its_declaration_is_deleted(
    stack: Stack, content: bytes, content_type: str
) -> None:
    http = session_for(stack, "consumer")
    upload = start_upload(stack, http)
    post_file(upload, content, content_type)
    key = upload["upload"]["fields"]["key"]
    assert s3(stack).list_objects_v2(Bucket=stack.bucket, Prefix=key)["KeyCount"] == 1
    refused = http.post(f"{stack.base_url}/v1/uploads/{upload['id']}/complete", timeout=10)
    assert refused.status_code == 422
    assert s3(stack).list_objects_v2(Bucket=stack.bucket, Prefix=key)["KeyCount"] == 0


def test_a_stranger_cannot_see_an_upload(stack: Stack) -> None:
    owner, stranger = session_for(stack, "consumer"), session_for(stack, "provider")
    upload = start_upload(stack, owner)
    for method, path in (
        ("GET", f"/v1/uploads/{upload['id']}"),
        ("POST", f"/v1/uploads/{upload['id']}/complete"),
        ("DELETE", f"/v1/uploads/{upload['id']}"),
    ):
        assert stranger.request(method, stack.base_url + path, timeout=10).status_code == 404


def moto_endpoint_messages(stack: Stack) -> dict[str, list[dict]]:
    """Every message the emulator received, per platform endpoint."""
    with urllib.request.urlopen(f"{stack.moto_url}/moto-api/data.json", timeout=10) as response:
        data = json.load(response)
    return {
        endpoint["arn"]: [json.loads(m) for m in endpoint.get("messages", {}).values()]
        for endpoint in data.get("sns", {}).get("PlatformEndpoint", [])
    }


def outbox_state(stack: Stack) -> tuple[int, int, int]:
    engine = create_engine(stack.database_url.replace("postgresql://", "postgresql+psycopg2://"))
    with engine.connect() as connection:
        notes = connection.scalar(select(func.count()).select_from(Notification))
        total = connection.scalar(select(func.count()).select_from(OutboxMessage))
        undelivered = connection.scalar(
            select(func.count())
            .select_from(OutboxMessage)
            .where(OutboxMessage.delivered_at.is_(None))
        )
    engine.dispose()
    return notes or 0, total or 0, undelivered or 0


def test_sns_outage_loses_no_notification(stack: Stack) -> None:
    consumer, provider = session_for(stack, "consumer"), session_for(stack, "provider")
    base = stack.base_url
    for http, platform, token in (
        (consumer, "ios", "c" * 64),
        (provider, "android", "fcm:" + "d" * 60),
    ):
        registered = http.post(
            f"{base}/v1/devices", json={"platform": platform, "token": token}, timeout=10
        )
        assert registered.status_code == 200, registered.text
    provider_id = provider.put(
        f"{base}/v1/me/provider-profile",
        json={
            "display_name": "Sam",
            "categories": ["cleaning"],
            "location": {"lat": 52.5, "lng": 13.4},
            "service_radius_km": 10,
            "hourly_rate_cents": 2000,
            "currency": "EUR",
        },
        timeout=10,
    ).json()["id"]
    _, _, undelivered = outbox_state(stack)
    deadline = time.monotonic() + 20
    while undelivered and time.monotonic() < deadline:  # earlier tests' pushes settle first
        time.sleep(0.5)
        _, _, undelivered = outbox_state(stack)
    notes_before, outbox_before, _ = outbox_state(stack)
    messages_before = sum(len(m) for m in moto_endpoint_messages(stack).values())

    stack.sns_proxy.set("refuse")  # SNS is unreachable from here on
    tomorrow = datetime.now(UTC) + timedelta(days=1)
    for hour in range(3):
        # Hours apart: a provider cannot accept two bookings at one time (slot-taken).
        when = (tomorrow + timedelta(hours=2 * hour)).isoformat()
        booking = consumer.post(
            f"{base}/v1/bookings",
            json={
                "provider_id": provider_id,
                "category": "cleaning",
                "scheduled_at": when,
                "location": {"lat": 52.5, "lng": 13.4},
            },
            headers={"Idempotency-Key": str(uuid.uuid4())},
            timeout=10,
        ).json()
        provider.post(f"{base}/v1/bookings/{booking['id']}/accept", timeout=10)
        consumer.post(
            f"{base}/v1/bookings/{booking['id']}/messages", json={"body": "hi"}, timeout=10
        )
    time.sleep(3)  # the relay tries, fails, backs off
    notes, total, undelivered = outbox_state(stack)
    created = notes - notes_before
    assert created == 9 and total - outbox_before == 9
    assert undelivered == 9  # nothing got through, nothing was dropped

    stack.sns_proxy.set("pass")
    deadline = time.monotonic() + 30
    while undelivered and time.monotonic() < deadline:
        time.sleep(0.5)
        _, _, undelivered = outbox_state(stack)
    assert undelivered == 0
    received = [m for messages in moto_endpoint_messages(stack).values() for m in messages]
    pushed = [json.loads(m["APNS"])["trellis"]["outbox_id"] for m in received]
    engine = create_engine(stack.database_url.replace("postgresql://", "postgresql+psycopg2://"))
    with engine.connect() as connection:
        ids = connection.scalars(
            select(OutboxMessage.id).order_by(OutboxMessage.created_at).offset(outbox_before)
        ).all()
    engine.dispose()
    assert len(ids) == 9 and all(str(i) in pushed for i in ids)  # each reached SNS
    print(
        f"\nSNS outage: {created} notifications while down, {undelivered} undelivered after "
        f"recovery, {len(received) - messages_before} pushes received by SNS"
    )
