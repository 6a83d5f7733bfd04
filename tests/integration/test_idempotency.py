"""Idempotency-Key: replay, payload mismatch, in-progress conflicts, expiry, concurrency."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from datetime import timedelta

import pytest
from flask import Flask
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from models import Booking, IdempotencyKey, Message
from models.base import utcnow
from services.base import idempotency
from services.base.unit_of_work import UnitOfWork
from tests.support.actors import booking_body, make_actor
from tests.support.bookings import booking_in, ensure_profile


def key() -> dict[str, str]:
    return {"Idempotency-Key": str(uuid.uuid4())}


def count(session: Session, model: type) -> int:
    session.expire_all()
    return session.scalar(select(func.count()).select_from(model)) or 0


def test_retry_replays_the_first_response_without_running_again(actors, session: Session) -> None:  # type: ignore[no-untyped-def]
    consumer, provider = actors("consumer"), actors("provider")
    ensure_profile(provider)
    body, headers = booking_body(provider.id), key()
    first = consumer.post("/v1/bookings", json=body, headers=headers)
    again = consumer.post("/v1/bookings", json=body, headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.get_data() == first.get_data()
    assert again.headers["Location"] == first.headers["Location"]
    assert again.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert count(session, Booking) == 1


def test_same_json_with_other_key_order_is_the_same_request(actors, session: Session) -> None:  # type: ignore[no-untyped-def]
    consumer, provider = actors("consumer"), actors("provider")
    ensure_profile(provider)
    booking_id = booking_in("accepted", consumer, provider)
    headers = key()
    path = f"/v1/bookings/{booking_id}/messages"
    consumer.post(path, data='{"body": "hi"}', content_type="application/json", headers=headers)
    again = consumer.post(
        path, data='{ "body":"hi" }', content_type="application/json", headers=headers
    )
    assert again.status_code == 201 and again.headers["Idempotent-Replayed"] == "true"
    assert count(session, Message) == 1


def test_same_key_with_another_payload_is_422(actors, session: Session) -> None:  # type: ignore[no-untyped-def]
    consumer, provider = actors("consumer"), actors("provider")
    ensure_profile(provider)
    headers = key()
    body = booking_body(provider.id)
    assert consumer.post("/v1/bookings", json=body, headers=headers).status_code == 201
    response = consumer.post("/v1/bookings", json={**body, "notes": "changed"}, headers=headers)
    assert response.status_code == 422
    assert response.get_json()["type"] == "/problems/idempotency-key-reused"
    assert count(session, Booking) == 1


def test_same_key_on_another_route_is_422(actors) -> None:  # type: ignore[no-untyped-def]
    consumer, provider = actors("consumer"), actors("provider")
    ensure_profile(provider)
    booking_id = booking_in("requested", consumer, provider)
    headers = key()
    consumer.post(f"/v1/bookings/{booking_id}/messages", json={"body": "hi"}, headers=headers)
    response = consumer.post(
        f"/v1/bookings/{booking_id}/cancel", json={"body": "hi"}, headers=headers
    )
    assert response.status_code == 422
    assert response.get_json()["type"] == "/problems/idempotency-key-reused"


def test_keys_are_per_user(actors, session: Session) -> None:  # type: ignore[no-untyped-def]
    alice, bob, provider = actors("consumer"), actors("consumer"), actors("provider")
    ensure_profile(provider)
    headers = key()
    body = booking_body(provider.id)
    assert alice.post("/v1/bookings", json=body, headers=headers).status_code == 201
    second = bob.post("/v1/bookings", json=body, headers=headers)
    assert second.status_code == 201 and "Idempotent-Replayed" not in second.headers
    assert count(session, Booking) == 2


def test_a_refusal_is_replayed_too(actors) -> None:  # type: ignore[no-untyped-def]
    consumer, provider = actors("consumer"), actors("provider")
    ensure_profile(provider)
    booking_id = booking_in("accepted", consumer, provider)
    headers = key()
    path = f"/v1/bookings/{booking_id}/review"
    early = consumer.post(path, json={"rating": 5}, headers=headers)
    assert early.status_code == 409
    for action in ("start", "complete"):
        provider.post(f"/v1/bookings/{booking_id}/{action}")
    # Same key, same request: the stored outcome, not a new attempt (Stripe's semantics).
    replay = consumer.post(path, json={"rating": 5}, headers=headers)
    assert replay.status_code == 409 and replay.headers["Idempotent-Replayed"] == "true"
    assert replay.content_type == "application/problem+json"
    # A new key is a new attempt.
    assert consumer.post(path, json={"rating": 5}, headers=key()).status_code == 201


def test_request_in_progress_is_409_until_it_goes_stale(actors, session: Session) -> None:  # type: ignore[no-untyped-def]
    consumer, provider = actors("consumer"), actors("provider")
    ensure_profile(provider)
    body, headers = booking_body(provider.id), key()
    consumer_id = uuid.UUID(consumer.id)
    # Simulate a first request that is still running, with the fingerprint this request has.
    first = consumer.post("/v1/bookings", json=body, headers=headers)
    session.execute(
        update(IdempotencyKey)
        .where(IdempotencyKey.user_id == consumer_id)
        .values(state="in_progress", locked_at=utcnow(), response_status=None)
    )
    session.commit()
    busy = consumer.post("/v1/bookings", json=body, headers=headers)
    assert busy.status_code == 409
    assert busy.get_json()["type"] == "/problems/idempotency-key-in-use"
    # A holder silent for longer than STALE_AFTER died; its writes died with it: take over.
    session.execute(
        update(IdempotencyKey)
        .where(IdempotencyKey.user_id == consumer_id)
        .values(locked_at=utcnow() - idempotency.STALE_AFTER - timedelta(seconds=1))
    )
    session.commit()
    taken = consumer.post("/v1/bookings", json=body, headers=headers)
    assert taken.status_code == 201 and "Idempotent-Replayed" not in taken.headers
    assert taken.get_json()["id"] != first.get_json()["id"]


def test_expired_key_runs_again(actors, session: Session) -> None:  # type: ignore[no-untyped-def]
    consumer, provider = actors("consumer"), actors("provider")
    ensure_profile(provider)
    body, headers = booking_body(provider.id), key()
    consumer.post("/v1/bookings", json=body, headers=headers)
    session.execute(update(IdempotencyKey).values(expires_at=utcnow() - timedelta(seconds=1)))
    session.commit()
    again = consumer.post("/v1/bookings", json=body, headers=headers)
    assert again.status_code == 201 and "Idempotent-Replayed" not in again.headers
    assert count(session, Booking) == 2


def test_purge_removes_only_expired_keys(actors, session: Session, sessions) -> None:  # type: ignore[no-untyped-def]
    consumer, provider = actors("consumer"), actors("provider")
    ensure_profile(provider)
    for _ in range(3):
        consumer.post("/v1/bookings", json=booking_body(provider.id), headers=key())
    assert count(session, IdempotencyKey) == 3
    removed = idempotency.purge_expired(sessions, now=utcnow() + timedelta(hours=25))
    assert removed == 3 and count(session, IdempotencyKey) == 0
    consumer.post("/v1/bookings", json=booking_body(provider.id), headers=key())
    assert idempotency.purge_expired(sessions) == 0


@pytest.mark.parametrize("bad", ["", "has space", "x" * 256, "naïve"])
def test_malformed_key_is_422(actors, bad: str) -> None:  # type: ignore[no-untyped-def]
    consumer, provider = actors("consumer"), actors("provider")
    ensure_profile(provider)
    response = consumer.post(
        "/v1/bookings", json=booking_body(provider.id), headers={"Idempotency-Key": bad}
    )
    assert response.status_code == 422
    assert response.get_json()["errors"][0]["field"] == "Idempotency-Key"


def test_failed_work_releases_the_key(session: Session, sessions, actors) -> None:  # type: ignore[no-untyped-def]
    user_id = uuid.UUID(actors("consumer").id)

    def crash() -> idempotency.Outcome:
        raise RuntimeError("worker died")

    def run(work: Callable[[], idempotency.Outcome]) -> idempotency.StoredResponse:
        unit = UnitOfWork(writes=True, sessions=sessions, read_sessions=sessions)
        try:
            return idempotency.run(
                unit, user_id=user_id, key="k", fingerprint="f", ttl=timedelta(hours=1), work=work
            )
        finally:
            unit.close()

    with pytest.raises(RuntimeError):
        run(crash)
    assert count(session, IdempotencyKey) == 0
    outage = idempotency.StoredResponse(503, b"{}", "application/problem+json")
    assert run(lambda: idempotency.Outcome(outage)).status == 503
    assert count(session, IdempotencyKey) == 0


def test_concurrent_retries_run_the_work_once(app: Flask, signing_key, engine) -> None:  # type: ignore[no-untyped-def]
    client = app.test_client()
    consumer = make_actor(client, signing_key, "consumer")
    provider = make_actor(client, signing_key, "provider")
    ensure_profile(provider)
    body, headers = booking_body(provider.id), key()
    barrier = threading.Barrier(6)
    statuses: list[int] = []

    def send() -> None:
        local = make_actor(app.test_client(), signing_key, "consumer", sub=consumer.sub)
        barrier.wait()
        statuses.append(local.post("/v1/bookings", json=body, headers=headers).status_code)

    threads = [threading.Thread(target=send) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(set(statuses)) in ([201], [201, 409])
    with Session(engine) as check:
        assert check.scalar(select(func.count()).select_from(Booking)) == 1


def test_purge_command(app: Flask, actors, session: Session) -> None:  # type: ignore[no-untyped-def]
    consumer, provider = actors("consumer"), actors("provider")
    ensure_profile(provider)
    consumer.post("/v1/bookings", json=booking_body(provider.id), headers=key())
    session.execute(update(IdempotencyKey).values(expires_at=utcnow() - timedelta(seconds=1)))
    session.commit()
    result = app.test_cli_runner().invoke(args=["purge-idempotency-keys"])
    assert result.exit_code == 0, result.output
    assert "removed 1 expired" in result.output
    assert count(session, IdempotencyKey) == 0
