"""A user leaves, for real: moto's Cognito, S3 and SNS, PostgreSQL, gunicorn, the flask CLI.

A consumer and a provider have a booking with its history, messages both ways, a review,
an avatar in S3, a push device in SNS, sync data and analytics events. The consumer downloads
their data, then deletes their account; once the grace period has passed,
`flask --app application accounts purge` runs. Then Cognito has no such user, S3 nothing
under their prefix (no version either), SNS none of their endpoints, no table holds anything
they wrote or were; the provider keeps the booking, with a deleted counterparty, and their
rating; the consumer's old token is refused and brings nothing back.
"""

from __future__ import annotations

import gzip
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import orjson
import pytest
import requests
from sqlalchemy import create_engine, select, update

from devstack.cognito import add_user, cognito_client, sign_in
from devstack.processes import ROOT, base_env
from models import Device, ProviderProfile, User
from models.base import utcnow
from tests.e2e.conftest import Stack
from tests.e2e.test_media_push_e2e import PNG, post_file, start_upload
from tests.support.actors import booking_body, profile_body
from tests.support.database import strings_in_database

pytestmark = pytest.mark.e2e

SECRET_NAME = "Leonie Leaving"
SECRET_PHONE = "+15550009876"
SECRET_BODY = "The key is under the blue flowerpot"
SECRET_COMMENT = "Lovely work, Leonie says thanks"
SECRET_SYNC = "leonie-favourite-teal"
SECRET_ATTRIBUTE = "leonie-screen-secret"
DEVICE_TOKEN = "f00dcafe" * 8
SECTIONS = {
    "format_version",
    "generated_at",
    "user_id",
    "export_id",
    "profile",
    "provider_profile",
    "bookings",
    "messages",
    "reviews",
    "uploads",
    "devices",
    "notifications",
    "sync_datasets",
    "blocks",
    "analytics_events",
}


class Client:
    """One signed-in user of the running service."""

    def __init__(self, stack: Stack, username: str) -> None:
        self.stack = stack
        self.http = requests.Session()
        self.http.headers["Authorization"] = f"Bearer {sign_in(stack.pool, username)['access']}"

    def call(self, method: str, path: str, expect: int, **kwargs: Any) -> Any:
        response = self.http.request(method, f"{self.stack.base_url}{path}", timeout=20, **kwargs)
        assert response.status_code == expect, (method, path, response.text)
        return response.json() if response.content else None


def aws(stack: Stack, service: str) -> Any:
    return boto3.client(
        service,
        endpoint_url=stack.moto_url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def new_user(stack: Stack, role: str) -> str:
    username = f"{role}-{uuid.uuid4().hex[:8]}"
    add_user(stack.pool, username, email=f"{username}@leaving.example", groups=[f"{role}s"])
    return username


def a_life_on_trellis(stack: Stack, consumer: Client, provider: Client) -> tuple[str, str, str]:
    """Everything the consumer leaves behind, some of it shared; returns their id, the
    provider's id and the booking's id."""
    provider_id = provider.call("GET", "/v1/me", 200)["id"]
    provider.call("PUT", "/v1/me/provider-profile", 200, json=profile_body())
    me = consumer.call(
        "PATCH", "/v1/me", 200, json={"display_name": SECRET_NAME, "phone": SECRET_PHONE}
    )
    booking = consumer.call("POST", "/v1/bookings", 201, json=booking_body(provider_id))["id"]
    for action in ("accept", "start", "complete"):
        provider.call("POST", f"/v1/bookings/{booking}/{action}", 200, json={})
    consumer.call("POST", f"/v1/bookings/{booking}/messages", 201, json={"body": SECRET_BODY})
    provider.call("POST", f"/v1/bookings/{booking}/messages", 201, json={"body": "See you"})
    review = {"rating": 4, "comment": SECRET_COMMENT}
    consumer.call("POST", f"/v1/bookings/{booking}/review", 201, json=review)
    upload = start_upload(stack, consumer.http, filename="leonie.png")
    post_file(upload, PNG, "image/png")
    consumer.call("POST", f"/v1/uploads/{upload['id']}/complete", 200)
    consumer.call("POST", "/v1/devices", 200, json={"platform": "ios", "token": DEVICE_TOKEN})
    records = [{"op": "replace", "key": "colour", "value": SECRET_SYNC, "sync_count": 0}]
    sync = {"device_id": "phone", "records": records}
    consumer.call("POST", "/v1/sync/datasets/prefs", 200, json=sync)
    now = datetime.now(UTC).isoformat()
    event = {"name": "screen_view", "timestamp": now, "attributes": {"screen": SECRET_ATTRIBUTE}}
    consumer.call("POST", "/v1/events", 202, json={"events": [event]})
    return me["id"], provider_id, booking


def download_export(consumer: Client) -> dict[str, Any]:
    """Ask for the data, wait for the web worker to build it, download it."""
    export = consumer.call("POST", "/v1/me/exports", 202)
    deadline = time.monotonic() + 60
    while (seen := consumer.call("GET", f"/v1/me/exports/{export['id']}", 200))["status"] in (
        "pending",
    ):
        assert time.monotonic() < deadline, seen
        time.sleep(0.5)
    assert seen["status"] == "ready", seen
    document = requests.get(seen["download_url"], timeout=20)
    assert document.status_code == 200
    return dict(orjson.loads(gzip.decompress(document.content)))


def purge(stack: Stack) -> subprocess.CompletedProcess[str]:
    env = base_env(
        APP_ENV="test",
        DATABASE_URL=stack.database_url,
        UPLOADS_BUCKET=stack.bucket,
        OUTBOX_RELAY_IN_WEB="false",
        DATA_EXPORTS_IN_WEB="false",
        **stack.pool.trellis_env(),
    )
    command = [sys.executable, "-m", "flask", "--app", "application", "accounts", "purge"]
    return subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False
    )


