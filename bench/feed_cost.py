"""What the change feed costs a write: a message post's transaction with and without it.

    .venv/bin/python -m bench.feed_cost [--posts 400]

On a throwaway migrated PostgreSQL database, the service call behind POST
/v1/bookings/{id}/messages (services/marketplace/messages.post_message: the booking row
lock, the message, the inbox entry, the push in the outbox; with the feed, also the feed
entries of both parties and the recipient's notification entry, and their pg_notify) runs
in its own committed transaction, alternately with the feed on and with feed.append
dropping them (A B A B ...), so both see the same machine. Prints the median and
mean wall time of each and their ratio. The HTTP layers around it (Flask, the token, the
Idempotency-Key) cost the same either way, so the whole request's ratio is smaller still.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import create_engine, insert
from sqlalchemy.orm import Session, sessionmaker

from models import Booking, User
from services.accounts.users import UserView
from services.base.content_filter import ContentFilter
from services.base.unit_of_work import transaction
from services.marketplace import messages
from services.realtime import feed
from tests.support.database import fresh_database


def seed(database_url: str) -> tuple[uuid.UUID, UserView]:
    now = datetime.now(UTC)
    consumer, provider, booking = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    engine = create_engine(database_url)
    with engine.begin() as connection:
        for user_id in (consumer, provider):
            connection.execute(
                insert(User).values(
                    id=user_id,
                    cognito_sub=f"feed-cost-{user_id}",
                    roles=["consumer"],
                    role_revocations={},
                    created_at=now,
                    updated_at=now,
                )
            )
        connection.execute(
            insert(Booking).values(
                id=booking,
                consumer_id=consumer,
                provider_id=provider,
                category="cleaning",
                scheduled_at=now + timedelta(days=3),
                ends_at=now + timedelta(days=3, hours=1),
                blocked_until=now + timedelta(days=3, hours=1),
                lat=52.5,
                lng=13.4,
                address="Somewhere 1",
                notes="",
                status="accepted",
                last_message_seq=0,
                created_at=now,
                updated_at=now,
            )
        )
    engine.dispose()
    sender = UserView(consumer, None, ("consumer",), "Ann", None, now, now)
    return booking, sender


def no_feed(session: Session) -> None:
    """feed.write_pending's stand-in: the entries are dropped (no rows, no NOTIFY); a push
    that waits for a seq gets 0."""
    pending = session.info.pop(feed._PENDING, None)
    for entry in pending.entries if pending is not None else ():
        if entry.push is not None:
            entry.push["seq"] = "0"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--posts", type=int, default=400, help="posts of each kind")
    args = parser.parse_args(argv)
    real_write = feed.write_pending
    content = ContentFilter(())
    timings: dict[str, list[float]] = {"with the feed": [], "without": []}
    with fresh_database("trellis_feed_cost") as database_url:
        booking, sender = seed(database_url)
        engine = create_engine(database_url, pool_size=1)
        sessions = sessionmaker(engine)
        for n in range(2 * args.posts + 20):
            with_feed = n % 2 == 0
            feed.write_pending = real_write if with_feed else no_feed  # type: ignore[assignment]
            started = time.perf_counter()
            with transaction(sessions) as session:
                messages.post_message(
                    session, booking_id=booking, sender=sender, body=f"hello {n}", content=content
                )
            elapsed = (time.perf_counter() - started) * 1000
            if n >= 20:  # after a warm-up
                timings["with the feed" if with_feed else "without"].append(elapsed)
        feed.write_pending = real_write  # type: ignore[assignment]
        engine.dispose()
    report = {
        name: {
            "median_ms": round(statistics.median(values), 3),
            "mean_ms": round(statistics.fmean(values), 3),
        }
        for name, values in timings.items()
    }
    with_feed, without = report["with the feed"], report["without"]
    report["ratio_median"] = round(with_feed["median_ms"] / without["median_ms"], 3)
    report["ratio_mean"] = round(with_feed["mean_ms"] / without["mean_ms"], 3)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
