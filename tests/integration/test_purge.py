"""The purge (services/accounts/purge.py) of accounts whose grace period has ended.

A consumer and a provider with a booking, messages, a review, uploads, devices, sync data,
events and Idempotency-Key records; the consumer's deletion is scheduled and comes due; the
purge runs. Then: nothing of the consumer is left in any table (scanned column by column),
in S3, in SNS or in Cognito; the provider keeps the booking, with a deleted counterparty and
the rating unchanged; the consumer's old token is refused; a rerun does nothing.
"""

from __future__ import annotations

import threading
import uuid
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select, text, update
from sqlalchemy.orm import Session, sessionmaker

from models import Event, ProviderProfile, SyncDataset, SyncRecord, Upload, User
from models.base import utcnow
from services.accounts import purge
from services.aws.s3 import StoredObject
from tests.conftest import BuildComponents, make_app, make_settings
from tests.support.actors import Actor
from tests.support.bookings import booking_in, ensure_profile
from tests.support.database import strings_in_database
from tests.support.fakes import FakeGroups, FakePush, FakeStore

SECRET_NAME = "Quentin Purgeable"
SECRET_PHONE = "+15550001234"
SECRET_EMAIL_DOMAIN = "purge-me.example"
LAT, LNG = 48.13741, 11.57549  # bookings made by tests.support.actors.booking_body
SECRET_BODY = "My door code is 4711"
SECRET_COMMENT = "Brilliant work, thanks from Quentin"
SECRET_SYNC = "quentin-favourite-colour-teal"
SECRET_ATTRIBUTE = "quentin-attribute-value"


def _ok(response: Any, status: int = 200) -> Any:
    assert response.status_code == status, response.get_data(as_text=True)
    return response.get_json()


def _run(sessions: sessionmaker[Session], groups: FakeGroups, store: FakeStore, push: FakePush):  # type: ignore[no-untyped-def]
    return purge.purge_due(sessions, directory=groups, store=store, push=push)


def _come_due(session: Session, actor: Actor) -> None:
    """The actor asked for deletion, and the grace period has passed."""
    session.execute(
        update(User)
        .where(User.id == uuid.UUID(actor.id))
        .values(purge_at=utcnow() - timedelta(seconds=1))
    )
    session.commit()


@pytest.fixture
def world(actors, session, store, push, groups):  # type: ignore[no-untyped-def]
    """Everything a consumer leaves behind, shared with a provider; returns both and ids."""
    consumer, provider = actors("consumer"), actors("provider")
    groups.users[consumer.sub] = consumer.sub  # Cognito knows them (username = sub here)
    ensure_profile(provider)
    _ok(
        consumer.client.patch(
            "/v1/me",
            headers=consumer.headers(),
            json={"display_name": SECRET_NAME, "phone": SECRET_PHONE},
        )
    )
    session.execute(
        update(User)
        .where(User.id == uuid.UUID(consumer.id))
        .values(email=f"q@{SECRET_EMAIL_DOMAIN}")
    )
    session.commit()
    booking = booking_in("completed", consumer, provider)
    messages = f"/v1/bookings/{booking}/messages"
    _ok(
        consumer.post(
            messages,
            json={"body": SECRET_BODY},
            headers=consumer.headers(**{"Idempotency-Key": "k-1"}),
        ),
        201,
    )
    _ok(provider.post(messages, json={"body": "See you then"}), 201)
    _ok(
        consumer.post(
            f"/v1/bookings/{booking}/review", json={"rating": 4, "comment": SECRET_COMMENT}
        ),
        201,
    )
    _ok(consumer.post("/v1/devices", json={"platform": "ios", "token": "a1b2c3d4e5f6a7b8"}))
    consumer_id = uuid.UUID(consumer.id)
    key = f"users/{consumer_id}/avatar/{uuid.uuid4()}"
    store.objects[key] = StoredObject(10, "image/jpeg")
    store.objects[f"users/{provider.id}/avatar/kept"] = StoredObject(10, "image/jpeg")
    session.add(
        Upload(
            owner_id=consumer_id,
            purpose="avatar",
            content_type="image/jpeg",
            size_bytes=10,
            filename="quentin.jpg",
            key=key,
            status="ready",
        )
    )
    dataset = SyncDataset(user_id=consumer_id, name="settings")
    session.add(dataset)
    session.flush()
    session.add(SyncRecord(dataset_id=dataset.id, key="colour", value=SECRET_SYNC, sync_count=1))
    session.add(
        Event(
            user_id=consumer_id,
            name="screen_view",
            occurred_at=utcnow(),
            session_id="quentin-session",
            attributes={"screen": SECRET_ATTRIBUTE},
        )
    )
    session.commit()
    _ok(consumer.delete("/v1/me"), 202)
    _come_due(session, consumer)
    return consumer, provider, booking


