"""Reports (POST /v1/reports) and their resolution by an admin (/v1/admin/reports).

A user reports only what they can see (else 404, exactly as for an id that does not exist),
never themselves (422 naming target_id); reporting the same thing again while the first
report is open answers that one (200). Admins list the open reports with each target as it
is now, and resolve them: dismiss, remove the content (message, review, bio, upload, a
user's name), or suspend the owner (tests/integration/test_suspension.py). Resolving closes
every open report of the same target and tells each reporter in their inbox.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from models import Message, Notification, Report, Review, Upload, User
from services.aws.s3 import StoredObject
from tests.conftest import make_app, make_settings
from tests.support.actors import Actor, make_actor
from tests.support.bookings import booking_in, ensure_profile
from tests.support.fakes import FakeStore


def _ok(response: Any, status: int = 200) -> Any:
    assert response.status_code == status, response.get_data(as_text=True)
    return response.get_json()


def _problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    return response.get_json()  # type: ignore[no-any-return]


def report(actor: Actor, target_type: str, target_id: str, **extra: Any) -> Any:
    body = {"target_type": target_type, "target_id": target_id, "reason": "harassment", **extra}
    return actor.post("/v1/reports", json=body)


def resolve(admin: Actor, report_id: str, action: str, note: str = "checked") -> Any:
    return admin.post(
        f"/v1/admin/reports/{report_id}/resolve", json={"action": action, "note": note}
    )


def open_reports(admin: Actor, **query: str) -> list[dict[str, Any]]:
    return _ok(admin.get("/v1/admin/reports", query_string=query))["items"]  # type: ignore[no-any-return]


def ready_upload(actor: Actor, store: FakeStore, **body: Any) -> str:
    """An upload completed through the API (the object put in the fake store)."""
    request = {"purpose": "avatar", "content_type": "image/png", "size_bytes": 10, **body}
    created = _ok(actor.post("/v1/uploads", json=request), 201)
    store.objects[created["upload"]["fields"]["key"]] = StoredObject(10, request["content_type"])
    _ok(actor.post(f"/v1/uploads/{created['id']}/complete"))
    return created["id"]  # type: ignore[no-any-return]


@pytest.fixture
def world(actors, store: FakeStore) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """A consumer and a provider with a completed booking (a message each way, a review,
    an attachment), the provider's avatar; an admin; a stranger with no share in any of it."""
    consumer, provider = actors("consumer"), actors("provider")
    admin, stranger = actors("admin"), actors("consumer", "provider")
    ensure_profile(provider, bio="Flats and offices")
    booking = booking_in("completed", consumer, provider)
    messages = f"/v1/bookings/{booking}/messages"
    to_provider = _ok(consumer.post(messages, json={"body": "You were rude"}), 201)["id"]
    to_consumer = _ok(provider.post(messages, json={"body": "Pay me in cash"}), 201)["id"]
    review = {"rating": 2, "comment": "Late and rude"}
    _ok(consumer.post(f"/v1/bookings/{booking}/review", json=review), 201)
    attachment = ready_upload(consumer, store, purpose="booking_attachment", booking_id=booking)
    avatar = ready_upload(provider, store)
    return {
        "consumer": consumer,
        "provider": provider,
        "admin": admin,
        "stranger": stranger,
        "booking": booking,
        "message": to_consumer,  # the provider's message, seen by the consumer
        "own_message": to_provider,
        "attachment": attachment,
        "avatar": avatar,
    }


def test_a_party_reports_what_they_see_and_a_second_report_answers_the_first(
    world, session: Session
) -> None:  # type: ignore[no-untyped-def]
    consumer, provider = world["consumer"], world["provider"]
    targets = [
        (consumer, "message", world["message"]),
        (provider, "review", world["booking"]),
        (consumer, "provider_profile", provider.id),
        (consumer, "user", provider.id),
        (provider, "user", consumer.id),
        (provider, "upload", world["attachment"]),
        (consumer, "upload", world["avatar"]),
    ]
    for actor, target_type, target_id in targets:
        created = _ok(report(actor, target_type, target_id, details="Line one\nline two"), 201)
        assert created["status"] == "open" and created["reason"] == "harassment"
        assert (created["target_type"], created["target_id"]) == (target_type, target_id)
        assert created["details"] == "Line one\nline two" and created["created_at"]
        again = _ok(report(actor, target_type, target_id, reason="spam"), 200)
        assert again == created
    rows = session.scalars(select(Report)).all()
    assert len(rows) == len(targets)
    assert {str(r.reporter_id) for r in rows} == {consumer.id, provider.id}


