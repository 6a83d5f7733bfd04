"""App events in, the admin summary out, and the dashboard page, on PostgreSQL (and SQLite)."""

from __future__ import annotations

import io
import json
import re
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta, timezone
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, event, insert, select, text
from sqlalchemy.orm import Session, sessionmaker

from api.analytics import _events
from api.schemas.analytics import AnalyticsEvent, EventBatch
from models import Booking, BookingEvent, Event, ProviderProfile, User
from services.analytics import events as analytics
from tests.support.database import migrate_to_head

NOW = lambda: datetime.now(UTC)  # noqa: E731


def ev(name: str = "app.open", **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"name": name, "timestamp": NOW().isoformat()}
    body.update(overrides)
    return body


def post_events(actor, events: list[Any], **kwargs: Any):  # type: ignore[no-untyped-def]
    # json.dumps, not the test client's orjson: some cases send integers beyond 64 bits.
    data = json.dumps({"events": events})
    return actor.post("/v1/events", data=data, content_type="application/json", **kwargs)


def stored(session: Session, user_id: str) -> list[Event]:
    query = select(Event).where(Event.user_id == uuid.UUID(user_id)).order_by(Event.id)
    return list(session.scalars(query))


# --- POST /v1/events --------------------------------------------------------------------


def test_a_mixed_batch_keeps_the_good_events_and_names_the_bad(actors, session: Session) -> None:  # type: ignore[no-untyped-def]
    user = actors("consumer")
    when = datetime(2026, 1, 1, tzinfo=UTC)
    occurred = NOW() - timedelta(hours=2)
    good = ev(
        "booking.viewed",
        timestamp=occurred.astimezone(timezone(timedelta(hours=5, minutes=30))).isoformat(),
        session_id="3f0c-session",
        attributes={"screen": "search", "category": "cleaning"},
        metrics={"duration_ms": 1250, "ratio": 0.5},
        app_version="2.4.1 (311)",
        platform="ios",
    )
    events = [
        good,
        ev("bad name!"),
        "not an object",
        ev(timestamp=when.isoformat()),  # a year old
        ev("minimal"),
        ev(metrics={"n": "12"}),
        ev(colour="blue"),
    ]
    response = post_events(user, events)
    assert response.status_code == 202, response.get_data(as_text=True)
    body = response.get_json()
    assert body["accepted"] == 2
    rejected = {
        r["index"]: [(e["field"], e["code"]) for e in r["errors"]] for r in body["rejected"]
    }
    assert rejected == {
        1: [("name", "string_pattern_mismatch")],
        2: [("event", "model_type")],
        3: [("timestamp", "too_old")],
        5: [("metrics.n", "float_type")],
        6: [("colour", "extra_forbidden")],
    }
    assert [r["index"] for r in body["rejected"]] == [1, 2, 3, 5, 6]
    assert body["rejected"][0]["reason"].startswith("name: String should match pattern")

    rows = stored(session, user.id)
    assert [r.name for r in rows] == ["booking.viewed", "minimal"]
    row = rows[0]
    assert abs(row.occurred_at - occurred) < timedelta(milliseconds=1)
    assert row.occurred_at.tzinfo is not None and row.occurred_at.utcoffset() == timedelta(0)
    assert abs(row.received_at - NOW()) < timedelta(minutes=1)
    assert (row.session_id, row.app_version, row.platform) == ("3f0c-session", "2.4.1 (311)", "ios")
    assert row.attributes == {"screen": "search", "category": "cleaning"}
    assert row.metrics == {"duration_ms": 1250, "ratio": 0.5}
    assert rows[1].attributes == {} and rows[1].metrics == {} and rows[1].session_id is None
    assert rows[0].received_at == rows[1].received_at  # one instant for the batch


LONG = "x" * 300


