"""Property-based tests of every operation in /openapi.json, run in-process with schemathesis.

Each operation gets generated requests (valid and invalid) from callers with real tokens:
nobody, a user without roles, a consumer, a provider and a user with every role. In two of
three valid cases, path ids point at seeded objects (a provider, bookings in every state)
and a booking body at the seeded provider, so the fuzzing gets past the 404s and 422s. Each
request runs inside a SAVEPOINT that is rolled back afterwards, so every example sees the
same seeded world however earlier ones changed it.

Checks: no 5xx, status codes, content types and bodies as documented, 405 with Allow for
undeclared methods. Not run: positive_data_acceptance (well-formed but foreign cursors,
unknown providers and past dates are rightly 422) and negative_data_rejection (text is
trimmed before its length is checked, so 100 characters and a trailing space pass a
maxLength of 100).
"""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
import schemathesis
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.core import NotSet
from schemathesis.core.parameters import ParameterLocation
from schemathesis.specs.openapi.checks import (
    allow_header_conformance,
    content_type_conformance,
    is_unexpected_http_status_case,
    response_schema_conformance,
    status_code_conformance,
    unsupported_method,
)
from sqlalchemy import Connection

from api import create_app
from services.components import Components, build_components
from tests.conftest import make_settings
from tests.support.actors import booking_body, profile_body
from tests.support.tokens import FakeJwksFetcher, SigningKey, token_for

CALLERS = ("anonymous", "no_roles", "consumer", "provider", "everyone")
GROUPS = {
    "no_roles": [],
    "consumer": ["consumers"],
    "provider": ["providers"],
    "everyone": ["consumers", "providers", "admins"],
}


def status_code_is_documented(ctx: Any, response: Any, case: schemathesis.Case) -> None:
    """Stricter than status_code_conformance, which accepts anything once `default` exists.

    Probes with an undeclared method or a bad Content-Type are not the documented operation:
    unsupported_method, allow_header_conformance and not_a_server_error judge those.
    """
    if is_unexpected_http_status_case(case):
        return
    listed = {code for code in case.operation.responses.status_codes if code != "default"}
    assert str(response.status_code) in listed, (
        f"{case.operation.label} answered {response.status_code}, which is not listed in its "
        f"responses ({', '.join(sorted(listed))})"
    )


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    status_code_is_documented,
    content_type_conformance,
    response_schema_conformance,
    unsupported_method,
    allow_header_conformance,
]


@dataclass
class World:
    """The seeded objects, the callers' tokens and the connection to roll back to."""

    connection: Connection
    headers: dict[str, dict[str, str]] = field(default_factory=dict)
    ids: dict[str, list[str]] = field(default_factory=dict)
    body_fields: dict[str, Any] = field(default_factory=dict)

    def aim(self, case: schemathesis.Case) -> None:
        """Pick the caller (and maybe seeded path ids) from the case itself, deterministically.

        Derived from the generated data, not drawn separately: schema examples cannot be
        combined with extra strategies, and a shrinking case must keep meaning the same call.
        """
        digest = hashlib.blake2s(_fingerprint(case), digest_size=8).digest()
        caller = CALLERS[digest[0] % len(CALLERS)]
        case.headers = {
            name: value
            for name, value in (case.headers or {}).items()
            if name.lower() != "authorization"
        }
        case.headers.update(self.headers.get(caller, {}))
        # Two in three valid cases aim at seeded objects; invalid values stay invalid.
        if digest[1] % 3 and case.path_parameters and self._valid(case, ParameterLocation.PATH):
            for name in case.path_parameters:
                known = self.ids.get(name)
                if known:
                    case.path_parameters[name] = known[digest[2] % len(known)]
        body = case.body
        if digest[3] % 3 and isinstance(body, dict) and self._valid(case, ParameterLocation.BODY):
            for name in body.keys() & self.body_fields.keys():
                body[name] = self.body_fields[name]

    @staticmethod
    def _valid(case: schemathesis.Case, location: ParameterLocation) -> bool:
        meta = case.meta
        component = meta.components.get(location) if meta else None
        return component is None or not component.mode.is_negative

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        nested = self.connection.begin_nested()
        try:
            yield
        finally:
            nested.rollback()


def _fingerprint(case: schemathesis.Case) -> bytes:
    headers = {k: v for k, v in (case.headers or {}).items() if k.lower() != "authorization"}
    body = "<no body>" if isinstance(case.body, NotSet) else case.body
    parts = [case.operation.label, case.path_parameters, case.query, headers, body, case.media_type]
    return json.dumps(parts, default=repr, sort_keys=True).encode("utf-8", "surrogatepass")


def _ok(response: Any, status: int = 200) -> dict[str, Any]:
    assert response.status_code == status, response.get_data(as_text=True)
    return response.get_json()


