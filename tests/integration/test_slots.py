"""Bookable slots (GET /v1/providers/{id}/slots) and booking inside and outside them.

The slot computation (services/marketplace/slots.py) is checked against a brute-force
reference that walks every minute: it asks the zone database what the provider's clock shows
at that minute and whether an interval of that local date covers it, then applies the rules
of the module's docstring literally. Hypothesis draws zones with unusual daylight-saving rules
(30-minute shifts, the southern hemisphere, none at all), ranges around their transitions,
weekly hours, exceptions on the transition days, busy bookings, buffers and notice.
"""

from __future__ import annotations

import uuid
import zoneinfo
from datetime import UTC, date, datetime, time, timedelta
from functools import cache
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from sqlalchemy.orm import Session

from models import Booking
from services.marketplace.availability import Rules, Span
from services.marketplace.slots import free_slots
from tests.support.actors import Actor, booking_body
from tests.support.bookings import ensure_profile

MINUTE = timedelta(minutes=1)
ZONES = [
    "Europe/Berlin",
    "America/New_York",
    "Australia/Lord_Howe",  # a 30-minute shift
    "America/Santiago",  # southern hemisphere, changes at midnight
    "Asia/Kathmandu",  # +05:45, no DST
    "Pacific/Chatham",  # +12:45 / +13:45
    "America/Havana",  # changes at midnight (00:00 -> 01:00)
    "UTC",
]


# ---------------------------------------------------------------- the reference


def reference(
    rules: Rules,
    busy: list[tuple[datetime, datetime]],
    start: datetime,
    end: datetime,
    duration: timedelta,
    step: timedelta,
    now: datetime,
) -> list[tuple[datetime, datetime]]:
    """Every minute from two days before to two days after: which (date, interval) the
    provider's clock puts it in. Windows are runs of minutes with the same one."""
    zone = zoneinfo.ZoneInfo(rules.time_zone)
    first = start - timedelta(days=2)
    minutes = int((end + duration - first) / MINUTE) + 2 * 1440
    keys: list[tuple[date, int] | None] = []
    for i in range(minutes):
        local = (first + i * MINUTE).astimezone(zone)
        day, minute = local.date(), local.hour * 60 + local.minute
        spans = rules.exceptions.get(day, rules.weekly.get(day.weekday(), ()))
        keys.append(
            next(((day, j) for j, s in enumerate(spans) if s.start <= minute < s.end), None)
        )
    available = [k is not None for k in keys]
    earliest = now + timedelta(minutes=rules.min_notice_minutes)
    latest = now + timedelta(days=rules.max_days_ahead)
    reach = duration + timedelta(minutes=rules.buffer_minutes)
    length = int(duration / MINUTE)
    found = []
    for i, key in enumerate(keys):
        if key is None or (i > 0 and keys[i - 1] == key):
            continue  # not the first minute of a window
        j = i
        while j < len(keys) and keys[j] == key:
            j += 1
        for k in range(i, j, int(step / MINUTE)):
            slot = first + k * MINUTE
            if not (start <= slot < end and earliest <= slot <= latest):
                continue
            if k + length > len(keys) or not all(available[k : k + length]):
                continue
            if any(slot < b and a < slot + reach for a, b in busy):
                continue
            found.append((slot, slot + duration))
    return sorted(found)


@cache
def transitions(zone_name: str) -> list[datetime]:
    """Instants (to the minute) where the zone's offset changes, 2026-2029: found by
    comparing offsets an hour apart, then minute by minute."""
    zone = zoneinfo.ZoneInfo(zone_name)
    found = []
    t = datetime(2026, 1, 1, tzinfo=UTC)
    while t.year < 2030:
        if t.astimezone(zone).utcoffset() != (t + timedelta(hours=1)).astimezone(zone).utcoffset():
            m = t
            while m.astimezone(zone).utcoffset() == t.astimezone(zone).utcoffset():
                m += MINUTE
            found.append(m)
        t += timedelta(hours=1)
    return found or [datetime(2027, 3, 1, tzinfo=UTC)]


# ---------------------------------------------------------------- strategies


@st.composite
def day_spans(draw: Any) -> tuple[Span, ...]:
    """Non-overlapping intervals of one day, often on the quarter hour, some ending at 24:00."""
    grid = st.one_of(st.integers(0, 96).map(lambda q: q * 15), st.integers(0, 1440))
    points = sorted(draw(st.sets(grid, max_size=6)))
    pairs = [(a, b) for a, b in zip(points[::2], points[1::2], strict=False) if a < b]
    return tuple(Span(a, b) for a, b in pairs)


