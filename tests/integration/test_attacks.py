"""The attack suite: what a hostile but signed-in client tries, on real PostgreSQL.

Every test runs against the in-process app whose requests share one rolled-back connection;
attacks that may succeed run inside a SAVEPOINT of their own, so each sees the same world.
"Nothing changed" is checked with a fingerprint of every table's full contents (md5 of its
rows), taken on the same connection before and after the request.

The rules, per route family:

* **Object routes** (a `<uuid:...>` path argument): a caller who may not see the object gets
  `404`, exactly as for an id that does not exist, so ids cannot be probed. The exceptions are
  decided per path argument in `OBJECT_ROUTE_RULES`: routes gated by role *before* any lookup
  (`/v1/admin/users/{user_id}/...`, admins only) answer `403` to everyone without the role,
  and the provider directory (`/v1/providers/{provider_id}`) is public to every signed-in
  user by design (read-only: no route changes a provider through its id). `ROUTE_RULES`
  overrides one route whose argument means something else (`DELETE /v1/blocks/{user_id}`
  lifts the caller's own block: `404` when they have none, whoever else blocked that user).
* **Bodies** are `extra="forbid"`: a field the client may not set is a `422` naming it, and
  the request has no effect.
* **Injection and size**: never a `5xx`; refused requests change nothing; text that is
  accepted is stored verbatim (it is data, never SQL).
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import Connection, text

from api.endpoint import declared
from models import Base
from services.components import Components
from tests.conftest import BuildComponents, make_app, make_settings
from tests.support.actors import Actor, booking_body, profile_body
from tests.support.bookings import booking_in, ensure_profile
from tests.support.fakes import FakeStore

TABLES = sorted(t.name for t in Base.metadata.sorted_tables)


def fingerprint(connection: Connection) -> dict[str, str]:
    """Each table's row count and an md5 of all its rows."""
    sql = " UNION ALL ".join(
        f"SELECT '{t}', count(*)::text || ':' || "
        f"md5(coalesce(string_agg(x::text, '|' ORDER BY x::text), '')) FROM {t} x"
        for t in TABLES
    )
    return {name: value for name, value in connection.execute(text(sql))}


def changed(before: dict[str, str], after: dict[str, str]) -> list[str]:
    return [t for t in TABLES if before[t] != after[t]]


@dataclass
class World:
    connection: Connection
    client: FlaskClient
    consumer: Actor
    provider: Actor
    admin: Actor
    stranger: Actor
    ids: dict[str, str] = field(default_factory=dict)

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        nested = self.connection.begin_nested()
        try:
            yield
        finally:
            nested.rollback()

    def actor(self, name: str) -> Actor:
        return getattr(self, name)  # type: ignore[no-any-return]


def _ok(response: Any, status: int = 200) -> dict[str, Any]:
    assert response.status_code == status, response.get_data(as_text=True)
    return response.get_json()  # type: ignore[no-any-return]


@pytest.fixture
def world(actors, components: Components, connection: Connection, client: FlaskClient) -> World:  # type: ignore[no-untyped-def]
    consumer, provider, admin = actors("consumer"), actors("provider"), actors("admin")
    # Holding every role but admin: roles alone never make someone a party to an object.
    stranger = actors("consumer", "provider")
    for someone in (consumer, provider, admin, stranger):
        assert someone.id
    ensure_profile(provider)
    world = World(connection, client, consumer, provider, admin, stranger)
    requested = booking_in("requested", consumer, provider)
    accepted = booking_in("accepted", consumer, provider)  # notifies the consumer
    completed = booking_in("completed", consumer, provider)
    _ok(consumer.post(f"/v1/bookings/{requested}/messages", json={"body": "Hi"}), 201)
    upload = {"purpose": "avatar", "content_type": "image/png", "size_bytes": 10}
    attachment = {
        "purpose": "booking_attachment",
        "content_type": "image/png",
        "size_bytes": 10,
        "booking_id": accepted,
    }
    device = {"platform": "ios", "token": "0123456789abcdef", "app_version": "1.0"}
    notes = _ok(consumer.get("/v1/notifications"))["items"]
    assert notes, "the accepted booking notified its consumer"
    world.ids = {
        "requested": requested,
        "accepted": accepted,
        "completed": completed,
        "upload_id": _ok(consumer.post("/v1/uploads", json=upload), 201)["id"],
        "attachment_id": _ok(consumer.post("/v1/uploads", json=attachment), 201)["id"],
        "device_id": _ok(consumer.post("/v1/devices", json=device))["id"],
        "export_id": _ok(consumer.post("/v1/me/exports"), 202)["id"],
        "notification_id": notes[0]["id"],
        "provider_id": provider.id,
        "user_id": consumer.id,
    }
    # The consumer's report of the provider's profile: only admins may resolve it.
    reported = {"target_type": "provider_profile", "target_id": provider.id, "reason": "spam"}
    world.ids["report_id"] = _ok(consumer.post("/v1/reports", json=reported), 201)["id"]
    # A deletion request from the public web page: admins alone may see or close it.
    sent = client.post("/account/delete", data={"email": "someone@example.com"})
    assert sent.status_code == 200, sent.get_data(as_text=True)
    world.ids["request_id"] = _ok(admin.get("/v1/admin/deletion-requests"))["items"][0]["id"]
    return world


