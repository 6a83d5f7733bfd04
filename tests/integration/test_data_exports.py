"""Personal data exports (/v1/me/exports): asked for over HTTP, built by a builder (the CLI,
the worker tier's task, the web workers' thread), told through the inbox, downloadable for
7 days, one pending at a time and EXPORTS_PER_DAY a day."""

from __future__ import annotations

import gzip
import hashlib
import logging
import threading
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from sqlalchemy import Engine, select, text, update
from sqlalchemy.orm import Session, sessionmaker

from models import DataExport, Message, Notification, OutboxMessage, Upload, User
from models.base import utcnow
from services.accounts import data_export
from services.aws.s3 import StoredObject
from services.components import Components
from tests.conftest import BuildComponents, make_app, make_settings
from tests.support.actors import Actor
from tests.support.bookings import booking_in, ensure_profile
from tests.support.fakes import FakeStore

SECTIONS = {
    "format_version",
    "generated_at",
    "user_id",
    "export_id",
    "profile",
    "provider_profile",
    "bookings",
    "messages",
    "reviews",
    "uploads",
    "devices",
    "notifications",
    "sync_datasets",
    "blocks",
    "analytics_events",
}


def _ok(response: Any, status: int = 200) -> Any:
    assert response.status_code == status, response.get_data(as_text=True)
    return response.get_json()


def ask(actor: Actor) -> dict[str, Any]:
    response = actor.post("/v1/me/exports")
    body = _ok(response, 202)
    assert response.headers["Location"] == f"/v1/me/exports/{body['id']}"
    return dict(body)


def build(components: Components, store: FakeStore, **kwargs: Any) -> data_export.BuildStats:
    return data_export.build_pending(components.sessions, store, components.settings, **kwargs)


def document(store: FakeStore, user_id: str, export_id: str) -> dict[str, Any]:
    key = f"users/{user_id}/exports/{export_id}.json.gz"
    assert store.objects[key].content_type == "application/gzip"
    return dict(orjson.loads(gzip.decompress(store.contents[key])))


def export_row(session: Session, export_id: str) -> DataExport:
    row = session.get(DataExport, uuid.UUID(export_id), populate_existing=True)
    assert row is not None
    return row


