"""Hot answers written from plain values (api/responses.py) stay what their schemas say.

The suite runs with RESPONSE_CHECKS on, so every such answer in every test is compared with
its schema's own JSON; here: that the check catches each kind of drift, the benchmark
scenarios' answers against the published OpenAPI document, and the edges orjson has.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import orjson
import pytest
from flask import Flask
from jsonschema import Draft202012Validator

from api.responses import ResponseContractBroken, values_response
from api.schemas.marketplace import Message, MessagePage
from tests.conftest import make_app, make_settings
from tests.support.actors import booking_body
from tests.support.bookings import ensure_profile

WHEN = datetime(2030, 1, 2, 3, 4, 5, 600_000, tzinfo=UTC)


def _message(**changes: Any) -> dict[str, Any]:
    values = {
        "id": uuid.uuid4(),
        "booking_id": uuid.uuid4(),
        "seq": 1,
        "sender_id": None,
        "body": "On my way",
        "removed": False,
        "created_at": WHEN,
    }
    return {**values, **changes}


def test_an_answer_matching_its_schema_is_written_as_the_schema_would(app: Flask) -> None:
    values = _message()
    with app.test_request_context("/"):
        response = values_response(Message, values, 201)
    assert response.status_code == 201 and response.mimetype == "application/json"
    assert orjson.loads(response.get_data()) == orjson.loads(
        Message.model_validate(values).model_dump_json()
    )
    assert orjson.loads(response.get_data())["created_at"] == "2030-01-02T03:04:05.600000Z"


@pytest.mark.parametrize(
    "values",
    [
        _message(extra="a field the schema does not have"),
        {k: v for k, v in _message().items() if k != "removed"},  # one it requires, missing
        _message(seq="first"),  # the wrong type
        _message(created_at="yesterday"),  # not a datetime
    ],
    ids=["extra", "missing", "type", "datetime"],
)
def test_the_check_refuses_an_answer_its_schema_would_not_give(
    app: Flask, values: dict[str, Any]
) -> None:
    with app.test_request_context("/"), pytest.raises(ResponseContractBroken, match="Message"):
        values_response(Message, values)


def test_without_the_check_the_answer_is_sent_as_built(build: Any, database_url: str) -> None:
    """Production (RESPONSE_CHECKS off) pays nothing for the check."""
    components = build(make_settings(database_url, RESPONSE_CHECKS="false"))
    with make_app(components).test_request_context("/"):
        response = values_response(Message, _message(extra=1))
    assert orjson.loads(response.get_data())["extra"] == 1


@pytest.mark.parametrize("value", [Decimal("1.5"), 10**30], ids=["decimal", "huge-int"])
def test_a_value_orjson_cannot_write_exactly_is_an_error_not_a_guess(
    app: Flask, value: object
) -> None:
    """Synced values cannot bring a huge integer in (422 at the door, test_json_values.py)."""
    with app.test_request_context("/"), pytest.raises(TypeError):
        values_response(MessagePage, {"items": [], "next_cursor": value, "poll_cursor": ""})


def _scenario_answers(actors: Any) -> dict[str, tuple[str, str, str, Any]]:
    """Every benchmark scenario's request (bench/run.py (a)-(g)) with real data behind it:
    (OpenAPI path, method, status, answer)."""
    consumer, provider = actors("consumer"), actors("provider")
    ensure_profile(provider, location={"lat": 52.5, "lng": 13.4})
    ids = []
    for _ in range(21):  # a full page and one more: next_cursor is set
        made = consumer.post("/v1/bookings", json=booking_body(provider.id))
        assert made.status_code == 201, made.get_data(as_text=True)
        ids.append(made.get_json()["id"])
    booking = ids[-1]
    assert provider.post(f"/v1/bookings/{booking}/accept", json={}).status_code == 200
    messages = f"/v1/bookings/{booking}/messages"
    assert consumer.post(messages, json={"body": "On my way"}).status_code == 201
    posted = consumer.post(
        messages, json={"body": "Great"}, headers={"Idempotency-Key": str(uuid.uuid4())}
    )
    record = {"op": "replace", "key": "t", "value": {"dark": True}, "sync_count": 0}
    synced = consumer.post("/v1/sync/datasets/settings", json={"records": [record]})
    assert synced.status_code == 200
    events = bench_events()
    tracked = consumer.post("/v1/events", data=events, content_type="application/json")
    weekly = [{"weekday": day, "start": "08:00", "end": "20:00"} for day in range(7)]
    rules = {"time_zone": "UTC", "weekly": weekly, "exceptions": [], "max_days_ahead": 30}
    available = provider.put("/v1/me/availability", json=rules)  # after the bookings: any hour
    assert available.status_code == 200, available.get_data(as_text=True)
    week = datetime.now(UTC).replace(microsecond=0) + timedelta(days=1)
    span = {"from": _z(week), "to": _z(week + timedelta(days=7)), "duration_minutes": 60}
    slots = consumer.get(f"/v1/providers/{provider.id}/slots", query_string=span)
    return {
        "a": ("/v1/bookings", "get", "200", _ok(consumer.get("/v1/bookings?limit=20"))),
        "b": (
            "/v1/providers",
            "get",
            "200",
            _ok(consumer.get("/v1/providers?category=cleaning&lat=52.5&lng=13.4&radius_km=25")),
        ),
        "c": ("/v1/bookings/{booking_id}/messages", "get", "200", _ok(consumer.get(messages))),
        "d": ("/v1/bookings/{booking_id}/messages", "post", "201", _ok(posted, 201)),
        "e": (
            "/v1/sync/datasets/{name}",
            "get",
            "200",
            _ok(consumer.get("/v1/sync/datasets/settings?since=0")),
        ),
        "f": ("/v1/events", "post", "202", _ok(tracked, 202)),
        "g": ("/v1/providers/{provider_id}/slots", "get", "200", _ok(slots)),
        "one booking": (
            "/v1/bookings/{booking_id}",
            "get",
            "200",
            _ok(consumer.get(f"/v1/bookings/{booking}")),
        ),
    }


def bench_events() -> str:
    """bench/run.py's 50-event batch, with a session id where the benchmark rotates one."""
    from bench.run import events_body_parts

    return str(uuid.uuid4()).join(events_body_parts())


