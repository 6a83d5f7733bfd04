"""The objectionable-content filter (issue 14, item 6): messages, reviews, display names and
bios that hold a listed term are stored as sent and open a `system` report (reason
`inappropriate`, no reporter), at most one open per target. Terms come from
CONTENT_FILTER_TERMS_FILE (else the shipped list); an unreadable file stops start-up.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from models import Message, Report
from services.base.content_filter import DEFAULT_TERMS_FILE, ContentFilter
from services.base.settings import SettingsError
from tests.conftest import make_app, make_settings
from tests.support.actors import Actor, make_actor
from tests.support.bookings import booking_in, ensure_profile

TERMS = "# the operator's list\nscam artist\nrotten   egg  # a phrase, spaces are any run\n\nass\n"


def _ok(response: Any, status: int = 200) -> Any:
    assert response.status_code == status, response.get_data(as_text=True)
    return response.get_json()


@pytest.mark.parametrize(
    ("text", "hit"),
    [
        ("You scam artist", True),
        ("SCAM ARTIST!", True),
        ("scam\n  artist", True),
        (
            "\uff33\uff43\uff41\uff4d \uff41\uff52\uff54\uff49\uff53\uff54",
            True,
        ),  # fullwidth "Scam artist": NFKC makes it plain
        ("what a rotten egg.", True),
        ("Don't be an ass", True),
        ("ASS", True),
        ("a first-class assessment", False),  # whole words only
        ("scammer artistry", False),
        ("passé, classé", False),
        ("", False),
    ],
)
def test_terms_match_case_insensitively_as_whole_words(text: str, hit: bool) -> None:
    terms = [line.split("#", 1)[0].strip() for line in TERMS.splitlines()]
    assert ContentFilter(terms).hits(text) is hit


def test_the_shipped_list_loads_and_an_empty_list_matches_nothing() -> None:
    shipped = ContentFilter.from_file(None)
    assert shipped.hits("what the FUCK") and not shipped.hits("a classy class")
    assert DEFAULT_TERMS_FILE.exists()
    assert not ContentFilter([]).hits("anything at all")


def test_an_unreadable_terms_file_stops_start_up(build, database_url, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    missing = tmp_path / "nope.txt"
    with pytest.raises(SettingsError, match=r"CONTENT_FILTER_TERMS_FILE: cannot read .*nope\.txt"):
        build(make_settings(database_url, CONTENT_FILTER_TERMS_FILE=str(missing)))


@pytest.fixture
def people(build, database_url, signing_key, tmp_path: Path) -> tuple[Actor, Actor, Actor, str]:  # type: ignore[no-untyped-def]
    """A consumer, a provider (with a clean profile), an admin, a completed booking; the app
    reads the operator's terms file."""
    terms = tmp_path / "terms.txt"
    terms.write_text(TERMS, encoding="utf-8")
    settings = make_settings(database_url, CONTENT_FILTER_TERMS_FILE=str(terms))
    client = make_app(build(settings)).test_client()
    consumer, provider, admin = (
        make_actor(client, signing_key, role) for role in ("consumer", "provider", "admin")
    )
    ensure_profile(provider)
    return consumer, provider, admin, booking_in("completed", consumer, provider)


def _system_reports(session: Session) -> list[tuple[str, uuid.UUID]]:
    rows = session.scalars(select(Report).order_by(Report.created_at)).all()
    assert all(r.reporter_id is None and r.reason == "inappropriate" for r in rows)
    return [(r.target_type, r.target_id) for r in rows]


def test_a_message_that_hits_is_sent_as_it_is_and_opens_one_system_report(  # type: ignore[no-untyped-def]
    people, session: Session
) -> None:
    consumer, provider, admin, booking = people
    messages = f"/v1/bookings/{booking}/messages"
    clean = _ok(consumer.post(messages, json={"body": "A first-class job, thanks"}), 201)
    flagged = _ok(consumer.post(messages, json={"body": "You SCAM artist"}), 201)
    assert flagged["body"] == "You SCAM artist"
    seen = _ok(provider.get(messages))["items"]
    assert [m["body"] for m in seen] == ["A first-class job, thanks", "You SCAM artist"]
    assert _system_reports(session) == [("message", uuid.UUID(flagged["id"]))]
    assert session.get(Message, uuid.UUID(clean["id"])) is not None

    listed = _ok(admin.get("/v1/admin/reports"))["items"]
    assert len(listed) == 1 and listed[0]["reporter"] is None
    assert listed[0]["target"]["text"] == "You SCAM artist"
    resolved = admin.post(
        f"/v1/admin/reports/{listed[0]['id']}/resolve", json={"action": "remove_content"}
    )
    assert _ok(resolved)["status"] == "resolved"
    assert _ok(provider.get(messages))["items"][1]["removed"] is True
    # No reporter to tell: no "report_resolved" entry anywhere.
    for someone in (consumer, provider, admin):
        kinds = {n["kind"] for n in _ok(someone.get("/v1/notifications"))["items"]}
        assert "report_resolved" not in kinds


def test_reviews_names_and_bios_that_hit_open_one_report_per_target(  # type: ignore[no-untyped-def]
    people, session: Session
) -> None:
    consumer, provider, _, booking = people
    review = {"rating": 1, "comment": "A rotten egg"}
    _ok(consumer.post(f"/v1/bookings/{booking}/review", json=review), 201)
    patched = consumer.client.patch(
        "/v1/me", json={"display_name": "Scam Artist"}, headers=consumer.headers()
    )
    assert _ok(patched)["display_name"] == "Scam Artist"
    ensure_profile(provider, bio="Not an ass")
    ensure_profile(provider, display_name="Ass Cleaning", bio="Not an ass")  # again: still one
    ensure_profile(provider, bio="Clean now")
    assert sorted(_system_reports(session)) == sorted(
        [
            ("review", uuid.UUID(booking)),
            ("user", uuid.UUID(consumer.id)),
            ("provider_profile", uuid.UUID(provider.id)),
        ]
    )
    assert _ok(provider.get("/v1/me/provider-profile"))["bio"] == "Clean now"