def test_a_consumer_downloads_their_data_deletes_their_account_and_is_purged(
    stack: Stack,
) -> None:
    consumer_name, provider_name = new_user(stack, "consumer"), new_user(stack, "provider")
    consumer, provider = Client(stack, consumer_name), Client(stack, provider_name)
    consumer_id, provider_id, booking = a_life_on_trellis(stack, consumer, provider)
    shown = provider.call("GET", f"/v1/providers/{provider_id}", 200)
    rating_before = (shown["rating_average"], shown["rating_count"])

    # "Download my data": every section, with what they wrote.
    document = download_export(consumer)
    assert set(document) == SECTIONS
    assert document["profile"]["display_name"] == SECRET_NAME
    assert [b["id"] for b in document["bookings"]] == [booking]
    assert SECRET_BODY in {m["body"] for m in document["messages"]}
    assert [r["comment"] for r in document["reviews"]["written"]] == [SECRET_COMMENT]
    [upload] = document["uploads"]
    assert requests.get(upload["download_url"], timeout=10).content == PNG
    assert len(document["devices"]) == 1 and len(document["analytics_events"]) == 1
    assert SECRET_SYNC in orjson.dumps(document["sync_datasets"]).decode()

    # Delete the account; the grace period passes.
    assert consumer.call("DELETE", "/v1/me", 202)["status"] == "scheduled"
    engine = create_engine(stack.database_url)
    try:
        with engine.begin() as connection:
            [arn] = connection.scalars(
                select(Device.endpoint_arn).where(Device.user_id == uuid.UUID(consumer_id))
            ).all()
            connection.execute(
                update(User)
                .where(User.id == uuid.UUID(consumer_id))
                .values(purge_at=utcnow() - timedelta(seconds=1))
            )
        assert aws(stack, "sns").get_endpoint_attributes(EndpointArn=arn)["Attributes"]
        prefix = f"users/{consumer_id}/"
        s3 = aws(stack, "s3")
        assert s3.list_object_versions(Bucket=stack.bucket, Prefix=prefix).get("Versions")

        ran = purge(stack)
        assert ran.returncode == 0, ran.stderr[-3000:]
        assert "purged 1 accounts" in ran.stdout

        # AWS: no Cognito user, nothing under the prefix (no version, no delete marker),
        # no push endpoint.
        cognito = cognito_client(stack.pool.endpoint_url, stack.pool.region)
        with pytest.raises(cognito.exceptions.UserNotFoundException):
            cognito.admin_get_user(UserPoolId=stack.pool.pool_id, Username=consumer_name)
        left = s3.list_object_versions(Bucket=stack.bucket, Prefix=prefix)
        assert not left.get("Versions") and not left.get("DeleteMarkers"), left
        sns = aws(stack, "sns")
        with pytest.raises(sns.exceptions.NotFoundException):
            sns.get_endpoint_attributes(EndpointArn=arn)

        # PostgreSQL: nothing of theirs in any row of any table but their tombstone.
        everything = strings_in_database(engine, tombstone=uuid.UUID(consumer_id))
        for secret in (
            SECRET_NAME,
            SECRET_PHONE,
            f"{consumer_name}@leaving.example",
            SECRET_BODY,
            SECRET_COMMENT,
            SECRET_SYNC,
            SECRET_ATTRIBUTE,
            DEVICE_TOKEN,
            "leonie.png",
            consumer_id,
        ):
            assert secret not in everything, secret
        with engine.connect() as connection:
            tombstone = connection.execute(
                select(User.email, User.display_name, User.phone, User.purged_at).where(
                    User.id == uuid.UUID(consumer_id)
                )
            ).one()
            rating_sum = connection.scalar(
                select(ProviderProfile.rating_sum).where(
                    ProviderProfile.user_id == uuid.UUID(provider_id)
                )
            )
        assert tombstone[:3] == (None, None, None) and tombstone.purged_at is not None
        assert rating_sum == 4
    finally:
        engine.dispose()

    # The provider keeps the booking and its thread, with a deleted counterparty.
    seen = provider.call("GET", f"/v1/bookings/{booking}", 200)
    assert seen["consumer"] == {
        "id": None,
        "display_name": None,
        "deleted": True,
        "avatar_url": None,
    }
    assert seen["status"] == "completed" and seen["location"]["lat"] is None
    thread = provider.call("GET", f"/v1/bookings/{booking}/messages", 200)["items"]
    assert [(m["body"], m["removed"]) for m in thread] == [(None, True), ("See you", False)]
    shown = provider.call("GET", f"/v1/providers/{provider_id}", 200)
    assert (shown["rating_average"], shown["rating_count"]) == rating_before == (4.0, 1)

    # The old token is refused and brings nothing back.
    refused = consumer.http.get(f"{stack.base_url}/v1/me", timeout=10)
    assert refused.status_code == 401
    assert refused.json()["type"] == "/problems/account-closed"