# Each: what is wrong with an event, and the field and code its rejection names.
MALFORMED = [
    ({"name": ""}, "name", "string_too_short"),
    ({"name": "a" * 129}, "name", "string_too_long"),
    ({"name": "app open"}, "name", "string_pattern_mismatch"),
    ({"name": "app/open"}, "name", "string_pattern_mismatch"),
    ({"name": 5}, "name", "string_type"),
    ({"name": None}, "name", "string_type"),
    ({"timestamp": "2026-01-01T10:00:00"}, "timestamp", "value_error"),  # no zone
    ({"timestamp": "2026-01-01"}, "timestamp", "value_error"),
    ({"timestamp": "1767261600"}, "timestamp", "value_error"),
    ({"timestamp": 1767261600}, "timestamp", "value_error"),
    ({"timestamp": "2026-02-30T10:00:00Z"}, "timestamp", "datetime_from_date_parsing"),
    ({"timestamp": "9999-12-31T23:59:59-23:59"}, "timestamp", "too_far_ahead"),
    ({"timestamp": "0001-01-01T00:00:00+23:59"}, "timestamp", "too_old"),
    ({"session_id": ""}, "session_id", "string_too_short"),
    ({"session_id": "s" * 129}, "session_id", "string_too_long"),
    ({"session_id": "has space"}, "session_id", "string_pattern_mismatch"),
    ({"attributes": {f"k{i}": "v" for i in range(51)}}, "attributes", "too_long"),
    ({"attributes": {"k" * 65: "v"}}, f"attributes.{'k' * 64}….[key]", "string_too_long"),
    ({"attributes": {"bad key": "v"}}, "attributes.bad key.[key]", "string_pattern_mismatch"),
    ({"attributes": {"k": "v" * 257}}, "attributes.k", "string_too_long"),
    ({"attributes": {"k": 5}}, "attributes.k", "string_type"),
    ({"attributes": {"k": "two\nlines"}}, "attributes.k", "value_error"),
    ({"attributes": ["k"]}, "attributes", "dict_type"),
    ({"metrics": {f"m{i}": 1 for i in range(51)}}, "metrics", "too_long"),
    ({"metrics": {"m": True}}, "metrics.m", "float_type"),
    ({"metrics": {"m": "1"}}, "metrics.m", "float_type"),
    ({"metrics": {"m": None}}, "metrics.m", "float_type"),
    ({"metrics": {"m": int("9" * 400)}}, "metrics.m", "finite_number"),
    ({"app_version": "1" * 33}, "app_version", "string_too_long"),
    ({"platform": "windows"}, "platform", "literal_error"),
    ({"user_id": str(uuid.uuid4())}, "user_id", "extra_forbidden"),
]


@pytest.mark.parametrize(("overrides", "field", "code"), MALFORMED)
def test_each_malformed_event_is_rejected_alone(actors, overrides, field, code) -> None:  # type: ignore[no-untyped-def]
    user = actors("consumer")
    response = post_events(user, [ev("first"), {**ev(), **overrides}, ev("last")])
    assert response.status_code == 202, response.get_data(as_text=True)
    body = response.get_json()
    assert body["accepted"] == 2
    (rejection,) = body["rejected"]
    assert rejection["index"] == 1
    assert (field, code) in [(e["field"], e["code"]) for e in rejection["errors"]], rejection


@pytest.mark.parametrize(("overrides", "field", "code"), MALFORMED)
def test_a_bad_event_among_49_good_is_rejected_as_it_is_alone(
    actors, overrides, field, code
) -> None:  # type: ignore[no-untyped-def]
    # Good items are validated as the body is parsed, a bad one again on its own to say why
    # (api/analytics._events): its rejection must not depend on its neighbours.
    user = actors("consumer")
    bad = {**ev(), **overrides}
    alone = post_events(user, [bad]).get_json()
    assert alone["accepted"] == 0
    events = [ev(f"e{i}") for i in range(49)]
    events.insert(17, bad)
    body = post_events(user, events).get_json()
    assert body == {"accepted": 49, "rejected": [{**alone["rejected"][0], "index": 17}]}


def test_the_rejection_of_one_bad_event_among_50_is_exact(actors, session: Session) -> None:  # type: ignore[no-untyped-def]
    user = actors("consumer")
    events = [ev(f"e{i}", attributes={"i": str(i)}, metrics={"i": i}) for i in range(50)]
    events[31] = ev("e31", attributes={"k": "two\nlines", "bad key": 5}, platform="windows")
    response = post_events(user, events)
    assert response.status_code == 202
    pattern = "String should match pattern '^[A-Za-z0-9_.:-]+$'"
    line = "one line of printable characters only: U+000A (LINE FEED) at index 3 is not allowed"
    literal = "Input should be 'ios', 'android' or 'web'"
    assert response.get_json() == {
        "accepted": 49,
        "rejected": [
            {
                "index": 31,
                "reason": (
                    f"attributes.k: {line}; attributes.bad key.[key]: {pattern}; "
                    f"attributes.bad key: Input should be a valid string; platform: {literal}"
                ),
                "errors": [
                    {"field": "attributes.k", "message": line, "code": "value_error"},
                    {
                        "field": "attributes.bad key.[key]",
                        "message": pattern,
                        "code": "string_pattern_mismatch",
                    },
                    {
                        "field": "attributes.bad key",
                        "message": "Input should be a valid string",
                        "code": "string_type",
                    },
                    {"field": "platform", "message": literal, "code": "literal_error"},
                ],
            }
        ],
    }
    rows = stored(session, user.id)
    assert [r.name for r in rows] == [f"e{i}" for i in range(50) if i != 31]
    assert [r.attributes for r in rows] == [{"i": str(i)} for i in range(50) if i != 31]