def test_an_export_holds_every_section_and_the_user_is_told(
    actors: Any, components: Components, store: FakeStore, session: Session
) -> None:
    consumer, provider = actors("consumer"), actors("provider")
    ensure_profile(provider)
    completed = booking_in("completed", consumer, provider)
    _ok(consumer.post(f"/v1/bookings/{completed}/messages", json={"body": "See you"}), 201)
    _ok(provider.post(f"/v1/bookings/{completed}/messages", json={"body": "Sure"}), 201)
    _ok(consumer.post(f"/v1/bookings/{completed}/review", json={"rating": 4, "comment": "Ok"}), 201)
    # One message removed by a moderator: in the export as removed, without its words.
    session.execute(
        update(Message)
        .where(Message.sender_id == uuid.UUID(provider.id))
        .values(body=None, removed_at=utcnow())
    )
    _ok(consumer.post("/v1/sync/datasets/settings", json={"records": [_record("theme", "dark")]}))
    _ok(consumer.post("/v1/blocks", json={"user_id": actors("consumer").id}), 201)
    _ok(consumer.post("/v1/devices", json={"platform": "ios", "token": "a" * 64}))
    _ok(consumer.post("/v1/events", json={"events": [_event("app.open")]}), 202)
    upload = _ok(
        consumer.post(
            "/v1/uploads",
            json={"purpose": "avatar", "content_type": "image/png", "size_bytes": 10},
        ),
        201,
    )
    key = session.scalar(select(Upload.key).where(Upload.id == uuid.UUID(upload["id"])))
    assert key is not None
    store.objects[key] = StoredObject(10, "image/png")
    _ok(consumer.post(f"/v1/uploads/{upload['id']}/complete"))
    session.commit()

    asked = ask(consumer)
    assert asked["status"] == "pending" and asked["created_at"]
    assert _ok(consumer.get(f"/v1/me/exports/{asked['id']}"))["status"] == "pending"

    assert build(components, store).built == 1

    shown = _ok(consumer.get(f"/v1/me/exports/{asked['id']}"))
    assert shown["status"] == "ready"
    key = f"users/{consumer.id}/exports/{asked['id']}.json.gz"
    assert shown["download_url"] == f"https://uploads.example/bucket/{key}?expires=3600"
    assert shown["size_bytes"] == len(store.contents[key])
    expires = datetime.fromisoformat(shown["expires_at"])
    assert timedelta(days=6, hours=23) < expires - datetime.now(UTC) <= timedelta(days=7)

    doc = document(store, consumer.id, asked["id"])
    assert set(doc) == SECTIONS
    assert (doc["format_version"], doc["user_id"], doc["export_id"]) == (
        1,
        consumer.id,
        asked["id"],
    )
    assert doc["profile"]["id"] == consumer.id and doc["profile"]["roles"] == ["consumer"]
    assert doc["provider_profile"] is None
    [booking] = doc["bookings"]
    assert (booking["id"], booking["role"], booking["status"]) == (
        completed,
        "consumer",
        "completed",
    )
    assert [h["to_status"] for h in booking["history"]][-1] == "completed"
    assert [(m["body"], m["removed"]) for m in doc["messages"]] == [
        ("See you", False),
        (None, True),
    ]
    assert [r["rating"] for r in doc["reviews"]["written"]] == [4]
    assert doc["reviews"]["received"] == []
    [shared] = doc["uploads"]
    assert shared["id"] == upload["id"] and shared["status"] == "ready"
    # A link to Trellis (as the app reached it), which presigns a fresh GET on each click.
    link = f"http://localhost/exports/{asked['id']}/files/{upload['id']}?token="
    assert shared["download_url"].startswith(link)
    assert "users/" not in shared["download_url"]  # the bucket's layout is not the user's data
    [phone] = doc["devices"]
    assert phone["platform"] == "ios" and "token" not in phone and "endpoint_arn" not in phone
    [dataset] = doc["sync_datasets"]
    assert dataset["name"] == "settings"
    assert [(r["key"], r["value"]) for r in dataset["records"]] == [("theme", "dark")]
    assert len(doc["blocks"]) == 1
    assert [e["name"] for e in doc["analytics_events"]] == ["app.open"]

    # Told through the inbox, with its push in the outbox, in the transaction that made it ready.
    note = session.scalar(
        select(Notification).where(
            Notification.user_id == uuid.UUID(consumer.id),
            Notification.kind == "data_export_ready",
        )
    )
    assert note is not None and note.data["export_id"] == asked["id"]
    assert session.scalar(select(OutboxMessage).where(OutboxMessage.notification_id == note.id))
    inbox = _ok(consumer.get("/v1/notifications"))["items"]
    assert any(n["kind"] == "data_export_ready" for n in inbox)

    # The provider's own export sees the same booking from the other side.
    theirs = ask(provider)
    build(components, store)
    doc = document(store, provider.id, theirs["id"])
    assert doc["provider_profile"]["display_name"] == "Spotless Sam"
    assert [b["role"] for b in doc["bookings"]] == ["provider"]
    assert [r["rating"] for r in doc["reviews"]["received"]] == [4]
    assert [m["removed"] for m in doc["messages"]] == [False, True]


def _record(key: str, value: Any) -> dict[str, Any]:
    return {"op": "replace", "key": key, "value": value, "sync_count": 0}


def _event(name: str) -> dict[str, Any]:
    return {"name": name, "timestamp": utcnow().isoformat()}