# --------------------------------------------------------------------------------------------
# BOLA: every object route, for a stranger
# --------------------------------------------------------------------------------------------

# Path argument -> what a signed-in stranger (consumer + provider roles, no admin) gets.
OBJECT_ROUTE_RULES = {
    "booking_id": 404,  # parties and admins only; checked before roles and state
    "upload_id": 404,  # the owner (and a booking attachment's other party)
    "device_id": 404,  # the owner
    "notification_id": 404,  # the recipient
    "export_id": 404,  # the owner's personal data export
    "user_id": 403,  # /v1/admin/...: gated on the admin role before any lookup
    "request_id": 403,  # /v1/admin/deletion-requests/...: admins only, before any lookup
    "report_id": 403,  # /v1/admin/reports/...: admins only, before any lookup
    "provider_id": 200,  # the public provider directory: read-only for every signed-in user
}
# Routes whose argument means something else there than in OBJECT_ROUTE_RULES.
ROUTE_RULES = {
    # The caller's own block of that user: someone else's block of them is "no such block".
    "/v1/blocks/<uuid:user_id>": 404,
}
STRANGER_BODIES = {
    "reschedule": {"starts_at": "2030-01-07T10:00:00Z"},
    "cancel": {"reason": "Plans changed"},
    "decline": {"reason": "Busy"},
    "messages": {"body": "Hello"},
    "review": {"rating": 5, "comment": "Great"},
    "roles": {"role": "admin"},
}
UUID_ARGUMENT = re.compile(r"<uuid:(\w+)>")
# Routes whose credential is a token in the query, not the caller: the links inside a data
# export. Tested below for a stranger and in test_data_exports for every wrong token.
TOKEN_ROUTES = {"/exports/<uuid:export_id>/files/<uuid:upload_id>"}


def object_routes(app: Flask) -> list[tuple[str, str, str]]:
    """(method, rule, uuid argument) of every route that takes an object id."""
    routes = []
    for rule in app.url_map.iter_rules():
        names = UUID_ARGUMENT.findall(rule.rule)
        if names and rule.rule not in TOKEN_ROUTES:
            assert len(names) == 1, rule.rule
            for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
                routes.append((method, rule.rule, names[0]))
    return sorted(routes)


def fill(rule: str, argument: str, value: str) -> str:
    return rule.replace(f"<uuid:{argument}>", value).replace("<role>", "consumer")


def call(actor: Actor, method: str, path: str) -> Any:
    body = STRANGER_BODIES.get(path.rsplit("/", 1)[-1])
    kwargs = {"json": body} if body is not None and method != "GET" else {}
    return actor.client.open(path, method=method, headers=actor.headers(), **kwargs)


def test_every_object_route_has_a_rule(app: Flask) -> None:
    routes = object_routes(app)
    assert {argument for _, _, argument in routes} == set(OBJECT_ROUTE_RULES)
    assert len(routes) >= 17


def test_a_stranger_cannot_reach_any_object(app: Flask, world: World) -> None:
    # A block of the consumer (ids["user_id"]) that is not the stranger's to lift.
    admins_block = _ok(world.admin.post("/v1/blocks", json={"user_id": world.consumer.id}), 201)
    before = fingerprint(world.connection)
    ids = {**world.ids, "booking_id": world.ids["accepted"]}
    for method, rule, argument in object_routes(app):
        targets = [ids[argument]]
        if argument == "upload_id":
            targets.append(world.ids["attachment_id"])
        if argument == "booking_id":
            targets += [world.ids["requested"], world.ids["completed"]]
        for target in targets:
            response = call(world.stranger, method, fill(rule, argument, target))
            expected = ROUTE_RULES.get(rule, OBJECT_ROUTE_RULES[argument])
            label = (method, rule, response.get_data(as_text=True))
            assert response.status_code == expected, label
            if expected == 404:
                # Indistinguishable from an id that does not exist: nothing to probe.
                missing = call(world.stranger, method, fill(rule, argument, str(uuid.uuid4())))
                assert missing.status_code == 404, (method, rule)
                assert response.get_json()["type"] == missing.get_json()["type"]
                assert response.get_json()["detail"] == missing.get_json()["detail"]
    assert changed(before, fingerprint(world.connection)) == []
    # The owners still have everything.
    consumer = world.consumer
    assert consumer.get(f"/v1/uploads/{world.ids['upload_id']}").status_code == 200
    assert world.provider.get(f"/v1/uploads/{world.ids['attachment_id']}").status_code == 200
    devices = _ok(consumer.get("/v1/devices"))["items"]
    assert [d["id"] for d in devices] == [world.ids["device_id"]]
    notes = _ok(consumer.get("/v1/notifications"))["items"]
    note = next(n for n in notes if n["id"] == world.ids["notification_id"])
    assert note["read"] is False
    assert _ok(consumer.get(f"/v1/bookings/{world.ids['accepted']}"))["status"] == "accepted"
    assert _ok(world.admin.get("/v1/blocks"))["items"] == [admins_block]