@st.composite
def cases(draw: Any) -> dict[str, Any]:
    zone = draw(st.sampled_from(ZONES))
    pivot = draw(st.sampled_from(transitions(zone)))
    start = pivot + draw(st.integers(-3 * 1440, 1440)) * MINUTE
    start = start.replace(second=0, microsecond=0)
    end = start + draw(st.integers(1, 4 * 1440)) * MINUTE
    weekly = {d: draw(day_spans()) for d in range(7) if draw(st.booleans()) or d == 6}
    exception_days = draw(st.lists(st.integers(-3, 3), max_size=3, unique=True))
    exceptions = {(pivot + timedelta(days=d)).date(): draw(day_spans()) for d in exception_days}
    rules = Rules(
        time_zone=zone,
        weekly=weekly,
        exceptions=exceptions,
        buffer_minutes=draw(st.sampled_from([0, 10, 15, 60])),
        min_notice_minutes=draw(st.sampled_from([0, 0, 45, 600])),
        max_days_ahead=draw(st.sampled_from([1, 2, 60])),
        default_duration_minutes=60,
    )
    busy = []
    for _ in range(draw(st.integers(0, 4))):
        at = start + draw(st.integers(-600, 4 * 1440)) * MINUTE
        busy.append((at, at + draw(st.integers(1, 300)) * MINUTE))
    return {
        "rules": rules,
        "busy": busy,
        "start": start,
        "end": end,
        "duration": draw(st.sampled_from([15, 30, 60, 90, 240, 600])) * MINUTE,
        "step": draw(st.sampled_from([5, 15, 30, 45, 60])) * MINUTE,
        "now": start - draw(st.integers(0, 3000)) * MINUTE,
    }


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_slots_match_the_brute_force_reference(case: dict[str, Any]) -> None:
    assert free_slots(**case) == reference(**case)


# ---------------------------------------------------------------- through HTTP


def _ok(response: Any, status: int = 200) -> Any:
    assert response.status_code == status, response.get_data(as_text=True)
    return response.get_json()


def _problem(response: Any, status: int, type_: str) -> Any:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    assert response.get_json()["type"] == type_
    return response.get_json()