def _export_with_a_file(
    actor: Actor, components: Components, store: FakeStore, session: Session
) -> tuple[str, str, str]:
    """A ready export listing one ready upload: (export id, upload id, the file's link)."""
    upload = _ok(
        actor.post(
            "/v1/uploads", json={"purpose": "avatar", "content_type": "image/png", "size_bytes": 10}
        ),
        201,
    )
    key = session.scalar(select(Upload.key).where(Upload.id == uuid.UUID(upload["id"])))
    assert key is not None
    store.objects[key] = StoredObject(10, "image/png")
    _ok(actor.post(f"/v1/uploads/{upload['id']}/complete"))
    asked = ask(actor)
    assert build(components, store).built == 1
    [listed] = document(store, actor.id, asked["id"])["uploads"]
    return asked["id"], upload["id"], listed["download_url"]


def _path(link: str) -> str:
    return link.removeprefix("http://localhost")


def test_a_file_link_in_the_document_redirects_to_a_fresh_presigned_get(
    actors: Any, client: Any, components: Components, store: FakeStore, session: Session
) -> None:
    user = actors("consumer")
    export_id, upload_id, link = _export_with_a_file(user, components, store, session)
    key = session.scalar(select(Upload.key).where(Upload.id == uuid.UUID(upload_id)))
    # No sign-in: the document is opened wherever it travelled; the token is the credential.
    opened = client.get(_path(link))
    assert opened.status_code == 302, opened.get_data(as_text=True)
    assert opened.headers["Location"] == f"https://uploads.example/bucket/{key}?expires=300"
    assert opened.headers["Cache-Control"] == "no-store"
    # Only the token's hash is kept: the SHA-256 of this very token.
    token = link.split("token=", 1)[1]
    stored = export_row(session, export_id).link_token_sha256
    assert stored == hashlib.sha256(token.encode()).hexdigest()


def test_a_file_link_is_refused_alike_for_every_wrong_case(
    actors: Any, client: Any, components: Components, store: FakeStore, session: Session
) -> None:
    user, other = actors("consumer"), actors("provider")
    export_id, upload_id, link = _export_with_a_file(user, components, store, session)
    other_export, other_upload, other_link = _export_with_a_file(other, components, store, session)
    token = link.split("token=", 1)[1]
    wrong = [
        f"/exports/{export_id}/files/{upload_id}?token=x{token[1:]}",  # not the token
        f"/exports/{export_id}/files/{upload_id}",  # no token: 422 below
        f"/exports/{other_export}/files/{upload_id}?token={token}",  # another export
        f"/exports/{export_id}/files/{other_upload}?token={token}",  # another's file
        f"/exports/{uuid.uuid4()}/files/{upload_id}?token={token}",  # no such export
    ]
    statuses = [client.get(path).status_code for path in wrong]
    assert statuses == [404, 422, 404, 404, 404]
    refused = client.get(wrong[0])
    assert refused.content_type == "application/problem+json"
    assert "Ask for a new export" in refused.get_json()["detail"]
    # The other user's link still works: refusals are per link, not a lock-out.
    assert client.get(_path(other_link)).status_code == 302

    # A file made after the export was built is not in it: its id with the token is refused.
    later = _ok(
        user.post(
            "/v1/uploads", json={"purpose": "avatar", "content_type": "image/png", "size_bytes": 10}
        ),
        201,
    )
    session.execute(
        update(Upload).where(Upload.id == uuid.UUID(later["id"])).values(status="ready")
    )
    session.commit()
    assert client.get(f"/exports/{export_id}/files/{later['id']}?token={token}").status_code == 404

    # The file deleted since: gone from the link too.
    assert user.delete(f"/v1/uploads/{upload_id}").status_code == 204
    assert client.get(_path(link)).status_code == 404


def test_file_links_stop_working_when_the_export_expires(
    actors: Any, client: Any, components: Components, store: FakeStore, session: Session
) -> None:
    user = actors("consumer")
    export_id, _, link = _export_with_a_file(user, components, store, session)
    assert client.get(_path(link)).status_code == 302
    session.execute(
        update(DataExport)
        .where(DataExport.id == uuid.UUID(export_id))
        .values(expires_at=utcnow() - timedelta(seconds=1))
    )
    session.commit()
    assert client.get(_path(link)).status_code == 404  # past expires_at, before the clean-up
    build(components, store)  # the clean-up marks it expired
    assert export_row(session, export_id).status == "expired"
    assert client.get(_path(link)).status_code == 404