def test_a_stranger_cannot_open_a_file_through_an_export_link(app: Flask, world: World) -> None:
    assert {rule.rule for rule in app.url_map.iter_rules()} >= TOKEN_ROUTES
    path = f"/exports/{world.ids['export_id']}/files/{world.ids['upload_id']}"
    for actor in (world.stranger, world.consumer):  # the owner too: the token is the key
        guessed = actor.client.get(f"{path}?token=guess", headers=actor.headers())
        assert guessed.status_code == 404, guessed.get_data(as_text=True)
        assert actor.client.get(path, headers=actor.headers()).status_code == 422


def test_a_stranger_cannot_report_what_they_cannot_see(world: World) -> None:
    """POST /v1/reports names its object in the body: everything of the consumer's and of
    their bookings with the provider is 404 for the stranger, like an id that does not exist."""
    before = fingerprint(world.connection)
    hidden = [
        ("user", world.ids["user_id"]),
        ("upload", world.ids["upload_id"]),
        ("upload", world.ids["attachment_id"]),
        ("review", world.ids["completed"]),
    ]
    message = _ok(world.consumer.get(f"/v1/bookings/{world.ids['requested']}/messages"))
    hidden.append(("message", message["items"][0]["id"]))
    for target_type, target_id in [*hidden, ("message", str(uuid.uuid4()))]:
        body = {"target_type": target_type, "target_id": target_id, "reason": "spam"}
        response = world.stranger.post("/v1/reports", json=body)
        assert response.status_code == 404, (target_type, response.get_data(as_text=True))
        assert response.get_json()["detail"] == "No such object to report."
    assert changed(before, fingerprint(world.connection)) == []


def test_the_public_provider_entry_leaks_nothing_private(world: World) -> None:
    entry = _ok(world.stranger.get(f"/v1/providers/{world.ids['provider_id']}"))
    assert not {"email", "phone", "roles", "owner_id"} & entry.keys()


# Routes that take no token, and why that is safe. Each answers the same to everyone (a
# token changes nothing), or is reached by a secret of its own.
ANONYMOUS_ROUTES = {
    "/healthz": "liveness for the load balancer",
    "/readyz": "readiness for the load balancer",
    "/v1/config": "the apps' configuration: the same for every caller",
    "/v1/booking-process": "the booking state machine and timer settings: public rules",
    "/exports/<uuid:export_id>/files/<uuid:upload_id>": "its link token is the secret",
    "/account/delete": "the web form anyone may file (rate limited per address)",
}
SAME_FOR_EVERYONE = ("/healthz", "/v1/config", "/v1/booking-process")


def test_every_route_without_a_token_is_known(app: Flask) -> None:
    anonymous = {
        rule.rule
        for rule in app.url_map.iter_rules()
        if (spec := declared(app.view_functions[rule.endpoint])) is not None and not spec.auth
    }
    assert anonymous <= set(ANONYMOUS_ROUTES), anonymous - set(ANONYMOUS_ROUTES)
    assert set(SAME_FOR_EVERYONE) <= anonymous


def test_public_answers_are_the_same_for_everyone(world: World) -> None:
    """No caller learns more (or other) from a public route than an anonymous one, a forged
    token is no key to anything, and asking changes nothing."""
    before = fingerprint(world.connection)
    forged = {"Authorization": "Bearer not.a.token"}
    for path in SAME_FOR_EVERYONE:
        anonymous = world.client.get(path)
        assert anonymous.status_code == 200, (path, anonymous.get_data(as_text=True))
        for actor in (world.consumer, world.stranger, world.admin):
            assert _ok(actor.get(path)) == anonymous.get_json(), (path, actor)
        assert _ok(world.client.get(path, headers=forged)) == anonymous.get_json(), path
        refused = world.client.post(path, json={"states": []})
        assert refused.status_code == 405, (path, refused.get_data(as_text=True))
    assert changed(before, fingerprint(world.connection)) == []


# --------------------------------------------------------------------------------------------
# Mass assignment
# --------------------------------------------------------------------------------------------

PROTECTED = (
    "id",
    "status",
    "consumer_id",
    "provider_id",
    "user_id",
    "owner_id",
    "sender_id",
    "rating_average",
    "rating_count",
    "roles",
    "role",
    "active",
    "enabled",
    "read",
    "key",
    "email",
    "created_at",
    "updated_at",
    "completed_at",
    "sync_count",
    "deleted",
    "accepted",
)


@dataclass(frozen=True)
class BodyCase:
    caller: str
    method: str
    path: Callable[[dict[str, str]], str]
    body: Callable[[World], dict[str, Any]]

    def label(self, world: World) -> str:
        return f"{self.method} {self.path(world.ids)}"


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


