"""Text one person types and another person sees holds printable characters only.

Refused in every such field: controls (C0, DEL, C1 such as U+0085 and U+009B), format
characters (zero-width, bidi overrides and isolates, BOM, tags...), U+2028 and U+2029,
private-use, surrogate and unassigned code points. One-line fields also refuse newlines and
tabs; multi-line fields (bio, notes, reasons, messages, comments) keep \\n, \\r and \\t.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from flask.testing import FlaskClient
from pydantic import TypeAdapter, ValidationError
from werkzeug.test import TestResponse

from api.schemas.common import Line, Text
from tests.support.actors import Actor, booking_body, profile_body
from tests.support.bookings import booking_in, ensure_profile

REFUSED = {
    "line separator": "\u2028",
    "paragraph separator": "\u2029",
    "C1 next line": "\x85",
    "C1 control sequence introducer": "\x9b",
    "C0 escape": "\x1b",
    "delete": "\x7f",
    "right-to-left override": "\u202e",
    "left-to-right isolate": "\u2066",
    "pop directional isolate": "\u2069",
    "left-to-right mark": "\u200e",
    "zero width space": "\u200b",
    "word joiner": "\u2060",
    "byte order mark": "\ufeff",
    "soft hyphen": "\xad",
    "private use (BMP)": "\ue000",
    "private use (plane 15)": "\U000f0000",
    "tag letter A": "\U000e0041",
    "unassigned": "\u0378",
}

ACCEPTED_NAMES = [
    "José Müller",
    "李小龍",
    "Zoë 👩\u200d👩\u200d👧",  # family: ZWJ between emoji
    "Dev 👩🏽\u200d💻",  # skin tone modifier, then ZWJ
    "Sam 🏳\ufe0f\u200d🌈",  # variation selector (Mn), then ZWJ
    "علی\u200cزاده",  # noqa: RUF001 (Persian: ZWNJ inside a name)
    "क्\u200dष",  # Devanagari: ZWJ after a virama
    "Ελένη Παπαδοπούλου",
    "שרה כהן",
    "Ifeoma O'Brien-Smith",
    "Mhairi 🏴\U000e0067\U000e0062\U000e0073\U000e0063\U000e0074\U000e007f",  # Scotland's flag
]

MISPLACED_JOINERS = [
    "\u200dPat",  # first
    "Pat\u200d",  # last (not whitespace, so not trimmed)
    "Pa\u200d\u200dt",  # next to another joiner
    "Pat \u200cLee",  # next to a space
    "\u200d",  # alone: would look like an empty name
    "Pat 🏴\U000e0041\U000e0042\U000e007f",  # tags that are not one of the three flags
]


def one_error(response: TestResponse) -> dict[str, Any]:
    assert response.status_code == 422, response.get_data(as_text=True)
    assert response.content_type == "application/problem+json"
    problem = response.get_json()
    assert problem["type"] == "/problems/validation-failed"
    (error,) = problem["errors"]
    return error


def patch_me(actor: Actor, body: dict[str, Any]) -> TestResponse:
    return actor.client.patch("/v1/me", json=body, headers=actor.headers())


# --------------------------------------------------------------------------------------------
# Display names: PATCH /v1/me and PUT /v1/me/provider-profile
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("char", REFUSED.values(), ids=list(REFUSED))
def test_me_display_name_refuses_the_character_and_keeps_the_old_name(actors, char) -> None:  # type: ignore[no-untyped-def]
    user = actors("consumer")
    assert patch_me(user, {"display_name": "Pat"}).status_code == 200
    error = one_error(patch_me(user, {"display_name": f"Pat{char}Your account is locked"}))
    assert error["field"] == "display_name"
    assert error["code"] == "value_error"
    assert f"U+{ord(char):04X} (" in error["message"]
    assert "at index 3 is not allowed" in error["message"]
    assert user.get("/v1/me").get_json()["display_name"] == "Pat"


@pytest.mark.parametrize("char", REFUSED.values(), ids=list(REFUSED))
def test_provider_display_name_refuses_the_character_and_keeps_the_profile(actors, char) -> None:  # type: ignore[no-untyped-def]
    provider = actors("provider")
    ensure_profile(provider, display_name="Spotless Sam")
    body = profile_body(display_name=f"Sam{char}Official support")
    error = one_error(provider.put("/v1/me/provider-profile", json=body))
    assert error["field"] == "display_name"
    assert f"U+{ord(char):04X} (" in error["message"]
    assert provider.get("/v1/me/provider-profile").get_json()["display_name"] == "Spotless Sam"


def test_the_message_names_the_character_and_where_it_is(actors) -> None:  # type: ignore[no-untyped-def]
    user = actors("consumer")
    error = one_error(patch_me(user, {"display_name": "Pat\u2028Your account is locked"}))
    assert error["message"] == (
        "one line of printable characters only: U+2028 (LINE SEPARATOR) at index 3 is not allowed"
    )
    error = one_error(patch_me(user, {"display_name": "Pat\x9b31m"}))
    assert "U+009B (CONTROL SEQUENCE INTRODUCER) at index 3" in error["message"]
    error = one_error(patch_me(user, {"display_name": "Pat\ue000"}))
    assert "U+E000 (a private-use character) at index 3" in error["message"]


@pytest.mark.parametrize("name", MISPLACED_JOINERS)
def test_joiners_only_between_visible_characters(actors, name) -> None:  # type: ignore[no-untyped-def]
    user = actors("consumer")
    assert one_error(patch_me(user, {"display_name": name}))["field"] == "display_name"
    assert user.get("/v1/me").get_json()["display_name"] is None


@pytest.mark.parametrize("name", ACCEPTED_NAMES)
def test_international_names_are_stored_as_sent(actors, name) -> None:  # type: ignore[no-untyped-def]
    user, provider = actors("consumer"), actors("provider")
    response = patch_me(user, {"display_name": name})
    assert response.status_code == 200, response.get_data(as_text=True)
    assert user.get("/v1/me").get_json()["display_name"] == name
    response = provider.put("/v1/me/provider-profile", json=profile_body(display_name=name))
    assert response.status_code == 200, response.get_data(as_text=True)
    assert provider.get("/v1/me/provider-profile").get_json()["display_name"] == name


def test_surrounding_spaces_are_still_trimmed(actors) -> None:  # type: ignore[no-untyped-def]
    user = actors("consumer")
    assert patch_me(user, {"display_name": "  Zoë\u3000"}).get_json()["display_name"] == "Zoë"


def test_a_lone_surrogate_is_not_even_json(client: FlaskClient, actors) -> None:  # type: ignore[no-untyped-def]
    user = actors("consumer")
    data = '{"display_name": "Pat\\ud800"}'
    response = client.patch(
        "/v1/me", data=data, content_type="application/json", headers=user.headers()
    )
    assert response.status_code == 400
    assert user.get("/v1/me").get_json()["display_name"] is None


@pytest.mark.parametrize("char", ["\ud800", "\udfff"])
def test_surrogates_are_refused_by_the_types_too(char: str) -> None:
    # pydantic-core cannot even read such a str (string_unicode), before our check runs.
    for adapter in (TypeAdapter(Line(100)), TypeAdapter(Text(100))):
        with pytest.raises(ValidationError):
            adapter.validate_python(f"Pat{char}")


# --------------------------------------------------------------------------------------------
# Every other field of short or long text that someone else sees
# --------------------------------------------------------------------------------------------


@dataclass
class World:
    consumer: Actor
    provider: Actor
    requested: str
    accepted: str
    completed: str


@pytest.fixture
def world(actors) -> World:  # type: ignore[no-untyped-def]
    consumer, provider = actors("consumer"), actors("provider")
    ensure_profile(provider)
    return World(
        consumer,
        provider,
        requested=booking_in("requested", consumer, provider),
        accepted=booking_in("accepted", consumer, provider),
        completed=booking_in("completed", consumer, provider),
    )


Send = Callable[[World, str], TestResponse]


def _events(w: World, event: dict[str, Any]) -> TestResponse:
    event = {"name": "screen.view", "timestamp": datetime.now(UTC).isoformat(), **event}
    return w.consumer.post("/v1/events", json={"events": [event]})


def _note(w: World, **fields: Any) -> TestResponse:
    body = {"user_id": w.consumer.id, "title": "Running late", "body": "10 minutes", **fields}
    return w.provider.post("/v1/notifications", json=body)


def _upload(w: World, name: str) -> TestResponse:
    body = {"purpose": "avatar", "content_type": "image/png", "size_bytes": 10, "filename": name}
    return w.consumer.post("/v1/uploads", json=body)


def _booking(w: World, **overrides: Any) -> TestResponse:
    return w.consumer.post("/v1/bookings", json=booking_body(w.provider.id, **overrides))


def _address(w: World, text: str) -> TestResponse:
    return _booking(w, location={"lat": 52.5, "lng": 13.4, "address": text})


# (field as the problem names it, how to send a text in it, multi-line?)
FIELDS: dict[str, tuple[str, Send, bool]] = {
    "me display_name": (
        "display_name",
        lambda w, t: patch_me(w.consumer, {"display_name": t}),
        False,
    ),
    "provider display_name": (
        "display_name",
        lambda w, t: w.provider.put("/v1/me/provider-profile", json=profile_body(display_name=t)),
        False,
    ),
    "provider bio": (
        "bio",
        lambda w, t: w.provider.put("/v1/me/provider-profile", json=profile_body(bio=t)),
        True,
    ),
    "provider search q": (
        "q",
        lambda w, t: w.consumer.get("/v1/providers", query_string={"q": t}),
        False,
    ),
    "booking notes": ("notes", lambda w, t: _booking(w, notes=t), True),
    "booking address": ("location.address", _address, False),
    "decline reason": (
        "reason",
        lambda w, t: w.provider.post(f"/v1/bookings/{w.requested}/decline", json={"reason": t}),
        True,
    ),
    "cancel reason": (
        "reason",
        lambda w, t: w.consumer.post(f"/v1/bookings/{w.requested}/cancel", json={"reason": t}),
        True,
    ),
    "message body": (
        "body",
        lambda w, t: w.consumer.post(f"/v1/bookings/{w.accepted}/messages", json={"body": t}),
        True,
    ),
    "review comment": (
        "comment",
        lambda w, t: w.consumer.post(
            f"/v1/bookings/{w.completed}/review", json={"rating": 5, "comment": t}
        ),
        True,
    ),
    "upload filename": ("filename", _upload, False),
    "device app_version": (
        "app_version",
        lambda w, t: w.consumer.post(
            "/v1/devices", json={"platform": "ios", "token": "a" * 64, "app_version": t}
        ),
        False,
    ),
    "notification title": ("title", lambda w, t: _note(w, title=t), False),
    "notification body": ("body", lambda w, t: _note(w, body=t), True),
    "notification data value": ("data.eta", lambda w, t: _note(w, data={"eta": t}), False),
    "event attribute value": (
        "attributes.screen",
        lambda w, t: _events(w, {"attributes": {"screen": t}}),
        False,
    ),
    "event app_version": ("app_version", lambda w, t: _events(w, {"app_version": t}), False),
}


def refused_fields(response: TestResponse) -> list[str]:
    """The fields a 422 names; for POST /v1/events, those of its one rejected event."""
    if response.request.path == "/v1/events":
        assert response.status_code == 202, response.get_data(as_text=True)
        body = response.get_json()
        assert body["accepted"] == 0
        return [e["field"] for e in body["rejected"][0]["errors"]]
    return [one_error(response)["field"]]


@pytest.mark.parametrize("char", ["\u202e", "\u2028", "\x85", "\u200b"])
@pytest.mark.parametrize("name", FIELDS)
def test_every_text_field_refuses_invisible_characters(world: World, name: str, char: str) -> None:
    field, send, _ = FIELDS[name]
    response = send(world, f"ok{char}evil")
    assert refused_fields(response) == [field]
    if response.status_code == 422:
        assert f"U+{ord(char):04X}" in response.get_json()["errors"][0]["message"]


@pytest.mark.parametrize("name", FIELDS)
def test_line_breaks_only_in_multi_line_fields(world: World, name: str) -> None:
    field, send, multi_line = FIELDS[name]
    response = send(world, "Line one\r\n\tLine two 👩\u200d👧")
    if multi_line:
        assert response.status_code in (200, 201), response.get_data(as_text=True)
    else:
        assert refused_fields(response) == [field]


def test_multi_line_text_names_the_line_break_to_use(world: World) -> None:
    response = FIELDS["message body"][1](world, "Hi\u2028there")
    assert one_error(response)["message"] == (
        "printable characters only: U+2028 (LINE SEPARATOR) at index 2 is not allowed"
        " (use \\n to break lines)"
    )


# --------------------------------------------------------------------------------------------
# The documented JSON Schema pattern agrees with the validator
# --------------------------------------------------------------------------------------------


def documented_pattern(spec: dict[str, Any], model: str, name: str) -> str:
    field = spec["components"]["schemas"][model]["properties"][name]
    (pattern,) = {s["pattern"] for s in [field, *field.get("anyOf", [])] if "pattern" in s}
    return pattern


@pytest.mark.parametrize(
    ("model", "name", "kind"),
    [
        ("MeUpdate", "display_name", Line),
        ("ProviderProfileIn", "display_name", Line),
        ("ProviderProfileIn", "bio", Text),
    ],
)
def test_the_openapi_pattern_never_refuses_what_the_server_takes(
    client: FlaskClient, model: str, name: str, kind: Callable[..., Any]
) -> None:
    """Checked over the Basic Multilingual Plane (the pattern is ECMA-262 without the u flag,
    where surrogates are halves of other characters). Looser only where it cannot list:
    unassigned code points, and joiners out of place."""
    pattern = re.compile(documented_pattern(client.get("/openapi.json").get_json(), model, name))
    adapter = TypeAdapter(kind(100))
    for code in range(0x10000):
        char = chr(code)
        if 0xD800 <= code <= 0xDFFF:
            continue
        text = f"a{char}b"
        try:
            adapter.validate_python(text)
            taken = True
        except ValidationError:
            taken = False
        matches = pattern.fullmatch(text) is not None
        if taken:
            assert matches, f"U+{code:04X} passes the server but not the pattern"
        elif unicodedata.category(char) != "Cn":
            assert not matches, f"U+{code:04X} is refused by the server but fits the pattern"