def _varied_good_events() -> list[dict[str, Any]]:
    now = NOW()
    zones = [timezone(timedelta(hours=h, minutes=m)) for h, m in ((0, 0), (5, 30), (-7, 0))]
    # Offsets PostgreSQL would refuse (beyond 15:59): RFC 3339 allows them, and so do we.
    zones += [timezone(timedelta(hours=23, minutes=59)), timezone(-timedelta(hours=23, minutes=59))]
    return [
        ev(
            f"e.{i}",
            timestamp=(now - timedelta(minutes=i, microseconds=i))
            .astimezone(zones[i % 5])
            .isoformat(),
            session_id=f"s-{i % 3}" if i % 4 else None,
            attributes={"screen": f"  search {i} ", "emoji": "🏳️‍🌈", "empty": ""} if i % 2 else {},
            metrics={"n": i, "ratio": i / 7, "big": 2**63 + i} if i % 3 else {"n": -i},
            app_version=" 2.4.1 (311) " if i % 2 else None,
            platform=("ios", "android", "web", None)[i % 4],
        )
        for i in range(50)
    ]


def _rows(session: Session, user_id: str) -> list[tuple[Any, ...]]:
    return [
        (r.name, r.occurred_at, r.session_id, r.attributes, r.metrics, r.app_version, r.platform)
        for r in stored(session, user_id)
    ]


def test_a_good_batch_makes_the_same_events_validated_as_parsed_or_one_by_one(
    actors, session: Session
) -> None:  # type: ignore[no-untyped-def]
    # The body's parsing validates each good item (RawEvent); an item that is not an event
    # yet is validated on its own (api/analytics._events): both paths make the same events.
    events = _varied_good_events()
    body = json.dumps({"events": events})
    parsed = EventBatch.model_validate_json(body).events
    assert all(isinstance(item, AnalyticsEvent) for item in parsed)
    raw = json.loads(body)["events"]  # plain dicts: each validated on its own
    assert _events(parsed) == _events(raw) and _events(raw)[1] == []
    user = actors("consumer")
    assert post_events(user, events).get_json() == {"accepted": 50, "rejected": []}
    rows = _rows(session, user.id)
    first = rows[1]  # i = 1: +05:30, every optional field
    assert first[0] == "e.1" and first[2] == "s-1" and first[6] == "android"
    assert first[3] == {"screen": "search 1", "emoji": "🏳️‍🌈", "empty": ""}  # trimmed
    assert first[4] == {"n": 1.0, "ratio": 1 / 7, "big": float(2**63 + 1)}
    assert first[5] == "2.4.1 (311)"
    sent = [datetime.fromisoformat(e["timestamp"]) for e in events]
    assert [r[1] for r in rows] == sent  # the same instants, 23:59 offsets included
    assert all(r[1].utcoffset() == timedelta(0) for r in rows)


def test_missing_fields_are_named(actors) -> None:  # type: ignore[no-untyped-def]
    body = post_events(actors("consumer"), [{}, {"name": "x"}]).get_json()
    assert body["accepted"] == 0
    assert [[(e["field"], e["code"]) for e in r["errors"]] for r in body["rejected"]] == [
        [("name", "missing"), ("timestamp", "missing")],
        [("timestamp", "missing")],
    ]


@pytest.mark.parametrize(
    "overrides",
    [
        {"timestamp": "2026-01-01T10:00:00z".replace("2026-01-01", NOW().date().isoformat())},
        {"timestamp": (NOW() + timedelta(hours=23)).isoformat()},
        {"timestamp": (NOW() - timedelta(days=29, hours=23)).isoformat()},
        {"timestamp": (NOW() - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S.%f-07:00")},
        {"name": "a" * 128, "session_id": "!" * 128, "app_version": "9" * 32},
        {"name": "Checkout:step-2_done.v1", "platform": "android"},
        {"attributes": {f"key.{i}": "v" * 256 for i in range(50)}},
        {"attributes": {"k" * 64: ""}},
        {"metrics": {f"m{i}": i * 1.5 for i in range(50)}},
        {"metrics": {"big": 10**30, "negative": -3, "tiny": 1e-300}},
        {"platform": None, "app_version": None, "session_id": None},
    ],
)
def test_events_at_the_limits_are_accepted(actors, overrides) -> None:  # type: ignore[no-untyped-def]
    body = post_events(actors("consumer"), [{**ev(), **overrides}]).get_json()
    assert body == {"accepted": 1, "rejected": []}


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"events": [ev()] * 101}, "events"),
        ({"events": []}, "events"),
        ({"events": {"0": ev()}}, "events"),
        ({}, "events"),
        ({"events": [ev()], "device": "x"}, "device"),
        ([ev()], "body"),
    ],
)
def test_a_malformed_envelope_fails_the_whole_batch(actors, session, payload, field) -> None:  # type: ignore[no-untyped-def]
    user = actors("consumer")
    response = user.post("/v1/events", json=payload)
    assert response.status_code == 422, response.get_data(as_text=True)
    problem = response.get_json()
    assert problem["type"] == "/problems/validation-failed"
    assert field in [e["field"] for e in problem["errors"]]
    assert stored(session, user.id) == []