@pytest.fixture
def world(
    app: Flask,
    client: FlaskClient,
    components: Components,
    connection: Connection,
    signing_key: SigningKey,
) -> World:
    world = World(connection)
    for caller, groups in GROUPS.items():
        sub = f"fuzz-{caller}"
        token = token_for(signing_key, sub, groups=groups, username=sub)
        world.headers[caller] = {"Authorization": f"Bearer {token}"}
    users = {
        caller: _ok(client.get("/v1/me", headers=world.headers[caller]))["id"] for caller in GROUPS
    }
    provider, consumer = world.headers["provider"], world.headers["consumer"]
    _ok(client.put("/v1/me/provider-profile", json=profile_body(), headers=provider))

    def book() -> str:
        body = booking_body(users["provider"])
        return _ok(client.post("/v1/bookings", json=body, headers=consumer), 201)["id"]

    def move(booking_id: str, *actions: str) -> str:
        for action in actions:
            _ok(client.post(f"/v1/bookings/{booking_id}/{action}", headers=provider))
        return booking_id

    requested = book()
    bookings = [
        requested,
        move(book(), "accept"),
        move(book(), "accept", "start"),
        move(book(), "accept", "start", "complete"),
        move(book(), "decline"),
    ]
    message = {"body": "See you at nine"}
    _ok(client.post(f"/v1/bookings/{requested}/messages", json=message, headers=consumer), 201)
    # A booking body that names these can succeed (the provider offers cleaning).
    world.body_fields = {
        "provider_id": users["provider"],
        "category": "cleaning",
        "scheduled_at": booking_body(users["provider"])["scheduled_at"],
        # A user who exists, so POST /v1/blocks gets past its 404 (a provider's notification
        # to them is still 404: nobody has a booking with themselves).
        "user_id": users["provider"],
    }
    world.ids = {
        "booking_id": bookings,
        "provider_id": [users["provider"]],
        "user_id": [users["consumer"], users["provider"], users["no_roles"]],
        "role": ["consumer", "provider", "admin"],
    }
    return world


def _app_for_the_spec() -> Flask:
    """An app that only serves /openapi.json at collection time; it never opens a connection."""
    settings = make_settings("postgresql://postgres@127.0.0.1:1/never-connected")
    return create_app(components=build_components(settings, jwks_fetcher=FakeJwksFetcher()))


# One pytest item per operation; each request goes to the test's own `app` (real database).
schema = schemathesis.openapi.from_wsgi("/openapi.json", _app_for_the_spec())


@schema.parametrize()
@settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
def test_every_operation_keeps_its_contract(
    case: schemathesis.Case, app: Flask, world: World
) -> None:
    world.aim(case)
    with world.savepoint():
        case.call_and_validate(checks=CHECKS, app=app)


def _run(app: Flask, world: World, caller: str, method: str, path: str, **data: Any) -> None:
    case = schema[path][method].Case(**data)
    case.headers = {**(case.headers or {}), **world.headers[caller]}
    with world.savepoint():
        case.call_and_validate(checks=CHECKS, app=app)


@pytest.mark.parametrize(
    "scheduled_at",
    # Valid date-times whose UTC instant is outside what Python can hold: were a 500.
    ["9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00+23:59"],
)
def test_booking_times_beyond_year_9999_in_utc_are_refused(
    app: Flask, world: World, scheduled_at: str
) -> None:
    body = {**booking_body(world.body_fields["provider_id"]), "scheduled_at": scheduled_at}
    _run(app, world, "consumer", "POST", "/v1/bookings", body=body)


def _tampered(cursor: str, key: list[Any]) -> str:
    data = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    raw = json.dumps({"s": data["s"], "k": key}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@pytest.mark.parametrize(
    "key",
    [
        ["2026-01-01T00:00:00+00:00"],  # too short: unpacking raises ValueError
        ["2026-01-01T00:00:00+00:00", "5ad0c8a6-5c1f-4cd2-9d1e-1b1c0a0b0c0d", "x"],
        ["2026-01-01T00:00:00", "5ad0c8a6-5c1f-4cd2-9d1e-1b1c0a0b0c0d"],  # naive time
    ],
)
def test_a_tampered_booking_cursor_is_a_422_not_a_500(
    app: Flask, client: FlaskClient, world: World, key: list[Any]
) -> None:
    """KNOWN DEFECT in services/marketplace/bookings.py (list_bookings), outside this
    change's remit.

    Cursors are base64url JSON {"s": scope, "k": key}; a client can decode its own and send
    back another key. list_bookings unpacks `created, after_id = decode_cursor(...)` outside
    its try block (a key of the wrong length is a ValueError -> 500), and accepts a naive
    `created` that models/base.py then refuses at bind time (StatementError -> 500). Fix: do
    the unpacking inside the try and treat a naive datetime as invalid_cursor() (422).
    """
    consumer = world.headers["consumer"]
    page = _ok(client.get("/v1/bookings?limit=1", headers=consumer))
    assert page["next_cursor"]
    cursor = _tampered(page["next_cursor"], key)
    _run(app, world, "consumer", "GET", "/v1/bookings", query={"limit": 1, "cursor": cursor})


def test_the_fuzzing_reaches_seeded_objects(client: FlaskClient, world: World) -> None:
    """The seed itself works: the callers can see what the fuzzing aims at."""
    consumer = world.headers["consumer"]
    statuses = [
        _ok(client.get(f"/v1/bookings/{booking_id}", headers=consumer))["status"]
        for booking_id in world.ids["booking_id"]
    ]
    assert statuses == ["requested", "accepted", "in_progress", "completed", "declined"]
    (provider_id,) = world.ids["provider_id"]
    assert _ok(client.get(f"/v1/providers/{provider_id}", headers=consumer))["id"] == provider_id
    for user_id in world.ids["user_id"]:
        assert uuid.UUID(user_id)