def test_the_links_use_the_public_base_url_when_it_is_set(
    build: BuildComponents, database_url: str, store: FakeStore, signing_key: Any, session: Session
) -> None:
    from tests.support.actors import make_actor

    public = "https://api.example.com/trellis"
    components = build(make_settings(database_url, API_PUBLIC_URL=public))
    user = make_actor(make_app(components).test_client(), signing_key, "consumer")
    export_id, upload_id, link = _export_with_a_file(user, components, store, session)
    assert link.startswith(f"{public}/exports/{export_id}/files/{upload_id}?token=")


def test_one_pending_export_at_a_time(actors: Any) -> None:
    user = actors("consumer")
    first = ask(user)
    response = user.post("/v1/me/exports")
    problem = _ok(response, 409)
    assert response.mimetype == "application/problem+json"
    assert problem["type"] == "/problems/export-in-progress"
    assert problem["export_id"] == first["id"]
    assert "still being prepared" in problem["detail"]


def test_exports_per_day_counted_over_a_rolling_day(
    actors: Any, session: Session, components: Components, store: FakeStore
) -> None:
    user = actors("consumer")
    ids = []
    for _ in range(3):
        ids.append(ask(user)["id"])
        assert build(components, store).built == 1
    # The oldest was asked for 23 hours ago: the next is possible in an hour.
    session.execute(
        update(DataExport)
        .where(DataExport.id == uuid.UUID(ids[0]))
        .values(created_at=utcnow() - timedelta(hours=23))
    )
    session.commit()
    response = user.post("/v1/me/exports")
    problem = _ok(response, 429)
    assert problem["type"] == "/problems/rate-limited"
    assert 3500 <= int(response.headers["Retry-After"]) <= 3600
    # Once it is more than a day old, the user may ask again.
    session.execute(
        update(DataExport)
        .where(DataExport.id == uuid.UUID(ids[0]))
        .values(created_at=utcnow() - timedelta(hours=24, seconds=1))
    )
    session.commit()
    ask(user)


def test_exports_per_day_is_a_setting(
    build: BuildComponents, database_url: str, store: FakeStore, signing_key: Any
) -> None:
    from tests.support.actors import make_actor

    components = build(make_settings(database_url, EXPORTS_PER_DAY="1"))
    user = make_actor(make_app(components).test_client(), signing_key, "consumer")
    ask(user)
    data_export.build_pending(components.sessions, store, components.settings)
    response = user.post("/v1/me/exports")
    assert _ok(response, 429)["detail"].startswith("You can ask for 1 data exports a day")
    assert 86_300 <= int(response.headers["Retry-After"]) <= 86_400


def test_two_concurrent_requests_cannot_both_pass(
    actors: Any, engine: Engine, sessions: sessionmaker[Session]
) -> None:
    user = actors("consumer")
    user_id = uuid.UUID(user.id)
    answers: list[int] = []
    # The test holds the user's row: both requests queue behind it, then run one after the
    # other; without the lock both would see no pending export and both insert one.
    with engine.connect() as holder:
        holder.execute(
            text("SELECT 1 FROM users WHERE id = :id FOR NO KEY UPDATE"), {"id": user_id}
        )
        threads = [
            threading.Thread(target=lambda: answers.append(user.post("/v1/me/exports").status_code))
            for _ in range(2)
        ]
        for thread in threads:
            thread.start()
        _wait_for_lock_waiters(engine, 2)
        holder.rollback()
    for thread in threads:
        thread.join(30)
    assert sorted(answers) == [202, 409]
    with sessions() as session:
        assert (
            len(session.scalars(select(DataExport).where(DataExport.user_id == user_id)).all()) == 1
        )


