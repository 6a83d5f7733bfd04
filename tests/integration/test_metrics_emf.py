"""The metrics in the JSON log lines parse as CloudWatch Embedded Metric Format documents.

The checks follow the EMF specification
(https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html):
the root is a JSON object with an `_aws` metadata object holding an integer millisecond
`Timestamp` and a `CloudWatchMetrics` array of MetricDirectives; a directive has a
`Namespace` (1-255 characters, no `:`, not `AWS/`), `Dimensions` (an array of
DimensionSets, each an array of at most 30 dimension keys) and `Metrics` (at most 100
MetricDefinitions: a `Name` and an optional `Unit` from CloudWatch's units); no object of
the specification carries members it does not define. Every key a directive references is
a member of the root: a dimension's value a string (at most 1024 characters), a metric's a
number or an array of at most 100 numbers.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import jsonschema
import pytest
from flask import Flask

from api.request_log import JsonLines
from services.base import metrics
from services.components import Components
from services.messaging import outbox
from tests.conftest import make_app, make_settings
from tests.support.actors import make_actor
from tests.support.bookings import booking_in, ensure_profile
from tests.support.fakes import FakePush

UNITS = [
    *("Seconds", "Microseconds", "Milliseconds", "Bytes", "Kilobytes", "Megabytes"),
    *("Gigabytes", "Terabytes", "Bits", "Kilobits", "Megabits", "Gigabits", "Terabits"),
    *("Percent", "Count", "Bytes/Second", "Kilobytes/Second", "Megabytes/Second"),
    *("Gigabytes/Second", "Terabytes/Second", "Bits/Second", "Kilobits/Second"),
    *("Megabits/Second", "Gigabits/Second", "Terabits/Second", "Count/Second", "None"),
]
NAME = {"type": "string", "minLength": 1, "maxLength": 255}
EMF_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["_aws"],
    "properties": {
        "_aws": {
            "type": "object",
            "required": ["Timestamp", "CloudWatchMetrics"],
            "additionalProperties": False,
            "properties": {
                "Timestamp": {"type": "integer", "minimum": 0},
                "CloudWatchMetrics": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["Namespace", "Dimensions", "Metrics"],
                        "additionalProperties": False,
                        "properties": {
                            "Namespace": {
                                "type": "string",
                                "minLength": 1,
                                "maxLength": 255,
                                "pattern": "^[^:]+$",
                                "not": {"pattern": "^AWS/"},
                            },
                            "Dimensions": {
                                "type": "array",
                                "items": {
                                    "type": "array",
                                    "maxItems": 30,
                                    "items": NAME,
                                    "uniqueItems": True,
                                },
                            },
                            "Metrics": {
                                "type": "array",
                                "minItems": 1,
                                "maxItems": 100,
                                "items": {
                                    "type": "object",
                                    "required": ["Name"],
                                    "additionalProperties": False,
                                    "properties": {
                                        "Name": NAME,
                                        "Unit": {"enum": UNITS},
                                        "StorageResolution": {"enum": [1, 60]},
                                    },
                                },
                            },
                        },
                    },
                },
            },
        }
    },
}


def assert_emf(line: str) -> dict[str, Any]:
    """Parse one log line and hold it to the specification; returns the document."""
    document = json.loads(line)
    jsonschema.validate(document, EMF_SCHEMA)
    for directive in document["_aws"]["CloudWatchMetrics"]:
        for dimension_set in directive["Dimensions"]:
            for key in dimension_set:
                value = document[key]  # a KeyError is a missing target member
                assert isinstance(value, str) and 1 <= len(value) <= 1024, (key, value)
        for metric in directive["Metrics"]:
            value = document[metric["Name"]]
            values = value if isinstance(value, list) else [value]
            assert 1 <= len(values) <= 100, metric
            for number in values:
                assert isinstance(number, int | float) and not isinstance(number, bool), metric
    return document


def _lines(caplog: pytest.LogCaptureFixture, logger: str) -> list[str]:
    formatter = JsonLines(
        "{asctime}{levelname}{name}{message}",
        style="{",
        rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
    )
    return [formatter.format(r) for r in caplog.records if r.name == logger]


def test_access_lines_carry_latency_and_database_time_by_route_and_status_class(
    build, database_url: str, signing_key, caplog: pytest.LogCaptureFixture
) -> None:  # type: ignore[no-untyped-def]
    app: Flask = make_app(build(make_settings(database_url, METRICS_NAMESPACE="Trellis/test")))
    client = app.test_client()
    user = make_actor(client, signing_key, "consumer")
    with caplog.at_level(logging.INFO, logger="trellis.access"):
        assert user.get("/v1/me").status_code == 200
        assert user.get("/v1/bookings/not-a-uuid").status_code == 404  # no route: no metric
        assert client.get("/v1/me").status_code == 401
        assert user.post("/v1/bookings", json={}).status_code == 422
    lines = _lines(caplog, "trellis.access")
    assert len(lines) == 4
    ok, unmatched, refused, invalid = (json.loads(line) for line in lines)
    assert "_aws" not in unmatched and unmatched["route"] is None
    for line in (ok, refused, invalid):
        document = assert_emf(json.dumps(line))
        directive = document["_aws"]["CloudWatchMetrics"][0]
        assert directive["Namespace"] == "Trellis/test"
        assert directive["Dimensions"] == [["route", "status_class"], ["status_class"]]
        assert [m["Name"] for m in directive["Metrics"]] == ["latency_ms", "db_ms"]
    assert (ok["route"], ok["status_class"]) == ("/v1/me", "2xx")
    assert ok["db_ms"] > 0 and ok["latency_ms"] >= ok["db_ms"]  # the caller's row was read
    assert (refused["status_class"], refused["db_ms"]) == ("4xx", 0)  # refused before any SQL
    assert invalid["status_class"] == "4xx"


def test_the_outbox_line_reports_backlog_age_and_push_failures(
    components: Components, actors, push: FakePush, caplog: pytest.LogCaptureFixture, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(metrics, "outbox_report", metrics.OutboxReport())  # a line is due
    consumer, provider = actors("consumer"), actors("provider")
    ensure_profile(provider)
    device = consumer.post("/v1/devices", json={"platform": "ios", "token": "a" * 64})
    assert device.status_code in (200, 201), device.get_json()
    booking_in("accepted", consumer, provider)
    push.down = True  # SNS fails: every due push is retried later
    with caplog.at_level(logging.INFO, logger="trellis.metrics"):
        stats = outbox.drain_all(components.sessions, components.push)
        outbox.drain_all(components.sessions, components.push)  # within the minute: no line
    lines = _lines(caplog, "trellis.metrics")
    assert len(lines) == 1 and stats.retried > 0
    document = assert_emf(lines[0])
    assert document["queue"] == "outbox" and document["push_failures"] == stats.retried
    assert document["outbox_backlog"] >= stats.retried and document["outbox_oldest_age_s"] >= 0
    directive = document["_aws"]["CloudWatchMetrics"][0]
    assert directive["Dimensions"] == [["queue"]]
    assert [m["Name"] for m in directive["Metrics"]] == [
        *("outbox_backlog", "outbox_oldest_age_s", "push_failures", "push_endpoints_gone")
    ]


def _doc(directive: dict[str, Any], **members: Any) -> dict[str, Any]:
    base = {"Namespace": "T", "Dimensions": [], "Metrics": [{"Name": "x"}]}
    return {"_aws": {"Timestamp": 1, "CloudWatchMetrics": [{**base, **directive}]}, **members}


@pytest.mark.parametrize(
    "broken",
    [
        {"_aws": {"Timestamp": "now", "CloudWatchMetrics": []}},
        _doc({"Namespace": "AWS/EC2"}, x=1),  # AWS's own namespaces are refused
        _doc({"Dimensions": [["r"]]}, x=1),  # a dimension with no member
        _doc({"Metrics": [{"Name": "x", "Unit": "ms"}]}, x=1),  # no such unit
        _doc({}, x="1"),  # a metric value must be a number
        _doc({}),  # a metric with no member
        _doc({"Dimensions": [["r"]]}, x=1, r=3),  # a dimension value must be a string
    ],
)
def test_the_checker_refuses_what_the_specification_refuses(broken: dict[str, Any]) -> None:
    with pytest.raises((jsonschema.ValidationError, KeyError, AssertionError)):
        assert_emf(json.dumps(broken))