BODY_CASES = {
    "patch_me": BodyCase(
        "consumer", "PATCH", lambda i: "/v1/me", lambda w: {"display_name": "Ada", "phone": None}
    ),
    "put_profile": BodyCase(
        "provider", "PUT", lambda i: "/v1/me/provider-profile", lambda w: profile_body()
    ),
    "create_booking": BodyCase(
        "consumer", "POST", lambda i: "/v1/bookings", lambda w: booking_body(w.provider.id)
    ),
    "put_availability": BodyCase(
        "provider",
        "PUT",
        lambda i: "/v1/me/availability",
        lambda w: {
            "time_zone": "Europe/Berlin",
            "weekly": [{"weekday": 0, "start": "09:00", "end": "17:00"}],
            "exceptions": [
                {"date": "2026-12-24", "intervals": [{"start": "10:00", "end": "12:00"}]}
            ],
        },
    ),
    "decline": BodyCase(
        "provider",
        "POST",
        lambda i: f"/v1/bookings/{i['requested']}/decline",
        lambda w: {"reason": "Busy"},
    ),
    "cancel": BodyCase(
        "consumer",
        "POST",
        lambda i: f"/v1/bookings/{i['requested']}/cancel",
        lambda w: {"reason": "Plans changed"},
    ),
    "reschedule": BodyCase(
        "consumer",
        "POST",
        lambda i: f"/v1/bookings/{i['accepted']}/reschedule",
        lambda w: {
            "starts_at": (datetime.now(UTC) + timedelta(days=5)).isoformat(),
            "duration_minutes": 60,
        },
    ),
    "message": BodyCase(
        "consumer",
        "POST",
        lambda i: f"/v1/bookings/{i['accepted']}/messages",
        lambda w: {"body": "On my way"},
    ),
    "review": BodyCase(
        "consumer",
        "POST",
        lambda i: f"/v1/bookings/{i['completed']}/review",
        lambda w: {"rating": 4, "comment": "Good"},
    ),
    "upload": BodyCase(
        "consumer",
        "POST",
        lambda i: "/v1/uploads",
        lambda w: {
            "purpose": "avatar",
            "content_type": "image/png",
            "size_bytes": 10,
            "filename": "me.png",
        },
    ),
    "device": BodyCase(
        "consumer",
        "POST",
        lambda i: "/v1/devices",
        lambda w: {
            "platform": "android",
            "token": "fcm-token-abcdef",
            "app_version": "2.0",
            "locale": "de-DE",
        },
    ),
    "notification": BodyCase(
        "provider",
        "POST",
        lambda i: "/v1/notifications",
        lambda w: {
            "user_id": w.consumer.id,
            "title": "Late",
            "body": "Ten minutes",
            "data": {"k": "v"},
        },
    ),
    "sync": BodyCase(
        "consumer",
        "POST",
        lambda i: "/v1/sync/datasets/prefs",
        lambda w: {
            "device_id": "phone-1",
            "records": [{"op": "replace", "key": "theme", "value": "dark", "sync_count": 0}],
        },
    ),
    "block": BodyCase(
        "consumer", "POST", lambda i: "/v1/blocks", lambda w: {"user_id": w.stranger.id}
    ),
    "report": BodyCase(
        "provider",
        "POST",
        lambda i: "/v1/reports",
        lambda w: {"target_type": "user", "target_id": w.consumer.id, "reason": "spam"},
    ),
    "resolve_report": BodyCase(
        "admin",
        "POST",
        lambda i: f"/v1/admin/reports/{i['report_id']}/resolve",
        lambda w: {"action": "dismiss", "note": "Fine"},
    ),
    "grant_role": BodyCase(
        "admin",
        "POST",
        lambda i: f"/v1/admin/users/{i['user_id']}/roles",
        lambda w: {"role": "provider"},
    ),
    "close_deletion_request": BodyCase(
        "admin",
        "POST",
        lambda i: f"/v1/admin/deletion-requests/{i['request_id']}/close",
        lambda w: {"note": "Deleted after the owner confirmed"},
    ),
    "events": BodyCase(
        "consumer",
        "POST",
        lambda i: "/v1/events",
        lambda w: {
            "events": [
                {
                    "name": "screen_view",
                    "timestamp": _now(),
                    "session_id": "s-1",
                    "attributes": {"screen": "home"},
                    "metrics": {"ms": 12},
                    "app_version": "2.0",
                    "platform": "ios",
                }
            ]
        },
    ),
}


def send(world: World, case: BodyCase, body: Any, **headers: str) -> Any:
    """The body as raw JSON (ASCII escapes: lone surrogates and NULs survive the trip)."""
    data = body if isinstance(body, (str, bytes)) else json.dumps(body)
    actor = world.actor(case.caller)
    return world.client.open(
        case.path(world.ids),
        method=case.method,
        data=data,
        content_type="application/json",
        headers=actor.headers(**headers),
    )