def _z(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _ok(response: Any, status: int = 200) -> Any:
    assert response.status_code == status, response.get_data(as_text=True)
    return json.loads(response.get_data())


def test_the_benchmark_scenarios_answers_match_the_published_schema(
    client: Any, actors: Any
) -> None:
    spec = client.get("/openapi.json").get_json()
    answers = _scenario_answers(actors)
    for name, (path, method, status, body) in answers.items():
        documented = spec["paths"][path][method]["responses"][status]
        schema = documented["content"]["application/json"]["schema"]
        Draft202012Validator({**schema, "components": spec["components"]}).validate(body)
        assert body, name
    a, b, c, d, e, f, g = (answers[k][3] for k in "abcdefg")
    assert len(a["items"]) == 20 and a["next_cursor"] is not None
    assert a["items"][0]["status"] == "accepted" and a["items"][0]["history"] is None
    assert b["items"] and b["items"][0]["distance_km"] is not None
    assert [m["body"] for m in c["items"]] == ["On my way", "Great"]
    assert d["body"] == "Great" and d["seq"] == 2
    assert e["records"][0]["value"] == {"dark": True}
    assert (f["accepted"], f["rejected"]) == (50, [])
    assert g["items"], "a week of slots"
    one = answers["one booking"][3]
    assert [h["to_status"] for h in one["history"]] == ["requested", "accepted"]
    assert one["consumer"]["deleted"] is False and one["provider"]["display_name"]