def test_what_the_caller_cannot_see_is_404_like_a_missing_object(world, session: Session) -> None:  # type: ignore[no-untyped-def]
    stranger = world["stranger"]
    missing = _problem(report(stranger, "message", str(uuid.uuid4())), 404)
    hidden = [
        ("message", world["message"]),
        ("review", world["booking"]),
        ("upload", world["attachment"]),
        ("user", world["consumer"].id),  # shares no booking, has no profile
    ]
    for target_type, target_id in hidden:
        problem = _problem(report(stranger, target_type, target_id), 404)
        assert (problem["type"], problem["detail"]) == (missing["type"], missing["detail"])
    # A profile the caller sees can be reported; blocked either way, it is 404 like search.
    _ok(world["provider"].post("/v1/blocks", json={"user_id": stranger.id}), 201)
    for target_type in ("provider_profile", "user", "upload"):
        target = world["avatar"] if target_type == "upload" else world["provider"].id
        problem = _problem(report(stranger, target_type, target), 404)
        assert problem["detail"] == missing["detail"]
    assert session.scalars(select(Report)).all() == []


def test_reporting_yourself_or_your_own_content_is_422_naming_target_id(world) -> None:  # type: ignore[no-untyped-def]
    consumer, provider = world["consumer"], world["provider"]
    for actor, target_type, target_id in [
        (consumer, "user", consumer.id),
        (consumer, "message", world["own_message"]),
        (consumer, "review", world["booking"]),
        (provider, "provider_profile", provider.id),
        (provider, "upload", world["avatar"]),
    ]:
        problem = _problem(report(actor, target_type, target_id), 422)
        assert [e["field"] for e in problem["errors"]] == ["target_id"], target_type


@pytest.mark.parametrize(
    "body",
    [
        {"target_type": "booking", "target_id": str(uuid.uuid4()), "reason": "spam"},
        {"target_type": "user", "target_id": "nope", "reason": "spam"},
        {"target_type": "user", "target_id": str(uuid.uuid4()), "reason": "boring"},
        {
            "target_type": "user",
            "target_id": str(uuid.uuid4()),
            "reason": "spam",
            "details": "x" * 2001,
        },
        {
            "target_type": "user",
            "target_id": str(uuid.uuid4()),
            "reason": "spam",
            "details": "a\u202eb",
        },
    ],
)
def test_bad_input_is_422_naming_the_field(actors, body: dict[str, Any]) -> None:  # type: ignore[no-untyped-def]
    problem = _problem(actors("consumer").post("/v1/reports", json=body), 422)
    assert problem["errors"] and problem["errors"][0]["field"] in body


def test_reports_are_rate_limited(build, database_url, signing_key) -> None:  # type: ignore[no-untyped-def]
    settings = make_settings(database_url, RATE_LIMIT_REPORTS="2/hour")
    client = make_app(build(settings)).test_client()
    consumer, provider = (make_actor(client, signing_key, r) for r in ("consumer", "provider"))
    ensure_profile(provider)
    statuses = [report(consumer, "user", provider.id).status_code for _ in range(3)]
    assert statuses == [201, 200, 429]


def test_admins_only_list_and_resolve(world) -> None:  # type: ignore[no-untyped-def]
    created = _ok(report(world["consumer"], "message", world["message"]), 201)
    for path in ("/v1/admin/reports", "/v1/admin/users?status=suspended"):
        assert world["stranger"].get(path).status_code == 403
    assert resolve(world["stranger"], created["id"], "dismiss").status_code == 403
    assert _problem(resolve(world["admin"], str(uuid.uuid4()), "dismiss"), 404)
    problem = _problem(world["admin"].post(
        f"/v1/admin/reports/{created['id']}/resolve", json={"action": "ban"}
    ), 422)  # fmt: skip
    assert problem["errors"][0]["field"] == "action"