def test_every_body_operation_has_a_case(app: Flask) -> None:
    spec = app.test_client().get("/openapi.json").get_json()
    with_body = {
        (method.upper(), path)
        for path, item in spec["paths"].items()
        for method, op in item.items()
        if isinstance(op, dict) and "requestBody" in op
    }
    covered = {
        (c.method, c.path({k: "{}" for k in _ID_NAMES}).replace("/prefs", "/{}"))
        for c in BODY_CASES.values()
    }
    spec_paths = {(m, re.sub(r"\{[^}]+\}", "{}", p)) for m, p in with_body}
    assert spec_paths - covered <= {
        # Same schemas as cases above (state changes with an optional reason / no body).
        ("POST", "/v1/bookings/{}/accept"),
        ("POST", "/v1/bookings/{}/start"),
        ("POST", "/v1/bookings/{}/complete"),
    }, spec_paths - covered


_ID_NAMES = ("requested", "accepted", "completed", "user_id", "report_id", "request_id")


def _resolve(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        schema = spec["components"]["schemas"][name]
    return schema


def _open_objects(spec: dict[str, Any], schema: Any, where: str, seen: set[str]) -> list[str]:
    """Object schemas with named properties that still accept unknown ones."""
    if isinstance(schema, list):
        return [x for s in schema for x in _open_objects(spec, s, where, seen)]
    if not isinstance(schema, dict):
        return []
    if "$ref" in schema:
        if schema["$ref"] in seen:
            return []
        seen.add(schema["$ref"])
        return _open_objects(spec, _resolve(spec, schema), schema["$ref"], seen)
    found = []
    if "properties" in schema and schema.get("additionalProperties") is not False:
        found.append(where)
    for key, value in schema.items():
        if key != "examples":
            found += _open_objects(spec, value, f"{where}.{key}", seen)
    return found


def test_every_request_body_schema_forbids_unknown_fields(app: Flask) -> None:
    spec = app.test_client().get("/openapi.json").get_json()
    open_ones = []
    for path, item in spec["paths"].items():
        for method, op in item.items():
            if isinstance(op, dict) and "requestBody" in op:
                for media in op["requestBody"]["content"].values():
                    open_ones += _open_objects(spec, media["schema"], f"{method} {path}", set())
    assert open_ones == []


@pytest.mark.parametrize("name", sorted(BODY_CASES))
def test_protected_fields_cannot_be_mass_assigned(world: World, name: str) -> None:
    case = BODY_CASES[name]
    base = case.body(world)
    # Where an operation takes lists of objects, the objects inside are attacked too.
    nests = {"sync": ("records", 0), "events": ("events", 0)}
    with world.savepoint():
        valid = send(world, case, base)
        assert valid.status_code < 300, (name, valid.get_data(as_text=True))
    for protected in PROTECTED:
        targets: list[tuple[Any, str]] = []
        if protected not in base:
            targets.append(((), protected))
        if name in nests and protected not in base[nests[name][0]][0]:
            targets.append((nests[name], protected))
        if "location" in base and protected not in base["location"]:
            targets.append((("location",), protected))
        for where, field_name in targets:
            body = json.loads(json.dumps(base))
            node = body
            for step in where:
                node = node[step]
            node[field_name] = _plausible(field_name, world)
            with world.savepoint():
                before = fingerprint(world.connection)
                response = send(world, case, body)
                after = fingerprint(world.connection)
            label = (name, where, field_name, response.get_data(as_text=True)[:300])
            if name == "events" and where:
                # Each event is validated on its own: a bad one is rejected, not stored.
                answer = response.get_json()
                assert response.status_code == 202, label
                assert answer["accepted"] == 0, label
                assert answer["rejected"][0]["errors"][0]["code"] == "extra_forbidden", label
                continue
            assert response.status_code == 422, label
            errors = response.get_json()["errors"]
            dotted = ".".join([*(str(s) for s in where), field_name])
            assert {"field": dotted, "code": "extra_forbidden"} in [
                {"field": e["field"], "code": e["code"]} for e in errors
            ], label
            assert changed(before, after) == [], label


def _plausible(field_name: str, world: World) -> Any:
    """A value an attacker would hope for, of the right type."""
    values: dict[str, Any] = {
        "status": "completed",
        "rating_average": 5.0,
        "rating_count": 1000,
        "roles": ["admin"],
        "role": "admin",
        "active": True,
        "enabled": True,
        "read": True,
        "deleted": False,
        "sync_count": 99,
        "accepted": 100,
        "key": "users/someone-else/avatar/x",
        "email": "admin@example.com",
    }
    if field_name in values:
        return values[field_name]
    if field_name.endswith("_at"):
        return "2020-01-01T00:00:00Z"
    return world.stranger.id  # ids: someone else's


# --------------------------------------------------------------------------------------------
# SQL and JSON injection
# --------------------------------------------------------------------------------------------

FULLWIDTH = "\uff53\uff45\uff4c\uff45\uff43\uff54\uff0a"  # "select*" in fullwidth forms
INJECTIONS = [
    "' OR 1=1 --",
    '"; DROP TABLE users; --',
    "1'; SELECT pg_sleep(5); --",
    "%' UNION SELECT email FROM users --",
    '{"$gt": ""}',
    "a\x00b",
    "\\x00\\u0000%00",
    "\ud800",  # a lone surrogate: valid JSON escape, not encodable as UTF-8
    "\u202egnp.exe\u200b\ufeff",
    FULLWIDTH,
    "𝕒𝕕𝕞𝕚𝕟 👩\u200d💻 e\u0301",
    "x" * 10_000,
]
JSON_INJECTIONS: list[Any] = [{"$gt": ""}, ["' OR 1=1 --"], None, 1e308, True]


def string_leaves(value: Any, where: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    if isinstance(value, str):
        return [where]
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in string_leaves(v, (*where, k))]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in string_leaves(v, (*where, i))]
    return []