def _wait_for_lock_waiters(engine: Engine, count: int) -> None:
    """Until `count` backends wait on a row lock (pg_stat_activity), at most 30 s."""
    deadline = datetime.now(UTC) + timedelta(seconds=30)
    with engine.connect() as probe:
        while datetime.now(UTC) < deadline:
            waiting = probe.scalar(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                    "AND query ILIKE '%FROM users%'"
                )
            )
            probe.rollback()
            if waiting >= count:
                return
            probe.execute(text("SELECT pg_sleep(0.02)"))
    raise AssertionError("the requests never queued behind the user's row")


def test_someone_elses_export_is_not_found(actors: Any) -> None:
    owner, stranger = actors("consumer"), actors("consumer")
    mine = ask(owner)
    theirs = stranger.get(f"/v1/me/exports/{mine['id']}")
    missing = stranger.get(f"/v1/me/exports/{uuid.uuid4()}")
    assert theirs.status_code == missing.status_code == 404
    assert theirs.get_json()["detail"] == missing.get_json()["detail"]
    assert _ok(owner.get(f"/v1/me/exports/{mine['id']}"))["status"] == "pending"


def test_a_user_whose_deletion_is_scheduled_may_still_export(actors: Any, session: Session) -> None:
    user = actors("consumer")
    now = utcnow()
    session.execute(
        update(User)
        .where(User.id == uuid.UUID(user.id))
        .values(deletion_requested_at=now, purge_at=now + timedelta(hours=72))
    )
    session.commit()
    assert ask(user)["status"] == "pending"


def test_a_crashed_build_is_claimed_again_when_its_lease_runs_out(
    actors: Any, components: Components, store: FakeStore, session: Session
) -> None:
    user = actors("consumer")
    asked = ask(user)
    now = utcnow()
    # A builder claims it and dies before finishing.
    stats = data_export.BuildStats()
    claim = data_export._claim(components.sessions, components.settings, now, stats)
    assert claim is not None and claim.attempt == 1
    assert build(components, store, now=now).built == 0  # the lease still holds
    later = now + timedelta(seconds=components.settings.data_export_lease_seconds + 1)
    assert build(components, store, now=later).built == 1
    row = export_row(session, asked["id"])
    assert (row.status, row.attempts) == ("ready", 2)
    assert set(document(store, user.id, asked["id"])) == SECTIONS


def test_a_failing_build_is_retried_then_marked_failed_with_the_reason_logged(
    actors: Any,
    components: Components,
    store: FakeStore,
    session: Session,
    caplog: pytest.LogCaptureFixture,
) -> None:
    user = actors("consumer")
    asked = ask(user)
    store.down = True
    now = utcnow()
    with caplog.at_level(logging.WARNING, logger=data_export.log.name):
        for attempt in range(1, 4):
            stats = build(components, store, now=now)
            row = export_row(session, asked["id"])
            assert row.attempts == attempt and "simulated outage" in (row.last_error or "")
            if attempt < 3:
                assert (stats.retried, row.status) == (1, "pending")
                assert build(components, store, now=now).retried == 0  # backing off
                now = row.available_at
    assert (stats.failed, row.status) == (1, "failed")
    failures = [r for r in caplog.records if r.getMessage() == "data export failed"]
    assert len(failures) == 1 and "simulated outage" in failures[0].reason  # type: ignore[attr-defined]
    assert _ok(user.get(f"/v1/me/exports/{asked['id']}"))["status"] == "failed"
    assert not [k for k in store.objects if "/exports/" in k]
    # A failed export is not pending: the user may ask again.
    store.down = False
    ask(user)


def test_attempts_used_up_by_crashes_end_failed(
    actors: Any, components: Components, store: FakeStore, session: Session
) -> None:
    user = actors("consumer")
    asked = ask(user)
    session.execute(
        update(DataExport).where(DataExport.id == uuid.UUID(asked["id"])).values(attempts=3)
    )
    session.commit()
    assert build(components, store).failed == 1
    row = export_row(session, asked["id"])
    assert row.status == "failed" and "without finishing" in (row.last_error or "")