def test_the_purge_leaves_nothing_of_the_user_and_the_counterparty_keeps_the_booking(  # type: ignore[no-untyped-def]
    world, sessions, session, engine, store, push, groups
) -> None:
    consumer, provider, booking = world
    rating_before = session.scalar(select(ProviderProfile.rating_sum))
    assert push.endpoints, "the device registered an endpoint"

    stats = _run(sessions, groups, store, push)

    assert stats.purged == [uuid.UUID(consumer.id)] and stats.failed == {}
    # AWS: Cognito user, objects under the prefix, push endpoints.
    assert groups.users[consumer.sub] is None
    assert not [k for k in store.objects if k.startswith(f"users/{consumer.id}/")]
    assert f"users/{provider.id}/avatar/kept" in store.objects
    assert push.endpoints == {}
    # The database: no trace of the consumer's data anywhere.
    everything = strings_in_database(engine, tombstone=uuid.UUID(consumer.id))
    for secret in (
        SECRET_NAME,
        SECRET_PHONE,
        SECRET_EMAIL_DOMAIN,
        SECRET_BODY,
        SECRET_COMMENT,
        SECRET_SYNC,
        SECRET_ATTRIBUTE,
        "quentin-session",
        "quentin.jpg",
        str(LAT),
        str(LNG),
        "a1b2c3d4e5f6a7b8",
        consumer.id,
    ):
        assert secret not in everything, secret
    # The tombstone: one row, no personal data, the sub kept to refuse old tokens.
    tombstone = session.scalars(select(User).where(User.cognito_sub == consumer.sub)).one()
    assert tombstone.purged_at is not None
    assert (tombstone.email, tombstone.display_name, tombstone.phone, tombstone.roles) == (
        None,
        None,
        None,
        [],
    )
    # The provider keeps the booking, with a deleted counterparty and the rating.
    seen = _ok(provider.get(f"/v1/bookings/{booking}"))
    assert seen["consumer_id"] is None and seen["provider_id"] == provider.id
    assert seen["consumer"] == {
        "id": None,
        "display_name": None,
        "deleted": True,
        "avatar_url": None,
    }
    assert seen["provider"]["id"] == provider.id and seen["provider"]["deleted"] is False
    assert seen["status"] == "completed"
    assert seen["location"] == {"lat": None, "lng": None, "address": None}
    assert [e["actor_id"] for e in seen["history"] if e["actor_role"] == "consumer"] == [None]
    thread = _ok(provider.get(f"/v1/bookings/{booking}/messages"))["items"]
    assert [(m["sender_id"], m["body"], m["removed"]) for m in thread] == [
        (None, None, True),
        (provider.id, "See you then", False),
    ]
    assert session.scalar(select(ProviderProfile.rating_sum)) == rating_before
    # The old token is refused and brings nothing back.
    refused = consumer.get("/v1/me")
    assert refused.status_code == 401
    assert refused.get_json()["type"] == "/problems/account-closed"
    assert session.scalar(select(text("count(*)")).select_from(User)) == 2
    # A rerun has nothing to do.
    assert _run(sessions, groups, store, push).purged == []


def test_an_aws_failure_postpones_the_account_and_the_next_run_finishes_it(  # type: ignore[no-untyped-def]
    world, sessions, session, store, push, groups
) -> None:
    consumer, _, _ = world
    store.down = True
    stats = _run(sessions, groups, store, push)
    assert stats.purged == [] and list(stats.failed) == [uuid.UUID(consumer.id)]
    assert session.scalar(select(User.purged_at).where(User.id == uuid.UUID(consumer.id))) is None
    assert (
        session.scalar(select(User.display_name).where(User.id == uuid.UUID(consumer.id)))
        == SECRET_NAME
    )
    store.down = False
    groups.down = True
    assert list(_run(sessions, groups, store, push).failed) == [uuid.UUID(consumer.id)]
    groups.down = False
    assert _run(sessions, groups, store, push).purged == [uuid.UUID(consumer.id)]
    assert groups.users[consumer.sub] is None