def replaced(body: Any, where: tuple[Any, ...], value: Any) -> Any:
    body = json.loads(json.dumps(body))
    node = body
    for step in where[:-1]:
        node = node[step]
    node[where[-1]] = value
    return body


def assert_intact(connection: Connection) -> None:
    present = set(
        connection.execute(
            text("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")
        ).scalars()
    )
    assert set(TABLES) <= present


@pytest.mark.parametrize("name", sorted(BODY_CASES))
def test_injection_in_every_body_string(world: World, name: str) -> None:
    case = BODY_CASES[name]
    base = case.body(world)
    leaves = string_leaves(base)
    assert leaves, name
    for where in leaves:
        for payload in [*INJECTIONS, *JSON_INJECTIONS]:
            body = replaced(base, where, payload)
            with world.savepoint():
                before = fingerprint(world.connection)
                response = send(world, case, body)
                after = fingerprint(world.connection)
            label = (name, where, repr(payload)[:40], response.get_data(as_text=True)[:300])
            assert response.status_code < 500, label
            if response.status_code >= 400:
                assert changed(before, after) == [], label
    assert_intact(world.connection)


@pytest.mark.parametrize("payload", ["' OR 1=1 --", '"; DROP TABLE users; --', FULLWIDTH])
def test_accepted_text_is_stored_verbatim(world: World, payload: str) -> None:
    booking = world.ids["accepted"]
    _ok(world.consumer.post(f"/v1/bookings/{booking}/messages", json={"body": payload}), 201)
    items = _ok(world.provider.get(f"/v1/bookings/{booking}/messages"))["items"]
    assert items[-1]["body"] == payload
    me = world.consumer
    _ok(me.client.patch("/v1/me", json={"display_name": payload}, headers=me.headers()))
    assert _ok(world.consumer.get("/v1/me"))["display_name"] == payload
    # Free-form JSON keeps even a NUL, which PostgreSQL's text types refuse.
    value = {"note": payload + "\x00", payload: [payload]}
    record = {"op": "replace", "key": payload, "value": value, "sync_count": 0}
    _ok(world.consumer.post("/v1/sync/datasets/prefs", json={"records": [record]}))
    (stored,) = _ok(world.consumer.get("/v1/sync/datasets/prefs"))["records"]
    assert (stored["key"], stored["value"]) == (payload, value)
    assert_intact(world.connection)


def query_operations(app: Flask) -> list[tuple[str, str, list[str]]]:
    spec = app.test_client().get("/openapi.json").get_json()
    found = []
    for path, item in spec["paths"].items():
        for method, op in item.items():
            if not isinstance(op, dict):
                continue
            names = [p["name"] for p in op.get("parameters", []) if p["in"] == "query"]
            if names:
                found.append((method.upper(), path, names))
    return found


def fill_spec_path(path: str, world: World) -> str:
    ids = {**world.ids, "booking_id": world.ids["accepted"], "name": "prefs", "role": "provider"}
    return re.sub(r"\{(\w+)\}", lambda m: ids[m.group(1)], path)


RAW_QUERY_VALUES = ["%00", "%ED%A0%80", "%FF%FE", "%27%20OR%201%3D1--", "a&a=b", "%5B%5D"]


def test_injection_in_every_query_parameter(app: Flask, world: World) -> None:
    operations = query_operations(app)
    assert {p for _, p, _ in operations} >= {
        "/v1/providers",
        "/v1/bookings",
        "/v1/notifications",
        "/v1/admin/analytics/summary",
    }
    for method, path, names in operations:
        actor = world.admin if "/admin/" in path else world.consumer
        url = fill_spec_path(path, world)
        for name in names:
            values = [quote(p.encode("utf-8", "surrogatepass"), safe="") for p in INJECTIONS]
            for value in [*values, *RAW_QUERY_VALUES]:
                before = fingerprint(world.connection)
                response = actor.client.open(
                    f"{url}?{name}={value}", method=method, headers=actor.headers()
                )
                label = (method, path, name, value[:40], response.get_data(as_text=True)[:300])
                assert response.status_code < 500, label
                assert changed(before, fingerprint(world.connection)) == [], label
    assert_intact(world.connection)


def test_injection_in_text_path_segments(world: World) -> None:
    before = fingerprint(world.connection)
    for payload in [*INJECTIONS, "..", "../../etc/passwd", "..%2f..%2f"]:
        segment = quote(payload.encode("utf-8", "surrogatepass"), safe="")
        for method in ("GET", "DELETE"):
            response = world.consumer.client.open(
                f"/v1/sync/datasets/{segment}", method=method, headers=world.consumer.headers()
            )
            assert response.status_code < 500, (method, payload[:40], response.status_code)
        response = world.admin.client.open(
            f"/v1/admin/users/{world.ids['user_id']}/roles/{segment}",
            method="DELETE",
            headers=world.admin.headers(),
        )
        assert response.status_code in (404, 422), (payload[:40], response.status_code)
    assert changed(before, fingerprint(world.connection)) == []


