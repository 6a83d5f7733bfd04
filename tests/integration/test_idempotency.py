"""Idempotency-Key: replay, payload mismatch, in-progress conflicts, expiry, concurrency."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import create_engine, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker
from werkzeug.test import TestResponse

from models import Booking, IdempotencyKey, Message, User
from models.base import utcnow
from services.base import idempotency
from services.base.unit_of_work import UnitOfWork
from services.marketplace import messages
from tests.integration.test_migrations import alembic
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


# ---- One transaction a request: the races (services/base/idempotency.py's docstring) ----


def test_a_retry_while_the_first_runs_is_409_at_once(  # type: ignore[no-untyped-def]
    app: Flask, signing_key, engine, monkeypatch
) -> None:
    """The first request is held inside its transaction (its writes made, not committed);
    the retry's 409 comes while it is still held: it never waits for the first."""
    client = app.test_client()
    consumer = make_actor(client, signing_key, "consumer")
    provider = make_actor(client, signing_key, "provider")
    ensure_profile(provider)
    path = f"/v1/bookings/{booking_in('accepted', consumer, provider)}/messages"
    headers = key()
    inside, release = threading.Event(), threading.Event()
    post_message = messages.post_message

    def held(*args: Any, **kwargs: Any) -> Any:
        view = post_message(*args, **kwargs)
        inside.set()
        assert release.wait(10), "the test never released the first request"
        return view

    monkeypatch.setattr(messages, "post_message", held)
    first: list[TestResponse] = []

    def send_first() -> None:
        local = make_actor(app.test_client(), signing_key, "consumer", sub=consumer.sub)
        first.append(local.post(path, json={"body": "hi"}, headers=headers))

    thread = threading.Thread(target=send_first)
    thread.start()
    try:
        assert inside.wait(10)
        busy = consumer.post(path, json={"body": "hi"}, headers=headers)
        still_held = thread.is_alive() and not first
    finally:
        release.set()
        thread.join(10)
    assert busy.status_code == 409, busy.get_data(as_text=True)
    assert busy.get_json()["type"] == "/problems/idempotency-key-in-use"
    assert still_held, "the 409 waited for the first request to finish"
    assert first[0].status_code == 201
    replay = consumer.post(path, json={"body": "hi"}, headers=headers)
    assert replay.status_code == 201 and replay.headers["Idempotent-Replayed"] == "true"
    assert replay.get_data() == first[0].get_data()
    with Session(engine) as check:
        assert check.scalar(select(func.count()).select_from(Message)) == 1


def run_once(
    sessions: sessionmaker[Session],
    user_id: uuid.UUID,
    work: Callable[[], idempotency.Outcome],
    *,
    the_key: str = "k",
    fingerprint: str = "f",
    unit: UnitOfWork | None = None,
) -> idempotency.StoredResponse:
    """`work` run under the key in a unit of its own (or `unit`, which `work` may use)."""
    unit = unit or UnitOfWork(writes=True, sessions=sessions, read_sessions=sessions)
    try:
        return idempotency.run(
            unit,
            user_id=user_id,
            key=the_key,
            fingerprint=fingerprint,
            ttl=timedelta(hours=1),
            work=work,
        )
    finally:
        unit.close()


def must_not_run() -> idempotency.Outcome:
    raise AssertionError("the work ran again")


def writing(unit_session: Callable[[], Session], marker: str) -> None:
    """A write of the work, visible as a user row with this sub once committed."""
    session = unit_session()
    session.add(User(cognito_sub=marker, roles=[]))
    session.flush()


def users_with_sub(session: Session, sub: str) -> int:
    session.expire_all()
    return session.scalar(select(func.count()).where(User.cognito_sub == sub)) or 0


def test_a_refusal_is_stored_and_its_writes_dropped(session: Session, sessions, actors) -> None:  # type: ignore[no-untyped-def]
    user_id = uuid.UUID(actors("consumer").id)
    refusal = idempotency.StoredResponse(409, b'{"type":"x"}', "application/problem+json")
    unit = UnitOfWork(writes=True, sessions=sessions, read_sessions=sessions)

    def refuse_after_writing() -> idempotency.Outcome:
        unit.writer().add(User(cognito_sub="refused-write", roles=[]))
        unit.writer().flush()
        return idempotency.Outcome(refusal, raised=True)

    answer = run_once(sessions, user_id, refuse_after_writing, unit=unit)
    assert answer == refusal
    assert users_with_sub(session, "refused-write") == 0
    replay = run_once(sessions, user_id, must_not_run)
    assert (replay.status, replay.body, replay.replayed) == (409, refusal.body, True)