def test_the_list_shows_each_target_and_pages_oldest_open_first(world, store: FakeStore) -> None:  # type: ignore[no-untyped-def]
    consumer, provider, admin = world["consumer"], world["provider"], world["admin"]
    order = [
        _ok(report(consumer, "message", world["message"]), 201)["id"],
        _ok(report(provider, "review", world["booking"]), 201)["id"],
        _ok(report(consumer, "provider_profile", provider.id), 201)["id"],
        _ok(report(consumer, "upload", world["avatar"]), 201)["id"],
    ]
    first = _ok(admin.get("/v1/admin/reports?limit=3"))
    second = _ok(admin.get("/v1/admin/reports", query_string={"cursor": first["next_cursor"]}))
    items = first["items"] + second["items"]
    assert [i["id"] for i in items] == order and second["next_cursor"] is None
    message, review, profile, avatar = items
    assert message["reporter"] == {"id": consumer.id, "display_name": None}
    assert message["target"]["text"] == "Pay me in cash"
    assert message["target"]["owner_id"] == provider.id
    assert message["target"]["booking_id"] == world["booking"]
    assert (review["target"]["text"], review["target"]["rating"]) == ("Late and rude", 2)
    assert review["target"]["owner_id"] == consumer.id
    assert profile["target"]["display_name"] == "Spotless Sam"
    assert profile["target"]["text"] == "Flats and offices"
    assert avatar["target"]["content_type"] == "image/png"
    assert avatar["target"]["download_url"].startswith("https://uploads.example/bucket/users/")
    assert _ok(admin.get("/v1/admin/reports?status=resolved"))["items"] == []
    assert _problem(admin.get("/v1/admin/reports?cursor=bogus"), 422)["errors"]


def test_dismissing_closes_every_open_report_of_the_target_and_tells_each_reporter(  # type: ignore[no-untyped-def]
    world, session: Session
) -> None:
    consumer, provider, admin = world["consumer"], world["provider"], world["admin"]
    other = _ok(report(consumer, "user", provider.id), 201)
    mine = _ok(report(consumer, "provider_profile", provider.id), 201)
    # A second reporter of the same profile: the admin's own, from a booking of theirs.
    third = world["stranger"]
    theirs = _ok(report(third, "provider_profile", provider.id, reason="fraud"), 201)
    resolved = _ok(resolve(admin, mine["id"], "dismiss", "Nothing wrong"))
    assert resolved["status"] == "resolved" and resolved["action"] == "dismiss"
    assert (resolved["note"], resolved["resolved_by"]) == ("Nothing wrong", admin.id)
    assert resolved["resolved_at"]
    rows = {str(r.id): r for r in session.scalars(select(Report))}
    assert rows[theirs["id"]].status == "resolved" and rows[theirs["id"]].note == "Nothing wrong"
    assert rows[other["id"]].status == "open"  # another target: the user, not the profile
    for reporter in (consumer, third):
        notes = [
            n
            for n in _ok(reporter.get("/v1/notifications"))["items"]
            if n["kind"] == "report_resolved"
        ]
        assert len(notes) == 1 and notes[0]["title"] == "Your report was reviewed"
    assert (
        _problem(resolve(admin, mine["id"], "remove_content"), 409)["type"] == "/problems/conflict"
    )
    listed = _ok(admin.get("/v1/admin/reports?status=resolved"))["items"]
    assert {i["id"] for i in listed} == {mine["id"], theirs["id"]}
    assert session.get(User, uuid.UUID(provider.id)) is not None
    # Nothing changed on the profile.
    assert _ok(consumer.get(f"/v1/providers/{provider.id}"))["bio"] == "Flats and offices"


def test_removing_a_message_hides_it_from_both_parties_and_the_inbox(
    world, session: Session
) -> None:  # type: ignore[no-untyped-def]
    consumer, provider, admin = world["consumer"], world["provider"], world["admin"]
    created = _ok(report(consumer, "message", world["message"]), 201)
    _ok(resolve(admin, created["id"], "remove_content"))
    for party in (consumer, provider):
        items = _ok(party.get(f"/v1/bookings/{world['booking']}/messages"))["items"]
        removed = next(m for m in items if m["id"] == world["message"])
        assert (removed["body"], removed["removed"]) == (None, True)
    row = session.get(Message, uuid.UUID(world["message"]))
    assert row is not None and row.body is None and row.removed_at is not None
    previews = session.scalars(
        select(Notification.body).where(Notification.kind == "message.new")
    ).all()
    assert "Pay me in cash" not in previews and "You were rude" in previews


