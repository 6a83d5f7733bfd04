"""Availability (/v1/me/availability): what a provider may set, and what is refused with the
field named."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from models import Availability
from tests.support.bookings import ensure_profile

BERLIN = {
    "time_zone": "Europe/Berlin",
    "weekly": [
        {"weekday": 0, "start": "09:00", "end": "12:00"},
        {"weekday": 0, "start": "13:00", "end": "17:00"},
        {"weekday": 5, "start": "22:00", "end": "24:00"},
    ],
    "exceptions": [
        {"date": "2026-12-24", "intervals": []},
        {"date": "2026-12-27", "intervals": [{"start": "10:00", "end": "14:00"}]},
    ],
    "buffer_minutes": 15,
    "min_notice_minutes": 120,
    "max_days_ahead": 60,
    "default_duration_minutes": 60,
}


def _ok(response: Any, status: int = 200) -> Any:
    assert response.status_code == status, response.get_data(as_text=True)
    return response.get_json()


def _fields(response: Any) -> list[str]:
    assert response.status_code == 422, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    return [e["field"] for e in response.get_json()["errors"]]


@pytest.fixture
def provider(actors):  # type: ignore[no-untyped-def]
    provider = actors("provider")
    ensure_profile(provider)
    return provider


def test_put_then_get_returns_the_document(provider, session: Session) -> None:  # type: ignore[no-untyped-def]
    assert provider.get("/v1/me/availability").status_code == 404
    saved = _ok(provider.put("/v1/me/availability", json=BERLIN))
    assert {k: v for k, v in saved.items() if k != "updated_at"} == BERLIN
    assert _ok(provider.get("/v1/me/availability")) == saved
    row = session.scalar(select(Availability).where(Availability.provider_id == provider.id))
    assert row is not None and row.time_zone == "Europe/Berlin" and row.buffer_minutes == 15
    # A second PUT replaces the whole document.
    changed = {**BERLIN, "weekly": [], "exceptions": [], "time_zone": "America/New_York"}
    assert _ok(provider.put("/v1/me/availability", json=changed))["time_zone"] == "America/New_York"
    assert _ok(provider.get("/v1/me/availability"))["weekly"] == []
    session.expire_all()
    assert session.scalar(select(Availability.time_zone)) == "America/New_York"


def test_defaults_for_the_rules(provider) -> None:  # type: ignore[no-untyped-def]
    saved = _ok(provider.put("/v1/me/availability", json={"time_zone": "UTC", "weekly": []}))
    assert (saved["exceptions"], saved["buffer_minutes"], saved["min_notice_minutes"]) == ([], 0, 0)
    assert (saved["max_days_ahead"], saved["default_duration_minutes"]) == (60, 60)


def _with(**changes: Any) -> dict[str, Any]:
    return {**BERLIN, **changes}


def _weekly(*intervals: tuple[int, str, str]) -> list[dict[str, Any]]:
    return [{"weekday": d, "start": s, "end": e} for d, s, e in intervals]


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        (_with(time_zone="Mars/Olympus_Mons"), ["time_zone"]),
        (_with(time_zone="../../etc/passwd"), ["time_zone"]),
        (_with(time_zone="europe/berlin"), ["time_zone"]),
        (_with(weekly=_weekly((0, "09:00", "17:00"), (2, "17:00", "09:00"))), ["weekly.1.end"]),
        (_with(weekly=_weekly((2, "09:00", "09:00"))), ["weekly.0.end"]),
        (_with(weekly=_weekly((2, "9:00", "17:00"))), ["weekly.0.start"]),
        (_with(weekly=_weekly((2, "24:00", "24:00"))), ["weekly.0.start"]),
        (_with(weekly=_weekly((2, "09:00", "24:01"))), ["weekly.0.end"]),
        (_with(weekly=_weekly((7, "09:00", "17:00"))), ["weekly.0.weekday"]),
        (_with(weekly=_weekly((-1, "09:00", "17:00"))), ["weekly.0.weekday"]),
        # Overlapping intervals of one day: the later-starting one is named.
        (
            _with(
                weekly=_weekly((2, "09:00", "17:00"), (3, "10:00", "11:00"), (2, "16:00", "18:00"))
            ),
            ["weekly.2.start"],
        ),
        (
            _with(
                weekly=_weekly((4, "08:00", "20:00"), (4, "09:00", "10:00"), (4, "12:00", "13:00"))
            ),
            ["weekly.1.start", "weekly.2.start"],
        ),
        (_with(exceptions=[{"date": "2026-02-30", "intervals": []}]), ["exceptions.0.date"]),
        (_with(exceptions=[{"date": "26-12-24", "intervals": []}]), ["exceptions.0.date"]),
        (_with(exceptions=[{"date": "9999-12-31", "intervals": []}]), ["exceptions.0.date"]),
        (
            _with(
                exceptions=[
                    {"date": "2026-12-24", "intervals": []},
                    {"date": "2026-12-24", "intervals": []},
                ]
            ),
            ["exceptions.1.date"],
        ),
        (
            _with(
                exceptions=[
                    {
                        "date": "2026-12-24",
                        "intervals": [
                            {"start": "10:00", "end": "14:00"},
                            {"start": "13:59", "end": "15:00"},
                        ],
                    }
                ]
            ),
            ["exceptions.0.intervals.1.start"],
        ),
        (_with(buffer_minutes=-1), ["buffer_minutes"]),
        (_with(buffer_minutes="15"), ["buffer_minutes"]),
        (_with(max_days_ahead=0), ["max_days_ahead"]),
        (_with(default_duration_minutes=4), ["default_duration_minutes"]),
        (_with(min_notice_minutes=10**9), ["min_notice_minutes"]),
        (_with(surprise=True), ["surprise"]),
        ({k: v for k, v in BERLIN.items() if k != "time_zone"}, ["time_zone"]),
    ],
)
def test_bad_documents_are_422_naming_the_field(
    provider, body: dict[str, Any], fields: list[str]
) -> None:  # type: ignore[no-untyped-def]
    assert _fields(provider.put("/v1/me/availability", json=body)) == fields
    assert provider.get("/v1/me/availability").status_code == 404  # nothing saved


def test_touching_intervals_are_fine(provider) -> None:  # type: ignore[no-untyped-def]
    body = _with(
        weekly=_weekly((1, "09:00", "12:00"), (1, "12:00", "17:00"), (1, "17:00", "24:00"))
    )
    _ok(provider.put("/v1/me/availability", json=body))


def test_only_providers_set_availability(actors) -> None:  # type: ignore[no-untyped-def]
    consumer = actors("consumer")
    response = consumer.put("/v1/me/availability", json=BERLIN)
    assert response.status_code == 403 and response.mimetype == "application/problem+json"
    assert consumer.get("/v1/me/availability").status_code == 403