def test_a_full_batch_of_100_is_accepted(actors, session: Session) -> None:  # type: ignore[no-untyped-def]
    user = actors("consumer")
    body = post_events(user, [ev(f"e{i}") for i in range(100)]).get_json()
    assert body == {"accepted": 100, "rejected": []}
    assert len(stored(session, user.id)) == 100


def test_a_batch_is_one_insert_statement(actors, components) -> None:  # type: ignore[no-untyped-def]
    user = actors("consumer")
    user.get("/v1/me")  # sign-in writes happen before counting
    statements: list[tuple[str, bool]] = []

    def record(conn, cursor, statement, parameters, context, executemany) -> None:  # type: ignore[no-untyped-def]
        statements.append((statement, executemany))

    event.listen(components.engine, "before_cursor_execute", record)
    try:
        response = post_events(user, [ev(f"e{i}", attributes={"i": str(i)}) for i in range(100)])
    finally:
        event.remove(components.engine, "before_cursor_execute", record)
    assert response.get_json()["accepted"] == 100
    inserts = [s for s in statements if s[0].lstrip().upper().startswith("INSERT INTO EVENTS")]
    assert len(inserts) == 1, [s[0][:80] for s in statements]


def test_a_body_over_256_kb_is_413_and_one_just_under_is_taken(actors, session: Session) -> None:  # type: ignore[no-untyped-def]
    user = actors("consumer")
    limit = 256 * 1024
    batch = json.dumps({"events": [ev("padded")]})
    exact = batch[:-1] + " " * (limit - len(batch)) + "}"
    assert len(exact.encode()) == limit
    assert user.post("/v1/events", data=exact, content_type="application/json").status_code == 202
    over = batch[:-1] + " " * (limit + 1 - len(batch)) + "}"
    response = user.post("/v1/events", data=over, content_type="application/json")
    assert response.status_code == 413
    assert response.mimetype == "application/problem+json"
    assert [r.name for r in stored(session, user.id)] == ["padded"]


def test_a_chunked_body_over_256_kb_is_413(actors) -> None:  # type: ignore[no-untyped-def]
    user = actors("consumer")
    body = json.dumps({"events": [ev()]}).encode()[:-1] + b" " * (256 * 1024) + b"}"
    # No Content-Length, as gunicorn hands over a chunked body.
    response = user.post(
        "/v1/events",
        input_stream=io.BytesIO(body),
        headers={"Content-Type": "application/json", "Transfer-Encoding": "chunked"},
        environ_base={"wsgi.input_terminated": True},
    )
    assert response.status_code == 413


def test_events_need_a_token(client) -> None:  # type: ignore[no-untyped-def]
    response = client.post("/v1/events", json={"events": [ev()]})
    assert response.status_code == 401


def test_any_signed_in_user_may_send_events(actors) -> None:  # type: ignore[no-untyped-def]
    for roles in ((), ("provider",), ("admin",)):
        assert post_events(actors(*roles), [ev()]).get_json()["accepted"] == 1


def test_a_retried_batch_with_an_idempotency_key_is_stored_once(actors, session) -> None:  # type: ignore[no-untyped-def]
    user = actors("consumer")
    events = [ev("once"), ev("bad name")]
    key = {"Idempotency-Key": str(uuid.uuid4())}
    first = post_events(user, events, headers=key)
    again = post_events(user, events, headers=key)
    assert first.status_code == again.status_code == 202
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert again.get_json() == first.get_json()
    assert [r.name for r in stored(session, user.id)] == ["once"]


# --- the summary on seeded data ---------------------------------------------------------


