"""The change feed: entries written in the transaction of each change, numbered 1, 2, 3...
per user with no gap (also under concurrent writers), GET /v1/changes paging, the 410 past
the retention purge, the push's seq, and PostgreSQL's NOTIFY sent only on commit."""

from __future__ import annotations

import select as select_module
import threading
import uuid
from datetime import timedelta

import orjson
import psycopg2
import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from models import Change, OutboxMessage, User
from models.base import utcnow
from services.base.unit_of_work import transaction
from services.realtime import feed
from tests.support.actors import Actor, booking_body
from tests.support.bookings import ensure_profile


def parties(actors) -> tuple[Actor, Actor]:  # type: ignore[no-untyped-def]
    consumer, provider = actors("consumer"), actors("provider")
    ensure_profile(provider)
    return consumer, provider


def changes(actor: Actor, **query: object) -> dict:
    response = actor.get("/v1/changes", query_string=query)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


def kinds(page: dict) -> list[tuple[int, str]]:
    return [(item["seq"], item["type"]) for item in page["items"]]


def test_a_booking_and_a_message_reach_both_feeds_in_order(actors, session: Session) -> None:  # type: ignore[no-untyped-def]
    consumer, provider = parties(actors)
    created = consumer.post("/v1/bookings", json=booking_body(provider.id))
    assert created.status_code == 201
    booking_id = created.get_json()["id"]
    assert provider.post(f"/v1/bookings/{booking_id}/accept").status_code == 200
    posted = consumer.post(f"/v1/bookings/{booking_id}/messages", json={"body": "See you"})
    assert posted.status_code == 201, posted.get_data(as_text=True)

    mine = changes(consumer)
    assert kinds(mine) == [(1, "booking"), (2, "booking"), (3, "notification"), (4, "message")]
    assert [i["data"].get("event") for i in mine["items"][:2]] == ["requested", "accept"]
    assert mine["items"][1]["data"]["status"] == "accepted"
    assert mine["items"][3]["data"]["message_id"] == posted.get_json()["id"]
    assert mine["last_seq"] == 4 and mine["next_cursor"] is None

    theirs = changes(provider)
    assert [t for _, t in kinds(theirs)] == [
        "booking",
        "notification",
        "booking",
        "message",
        "notification",
    ]
    assert [s for s, _ in kinds(theirs)] == [1, 2, 3, 4, 5]
    # The push of the message's notification carries the seq of its feed entry.
    note = theirs["items"][4]["data"]
    payloads = session.scalars(
        select(OutboxMessage.payload).where(OutboxMessage.user_id == uuid.UUID(provider.id))
    ).all()
    pushed = [p for p in payloads if p["data"].get("message_id") == posted.get_json()["id"]]
    assert note["kind"] == "message.new" and pushed[0]["data"]["seq"] == "5"


def test_pages_resume_and_a_refused_change_takes_no_number(actors) -> None:  # type: ignore[no-untyped-def]
    consumer, provider = parties(actors)
    booking_id = consumer.post("/v1/bookings", json=booking_body(provider.id)).get_json()["id"]
    for text in ("one", "two", "three"):
        body = {"body": text}
        assert consumer.post(f"/v1/bookings/{booking_id}/messages", json=body).status_code == 201
    # A refused change (403: completing is the provider's) takes no number.
    assert consumer.post(f"/v1/bookings/{booking_id}/complete").status_code == 403
    first = changes(consumer, limit=2)
    assert kinds(first) == [(1, "booking"), (2, "message")]
    assert first["next_cursor"] == "2" and first["last_seq"] == 2
    rest = changes(consumer, after=first["next_cursor"])
    assert [s for s, _ in kinds(rest)] == [3, 4]
    assert rest["next_cursor"] is None and rest["last_seq"] == 4
    # Nothing new: an empty page that keeps the cursor; a cursor ahead of the feed too.
    assert changes(consumer, after=4) == {"items": [], "next_cursor": None, "last_seq": 4}
    assert changes(consumer, after=99)["items"] == []


def test_a_cursor_older_than_the_retention_is_gone(actors, sessions: sessionmaker) -> None:  # type: ignore[no-untyped-def]
    consumer, provider = parties(actors)
    booking_id = consumer.post("/v1/bookings", json=booking_body(provider.id)).get_json()["id"]
    for text in ("old", "older"):
        body = {"body": text}
        assert consumer.post(f"/v1/bookings/{booking_id}/messages", json=body).status_code == 201
    with transaction(sessions) as session:
        session.execute(
            update(Change)
            .where(Change.user_id == uuid.UUID(consumer.id), Change.seq <= 2)
            .values(created_at=utcnow() - timedelta(days=31))
        )
    assert feed.purge_expired(sessions, retention_days=30) == 2
    gone = consumer.get("/v1/changes", query_string={"after": 1})
    assert gone.status_code == 410
    assert gone.get_json()["type"] == "/problems/changes-expired"
    assert gone.headers["Content-Type"] == "application/problem+json"
    assert kinds(changes(consumer, after=2)) == [(3, "message")]
    assert kinds(changes(consumer)) == [(3, "message")]  # from the oldest kept
    # Every entry purged: a cursor before the newest number is still gone, the newest is not.
    with transaction(sessions) as session:
        session.execute(update(Change).values(created_at=utcnow() - timedelta(days=40)))
    feed.purge_expired(sessions, retention_days=30)
    assert consumer.get("/v1/changes", query_string={"after": 2}).status_code == 410
    assert changes(consumer, after=3)["items"] == []