# --------------------------------------------------------------------------------------------
# Oversized and deeply nested bodies
# --------------------------------------------------------------------------------------------

NESTING = 100_000


def nested_bodies(base: dict[str, Any]) -> dict[str, str]:
    arrays = "[" * NESTING + "]" * NESTING
    objects = '{"a":' * NESTING + "1" + "}" * NESTING
    first = string_leaves(base)[0]
    inside = json.dumps(replaced(base, first, "__NEST__")).replace('"__NEST__"', arrays)
    return {"arrays": arrays, "objects": objects, "inside a field": inside}


@pytest.mark.parametrize("name", sorted(BODY_CASES))
def test_deeply_nested_and_oversized_bodies(world: World, name: str) -> None:
    case = BODY_CASES[name]
    before = fingerprint(world.connection)
    for kind, raw in nested_bodies(case.body(world)).items():
        assert len(raw) < 1_048_576  # within MAX_BODY_BYTES: the parser itself must cope
        response = send(world, case, raw)
        assert response.status_code in (400, 413, 422), (kind, response.get_data(as_text=True))
    huge = replaced(case.body(world), string_leaves(case.body(world))[0], "x" * 1_100_000)
    response = send(world, case, huge)
    assert response.status_code == 413, response.get_data(as_text=True)[:300]
    assert changed(before, fingerprint(world.connection)) == []


@pytest.mark.parametrize("depth", [10, 100, 150, 199, 200, 254, 255, 300, 1000])
def test_nested_free_form_json_values(world: World, depth: int) -> None:
    """Free-form values (sync records, event attributes) nest as deep as the parser allows."""
    value = "[" * depth + "]" * depth
    base = BODY_CASES["sync"].body(world)
    raw = json.dumps(replaced(base, ("records", 0, "value"), "__V__")).replace('"__V__"', value)
    with world.savepoint():
        response = send(world, BODY_CASES["sync"], raw)
    assert response.status_code < 500, response.get_data(as_text=True)[:300]
    raw = json.dumps(BODY_CASES["events"].body(world)).replace('"home"', value)
    with world.savepoint():
        response = send(world, BODY_CASES["events"], raw)
    assert response.status_code < 500, response.get_data(as_text=True)[:300]


# --------------------------------------------------------------------------------------------
# Path traversal in upload file names
# --------------------------------------------------------------------------------------------

TRAVERSALS = [
    "../../etc/passwd",
    "..\\..\\boot.ini",
    "..%2f..%2fetc%2fpasswd",
    "%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "..%5c..%5cboot.ini",
    "..%c0%af..%c0%afetc",
    "....//....//etc/passwd",
    "..",
    ".",
    "/etc/passwd",
    "C:\\Windows\\win.ini",
    "..\u2215..\u2215etc\u2215passwd",
    "..\uff0f..\uff0fetc\uff0fpasswd",
    "photo.png\x00.exe",
    "photo.png/../../x",
]


def test_path_traversal_in_upload_file_names(world: World, store: FakeStore) -> None:
    owner = world.consumer.id
    key_shape = re.compile(rf"^users/{owner}/avatar/[0-9a-f-]{{36}}$")
    for name in TRAVERSALS:
        body = {"purpose": "avatar", "content_type": "image/png", "size_bytes": 10}
        with world.savepoint():
            before = fingerprint(world.connection)
            response = world.consumer.post("/v1/uploads", json={**body, "filename": name})
            after = fingerprint(world.connection)
        label = (name, response.get_data(as_text=True)[:300])
        assert response.status_code in (201, 422), label
        if response.status_code == 422:
            assert response.get_json()["errors"][0]["field"] == "filename", label
            assert changed(before, after) == [], label
            continue
        # Accepted only as a harmless display name: the key is ours alone.
        answer = response.get_json()
        key = answer["upload"]["fields"]["key"]
        assert key_shape.match(key), label
        assert answer["filename"] == name
        assert "/" not in name and "\\" not in name and name not in (".", "..")
    assert not store.objects


# --------------------------------------------------------------------------------------------
# Idempotency-Key: replays and other users' keys
# --------------------------------------------------------------------------------------------


