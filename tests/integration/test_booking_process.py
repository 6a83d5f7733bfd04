"""One source for the booking process: the table in services/marketplace/process.py, the
OpenAPI document (the booking status enum, the action routes) and GET /v1/booking-process
say the same thing, and the route shows the timers' settings at their current values."""

from __future__ import annotations

import re
import typing
from typing import Any

from flask import Flask
from jsonschema import Draft202012Validator

from api.schemas.marketplace import BookingStatus
from services.base.settings import Settings
from services.marketplace.process import (
    INITIAL,
    RESCHEDULABLE,
    RESCHEDULE_ROUTES,
    STATUSES,
    TIMERS,
    TRANSITIONS,
    TimerPolicy,
    describe,
    setting_alias,
)
from tests.conftest import BuildComponents, make_app, make_settings
from tests.integration.test_openapi import assert_headers_declared

BOOKING_ROUTE = re.compile(r"^/v1/bookings/\{booking_id\}/(.+)$")
# POST routes on a booking that are neither a state change nor a reschedule.
NOT_THE_PROCESS = {"messages", "review"}


def _spec(app: Flask) -> dict[str, Any]:
    response = app.test_client().get("/openapi.json")
    assert response.status_code == 200
    return response.get_json()


def test_the_status_enum_is_the_tables(app: Flask) -> None:
    assert typing.get_args(BookingStatus) == STATUSES
    schemas = _spec(app)["components"]["schemas"]
    assert schemas["Booking"]["properties"]["status"]["enum"] == list(STATUSES)
    event = schemas["BookingEvent"]["properties"]["to_status"]
    assert event["enum"] == list(STATUSES)
    process = schemas["BookingProcess"]["properties"]
    assert process["states"]["items"]["enum"] == list(STATUSES)


def test_the_action_routes_are_the_tables(app: Flask) -> None:
    """Every POST on a booking is an action of the table, a reschedule route, or one of the
    booking's own resources (messages, review); each action's route exists."""
    spec = _spec(app)
    posts = {
        f"POST {path}"
        for path, methods in spec["paths"].items()
        if BOOKING_ROUTE.match(path) and "post" in methods
    }
    described = describe(TimerPolicy())
    actions = {a["route"] for a in described["actions"]}
    assert actions == {f"POST /v1/bookings/{{booking_id}}/{name}" for name in TRANSITIONS}
    reschedule = set(described["reschedule"]["routes"])
    assert reschedule == set(RESCHEDULE_ROUTES)
    others = {f"POST /v1/bookings/{{booking_id}}/{name}" for name in NOT_THE_PROCESS}
    assert posts == actions | reschedule | others
    # Actions an admin may not take document the 403 the route answers them.
    for action in described["actions"]:
        path = action["route"].removeprefix("POST ")
        responses = spec["paths"][path]["post"]["responses"]
        assert "409" in responses, path  # from any other state
        if action["by"] != ["admin", "consumer", "provider"]:
            assert "403" in responses, path


def test_the_route_answers_the_table(app: Flask) -> None:
    response = app.test_client().get("/v1/booking-process")  # no token
    assert response.status_code == 200, response.get_data(as_text=True)
    body = response.get_json()
    assert body == describe(TimerPolicy())  # the defaults
    assert body["states"] == list(STATUSES) and body["initial"] == INITIAL == "requested"
    assert set(body["terminal"]) == {"declined", "completed", "cancelled", "expired"}
    by_name = {a["name"]: a for a in body["actions"]}
    assert set(by_name) == set(TRANSITIONS)
    for name, rule in TRANSITIONS.items():
        assert by_name[name]["from"] == sorted(rule.sources)
        assert by_name[name]["to"] == rule.target
        assert by_name[name]["by"] == sorted(rule.parties)
    assert by_name["cancel"]["by"] == ["admin", "consumer", "provider"]
    assert by_name["accept"] == {
        "name": "accept",
        "from": ["requested"],
        "to": "accepted",
        "by": ["provider"],
        "route": "POST /v1/bookings/{booking_id}/accept",
    }
    timers = {t["name"]: t for t in body["timers"]}
    assert set(timers) == set(TIMERS)
    assert timers["expire"]["from"] == "requested" and timers["expire"]["to"] == "expired"
    assert timers["remind"]["to"] is None
    assert {t["setting"]: t["value"] for t in body["timers"]} == {
        "BOOKING_REQUEST_TTL_HOURS": 24,
        "AUTO_COMPLETE_AFTER_HOURS": 12,
        "REMINDER_MINUTES_BEFORE": 60,
    }
    assert body["review_window"] == {"setting": "REVIEW_WINDOW_DAYS", "value": 14}
    assert body["reschedule"]["while"] == sorted(RESCHEDULABLE)
    # Every state a rule names is a state of the table; every setting is a real setting.
    for rule in TIMERS.values():
        assert rule.state in STATUSES and rule.target in (*STATUSES, None)
        assert setting_alias(rule.setting) in {f.alias for f in Settings.model_fields.values()}


def test_the_route_shows_the_current_settings(build: BuildComponents, database_url: str) -> None:
    settings = make_settings(
        database_url,
        BOOKING_REQUEST_TTL_HOURS="6",
        AUTO_COMPLETE_AFTER_HOURS="48",
        REMINDER_MINUTES_BEFORE="30",
        REVIEW_WINDOW_DAYS="7",
    )
    body = make_app(build(settings)).test_client().get("/v1/booking-process").get_json()
    assert {t["name"]: t["value"] for t in body["timers"]} == {
        "expire": 6,
        "auto_complete": 48,
        "remind": 30,
    }
    assert body["review_window"]["value"] == 7
    assert body == describe(TimerPolicy.of(settings))


def test_the_route_is_documented_and_cacheable(app: Flask) -> None:
    client = app.test_client()
    spec = _spec(app)
    operation = spec["paths"]["/v1/booking-process"]["get"]
    assert operation["security"] == [] and operation["operationId"] == "get_booking_process"
    ok = operation["responses"]["200"]
    schema = ok["content"]["application/json"]["schema"]
    assert schema == {"$ref": "#/components/schemas/BookingProcess"}
    response = client.get("/v1/booking-process")
    Draft202012Validator({**schema, "components": spec["components"]}).validate(response.get_json())
    assert_headers_declared(spec, "/v1/booking-process", "get", response)
    assert response.headers["Cache-Control"] == "public, max-age=300"
    again = client.get("/v1/booking-process", headers={"If-None-Match": response.headers["ETag"]})
    assert again.status_code == 304
    assert_headers_declared(spec, "/v1/booking-process", "get", again)