@pytest.mark.parametrize(
    "query", [{"after": -1}, {"after": "x"}, {"limit": 0}, {"limit": 501}, {"since": 1}]
)
def test_bad_queries_are_422(actors, query: dict) -> None:  # type: ignore[no-untyped-def]
    response = actors("consumer").get("/v1/changes", query_string=query)
    assert response.status_code == 422
    assert response.get_json()["type"] == "/problems/validation-failed"


def test_no_token_no_changes(client) -> None:  # type: ignore[no-untyped-def]
    assert client.get("/v1/changes").status_code == 401


def _user(sessions: sessionmaker[Session]) -> uuid.UUID:
    user_id = uuid.uuid4()
    with transaction(sessions) as session:
        now = utcnow()
        session.add(User(id=user_id, cognito_sub=f"sub-{user_id}", created_at=now, updated_at=now))
    return user_id


def test_concurrent_writers_get_every_number_once(sessions: sessionmaker[Session]) -> None:
    alice, bob = _user(sessions), _user(sessions)
    errors: list[BaseException] = []

    def write(n: int) -> None:
        try:
            for i in range(15):
                with transaction(sessions) as session:
                    users = (alice, bob) if (n + i) % 2 else (bob, alice)
                    feed.append(session, users, "test", {"n": n, "i": i})
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    with sessions() as session:
        for user in (alice, bob):
            seqs = session.scalars(
                select(Change.seq).where(Change.user_id == user).order_by(Change.seq)
            ).all()
            assert seqs == list(range(1, 91))
            assert feed.last_seq(session, user) == 90


def test_notify_is_sent_on_commit_only(database_url: str, sessions: sessionmaker[Session]) -> None:
    user = _user(sessions)
    with sessions() as probe:
        if probe.get_bind().dialect.name != "postgresql":
            pytest.skip("NOTIFY exists on PostgreSQL only")
    listener = psycopg2.connect(database_url.replace("postgresql+psycopg2://", "postgresql://"))
    listener.autocommit = True
    try:
        listener.cursor().execute(f"LISTEN {feed.CHANNEL}")
        with sessions() as session:
            feed.append(session, [user], "test", {"rolled": "back"})
            session.rollback()
        with transaction(sessions) as session:
            feed.append(session, [user], "test", {"kept": True})
            feed.append(session, [user], "big", {"blob": "x" * 8000})
        select_module.select([listener], [], [], 5)
        listener.poll()
        payloads = [orjson.loads(n.payload) for n in listener.notifies]
    finally:
        listener.close()
    assert [(p["u"], p["s"], p["t"]) for p in payloads] == [
        (str(user), 1, "test"),
        (str(user), 2, "big"),
    ]
    assert payloads[0]["d"] == {"kept": True} and "d" not in payloads[1]  # too big: read it


def _feed_of(sessions: sessionmaker[Session], user: uuid.UUID) -> list[tuple[int, str]]:
    with sessions() as session:
        rows = session.execute(
            select(Change.seq, Change.type).where(Change.user_id == user).order_by(Change.seq)
        )
        return [(row.seq, row.type) for row in rows]


def test_a_rolled_back_savepoint_keeps_the_entries_from_before_it_and_drops_its_own(
    sessions: sessionmaker[Session],
) -> None:
    """An entry appended before a savepoint but written by a flush inside it is written
    again after the savepoint rolls back (its change stands); one appended inside is gone
    (its change is)."""
    user, other = _user(sessions), _user(sessions)
    with transaction(sessions) as session:
        feed.append(session, (user,), "outer", {})
        savepoint = session.begin_nested()
        now = utcnow()
        session.add(User(id=uuid.uuid4(), cognito_sub=f"sub-{uuid.uuid4()}", created_at=now,
                         updated_at=now))  # fmt: skip
        session.flush()  # writes "outer", inside the savepoint
        feed.append(session, (user, other), "inner", {})
        savepoint.rollback()
        feed.append(session, (user,), "after", {})
    assert _feed_of(sessions, user) == [(1, "outer"), (2, "after")]
    assert _feed_of(sessions, other) == []


def test_entries_written_inside_a_released_savepoint_stand(
    sessions: sessionmaker[Session],
) -> None:
    user = _user(sessions)
    with transaction(sessions) as session:
        feed.append(session, (user,), "outer", {})
        with session.begin_nested():
            feed.append(session, (user,), "inner", {})
            session.flush()
        feed.append(session, (user,), "after", {})
    assert _feed_of(sessions, user) == [(1, "outer"), (2, "inner"), (3, "after")]