def at(day: int, hour: int = 12, minute: int = 0, second: int = 0, month: int = 3) -> datetime:
    return datetime(2025, month, day, hour, minute, second, tzinfo=UTC)


LONG_AGO = datetime(2024, 1, 1, tzinfo=UTC)


def _user(session: Session, created_at: datetime) -> uuid.UUID:
    user = User(
        id=uuid.uuid4(),
        cognito_sub=f"seed-{uuid.uuid4().hex}",
        roles=[],
        role_revocations={},
        created_at=created_at,
        updated_at=created_at,
    )
    session.add(user)
    session.commit()
    return user.id


def _provider(session: Session, *, active: bool) -> uuid.UUID:
    user_id = _user(session, LONG_AGO)
    session.add(
        ProviderProfile(
            user_id=user_id,
            display_name="Seeded",
            bio="",
            categories=["cleaning"],
            lat=52.5,
            lng=13.4,
            service_radius_km=10,
            hourly_rate_cents=2000,
            currency="EUR",
            active=active,
            rating_sum=0,
            rating_count=0,
            created_at=LONG_AGO,
            updated_at=LONG_AGO,
        )
    )
    session.commit()
    return user_id


def _booking(
    session: Session,
    consumer: uuid.UUID,
    provider: uuid.UUID,
    created_at: datetime,
    *moves: tuple[str, datetime],
) -> None:
    booking = Booking(
        id=uuid.uuid4(),
        consumer_id=consumer,
        provider_id=provider,
        category="cleaning",
        scheduled_at=created_at + timedelta(days=3),
        ends_at=created_at + timedelta(days=3, hours=1),
        blocked_until=created_at + timedelta(days=3, hours=1),
        lat=52.5,
        lng=13.4,
        address=None,
        notes="",
        status=moves[-1][0] if moves else "requested",
        last_message_seq=0,
        created_at=created_at,
        updated_at=created_at,
    )
    session.add(booking)
    session.commit()
    history = [("requested", created_at), *moves]
    previous = None
    for status, when in history:
        session.add(
            BookingEvent(
                id=uuid.uuid4(),
                booking_id=booking.id,
                from_status=previous,
                to_status=status,
                actor_id=consumer if status in ("requested", "cancelled") else provider,
                actor_role="consumer" if status in ("requested", "cancelled") else "provider",
                reason=None,
                created_at=when,
            )
        )
        previous = status
    session.commit()


def seed(session: Session) -> None:
    """A week, 2025-03-01..07, with events just inside and outside every boundary."""
    u1 = _user(session, at(1, 10))
    u2 = _user(session, at(3, 23, 59, 59))
    u3 = _user(session, at(28, 23, 59, month=2))  # the day before
    u4 = _user(session, at(8, 0))  # the day after: `to` is inclusive, its midnight is not
    rows = [
        (u1, "app.open", at(1, 0), "s1"),
        (u1, "search", at(1, 12), "s1"),
        (u1, "app.open", at(2, 23, 59, 59), "s2"),
        # 23:30 at UTC-2 on the 2nd is 01:30 UTC on the 3rd: days are UTC days.
        (u1, "app.open", datetime(2025, 3, 2, 23, 30, tzinfo=timezone(timedelta(hours=-2))), "s2"),
        (u2, "app.open", at(1, 8), "s3"),
        (u2, "app.open", at(3, 10), "s3"),  # a session spanning days counts on each
        (u2, "booking.viewed", at(3, 11), None),
        (u3, "app.open", at(28, 23, 59, 59, month=2), "s4"),  # before the range, in the MAU
        (u3, "app.open", at(8, 0), "s4"),  # the midnight after the range
        (u4, "app.open", datetime(2025, 1, 15, tzinfo=UTC), "s5"),  # before the MAU window
    ]
    session.execute(
        insert(Event),
        [
            {
                "user_id": user,
                "name": name,
                "occurred_at": when,
                "received_at": when,
                "session_id": session_id,
                "attributes": {},
                "metrics": {},
            }
            for user, name, when, session_id in rows
        ],
    )
    consumer = _user(session, LONG_AGO)
    p1, p2 = _provider(session, active=True), _provider(session, active=True)
    p3 = _provider(session, active=False)
    _booking(
        session,
        consumer,
        p1,
        at(1, 9),
        ("accepted", at(1, 10)),
        ("in_progress", at(4, 9)),
        ("completed", at(4, 11)),
    )
    _booking(session, consumer, p1, at(2), ("accepted", at(2, 13)), ("cancelled", at(3)))
    _booking(session, consumer, p2, at(5), ("declined", at(5, 13)))
    # Requested on the last day, accepted after it: still counts as accepted.
    _booking(session, consumer, p2, at(7, 23), ("accepted", at(8, 9)))
    # Requested before the range, moved within it: not in the range's cohort.
    _booking(
        session,
        consumer,
        p3,
        at(27, month=2),
        ("accepted", at(1, 11)),
        ("in_progress", at(4)),
        ("completed", at(4, 15)),
    )
    session.commit()