def test_idempotency_keys_are_per_user(actors, world: World) -> None:  # type: ignore[no-untyped-def]
    other = actors("consumer")
    key = {"Idempotency-Key": "shared-key-0001"}
    body = booking_body(world.provider.id)
    first = world.consumer.post("/v1/bookings", json=body, headers=key)
    replay = world.consumer.post("/v1/bookings", json=body, headers=key)
    assert first.status_code == replay.status_code == 201
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert replay.get_data() == first.get_data()
    # B sends A's key with A's very payload: B's own, fresh booking.
    theirs = other.post("/v1/bookings", json=body, headers=key)
    assert theirs.status_code == 201, theirs.get_data(as_text=True)
    assert "Idempotent-Replayed" not in theirs.headers
    assert theirs.get_json()["id"] != first.get_json()["id"]
    assert theirs.get_json()["consumer_id"] == other.id
    # From now on the key is B's too, bound to B's own first request.
    again = other.post("/v1/bookings", json=body, headers=key)
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.get_json()["id"] == theirs.get_json()["id"]
    # A still gets A's own stored answer.
    assert world.consumer.post("/v1/bookings", json=body, headers=key).get_data() == (
        first.get_data()
    )


def test_a_stranger_replaying_a_partys_key_gets_no_stored_response(world: World) -> None:
    key = {"Idempotency-Key": "message-key-0001"}
    path = f"/v1/bookings/{world.ids['accepted']}/messages"
    first = world.consumer.post(path, json={"body": "Gate code 1234"}, headers=key)
    assert first.status_code == 201
    stolen = world.stranger.post(path, json={"body": "Gate code 1234"}, headers=key)
    assert stolen.status_code == 404, stolen.get_data(as_text=True)
    assert "Idempotent-Replayed" not in stolen.headers
    # Retried, the stranger gets their own stored refusal back, never the party's 201.
    again = world.stranger.post(path, json={"body": "Gate code 1234"}, headers=key)
    assert again.status_code == 404
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.get_data() == stolen.get_data()
    assert "Gate code" not in again.get_data(as_text=True)
    # The key used on another route is refused for its owner, never replayed there.
    other = world.consumer.post(
        f"/v1/bookings/{world.ids['requested']}/messages", json={"body": "x"}, headers=key
    )
    assert other.status_code == 422
    assert other.get_json()["type"] == "/problems/idempotency-key-reused"


# --------------------------------------------------------------------------------------------
# Forged sqsd requests on /internal/tasks/*
# --------------------------------------------------------------------------------------------

TASKS = ("export", "outbox-drain", "uploads-cleanup", "purge-idempotency-keys")
SQSD = {"User-Agent": "aws-sqsd/3.0.4", "X-Aws-Sqsd-Taskname": "nightly", "X-Aws-Sqsd-Msgid": "1"}


def _app(build: BuildComponents, database_url: str, **overrides: str) -> Flask:
    return make_app(build(make_settings(database_url, **overrides)))


@pytest.mark.parametrize(
    ("remote", "extra"),
    [
        ("10.0.3.7", {}),  # another host in the VPC
        ("203.0.113.9", {}),  # the internet
        ("203.0.113.9", {"X-Forwarded-For": "127.0.0.1"}),  # forged forwarding
        ("127.0.0.1", {"X-Forwarded-For": "203.0.113.9"}),  # relayed by nginx from outside
        ("127.0.0.1", {"X-Forwarded-For": "127.0.0.1, 198.51.100.4"}),
        ("::ffff:10.0.0.1", {}),
        ("", {}),
    ],
)
def test_forged_sqsd_requests_are_refused(
    build: BuildComponents, database_url: str, connection: Connection, remote: str, extra: Any
) -> None:
    app = _app(build, database_url, WORKER_TASKS_ENABLED="true")
    client = app.test_client()
    before = fingerprint(connection)
    for name in TASKS:
        response = client.post(
            f"/internal/tasks/{name}",
            headers={**SQSD, **extra},
            environ_base={"REMOTE_ADDR": remote},
        )
        assert response.status_code == 403, (name, remote, extra)
        assert response.mimetype == "application/problem+json"
    assert changed(before, fingerprint(connection)) == []


def test_sqsd_headers_on_a_web_server_find_nothing(
    build: BuildComponents, database_url: str
) -> None:
    client = _app(build, database_url).test_client()
    for remote in ("127.0.0.1", "203.0.113.9"):
        for name in TASKS:
            response = client.post(
                f"/internal/tasks/{name}", headers=SQSD, environ_base={"REMOTE_ADDR": remote}
            )
            assert response.status_code == 404, (name, remote)


def test_the_change_feed_is_the_callers_own(world: World) -> None:
    """GET /v1/changes has no id to probe: it reads the caller's own feed. The stranger sees
    none of the consumer's and provider's changes, whatever the query, and nothing changes."""
    assert _ok(world.consumer.get("/v1/changes"))["items"], "the world wrote changes"
    before = fingerprint(world.connection)
    assert _ok(world.stranger.get("/v1/changes")) == {
        "items": [],
        "next_cursor": None,
        "last_seq": 0,
    }
    for after in ("0 OR 1=1", "1;DROP TABLE changes", "-1", str(2**63), "1e3", "\u0661"):
        response = world.stranger.get("/v1/changes", query_string={"after": after})
        assert response.status_code == 422, (after, response.get_data(as_text=True))
    for query in ({"user_id": world.consumer.id}, {"after": 0, "limit": 100, "x": 1}):
        assert world.stranger.get("/v1/changes", query_string=query).status_code == 422
    assert changed(before, fingerprint(world.connection)) == []