def test_the_cli_purges_and_exits_1_while_an_account_is_left(app: Flask, world, groups) -> None:  # type: ignore[no-untyped-def]
    consumer, _, _ = world
    groups.down = True
    failed = app.test_cli_runner().invoke(args=["accounts", "purge"])
    assert failed.exit_code == 1
    assert "purged 0 accounts" in failed.output
    assert f"left for the next run: {consumer.id} (DirectoryUnavailable" in failed.output
    groups.down = False
    done = app.test_cli_runner().invoke(args=["accounts", "purge"])
    assert done.exit_code == 0, done.output
    assert "purged 1 accounts" in done.output
    assert groups.users[consumer.sub] is None
    assert "purged 0 accounts" in app.test_cli_runner().invoke(args=["accounts", "purge"]).output


def test_the_worker_task_purges_and_answers_503_while_an_account_is_left(  # type: ignore[no-untyped-def]
    build: BuildComponents, database_url: str, world, session, groups
) -> None:
    consumer, _, _ = world
    app = make_app(build(make_settings(database_url, WORKER_TASKS_ENABLED="true")))
    client = app.test_client()
    sqsd = {"headers": {"User-Agent": "aws-sqsd/3.0.4"}, "environ_base": {"REMOTE_ADDR": "::1"}}
    groups.down = True
    left = client.post("/internal/tasks/accounts-purge", **sqsd)
    assert left.status_code == 503 and left.mimetype == "application/problem+json"
    assert left.headers["Retry-After"] == "60"
    assert "1 accounts could not be purged" in left.get_json()["detail"]
    groups.down = False
    done = client.post("/internal/tasks/accounts-purge", **sqsd)
    assert done.get_json() == {"task": "accounts-purge", "purged": 1, "complete": True}
    purged_at = select(User.purged_at).where(User.id == uuid.UUID(consumer.id))
    assert session.scalar(purged_at) is not None


def test_a_run_stops_starting_accounts_at_its_time_limit(  # type: ignore[no-untyped-def]
    world, sessions, store, push, groups
) -> None:
    stats = purge.purge_due(sessions, directory=groups, store=store, push=push, max_seconds=0)
    assert stats.purged == [] and stats.complete is False
    consumer, _, _ = world
    assert _run(sessions, groups, store, push).purged == [uuid.UUID(consumer.id)]


def test_an_account_in_its_grace_period_or_cancelled_is_not_purged(
    actors, sessions, session, store, push, groups
) -> None:  # type: ignore[no-untyped-def]
    waiting, cancelled = actors("consumer"), actors("consumer")
    _ok(waiting.delete("/v1/me"), 202)
    _ok(cancelled.delete("/v1/me"), 202)
    assert cancelled.delete("/v1/me/deletion").status_code == 204
    assert _run(sessions, groups, store, push).purged == []
    assert (
        session.scalar(
            select(text("count(*)")).select_from(User).where(User.purged_at.is_not(None))
        )
        == 0
    )


def test_two_runners_at_once_purge_each_account_once(world, sessions, store, push, groups) -> None:  # type: ignore[no-untyped-def]
    consumer, _, _ = world
    results: list[list[uuid.UUID]] = []
    start = threading.Barrier(2)

    def runner() -> None:
        start.wait()
        results.append(_run(sessions, groups, store, push).purged)

    threads = [threading.Thread(target=runner) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(len(r) for r in results) == [0, 1]
    assert [uuid.UUID(consumer.id)] in results


def test_a_purged_provider_leaves_the_consumer_their_booking_and_review(
    actors, sessions, session, store, push, groups
) -> None:  # type: ignore[no-untyped-def]
    consumer, provider = actors("consumer"), actors("provider")
    ensure_profile(provider)
    booking = booking_in("completed", consumer, provider)
    _ok(
        consumer.post(f"/v1/bookings/{booking}/review", json={"rating": 5, "comment": "Great"}), 201
    )
    _ok(provider.delete("/v1/me"), 202)
    _come_due(session, provider)
    assert _run(sessions, groups, store, push).purged == [uuid.UUID(provider.id)]
    seen = _ok(consumer.get(f"/v1/bookings/{booking}"))
    assert seen["provider_id"] is None and seen["consumer_id"] == consumer.id
    assert seen["provider"] == {
        "id": None,
        "display_name": None,
        "deleted": True,
        "avatar_url": None,
    }
    assert seen["consumer"]["id"] == consumer.id and seen["consumer"]["deleted"] is False
    assert seen["location"]["lat"] is not None  # the consumer's own location stays
    assert (
        session.scalar(
            select(ProviderProfile).where(ProviderProfile.user_id == uuid.UUID(provider.id))
        )
        is None
    )
    assert _ok(consumer.get("/v1/providers?category=cleaning"))["items"] == []