def day(d: int, users: int = 0, sessions: int = 0, events: int = 0, new: int = 0) -> dict:
    return {
        "date": f"2025-03-0{d}",
        "active_users": users,
        "sessions": sessions,
        "events": events,
        "new_users": new,
    }


EXPECTED = {
    "from": "2025-03-01",
    "to": "2025-03-07",
    "days": [
        day(1, users=2, sessions=2, events=3, new=1),
        day(2, users=1, sessions=1, events=1),
        day(3, users=2, sessions=2, events=3, new=1),
        day(4),
        day(5),
        day(6),
        day(7),
    ],
    "active_users": 2,
    "monthly_active_users": 3,
    "events_by_name": [
        {
            "name": "app.open",
            "total": 5,
            "daily": [
                {"date": "2025-03-01", "count": 2},
                {"date": "2025-03-02", "count": 1},
                {"date": "2025-03-03", "count": 2},
            ],
        },
        {"name": "booking.viewed", "total": 1, "daily": [{"date": "2025-03-03", "count": 1}]},
        {"name": "search", "total": 1, "daily": [{"date": "2025-03-01", "count": 1}]},
    ],
    "funnel": {
        "requested": 4,
        "accepted": 3,
        "completed": 1,
        "accept_rate": 0.75,
        "completion_rate": 0.3333,
        "overall_rate": 0.25,
    },
    "providers": {"active": 2, "booked": 2},
}


def test_the_summary_is_exact_on_seeded_data(actors, session: Session, connection) -> None:  # type: ignore[no-untyped-def]
    admin = actors("admin")
    admin.get("/v1/me")
    seed(session)
    # The database session's zone must not matter: days are UTC days.
    connection.execute(text("SET LOCAL TIME ZONE 'America/Sao_Paulo'"))
    response = admin.get("/v1/admin/analytics/summary?from=2025-03-01&to=2025-03-07")
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json() == EXPECTED


@pytest.fixture
def sqlite_session(tmp_path: Path) -> Iterator[Session]:
    url = f"sqlite:///{tmp_path / 'analytics.db'}"
    migrate_to_head(url)
    engine = create_engine(url)
    try:
        with sessionmaker(bind=engine, expire_on_commit=False)() as session:
            yield session
    finally:
        engine.dispose()


def _as_json(summary: analytics.Summary) -> dict[str, Any]:
    from api.schemas.analytics import AnalyticsSummary

    return json.loads(
        AnalyticsSummary(
            from_=summary.from_,
            to=summary.to,
            days=[vars_of(d) for d in summary.days],
            active_users=summary.active_users,
            monthly_active_users=summary.monthly_active_users,
            events_by_name=[
                {
                    "name": n.name,
                    "total": n.total,
                    "daily": [{"date": d, "count": c} for d, c in n.daily],
                }
                for n in summary.events_by_name
            ],
            funnel=vars_of(summary.funnel),
            providers={"active": summary.active_providers, "booked": summary.booked_providers},
        ).model_dump_json()
    )


def vars_of(obj: object) -> dict[str, Any]:
    return {name: getattr(obj, name) for name in obj.__slots__}  # type: ignore[attr-defined]


OCCURRED = (NOW() - timedelta(hours=1)).replace(microsecond=123456)


def _recorded(session: Session, user_id: uuid.UUID) -> list[tuple[Any, ...]]:
    occurred = OCCURRED.astimezone(timezone(timedelta(hours=-7)))
    events = [
        analytics.NewEvent(0, "app.open", occurred, "s-1", {"screen": "home"}, {}, "2.4.1", "ios"),
        analytics.NewEvent(
            1, "metrics", occurred, None, {}, {"big": 1e30, "tiny": 1e-300, "n": -3.5}, None, None
        ),
    ]
    result = analytics.record_events(session, user_id=user_id, events=events)
    assert result.accepted == 2
    rows = session.execute(
        select(
            Event.user_id,
            Event.name,
            Event.occurred_at,
            Event.session_id,
            Event.attributes,
            Event.metrics,
            Event.app_version,
            Event.platform,
            Event.received_at,
        )
        .where(Event.user_id == user_id)
        .order_by(Event.id)
    ).all()
    assert rows[0].received_at == rows[1].received_at  # one instant for the batch
    return [tuple(row)[:-1] for row in rows]


