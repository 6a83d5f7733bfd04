"""No double booking: PostgreSQL's exclusion constraint keeps two accepted or in-progress
bookings of one provider from overlapping (buffers included), whatever the code does; the
API answers 409 /problems/slot-taken; SQLite (no constraint) gets the same from the service;
the migration keeps existing overlaps, flagged."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import Engine, create_engine, func, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from models import Booking, User
from services.accounts.users import view_of
from services.base.errors import SlotTaken
from services.marketplace import bookings
from tests.integration.test_migrations import alembic
from tests.support.actors import booking_body, make_actor
from tests.support.bookings import ensure_profile
from tests.support.database import fresh_database

SLOT_TAKEN = "/problems/slot-taken"


def _ok(response: Any, status: int = 200) -> Any:
    assert response.status_code == status, response.get_data(as_text=True)
    return response.get_json()


def _z(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def _statuses(engine: Engine, ids: list[str]) -> list[str]:
    with Session(engine) as check:
        rows = check.scalars(
            select(Booking.status).where(Booking.id.in_([uuid.UUID(i) for i in ids]))
        )
        return sorted(rows)


def test_twenty_concurrent_accepts_of_overlapping_requests_let_exactly_one_through(
    app: Flask, signing_key: Any, engine: Engine
) -> None:
    client = app.test_client()
    consumer = make_actor(client, signing_key, "consumer")
    provider = make_actor(client, signing_key, "provider")
    ensure_profile(provider)
    start = (datetime.now(UTC) + timedelta(days=3)).replace(microsecond=0)
    ids = []
    for i in range(20):  # 60 minutes each, a minute apart: every pair overlaps
        body = booking_body(provider.id, scheduled_at=_z(start + timedelta(minutes=i)))
        ids.append(_ok(consumer.post("/v1/bookings", json=body), 201)["id"])
    barrier = threading.Barrier(len(ids))
    answers: list[tuple[int, str | None]] = []

    def accept(booking_id: str) -> None:
        actor = make_actor(app.test_client(), signing_key, "provider", sub=provider.sub)
        barrier.wait()
        response = actor.post(f"/v1/bookings/{booking_id}/accept", json={})
        answers.append((response.status_code, (response.get_json() or {}).get("type")))

    threads = [threading.Thread(target=accept, args=(i,)) for i in ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(answers, key=str) == sorted([(200, None)] + [(409, SLOT_TAKEN)] * 19, key=str)
    assert _statuses(engine, ids) == ["accepted"] + ["requested"] * 19


def test_accepting_into_the_buffer_is_slot_taken(actors, session: Session) -> None:  # type: ignore[no-untyped-def]
    consumer, provider = actors("consumer"), actors("provider")
    ensure_profile(provider)
    every_day = [{"weekday": d, "start": "00:00", "end": "24:00"} for d in range(7)]
    rules = {"time_zone": "UTC", "weekly": every_day, "buffer_minutes": 30, "max_days_ahead": 30}
    _ok(provider.put("/v1/me/availability", json=rules))
    nine = datetime.now(UTC).replace(hour=9, minute=0, second=0, microsecond=0) + timedelta(days=2)

    def request(at: datetime) -> str:
        body = booking_body(provider.id, scheduled_at=_z(at))
        return str(_ok(consumer.post("/v1/bookings", json=body), 201)["id"])

    first, inside_buffer, after_buffer = request(nine), request(nine + timedelta(minutes=60)), None
    _ok(provider.post(f"/v1/bookings/{first}/accept", json={}))
    refused = provider.post(f"/v1/bookings/{inside_buffer}/accept", json={})
    assert refused.status_code == 409 and refused.get_json()["type"] == SLOT_TAKEN
    assert refused.mimetype == "application/problem+json"
    after_buffer = request(nine + timedelta(minutes=90))
    _ok(provider.post(f"/v1/bookings/{after_buffer}/accept", json={}))
    # Once the first is cancelled its time is free again.
    _ok(provider.post(f"/v1/bookings/{first}/cancel", json={"reason": "Ill"}))
    early = request(nine - timedelta(minutes=30))  # 08:30-09:30 + 30: clear of 10:30
    _ok(provider.post(f"/v1/bookings/{early}/accept", json={}))
    statuses = dict(session.execute(select(Booking.id, Booking.status)).all())
    assert statuses[uuid.UUID(inside_buffer)] == "requested"


def _insert(
    connection: Any,
    provider: uuid.UUID,
    consumer: uuid.UUID,
    start: datetime,
    minutes: int,
    status: str,
) -> uuid.UUID:
    booking_id = uuid.uuid4()
    end = start + timedelta(minutes=minutes)
    connection.execute(
        text(
            "INSERT INTO bookings (id, consumer_id, provider_id, category, scheduled_at, ends_at,"
            " blocked_until, lat, lng, address, notes, status, last_message_seq, created_at,"
            " updated_at) VALUES (:id, :consumer, :provider, 'cleaning', :start, :end, :end,"
            " 52.5, 13.4, NULL, '', :status, 0, now(), now())"
        ),
        {
            "id": booking_id,
            "consumer": consumer,
            "provider": provider,
            "start": start,
            "end": end,
            "status": status,
        },
    )
    return booking_id


def _two_users(connection: Any) -> tuple[uuid.UUID, uuid.UUID]:
    ids = (uuid.uuid4(), uuid.uuid4())
    for user_id in ids:
        connection.execute(
            text(
                "INSERT INTO users (id, cognito_sub, roles, role_revocations, created_at,"
                " updated_at) VALUES (:id, :sub, '[]', '{}', now(), now())"
            ),
            {"id": user_id, "sub": f"sql-{user_id}"},
        )
    return ids


def test_the_database_refuses_an_overlapping_insert_whatever_the_code(
    engine: Engine, clean_database: None
) -> None:
    start = datetime(2027, 6, 1, 9, tzinfo=UTC)
    with engine.begin() as connection:
        provider, consumer = _two_users(connection)
        _insert(connection, provider, consumer, start, 60, "accepted")
        # Touching, other statuses, another provider: all fine.
        _insert(connection, provider, consumer, start + timedelta(minutes=60), 60, "in_progress")
        for status in ("requested", "declined", "cancelled", "completed"):
            _insert(connection, provider, consumer, start + timedelta(minutes=30), 60, status)
        _insert(connection, consumer, provider, start, 60, "accepted")
    for status in ("accepted", "in_progress"):
        with (
            pytest.raises(IntegrityError, match="bookings_no_double_booking"),
            engine.begin() as connection,
        ):
            _insert(connection, provider, consumer, start + timedelta(minutes=59), 60, status)
    # Moving a requested one into accepted by UPDATE is refused the same way.
    with engine.begin() as connection:
        waiting = _insert(
            connection, provider, consumer, start + timedelta(minutes=30), 30, "requested"
        )
    with (
        pytest.raises(IntegrityError, match="bookings_no_double_booking"),
        engine.begin() as connection,
    ):
        connection.execute(
            text("UPDATE bookings SET status = 'accepted' WHERE id = :id"), {"id": waiting}
        )
    with engine.connect() as connection:
        busy = connection.scalar(
            select(func.count()).where(
                Booking.provider_id == provider, Booking.status.in_(["accepted", "in_progress"])
            )
        )
    assert busy == 2


def test_sqlite_gets_the_same_answer_from_the_service(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'trellis.db'}"
    alembic(url, "upgrade", "head")
    engine = create_engine(url)
    start = datetime(2027, 6, 1, 9, tzinfo=UTC)
    with Session(engine) as session:
        provider = User(cognito_sub="sqlite-provider", roles=["provider"])
        consumer = User(cognito_sub="sqlite-consumer", roles=["consumer"])
        session.add_all([provider, consumer])
        session.flush()
        ids = []
        for minutes in (0, 45, 60):
            booking = Booking(
                consumer_id=consumer.id,
                provider_id=provider.id,
                category="cleaning",
                scheduled_at=start + timedelta(minutes=minutes),
                ends_at=start + timedelta(minutes=minutes + 60),
                blocked_until=start + timedelta(minutes=minutes + 60),
                lat=52.5,
                lng=13.4,
                status="requested",
            )
            session.add(booking)
            session.flush()
            ids.append(booking.id)
        session.commit()
        actor = view_of(provider)
    for booking_id, taken in zip(ids, (False, True, False), strict=True):
        with Session(engine) as session:
            if taken:
                with pytest.raises(SlotTaken):
                    bookings.transition(
                        session, booking_id=booking_id, action="accept", actor=actor
                    )
                session.rollback()
            else:
                bookings.transition(session, booking_id=booking_id, action="accept", actor=actor)
                session.commit()
    with Session(engine) as session:
        statuses = [session.get_one(Booking, i).status for i in ids]
    assert statuses == ["accepted", "requested", "accepted"]
    engine.dispose()


def test_the_migration_fills_ends_at_and_flags_existing_overlaps() -> None:
    with fresh_database("trellis_overlaps", migrate=False) as url:
        alembic(url, "upgrade", "b4d7f2a5ae68")
        engine = create_engine(url)
        start = datetime(2026, 11, 2, 9, tzinfo=UTC)
        rows = [  # (minutes after 09:00, status): bookings of one provider made before
            (0, "accepted"),
            (30, "accepted"),  # overlaps the first: flagged
            (45, "in_progress"),  # overlaps the first too: flagged
            (60, "accepted"),  # starts as the first ends: kept
            (60, "requested"),  # not busy: nothing to flag
            (200, "completed"),
        ]
        with engine.begin() as connection:
            provider, consumer = _two_users(connection)
            ids = []
            for minutes, status in rows:
                booking_id = uuid.uuid4()
                connection.execute(
                    text(
                        "INSERT INTO bookings (id, consumer_id, provider_id, category,"
                        " scheduled_at, lat, lng, notes, status, last_message_seq, created_at,"
                        " updated_at) VALUES (:id, :c, :p, 'cleaning', :at, 52.5, 13.4, '', :s,"
                        " 0, now(), now())"
                    ),
                    {
                        "id": booking_id,
                        "c": consumer,
                        "p": provider,
                        "at": start + timedelta(minutes=minutes),
                        "s": status,
                    },
                )
                ids.append(booking_id)
        alembic(url, "upgrade", "head")
        with engine.connect() as connection:
            found = {
                row.id: row
                for row in connection.execute(
                    text(
                        "SELECT id, scheduled_at, ends_at, blocked_until, legacy_overlap"
                        " FROM bookings"
                    )
                )
            }
        assert [found[i].legacy_overlap for i in ids] == [False, True, True, False, False, False]
        for booking_id in ids:
            row = found[booking_id]
            assert row.ends_at == row.blocked_until == row.scheduled_at + timedelta(minutes=60)
        # The flagged ones stay out of the constraint; new overlaps are still refused.
        with (
            pytest.raises(IntegrityError, match="bookings_no_double_booking"),
            engine.begin() as connection,
        ):
            _insert(connection, provider, consumer, start + timedelta(minutes=90), 30, "accepted")
        engine.dispose()
