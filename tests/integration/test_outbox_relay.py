"""The outbox relay's cost per pass: one device query a batch, no pass to find nothing, and
the web relay's passes spaced out so that a stream of commits shares them."""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine, event, func, select
from sqlalchemy.orm import Session, sessionmaker

from models import Notification, OutboxMessage
from services.base.unit_of_work import transaction
from services.messaging import notifications, outbox
from tests.support.actors import make_actor
from tests.support.fakes import FakePush


@contextmanager
def statements(engine: Engine) -> Iterator[list[str]]:
    seen: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany) -> None:  # type: ignore[no-untyped-def]
        seen.append(" ".join(statement.split()))

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


def notify_each(sessions: sessionmaker[Session], users: list[uuid.UUID], times: int = 1) -> None:
    with transaction(sessions) as session:
        for user_id in users * times:
            notifications.notify(session, user_id=user_id, kind="k", title="t", body="b", data={})


def test_a_batch_looks_up_its_devices_once_and_stops_when_not_full(  # type: ignore[no-untyped-def]
    client, signing_key, push: FakePush, sessions: sessionmaker[Session], engine: Engine
) -> None:
    actors = [make_actor(client, signing_key, "consumer") for _ in range(3)]
    for n, actor in enumerate(actors):
        token = str(n) * 64
        registered = actor.post("/v1/devices", json={"platform": "ios", "token": token})
        assert registered.status_code == 200, registered.get_data(as_text=True)
    users = [uuid.UUID(actor.id) for actor in actors]
    notify_each(sessions, users, times=2)
    with statements(engine) as seen:
        stats = outbox.drain_all(sessions, push)
    assert (stats.delivered, stats.taken) == (6, 6)
    assert len(push.published) == 6
    assert sum(s.startswith("SELECT devices.") for s in seen) == 1
    assert sum("SKIP LOCKED" in s for s in seen) == 1  # no second pass to find none
    # Each user's badge is counted once for the batch, and it is the same count as before.
    assert sum("FROM notifications" in s for s in seen) == 3
    with sessions() as check:
        assert check.scalar(select(func.count()).select_from(Notification)) == 6
        undelivered = select(func.count()).where(OutboxMessage.delivered_at.is_(None))
        assert check.scalar(undelivered) == 0


def test_full_batches_go_on_until_one_is_not_full(  # type: ignore[no-untyped-def]
    client, signing_key, push: FakePush, sessions: sessionmaker[Session], engine: Engine
) -> None:
    user_id = uuid.UUID(make_actor(client, signing_key, "consumer").id)
    notify_each(sessions, [user_id], times=5)
    with statements(engine) as seen:
        stats = outbox.drain_all(sessions, push, batch=2)
    assert (stats.delivered, stats.taken) == (5, 5)
    assert sum("SKIP LOCKED" in s for s in seen) == 3  # 2, 2, then 1: done


def test_the_web_relay_spaces_its_passes_and_runs_a_lone_wake_at_once() -> None:
    passes: list[tuple[float, float]] = []
    ran = threading.Event()

    def drainer(*_: object, **__: object) -> outbox.DrainStats:
        started = time.monotonic()
        time.sleep(0.002)
        passes.append((started, time.monotonic()))
        ran.set()
        return outbox.DrainStats()

    gap = 0.2  # wide enough that a busy machine's thread start stays well inside it
    relay = outbox.OutboxRelay(None, None, drainer=drainer, gap=gap, interval=60)  # type: ignore[arg-type]
    woken = time.monotonic()
    relay.wake()
    assert ran.wait(5)
    assert passes[0][0] - woken < gap  # the first pass did not wait out a gap
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:  # a stream of commits, one every millisecond
        relay.wake()
        time.sleep(0.001)
    time.sleep(2 * gap)
    assert 3 <= len(passes) <= 1.0 / gap + 3  # a pass per gap, not one per wake (~1,000)
    gaps = [nxt[0] - prev[1] for prev, nxt in itertools.pairwise(passes)]
    assert min(gaps) >= gap * 0.9