def test_removing_a_review_keeps_its_rating(world, session: Session) -> None:  # type: ignore[no-untyped-def]
    provider, admin = world["provider"], world["admin"]
    created = _ok(report(provider, "review", world["booking"]), 201)
    _ok(resolve(admin, created["id"], "remove_content"))
    row = session.get(Review, uuid.UUID(world["booking"]))
    assert row is not None and row.comment is None and row.removed_at is not None
    profile = _ok(world["consumer"].get(f"/v1/providers/{provider.id}"))
    assert (profile["rating_average"], profile["rating_count"]) == (2.0, 1)


def test_removing_a_bio_or_a_users_name(world, session: Session) -> None:  # type: ignore[no-untyped-def]
    consumer, provider, admin = world["consumer"], world["provider"], world["admin"]
    named = provider.client.patch(
        "/v1/me", json={"display_name": "Sam"}, headers=provider.headers()
    )
    assert named.status_code == 200
    profile = _ok(report(consumer, "provider_profile", provider.id), 201)
    _ok(resolve(admin, profile["id"], "remove_content"))
    assert _ok(consumer.get(f"/v1/providers/{provider.id}"))["bio"] == ""
    ensure_profile(provider, bio="New bio")
    user = _ok(report(consumer, "user", provider.id), 201)
    _ok(resolve(admin, user["id"], "remove_content"))
    assert _ok(provider.get("/v1/me"))["display_name"] is None
    assert _ok(consumer.get(f"/v1/providers/{provider.id}"))["bio"] == ""


def test_removing_an_upload_deletes_its_object_and_stops_serving_it(  # type: ignore[no-untyped-def]
    world, session: Session, store: FakeStore
) -> None:
    consumer, provider, admin = world["consumer"], world["provider"], world["admin"]
    avatar = session.get(Upload, uuid.UUID(world["avatar"]))
    assert avatar is not None and avatar.key in store.objects
    face = _ok(consumer.get(f"/v1/providers/{provider.id}"))["avatar_url"]
    assert face is not None and avatar.key in face
    created = _ok(report(consumer, "upload", world["avatar"]), 201)
    store.down = True  # S3 unreachable: 503 and nothing changed
    problem = _problem(resolve(admin, created["id"], "remove_content"), 503)
    assert problem["type"] == "/problems/unavailable"
    assert session.get(Report, uuid.UUID(created["id"])).status == "open"  # type: ignore[union-attr]
    store.down = False
    _ok(resolve(admin, created["id"], "remove_content"))
    assert avatar.key not in store.objects
    shown = _ok(provider.get(f"/v1/uploads/{world['avatar']}"))
    assert (shown["status"], shown["download_url"]) == ("removed", None)
    owner = session.get(User, uuid.UUID(provider.id))
    assert owner is not None and owner.avatar_upload_id is None
    assert _ok(consumer.get(f"/v1/providers/{provider.id}"))["avatar_url"] is None  # nowhere
    assert _ok(provider.get("/v1/me"))["avatar_url"] is None
    listed = _ok(admin.get("/v1/admin/reports?status=resolved"))["items"][0]["target"]
    assert listed["removed"] is True and listed["download_url"] is None


def test_a_report_of_something_deleted_since_can_still_be_resolved(world, session: Session) -> None:  # type: ignore[no-untyped-def]
    consumer, admin = world["consumer"], world["admin"]
    created = _ok(report(world["provider"], "upload", world["attachment"]), 201)
    assert consumer.delete(f"/v1/uploads/{world['attachment']}").status_code == 204
    item = open_reports(admin)[0]
    assert item["target"]["exists"] is False
    _ok(resolve(admin, created["id"], "remove_content"))
    assert _problem(resolve(admin, created["id"], "dismiss"), 409)
    other = _ok(report(world["provider"], "user", consumer.id), 201)
    assert session.get(Report, uuid.UUID(other["id"])) is not None
