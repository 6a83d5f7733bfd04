"""Booking timers: expiry, auto-complete, reminders, the review window; set and cancelled
with the changes of their booking, each fired once however many runners run. The clock is
moved by passing `now=` to the runner: nothing sleeps."""

from __future__ import annotations

import threading
import uuid
from datetime import datetime, timedelta

from flask import Flask
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from models import BookingEvent, BookingTimer, Notification
from models.base import utcnow
from services.components import Components
from services.marketplace import timers
from services.marketplace.process import TimerPolicy
from tests.support.actors import Actor, booking_body
from tests.support.bookings import booking_in, ensure_profile

POLICY = TimerPolicy()
SECOND = timedelta(seconds=1)


def parties(actors) -> tuple[Actor, Actor]:  # type: ignore[no-untyped-def]
    consumer, provider = actors("consumer"), actors("provider")
    ensure_profile(provider)
    return consumer, provider


def timer_rows(session: Session, booking_id: str) -> dict[str, datetime]:
    rows = session.execute(
        select(BookingTimer.kind, BookingTimer.due_at).where(
            BookingTimer.booking_id == uuid.UUID(booking_id)
        )
    )
    return {kind: due for kind, due in rows}


def notes(session: Session, booking_id: str, kind: str) -> list[uuid.UUID]:
    rows = session.scalars(
        select(Notification).where(Notification.kind == kind).order_by(Notification.user_id)
    )
    return sorted(n.user_id for n in rows if n.data.get("booking_id") == booking_id)


def run(components: Components, now: datetime) -> timers.TimerStats:
    return timers.run_due(components.sessions, POLICY, now=now)


def test_an_unanswered_request_expires_after_the_ttl(actors, components, session) -> None:  # type: ignore[no-untyped-def]
    consumer, provider = parties(actors)
    created = consumer.post("/v1/bookings", json=booking_body(provider.id)).get_json()
    booking_id = created["id"]
    due = timer_rows(session, booking_id)
    made = datetime.fromisoformat(created["created_at"])
    assert due == {"expire": made + timedelta(hours=24)}

    assert run(components, made + timedelta(hours=24) - SECOND).fired == 0
    assert consumer.get(f"/v1/bookings/{booking_id}").get_json()["status"] == "requested"

    assert run(components, made + timedelta(hours=24)).fired == 1
    seen = consumer.get(f"/v1/bookings/{booking_id}").get_json()
    assert seen["status"] == "expired"
    last = seen["history"][-1]
    assert (last["from_status"], last["to_status"]) == ("requested", "expired")
    assert (last["actor_role"], last["actor_id"]) == ("system", None)
    both = sorted([uuid.UUID(consumer.id), uuid.UUID(provider.id)])
    assert notes(session, booking_id, "booking.expired") == both
    assert timer_rows(session, booking_id) == {}
    # Fired once: a later run finds nothing, and the provider can no longer accept.
    assert run(components, made + timedelta(days=3)).handled == 0
    assert provider.post(f"/v1/bookings/{booking_id}/accept", json={}).status_code == 409


def test_a_request_expires_at_its_start_when_that_comes_first(actors, components, session) -> None:  # type: ignore[no-untyped-def]
    consumer, provider = parties(actors)
    soon = (utcnow() + timedelta(hours=3)).isoformat()
    created = consumer.post("/v1/bookings", json=booking_body(provider.id, scheduled_at=soon))
    booking_id = created.get_json()["id"]
    start = datetime.fromisoformat(created.get_json()["scheduled_at"])
    assert timer_rows(session, booking_id) == {"expire": start}
    assert run(components, start).fired == 1
    assert consumer.get(f"/v1/bookings/{booking_id}").get_json()["status"] == "expired"


def test_accepting_cancels_the_expiry_and_sets_the_reminder(actors, components, session) -> None:  # type: ignore[no-untyped-def]
    consumer, provider = parties(actors)
    booking_id = booking_in("accepted", consumer, provider)
    start = datetime.fromisoformat(
        consumer.get(f"/v1/bookings/{booking_id}").get_json()["scheduled_at"]
    )
    assert timer_rows(session, booking_id) == {"remind": start - timedelta(minutes=60)}

    # The old expiry is gone: running past it changes nothing.
    assert run(components, start - timedelta(minutes=61)).handled == 0
    assert run(components, start - timedelta(minutes=60)).fired == 1
    both = sorted([uuid.UUID(consumer.id), uuid.UUID(provider.id)])
    assert notes(session, booking_id, "booking.reminder") == both
    assert run(components, start - timedelta(minutes=30)).handled == 0  # once only
    assert consumer.get(f"/v1/bookings/{booking_id}").get_json()["status"] == "accepted"


def test_cancelling_deletes_the_timers(actors, components, session) -> None:  # type: ignore[no-untyped-def]
    consumer, provider = parties(actors)
    for state in ("requested", "accepted"):
        booking_id = booking_in(state, consumer, provider)
        assert timer_rows(session, booking_id)
        cancel = consumer.post(f"/v1/bookings/{booking_id}/cancel", json={"reason": "No"})
        assert cancel.status_code == 200
        assert timer_rows(session, booking_id) == {}
    assert run(components, utcnow() + timedelta(days=400)).handled == 0
    assert notes(session, booking_id, "booking.reminder") == []