def test_a_refusal_from_a_failed_flush_is_stored(session: Session, sessions, actors) -> None:  # type: ignore[no-untyped-def]
    """The work's flush fails (a unique violation it turns into a 409): the session must be
    rolled back whole before the refusal can be stored, and it is."""
    consumer = actors("consumer")
    user_id = uuid.UUID(consumer.id)
    refusal = idempotency.StoredResponse(409, b"{}", "application/problem+json")
    unit = UnitOfWork(writes=True, sessions=sessions, read_sessions=sessions)

    def duplicate() -> idempotency.Outcome:
        unit.writer().add(User(cognito_sub=consumer.sub, roles=[]))
        with pytest.raises(IntegrityError):
            unit.writer().flush()
        return idempotency.Outcome(refusal, raised=True)

    answer = run_once(sessions, user_id, duplicate, unit=unit)
    assert answer == refusal
    assert run_once(sessions, user_id, must_not_run).replayed


def test_a_5xx_or_a_crash_leaves_the_key_free(session: Session, sessions, actors) -> None:  # type: ignore[no-untyped-def]
    user_id = uuid.UUID(actors("consumer").id)
    outage = idempotency.StoredResponse(503, b"{}", "application/problem+json")
    ran: list[str] = []

    def an_outage() -> idempotency.Outcome:
        ran.append("outage")
        return idempotency.Outcome(outage)

    def crash() -> idempotency.Outcome:
        ran.append("crash")
        raise RuntimeError("worker died")

    assert run_once(sessions, user_id, an_outage).status == 503
    with pytest.raises(RuntimeError):
        run_once(sessions, user_id, crash)
    done = idempotency.StoredResponse(201, b'{"id":1}', "application/json")

    def succeed() -> idempotency.Outcome:
        ran.append("success")
        return idempotency.Outcome(done)

    assert run_once(sessions, user_id, succeed) == done  # the key was still free: it ran
    assert run_once(sessions, user_id, must_not_run).replayed
    assert ran == ["outage", "crash", "success"]
    assert count(session, IdempotencyKey) == 1


def test_a_claim_by_the_previous_code_meanwhile_drops_the_work(  # type: ignore[no-untyped-def]
    session: Session, sessions, actors
) -> None:
    """During a rolling deploy the previous code commits an `in_progress` claim without the
    advisory lock: if it lands while this request's work runs, this request's work is
    dropped (409) and the other one's claim stands."""
    user_id = uuid.UUID(actors("consumer").id)
    unit = UnitOfWork(writes=True, sessions=sessions, read_sessions=sessions)
    now = utcnow()

    def work_while_the_old_code_claims() -> idempotency.Outcome:
        writing(unit.writer, "dropped-write")
        with sessions() as other:
            other.add(IdempotencyKey(
                user_id=user_id, key="k", fingerprint="f", state="in_progress",
                locked_at=now, expires_at=now + timedelta(hours=1),
            ))  # fmt: skip
            other.commit()
        return idempotency.Outcome(idempotency.StoredResponse(201, b"{}", "application/json"))

    try:
        with pytest.raises(idempotency.KeyInProgress):
            idempotency.run(
                unit, user_id=user_id, key="k", fingerprint="f", ttl=timedelta(hours=1),
                work=work_while_the_old_code_claims,
            )  # fmt: skip
    finally:
        unit.close()
    assert users_with_sub(session, "dropped-write") == 0
    row = session.scalars(select(IdempotencyKey)).one()
    assert row.state == "in_progress"


def test_the_lock_is_per_user_and_key() -> None:
    alice, bob = uuid.uuid4(), uuid.uuid4()
    assert idempotency.lock_id(alice, "k") == idempotency.lock_id(alice, "k")
    ids = {idempotency.lock_id(u, k) for u in (alice, bob) for k in ("k", "k2")}
    assert len(ids) == 4
    assert all(-(2**63) <= i < 2**63 for i in ids)


def test_sqlite_keeps_the_same_rules(tmp_path: Path) -> None:
    """No advisory locks on SQLite: it serialises writers, and the guarded INSERT refuses a
    key claimed while the work ran."""
    url = f"sqlite:///{tmp_path / 'trellis.db'}"
    alembic(url, "upgrade", "head")
    lite = sessionmaker(create_engine(url), expire_on_commit=False)
    with lite() as setup:
        user = User(cognito_sub="sqlite-user", roles=[])
        setup.add(user)
        setup.commit()
    done = idempotency.StoredResponse(201, b'{"id":1}', "application/json")
    assert run_once(lite, user.id, lambda: idempotency.Outcome(done)) == done
    replay = run_once(lite, user.id, must_not_run)
    assert (replay.status, replay.body, replay.replayed) == (201, done.body, True)
    with pytest.raises(idempotency.KeyReused):
        run_once(lite, user.id, must_not_run, fingerprint="other")
    now = utcnow()

    def claimed_meanwhile() -> idempotency.Outcome:
        with lite() as other:
            other.add(IdempotencyKey(
                user_id=user.id, key="k2", fingerprint="f", state="in_progress",
                locked_at=now, expires_at=now + timedelta(hours=1),
            ))  # fmt: skip
            other.commit()
        return idempotency.Outcome(done)

    with pytest.raises(idempotency.KeyInProgress):
        run_once(lite, user.id, claimed_meanwhile, the_key="k2")
