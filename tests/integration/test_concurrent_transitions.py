"""Two transitions racing on one booking: the row lock lets exactly one through."""

from __future__ import annotations

import threading

from flask import Flask
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from models import BookingEvent, Message
from tests.support.actors import make_actor
from tests.support.bookings import booking_in, ensure_profile


def race(app: Flask, signing_key, sub: str, calls: list[tuple[str, dict]]) -> list[int]:  # type: ignore[no-untyped-def]
    barrier = threading.Barrier(len(calls))
    statuses: list[int] = []

    def call(path: str, body: dict) -> None:
        actor = make_actor(app.test_client(), signing_key, "consumer", "provider", sub=sub)
        barrier.wait()
        statuses.append(actor.post(path, json=body).status_code)

    threads = [threading.Thread(target=call, args=c) for c in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sorted(statuses)


def test_accept_and_decline_at_once(app: Flask, signing_key, engine: Engine) -> None:  # type: ignore[no-untyped-def]
    client = app.test_client()
    consumer = make_actor(client, signing_key, "consumer")
    provider = make_actor(client, signing_key, "provider")
    ensure_profile(provider)
    for _ in range(5):
        booking_id = booking_in("requested", consumer, provider)
        calls = [
            (f"/v1/bookings/{booking_id}/accept", {}),
            (f"/v1/bookings/{booking_id}/decline", {}),
            (f"/v1/bookings/{booking_id}/accept", {}),
        ]
        assert race(app, signing_key, provider.sub, calls) == [200, 409, 409]
        with Session(engine) as check:
            events = check.scalar(select(func.count()).where(BookingEvent.booking_id == booking_id))
        assert events == 2  # requested + exactly one of the racing moves


def test_concurrent_messages_get_distinct_numbers(app: Flask, signing_key, engine: Engine) -> None:  # type: ignore[no-untyped-def]
    client = app.test_client()
    consumer = make_actor(client, signing_key, "consumer")
    provider = make_actor(client, signing_key, "provider")
    ensure_profile(provider)
    booking_id = booking_in("accepted", consumer, provider)
    calls = [(f"/v1/bookings/{booking_id}/messages", {"body": f"m{i}"}) for i in range(8)]
    assert race(app, signing_key, consumer.sub, calls) == [201] * 8
    with Session(engine) as check:
        seqs = check.scalars(select(Message.seq).where(Message.booking_id == booking_id)).all()
    assert sorted(seqs) == list(range(1, 9))