def test_a_booking_in_progress_completes_itself(actors, components, session) -> None:  # type: ignore[no-untyped-def]
    consumer, provider = parties(actors)
    booking_id = booking_in("in_progress", consumer, provider)
    ends = datetime.fromisoformat(consumer.get(f"/v1/bookings/{booking_id}").get_json()["ends_at"])
    assert timer_rows(session, booking_id) == {"auto_complete": ends + timedelta(hours=12)}
    assert run(components, ends + timedelta(hours=12) - SECOND).fired == 0
    assert run(components, ends + timedelta(hours=12)).fired == 1
    seen = consumer.get(f"/v1/bookings/{booking_id}").get_json()
    assert seen["status"] == "completed"
    last = seen["history"][-1]
    assert (last["from_status"], last["to_status"], last["actor_role"]) == (
        "in_progress",
        "completed",
        "system",
    )
    assert notes(session, booking_id, "booking.completed") == sorted(
        [uuid.UUID(consumer.id), uuid.UUID(provider.id)]
    )
    # The consumer may review it (the review window runs from this completion).
    review = consumer.post(f"/v1/bookings/{booking_id}/review", json={"rating": 4})
    assert review.status_code == 201, review.get_data(as_text=True)


def test_completing_by_hand_cancels_the_auto_complete(actors, components, session) -> None:  # type: ignore[no-untyped-def]
    consumer, provider = parties(actors)
    booking_id = booking_in("completed", consumer, provider)
    assert timer_rows(session, booking_id) == {}
    assert run(components, utcnow() + timedelta(days=400)).handled == 0
    history = consumer.get(f"/v1/bookings/{booking_id}").get_json()["history"]
    assert [e["actor_role"] for e in history].count("system") == 0


def test_a_timer_whose_booking_moved_on_is_removed_without_effect(
    actors, components, session
) -> None:  # type: ignore[no-untyped-def]
    consumer, provider = parties(actors)
    booking_id = booking_in("declined", consumer, provider)
    session.add(
        BookingTimer(
            booking_id=uuid.UUID(booking_id), kind="expire", due_at=utcnow(), created_at=utcnow()
        )
    )
    session.commit()
    stats = run(components, utcnow())
    assert (stats.fired, stats.moot) == (0, 1)
    assert timer_rows(session, booking_id) == {}
    assert consumer.get(f"/v1/bookings/{booking_id}").get_json()["status"] == "declined"


def test_two_runners_in_parallel_fire_each_timer_once(actors, components, session) -> None:  # type: ignore[no-untyped-def]
    consumer, provider = parties(actors)
    ids = [
        consumer.post("/v1/bookings", json=booking_body(provider.id)).get_json()["id"]
        for _ in range(30)
    ]
    later = utcnow() + timedelta(days=400)
    barrier = threading.Barrier(2)
    results: list[timers.TimerStats] = []
    errors: list[BaseException] = []

    def runner() -> None:
        try:
            barrier.wait()
            # Small batches, so the two runners interleave rather than one taking all.
            total = timers.TimerStats()
            while True:
                stats = timers.run_batch(components.sessions, POLICY, now=later, batch=3)
                total.add(stats)
                if stats.handled == 0:
                    break
            results.append(total)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=runner) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert sum(r.fired for r in results) == 30
    assert sum(r.moot + r.failed for r in results) == 0
    expiries = session.scalars(
        select(BookingEvent.booking_id).where(BookingEvent.to_status == "expired")
    ).all()
    assert sorted(map(str, expiries)) == sorted(ids)  # one event each, none twice


def test_a_review_after_the_window_is_409(actors, components, session) -> None:  # type: ignore[no-untyped-def]
    consumer, provider = parties(actors)
    booking_id = booking_in("completed", consumer, provider)
    # Completed 14 days and a minute ago.
    session.execute(
        update(BookingEvent)
        .where(
            BookingEvent.booking_id == uuid.UUID(booking_id), BookingEvent.to_status == "completed"
        )
        .values(created_at=utcnow() - timedelta(days=14, minutes=1))
    )
    session.commit()
    response = consumer.post(f"/v1/bookings/{booking_id}/review", json={"rating": 5})
    assert response.status_code == 409
    assert response.content_type == "application/problem+json"
    assert response.get_json()["type"] == "/problems/conflict"
    assert "14 days" in response.get_json()["detail"]


def test_the_cli_runs_due_timers(actors, app: Flask, components, session) -> None:  # type: ignore[no-untyped-def]
    consumer, provider = parties(actors)
    booking_id = consumer.post("/v1/bookings", json=booking_body(provider.id)).get_json()["id"]
    session.execute(
        update(BookingTimer)
        .where(BookingTimer.booking_id == uuid.UUID(booking_id))
        .values(due_at=utcnow() - timedelta(hours=2))  # came due while nothing ran
    )
    session.commit()
    result = app.test_cli_runner().invoke(args=["timers", "run"])
    assert result.exit_code == 0, result.output
    assert "fired 1" in result.output
    assert consumer.get(f"/v1/bookings/{booking_id}").get_json()["status"] == "expired"