def test_after_seven_days_the_object_is_deleted_and_the_export_expired(
    actors: Any, components: Components, store: FakeStore, session: Session
) -> None:
    user = actors("consumer")
    asked = ask(user)
    build(components, store)
    key = f"users/{user.id}/exports/{asked['id']}.json.gz"
    assert key in store.objects
    expires_at = export_row(session, asked["id"]).expires_at
    assert expires_at is not None
    # Past expires_at, before any clean-up: reported expired, no link.
    session.execute(
        update(DataExport)
        .where(DataExport.id == uuid.UUID(asked["id"]))
        .values(expires_at=utcnow() - timedelta(seconds=1))
    )
    session.commit()
    shown = _ok(user.get(f"/v1/me/exports/{asked['id']}"))
    assert shown["status"] == "expired" and shown["download_url"] is None
    assert build(components, store).expired == 1
    assert key not in store.objects
    row = export_row(session, asked["id"])
    assert (row.status, row.key) == ("expired", None)
    assert _ok(user.get(f"/v1/me/exports/{asked['id']}"))["status"] == "expired"


def test_the_cli_builds_every_pending_export(
    actors: Any, app: Any, store: FakeStore, session: Session
) -> None:
    users = [actors("consumer") for _ in range(3)]
    asked = [ask(user) for user in users]
    result = app.test_cli_runner().invoke(args=["accounts", "export-data"])
    assert result.exit_code == 0, result.output
    assert "built 3," in result.output
    for user, export in zip(users, asked, strict=True):
        assert export_row(session, export["id"]).status == "ready"
        assert set(document(store, user.id, export["id"])) == SECTIONS


def test_the_worker_task_builds_them(
    build: BuildComponents, database_url: str, store: FakeStore, signing_key: Any, session: Session
) -> None:
    from tests.support.actors import make_actor

    app = make_app(build(make_settings(database_url, WORKER_TASKS_ENABLED="true")))
    client = app.test_client()
    user = make_actor(client, signing_key, "consumer")
    asked = ask(user)
    response = client.post(
        "/internal/tasks/export-data",
        headers={"User-Agent": "aws-sqsd/3.0.4"},
        environ_base={"REMOTE_ADDR": "127.0.0.1"},
    )
    assert _ok(response) == {
        "task": "export-data",
        "built": 1,
        "retried": 0,
        "failed": 0,
        "expired": 0,
    }
    assert export_row(session, asked["id"]).status == "ready"


def test_the_web_workers_thread_builds_after_the_request_commits(
    build: BuildComponents,
    database_url: str,
    store: FakeStore,
    signing_key: Any,
    session: Session,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tests.support.actors import make_actor

    passes = threading.Event()
    real = data_export.build_pending

    def observed(*args: Any, **kwargs: Any) -> data_export.BuildStats:
        stats = real(*args, **kwargs)
        if stats.built:
            passes.set()
        return stats

    monkeypatch.setattr(data_export, "build_pending", observed)
    components = build(make_settings(database_url, DATA_EXPORTS_IN_WEB="true"))
    assert components.export_builder is not None
    user = make_actor(make_app(components).test_client(), signing_key, "consumer")
    asked = ask(user)
    assert passes.wait(30), "the builder thread never built the export"
    assert export_row(session, asked["id"]).status == "ready"
    assert _ok(user.get(f"/v1/me/exports/{asked['id']}"))["status"] == "ready"


def test_an_idempotent_retry_replays_the_first_answer(actors: Any) -> None:
    user = actors("consumer")
    key = {"Idempotency-Key": str(uuid.uuid4())}
    first = user.post("/v1/me/exports", headers=key)
    again = user.post("/v1/me/exports", headers=key)
    assert first.status_code == again.status_code == 202
    assert first.get_json() == again.get_json()
    assert again.headers["Location"] == first.headers["Location"]