def test_recorded_events_are_the_same_on_postgresql_and_sqlite(
    actors, session: Session, sqlite_session: Session
) -> None:  # type: ignore[no-untyped-def]
    """PostgreSQL unpacks the batch from one JSON parameter; SQLite binds every value."""
    user_id = uuid.UUID(actors("consumer").id)
    on_postgresql = _recorded(session, user_id)
    assert on_postgresql == _recorded(sqlite_session, user_id)
    assert on_postgresql[0][2] == OCCURRED.astimezone(UTC)
    assert on_postgresql[1][5] == {"big": 1e30, "tiny": 1e-300, "n": -3.5}


def test_the_summary_is_the_same_on_sqlite(sqlite_session: Session) -> None:
    seed(sqlite_session)
    summary = analytics.summarize(sqlite_session, first=date(2025, 3, 1), last=date(2025, 3, 7))
    assert _as_json(summary) == EXPECTED


def test_one_day_and_empty_ranges(actors, session: Session) -> None:  # type: ignore[no-untyped-def]
    admin = actors("admin")
    seed(session)
    one = admin.get("/v1/admin/analytics/summary?from=2025-03-03&to=2025-03-03").get_json()
    assert one["days"] == [day(3, users=2, sessions=2, events=3, new=1)]
    assert one["monthly_active_users"] == 3  # the 30 days to the 3rd include U3's event
    assert one["funnel"]["requested"] == 0 and one["funnel"]["accept_rate"] is None
    quiet = admin.get("/v1/admin/analytics/summary?from=2024-06-01&to=2024-06-30").get_json()
    assert quiet["events_by_name"] == [] and quiet["active_users"] == 0
    assert quiet["funnel"] == {
        "requested": 0,
        "accepted": 0,
        "completed": 0,
        "accept_rate": None,
        "completion_rate": None,
        "overall_rate": None,
    }
    assert quiet["providers"] == {"active": 2, "booked": 0}


def test_the_summary_defaults_to_the_last_30_days_and_sees_new_events(actors) -> None:  # type: ignore[no-untyped-def]
    admin, consumer, provider = actors("admin"), actors("consumer"), actors("provider")
    post_events(consumer, [ev("app.open", session_id="a"), ev("app.open", session_id="a")])
    post_events(provider, [ev("app.open", session_id="b"), ev("job.seen")])
    summary = admin.get("/v1/admin/analytics/summary").get_json()
    today = NOW().date()
    assert summary["to"] == today.isoformat()
    assert summary["from"] == (today - timedelta(days=29)).isoformat()
    assert len(summary["days"]) == 30
    last = summary["days"][-1]
    assert (last["active_users"], last["sessions"], last["events"]) == (2, 2, 4)
    assert last["new_users"] == 3  # the three actors signed in for the first time today
    assert summary["monthly_active_users"] == 2
    assert [(n["name"], n["total"]) for n in summary["events_by_name"]] == [
        ("app.open", 3),
        ("job.seen", 1),
    ]


@pytest.mark.parametrize("roles", [(), ("consumer",), ("provider",), ("consumer", "provider")])
def test_the_summary_is_for_admins_only(actors, roles) -> None:  # type: ignore[no-untyped-def]
    response = actors(*roles).get("/v1/admin/analytics/summary")
    assert response.status_code == 403
    assert response.get_json()["type"] == "/problems/forbidden"


def test_the_summary_needs_a_token(client) -> None:  # type: ignore[no-untyped-def]
    assert client.get("/v1/admin/analytics/summary").status_code == 401


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("from=2026-13-01", "from"),
        ("from=20260101", "from"),
        ("from=1767225600", "from"),
        ("to=2026-02-30", "to"),
        ("to=yesterday", "to"),
        ("from=2026-01-01T00:00:00Z", "from"),
        ("from=2026-03-02&to=2026-03-01", "from"),
        ("from=2025-01-01&to=2026-01-02", "from"),  # 367 days
        ("from=2024-01-01", "from"),  # to today: far more than 366 days
        ("from=0001-01-01&to=0001-01-05", "from"),
        ("to=9999-12-31", "to"),
        ("since=2026-01-01", "since"),
        ("from_=2026-01-01", "from_"),
    ],
)
def test_bad_dates_are_422(actors, query, field) -> None:  # type: ignore[no-untyped-def]
    response = actors("admin").get(f"/v1/admin/analytics/summary?{query}")
    assert response.status_code == 422, response.get_data(as_text=True)
    assert field in [e["field"] for e in response.get_json()["errors"]]


