"""Client JSON that Trellis stores as given (sync record values) must be JSON every client can
read back: finite numbers only, integers within the signed 64-bit range. Anything else is a
422 naming where it is, and nothing is stored. Bodies are sent as raw text: Python's json
would not write these values faithfully."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import TypeAdapter, ValidationError

from api.schemas.sync import JsonValue

PATH = "/v1/sync/datasets/settings"
INT64_MAX = "9223372036854775807"
INT64_MIN = "-9223372036854775808"

NOT_FINITE = "number_not_finite"
TOO_BIG = "integer_out_of_range"

# (value as JSON text, where the bad number is inside it, the error code)
REFUSED = [
    ("1e400", "", NOT_FINITE),
    ("-1e400", "", NOT_FINITE),
    pytest.param("1" + "0" * 400 + ".5", "", NOT_FINITE, id="401-digit-decimal"),
    ('{"a": [1, {"b": 1e999}]}', "a[1].b", NOT_FINITE),
    ("NaN", "", NOT_FINITE),
    ("Infinity", "", NOT_FINITE),
    ("-Infinity", "", NOT_FINITE),
    ('[0, {"deep key": [NaN]}]', '[1]["deep key"][0]', NOT_FINITE),
    ("18446744073709551616", "", TOO_BIG),
    ("9223372036854775808", "", TOO_BIG),
    ("-9223372036854775809", "", TOO_BIG),
    ('{"ids": [1, 2, 18446744073709551616]}', "ids[2]", TOO_BIG),
]

ACCEPTED = [
    INT64_MAX,
    INT64_MIN,
    "1.5e300",
    "-1.5e300",
    "5e-324",
    "0",
    "-0.5",
    f'{{"max": {INT64_MAX}, "min": {INT64_MIN}, "big": [1.5e300], "exact": 9007199254740993}}',
]


def raw_batch(*values: str) -> str:
    records = ", ".join(
        f'{{"op": "replace", "key": "k{i}", "value": {value}, "sync_count": 0}}'
        for i, value in enumerate(values)
    )
    return f'{{"records": [{records}]}}'


def post_raw(user: Any, path: str, body: str) -> Any:
    return user.post(path, data=body, content_type="application/json")


def assert_problem(response: Any, errors: list[tuple[str, str, str]]) -> None:
    """A 422 problem listing exactly these (field, code, text in the message)."""
    assert response.status_code == 422, response.get_data(as_text=True)
    assert response.content_type == "application/problem+json"
    problem = response.get_json()
    assert problem["type"] == "/problems/validation-failed"
    found = [(e["field"], e["code"]) for e in problem["errors"]]
    assert found == [(field, code) for field, code, _ in errors]
    for error, (field, _, text) in zip(problem["errors"], errors, strict=True):
        assert text in error["message"]
        assert "Send" in error["message"]  # it says what to send instead
        assert field in problem["detail"]


@pytest.mark.parametrize(("raw", "where", "code"), REFUSED)
def test_a_value_that_is_not_portable_json_is_a_422_naming_it_and_nothing_is_stored(
    actors: Any, raw: str, where: str, code: str
) -> None:
    user = actors("consumer")
    assert post_raw(user, PATH, raw_batch('"kept"')).status_code == 200
    before = user.get(f"{PATH}?since=0").get_data(as_text=True)

    response = post_raw(user, PATH, raw_batch('"fine"', raw))

    text = f"the value at {where} " if where else "the value itself "
    assert_problem(response, [("records.1.value", code, text)])
    message = response.get_json()["errors"][0]["message"]
    if code == TOO_BIG:
        assert "64-bit" in message and "as a string" in message
    else:
        assert "finite" in message and "RFC 8259" in message
    assert user.get(f"{PATH}?since=0").get_data(as_text=True) == before


@pytest.mark.parametrize(("raw", "where", "code"), REFUSED)
def test_the_first_write_of_a_dataset_stores_nothing_either(
    actors: Any, raw: str, where: str, code: str
) -> None:
    user = actors("consumer")
    response = post_raw(user, PATH, raw_batch(raw))
    assert response.status_code == 422
    assert [e["code"] for e in response.get_json()["errors"]] == [code]
    assert user.get(f"{PATH}?since=0").status_code == 404
    assert user.get("/v1/sync/datasets").get_json()["items"] == []


def test_every_bad_record_of_a_batch_is_named(actors: Any) -> None:
    user = actors("consumer")
    response = post_raw(user, PATH, raw_batch("NaN", "1", '{"n": 99999999999999999999}'))
    assert_problem(
        response,
        [
            ("records.0.value", NOT_FINITE, "the value itself "),
            ("records.2.value", TOO_BIG, "the value at n "),
        ],
    )


@pytest.mark.parametrize("raw", ACCEPTED)
def test_finite_numbers_and_64_bit_integers_round_trip_exactly(actors: Any, raw: str) -> None:
    user = actors("consumer")
    expected = json.loads(raw)

    written = post_raw(user, PATH, raw_batch(raw))
    assert written.status_code == 200, written.get_data(as_text=True)
    read = user.get(f"{PATH}?since=0")

    for response in (written, read):
        # Parsed by Python's json, which keeps every integer exact, whatever its size.
        (record,) = json.loads(response.get_data(as_text=True))["records"]
        assert record["value"] == expected
        assert json.dumps(record["value"]) == json.dumps(expected)  # int stays int, same digits


def test_the_json_path_names_keys_that_are_not_identifiers_and_shortens_long_ones() -> None:
    adapter = TypeAdapter(JsonValue)
    long_key = "k" * 100
    with pytest.raises(ValidationError) as caught:
        adapter.validate_python({"a b": {long_key: [{"ok": 1, "x": float("nan")}]}})
    message = caught.value.errors()[0]["msg"]
    assert f'the value at ["a b"]["{"k" * 64}…"][0].x ' in message
    value = {"a": [1, 2.5, None, True, "s", {"b": -(2**63)}]}
    assert adapter.validate_python(value) == value


def test_deep_values_are_checked_without_recursion() -> None:
    value: Any = 2**64
    for _ in range(5000):
        value = [value]
    with pytest.raises(ValidationError) as caught:
        TypeAdapter(JsonValue).validate_python(value)
    assert caught.value.errors()[0]["type"] == TOO_BIG


# Analytics metrics and notification data take no arbitrary JSON (numbers, strings): the same
# values are refused there by their types already, never a 500.


@pytest.mark.parametrize("raw", ["1e400", "NaN", "-Infinity", '{"b": 1e999}'])
def test_an_event_metric_that_is_not_finite_rejects_that_event_only(actors: Any, raw: str) -> None:
    user = actors("consumer")
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    events = [
        f'{{"name": "app.open", "timestamp": "{now}", "metrics": {{"m": {metric}}}}}'
        for metric in ("1", raw)
    ]
    body = f'{{"events": [{", ".join(events)}]}}'
    response = post_raw(user, "/v1/events", body)
    assert response.status_code == 202, response.get_data(as_text=True)
    result = response.get_json()
    assert result["accepted"] == 1
    assert [(r["index"], [e["field"] for e in r["errors"]]) for r in result["rejected"]] == [
        (1, ["metrics.m"])
    ]


@pytest.mark.parametrize("raw", ["1e400", "NaN", "18446744073709551616", '{"b": 1e999}'])
def test_notification_data_that_is_not_text_is_a_422(actors: Any, raw: str) -> None:
    provider = actors("provider")
    body = (
        f'{{"user_id": "{uuid.uuid4()}", "title": "Hi", "body": "Hello", "data": {{"k": {raw}}}}}'
    )
    response = post_raw(provider, "/v1/notifications", body)
    assert response.status_code == 422, response.get_data(as_text=True)
    assert [e["field"] for e in response.get_json()["errors"]] == ["data.k"]