def _z(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _next_sunday_before(year: int, month: int, day: int) -> date:
    """The last Sunday on or before year-month-day (the EU changes on the last Sunday)."""
    d = date(year, month, day)
    return d - timedelta(days=(d.weekday() - 6) % 7)


def _next_eu_change(month: int) -> date:
    today = datetime.now(UTC).date()
    for year in (today.year, today.year + 1):
        change = _next_sunday_before(year, month, 31)
        if change > today + timedelta(days=1):
            return change
    raise AssertionError("unreachable")


def _availability(**changes: Any) -> dict[str, Any]:
    body = {
        "time_zone": "Europe/Berlin",
        "weekly": [{"weekday": d, "start": "09:00", "end": "17:00"} for d in range(5)],
        "exceptions": [],
        "buffer_minutes": 0,
        "min_notice_minutes": 0,
        "max_days_ahead": 366,
        "default_duration_minutes": 60,
    }
    return {**body, **changes}


@pytest.fixture
def pair(actors):  # type: ignore[no-untyped-def]
    consumer, provider = actors("consumer"), actors("provider")
    ensure_profile(provider)
    return consumer, provider


def _slots(viewer: Actor, provider: Actor, start: datetime, end: datetime, **extra: Any) -> Any:
    query = {"from": _z(start), "to": _z(end), **extra}
    return _ok(viewer.get(f"/v1/providers/{provider.id}/slots", query_string=query))


def _starts(page: Any) -> list[str]:
    return [item["starts_at"] for item in page["items"]]


def _berlin(day: date, hhmm: str) -> datetime:
    """That Berlin wall-clock time, in UTC (arithmetic on it is then real time, not local)."""
    zone = zoneinfo.ZoneInfo("Europe/Berlin")
    return datetime.combine(day, time.fromisoformat(hhmm), tzinfo=zone).astimezone(UTC)


def test_a_berlin_day_is_0800z_in_winter_and_0700z_in_summer(pair) -> None:  # type: ignore[no-untyped-def]
    consumer, provider = pair
    _ok(provider.put("/v1/me/availability", json=_availability()))
    spring = _next_eu_change(3)
    winter_monday = spring - timedelta(days=6)  # the Monday before the change
    summer_monday = spring + timedelta(days=1)
    for monday, first, last in (
        (winter_monday, "08:00", "15:00"),
        (summer_monday, "07:00", "14:00"),
    ):
        midnight = datetime.combine(monday, time(), tzinfo=UTC)
        page = _slots(consumer, provider, midnight, midnight + timedelta(days=1))
        assert page["time_zone"] == "Europe/Berlin" and page["duration_minutes"] == 60
        starts = _starts(page)
        assert starts[0] == f"{monday}T{first}:00Z" and starts[-1] == f"{monday}T{last}:00Z"
        assert len(starts) == 15  # 09:00 ... 16:00 local, every 30 minutes
        assert all(
            item["ends_at"] == _z(datetime.fromisoformat(item["starts_at"]) + timedelta(hours=1))
            for item in page["items"]
        )


def test_the_skipped_hour_and_the_repeated_hour(pair) -> None:  # type: ignore[no-untyped-def]
    consumer, provider = pair
    spring, autumn = _next_eu_change(3), _next_eu_change(10)
    # 01:00-05:00 on the spring day is three real hours (02:00-03:00 does not exist): from
    # 00:00Z (01:00 CET) to 03:00Z (05:00 CEST). 01:00-03:00 on the autumn day is three too:
    # 23:00Z the day before (01:00 CEST) to 02:00Z (03:00 CET), 02:xx shown twice.
    exceptions = [
        {"date": str(spring), "intervals": [{"start": "01:00", "end": "05:00"}]},
        {"date": str(autumn), "intervals": [{"start": "01:00", "end": "03:00"}]},
    ]
    _ok(provider.put("/v1/me/availability", json=_availability(exceptions=exceptions)))
    for day, first in ((spring, _berlin(spring, "01:00")), (autumn, _berlin(autumn, "01:00"))):
        page = _slots(consumer, provider, first - timedelta(hours=3), first + timedelta(hours=6))
        expected = [_z(first + timedelta(minutes=30 * k)) for k in range(5)]
        assert _starts(page) == expected, day
    # A gap start: 02:30-04:00 on the spring day is 03:00-04:00 CEST, one real hour.
    exceptions = [{"date": str(spring), "intervals": [{"start": "02:30", "end": "04:00"}]}]
    _ok(provider.put("/v1/me/availability", json=_availability(exceptions=exceptions)))
    first = _berlin(spring, "03:00")
    page = _slots(consumer, provider, first - timedelta(hours=3), first + timedelta(hours=3))
    assert _starts(page) == [_z(first)]


def test_bookings_buffer_notice_and_horizon(pair, session: Session) -> None:  # type: ignore[no-untyped-def]
    consumer, provider = pair
    every_day = [{"weekday": d, "start": "00:00", "end": "24:00"} for d in range(7)]
    rules = _availability(weekly=every_day, time_zone="UTC", buffer_minutes=30, max_days_ahead=3)
    _ok(provider.put("/v1/me/availability", json=rules))
    day = datetime.now(UTC).date() + timedelta(days=2)
    nine = datetime.combine(day, time(9), tzinfo=UTC)
    booking = _ok(
        consumer.post("/v1/bookings", json=booking_body(provider.id, scheduled_at=_z(nine))), 201
    )
    assert (booking["ends_at"], booking["duration_minutes"]) == (_z(nine + timedelta(hours=1)), 60)
    assert (
        _ok(provider.post(f"/v1/bookings/{booking['id']}/accept", json={}))["status"] == "accepted"
    )
    stored = session.scalar(select(Booking).where(Booking.id == uuid.UUID(booking["id"])))
    assert stored is not None and stored.blocked_until == nine + timedelta(minutes=90)
    starts = _starts(
        _slots(consumer, provider, nine - timedelta(hours=2), nine + timedelta(hours=3))
    )
    # Busy 09:00-10:30 (with its buffer); a new 60-minute slot needs 30 minutes after it too.
    assert starts == [_z(nine + timedelta(minutes=m)) for m in (-120, -90, 90, 120, 150)]
    # A requested (not accepted) booking takes nothing.
    other = _ok(
        consumer.post(
            "/v1/bookings",
            json=booking_body(provider.id, scheduled_at=_z(nine + timedelta(hours=5))),
        ),
        201,
    )
    assert other["status"] == "requested"
    assert _z(nine + timedelta(hours=5)) in _starts(
        _slots(consumer, provider, nine, nine + timedelta(hours=8))
    )
    # Notice: with 600 minutes, nothing in the next ten hours; the horizon: nothing after 3 days.
    _ok(provider.put("/v1/me/availability", json={**rules, "min_notice_minutes": 600}))
    now = datetime.now(UTC)
    page = _slots(consumer, provider, now, now + timedelta(days=5))
    first = datetime.fromisoformat(page["items"][0]["starts_at"])
    last = datetime.fromisoformat(page["items"][-1]["starts_at"])
    assert now + timedelta(minutes=600) <= first < now + timedelta(minutes=630)
    assert now + timedelta(days=3) - timedelta(minutes=30) < last <= now + timedelta(days=3)


def test_a_request_must_fit_a_free_slot(pair) -> None:  # type: ignore[no-untyped-def]
    consumer, provider = pair
    _ok(
        provider.put(
            "/v1/me/availability",
            json=_availability(buffer_minutes=15, default_duration_minutes=90),
        )
    )
    monday = datetime.now(UTC).date() + timedelta(days=7)
    monday -= timedelta(days=monday.weekday())
    ten = _berlin(monday, "10:00")

    def book(at: datetime, **extra: Any) -> Any:
        return consumer.post(
            "/v1/bookings", json=booking_body(provider.id, scheduled_at=_z(at), **extra)
        )

    taken = _ok(book(ten), 201)
    assert taken["duration_minutes"] == 90  # the provider's default
    assert taken["ends_at"] == _z(ten + timedelta(minutes=90))
    _ok(provider.post(f"/v1/bookings/{taken['id']}/accept", json={}))
    unavailable = "/problems/slot-unavailable"
    for at, extra in [
        (ten, {}),  # taken
        (ten + timedelta(minutes=90), {}),  # inside the buffer
        (ten - timedelta(minutes=90), {}),  # would end where the other starts, buffer short
        (_berlin(monday, "16:30"), {}),  # runs past 17:00
        (_berlin(monday, "08:30"), {"duration_minutes": 30}),  # before the day starts
        (_berlin(monday, "12:10"), {"duration_minutes": 30}),  # off the 30-minute grid
        (_berlin(monday + timedelta(days=5), "10:00"), {}),  # a Saturday
    ]:
        _problem(book(at, **extra), 409, unavailable)
    fits = _ok(book(_berlin(monday, "16:30"), duration_minutes=30), 201)
    assert fits["ends_at"] == _z(_berlin(monday, "17:00"))
    _ok(book(ten + timedelta(minutes=120)), 201)  # 12:00, after the buffer


def test_without_availability_any_time_may_be_requested(pair) -> None:  # type: ignore[no-untyped-def]
    consumer, provider = pair
    now = datetime.now(UTC)
    page = _slots(consumer, provider, now, now + timedelta(days=1))
    assert page == {"time_zone": None, "duration_minutes": 60, "items": []}
    odd = now.replace(second=0, microsecond=0) + timedelta(days=3, minutes=7)
    made = _ok(
        consumer.post(
            "/v1/bookings",
            json=booking_body(provider.id, scheduled_at=_z(odd), duration_minutes=45),
        ),
        201,
    )
    assert made["ends_at"] == _z(odd + timedelta(minutes=45)) and made["duration_minutes"] == 45
    plain = _ok(consumer.post("/v1/bookings", json=booking_body(provider.id)), 201)
    assert plain["duration_minutes"] == 60


def test_slot_queries_that_are_refused(pair, actors) -> None:  # type: ignore[no-untyped-def]
    consumer, provider = pair
    path = f"/v1/providers/{provider.id}/slots"
    now = datetime(2027, 1, 4, tzinfo=UTC)
    for query, field in [
        ({"from": _z(now), "to": _z(now + timedelta(days=31, seconds=1))}, "to"),
        ({"from": _z(now), "to": _z(now)}, "to"),
        ({"from": _z(now), "to": _z(now - timedelta(days=1))}, "to"),
        ({"from": "2027-01-04T00:00:00"}, "from"),  # no zone
        ({"from": "yesterday"}, "from"),
        ({"duration_minutes": "4"}, "duration_minutes"),
        ({"duration_minutes": "1441"}, "duration_minutes"),
        ({"step": "5"}, "step"),
    ]:
        problem = _problem(
            consumer.get(path, query_string=query), 422, "/problems/validation-failed"
        )
        assert [e["field"] for e in problem["errors"]] == [field], query
    ok = consumer.get(path, query_string={"from": _z(now), "to": _z(now + timedelta(days=31))})
    assert ok.status_code == 200
    _problem(consumer.get(f"/v1/providers/{uuid.uuid4()}/slots"), 404, "/problems/not-found")
    _ok(consumer.post("/v1/blocks", json={"user_id": provider.id}), 201)
    _problem(consumer.get(path), 404, "/problems/not-found")
    assert actors("consumer").get(path).status_code == 200
    # Blocked the other way round: the provider blocked the viewer. The same 404 as the
    # provider's profile answers, whoever blocked whom.
    other = actors("consumer")
    _ok(provider.post("/v1/blocks", json={"user_id": other.id}), 201)
    _problem(other.get(path), 404, "/problems/not-found")
    _problem(other.get(f"/v1/providers/{provider.id}"), 404, "/problems/not-found")