def test_366_days_is_the_longest_range(actors) -> None:  # type: ignore[no-untyped-def]
    admin = actors("admin")
    response = admin.get("/v1/admin/analytics/summary?from=2024-01-01&to=2024-12-31")  # leap
    assert response.status_code == 200, response.get_data(as_text=True)
    assert len(response.get_json()["days"]) == 366


def test_only_to_given_goes_30_days_back(actors) -> None:  # type: ignore[no-untyped-def]
    summary = actors("admin").get("/v1/admin/analytics/summary?to=2025-03-30").get_json()
    assert (summary["from"], summary["to"]) == ("2025-03-01", "2025-03-30")


def test_the_summary_is_documented_for_admins(client) -> None:  # type: ignore[no-untyped-def]
    spec = client.get("/openapi.json").get_json()
    operation = spec["paths"]["/v1/admin/analytics/summary"]["get"]
    assert {"200", "401", "403", "422"} <= set(operation["responses"])
    assert [p["name"] for p in operation["parameters"]] == ["from", "to"]
    post = spec["paths"]["/v1/events"]["post"]
    assert {"202", "400", "401", "413", "415", "422"} <= set(post["responses"])
    assert "200" not in post["responses"]
    batch = spec["components"]["schemas"]["EventBatch"]["properties"]["events"]
    assert batch["items"] == {"$ref": "#/components/schemas/AnalyticsEvent"}
    assert (batch["minItems"], batch["maxItems"]) == (1, 100)


# --- the dashboard ----------------------------------------------------------------------

_EXTERNAL = re.compile(r"https?://|//[A-Za-z0-9.-]+\.[A-Za-z]{2,}/|@import", re.IGNORECASE)


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.refs: list[str] = []
        self.inline_scripts = 0
        self.style_attributes = 0
        self.handlers: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = dict(attrs)
        self.refs += [v for k, v in attrs if k in ("src", "href") and v]
        self.handlers += [k for k, _ in attrs if k.startswith("on")]
        self.style_attributes += "style" in names
        if tag == "style":
            self.style_attributes += 1
        if tag == "script" and "src" not in names:
            self.inline_scripts += 1


def test_the_dashboard_is_served_with_a_strict_policy(client) -> None:  # type: ignore[no-untyped-def]
    page = client.get("/admin/")
    assert page.status_code == 200 and page.mimetype == "text/html"
    policy = page.headers["Content-Security-Policy"]
    directives = dict(d.strip().split(" ", 1) for d in policy.split(";"))
    assert directives["default-src"] == "'self'"
    assert directives["script-src"] == "'self'" and directives["style-src"] == "'self'"
    assert "unsafe" not in policy and "http" not in policy and "*" not in policy
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    html = page.get_data(as_text=True)
    assert not _EXTERNAL.search(html), _EXTERNAL.search(html)
    parsed = _Page()
    parsed.feed(html)
    assert parsed.inline_scripts == 0 and parsed.style_attributes == 0 and not parsed.handlers
    types = {
        "dashboard.js": "text/javascript",
        "dashboard.css": "text/css",
        "favicon.svg": "image/svg+xml",
    }
    assert sorted(parsed.refs) == sorted(types)
    for ref in parsed.refs:
        asset = client.get(f"/admin/{ref}")
        assert asset.status_code == 200, ref
        assert asset.mimetype == types[ref]
        assert asset.headers["Content-Security-Policy"] == policy
        content = asset.get_data(as_text=True)
        asset.close()
        # A standalone SVG must name its XML namespace: an identifier, never fetched.
        content = content.replace('xmlns="http://www.w3.org/2000/svg"', "", 1)
        assert not _EXTERNAL.search(content), (ref, _EXTERNAL.search(content))
    script = client.get("/admin/dashboard.js").get_data(as_text=True)
    assert "sessionStorage" in script and "localStorage" not in script
    assert "/v1/admin/analytics/summary" in script


def test_the_dashboard_serves_nothing_else(client) -> None:  # type: ignore[no-untyped-def]
    assert client.get("/admin").status_code in (301, 308)
    for path in (
        "/admin/nope.js",
        "/admin/../app.py",
        "/admin/%2e%2e/app.py",
        "/admin/..%2fapp.py",
    ):
        response = client.get(path)
        assert response.status_code == 404, path
    assert client.post("/admin/").status_code == 405


def test_the_dashboard_is_not_an_api_operation(client) -> None:  # type: ignore[no-untyped-def]
    paths = client.get("/openapi.json").get_json()["paths"]
    assert not [p for p in paths if p.startswith("/admin")]
