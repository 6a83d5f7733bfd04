"""Realistic data for the benchmark, COPYed straight into PostgreSQL (no ORM, no app code).

Providers come from bench.search_explain (its cities, categories and bios); consumers,
bookings, booking events, messages, analytics events and sync datasets are generated here.
The users the benchmark signs in as (`BenchUser`) are seeded with the `sub` of their real
Cognito tokens, so the first request finds their row and nothing is written on the hot path.
"""

from __future__ import annotations

import io
import json
import random
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine

from bench.search_explain import CATEGORIES, CITIES
from bench.search_explain import seed as seed_providers

EVENT_NAMES = [
    "app.open",
    "screen.view",
    "search.performed",
    "provider.viewed",
    "booking.viewed",
    "booking.created",
    "message.sent",
    "push.opened",
]
STATUSES = [
    ("completed", 45),
    ("cancelled", 12),
    ("declined", 8),
    ("accepted", 15),
    ("requested", 15),
    ("in_progress", 5),
]


@dataclass(frozen=True)
class Scale:
    consumers: int
    providers: int
    bookings: int
    messages: int
    events: int
    sync_datasets: int
    sync_records_per_dataset: int
    bench_bookings_per_user: int  # the booking list's depth for each signed-in user


FULL = Scale(10_000, 2_000, 200_000, 500_000, 1_000_000, 2_000, 25, 300)
SMOKE = Scale(300, 200, 2_000, 5_000, 10_000, 50, 10, 40)

POLL_MESSAGES = 60  # messages on each signed-in user's poll booking
POST_BOOKINGS = 4  # bookings per signed-in user that the message-post scenario writes to
SYNC_RECORDS = 500  # records in each signed-in user's "settings" dataset
# The slots scenario: one provider with availability and this many accepted bookings ahead,
# SLOTS_PER_DAY a day (60 minutes each, whole hours between 08:00 and 20:00 UTC).
SLOTS_BOOKINGS = 500
SLOTS_PER_DAY = 7
SLOTS_DAYS_AHEAD = 120


@dataclass
class BenchUser:
    username: str
    sub: str
    email: str
    token: str
    id: uuid.UUID = field(default_factory=uuid.uuid4)
    poll_booking: uuid.UUID | None = None
    post_bookings: list[uuid.UUID] = field(default_factory=list)


def _uuid(rng: random.Random) -> uuid.UUID:
    return uuid.UUID(int=rng.getrandbits(128), version=4)


def _ts(value: datetime) -> str:
    return value.isoformat()


def _copy(cursor: Any, table: str, columns: list[str], rows: Iterable[tuple[Any, ...]]) -> int:
    """COPY in text format, 100k rows a statement (values never hold tabs or backslashes)."""
    count = 0
    buffer = io.StringIO()

    def flush() -> None:
        buffer.seek(0)
        cursor.copy_expert(f"COPY {table} ({', '.join(columns)}) FROM STDIN", buffer)
        buffer.seek(0)
        buffer.truncate()

    for row in rows:
        buffer.write("\t".join("\\N" if v is None else str(v) for v in row))
        buffer.write("\n")
        count += 1
        if count % 100_000 == 0:
            flush()
    if buffer.tell():
        flush()
    return count


def seed(engine: Engine, scale: Scale, bench_users: list[BenchUser], seed: int = 8) -> dict:
    """Fill a migrated, empty database; returns the row counts per table."""
    rng = random.Random(seed)  # noqa: S311 - reproducible data, not secrets
    counts: dict[str, int] = {}
    counts.update(seed_providers(engine, scale.providers, rng))
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        cursor.execute("SET synchronous_commit = off")
        cursor.execute("SELECT provider_id, category FROM provider_categories ORDER BY 1, 2")
        offers: dict[uuid.UUID, list[str]] = {}
        for provider_id, category in cursor.fetchall():
            offers.setdefault(uuid.UUID(str(provider_id)), []).append(category)
        providers = sorted(offers)
        now = datetime.now(UTC)
        year_ago = now - timedelta(days=365)

        # ---- consumers (plus the signed-in bench users)
        consumers = [_uuid(rng) for _ in range(scale.consumers)]

        def users() -> Iterator[tuple[Any, ...]]:
            for i, user_id in enumerate(consumers):
                created = _ts(year_ago + timedelta(seconds=rng.randrange(365 * 86400)))
                yield (
                    user_id,
                    f"consumer-{i}",
                    f"consumer-{i}",
                    f"consumer-{i}@bench.trellis.local",
                    f"Consumer {i}",
                    '["consumer"]',
                    "{}",
                    created,
                    created,
                )
            for user in bench_users:
                created = _ts(now - timedelta(days=200))
                yield (
                    user.id,
                    user.sub,
                    user.username,
                    user.email,
                    user.username,
                    '["consumer"]',
                    "{}",
                    created,
                    created,
                )

        counts["users"] += _copy(
            cursor,
            "users",
            [
                "id",
                "cognito_sub",
                "cognito_username",
                "email",
                "display_name",
                "roles",
                "role_revocations",
                "created_at",
                "updated_at",
            ],
            users(),
        )

        # ---- bookings, one "requested" event each, messages on about a quarter of them
        statuses = [s for s, _ in STATUSES]
        weights = [w for _, w in STATUSES]
        city_points = [(lat, lng) for _, lat, lng, _ in CITIES]
        bookings: list[tuple[Any, ...]] = []
        message_plan: list[tuple[uuid.UUID, uuid.UUID, uuid.UUID, int, datetime]] = []
        # (provider, start) taken: bookings last 60 minutes (the migration's trigger fills
        # ends_at), so one start per provider and hour keeps the exclusion constraint happy.
        taken: set[tuple[uuid.UUID, datetime]] = set()

        def start_for(provider: uuid.UUID, wanted: datetime) -> datetime:
            wanted = wanted.replace(minute=0, second=0, microsecond=0)  # on the hour
            while (provider, wanted) in taken:
                wanted += timedelta(hours=1)
            taken.add((provider, wanted))
            return wanted

        def add_booking(consumer: uuid.UUID, status: str, n_messages: int) -> uuid.UUID:
            booking_id = _uuid(rng)
            provider = providers[rng.randrange(len(providers))]
            created = year_ago + timedelta(seconds=rng.randrange(360 * 86400))
            lat, lng = city_points[rng.randrange(len(city_points))]
            bookings.append(
                (
                    booking_id,
                    consumer,
                    provider,
                    offers[provider][0],
                    _ts(
                        start_for(
                            provider,
                            created + timedelta(days=rng.randint(1, 14), hours=rng.randint(8, 18)),
                        )
                    ),
                    repr(lat + rng.uniform(-0.1, 0.1)),
                    repr(lng + rng.uniform(-0.1, 0.1)),
                    f"{rng.randint(1, 200)} Bench Street",
                    "Please ring the bell." if rng.random() < 0.3 else "",
                    status,
                    n_messages,
                    _ts(created),
                    _ts(created),
                )
            )
            if n_messages:
                message_plan.append((booking_id, consumer, provider, n_messages, created))
            return booking_id

        for user in bench_users:
            user.poll_booking = add_booking(user.id, "accepted", POLL_MESSAGES)
            user.post_bookings = [add_booking(user.id, "accepted", 0) for _ in range(POST_BOOKINGS)]
            for _ in range(scale.bench_bookings_per_user - 1 - POST_BOOKINGS):
                add_booking(user.id, rng.choices(statuses, weights)[0], 0)
        per_booking = max(1, scale.messages // max(1, scale.bookings // 4))
        while len(bookings) < scale.bookings:
            n = rng.randint(1, 2 * per_booking - 1) if rng.random() < 0.26 else 0
            add_booking(
                consumers[rng.randrange(len(consumers))], rng.choices(statuses, weights)[0], n
            )
        # ---- the slots scenario's provider: availability and SLOTS_BOOKINGS accepted
        # bookings ahead (the first provider; hours no other booking of theirs starts near)
        slots_provider = providers[0]
        ahead = now.replace(minute=0, second=0, microsecond=0) + timedelta(days=1)
        placed = 0
        while placed < SLOTS_BOOKINGS:
            for hour in sorted(rng.sample(range(8, 20), SLOTS_PER_DAY)):
                start = ahead.replace(hour=hour)
                near = {start + timedelta(hours=h) for h in (-1, 0, 1)}
                if placed == SLOTS_BOOKINGS or any((slots_provider, t) in taken for t in near):
                    continue
                taken.add((slots_provider, start))
                bookings.append(
                    (
                        _uuid(rng),
                        consumers[rng.randrange(len(consumers))],
                        slots_provider,
                        offers[slots_provider][0],
                        _ts(start),
                        "52.52",
                        "13.405",
                        "1 Slot Street",
                        "",
                        "accepted",
                        0,
                        _ts(now),
                        _ts(now),
                    )
                )
                placed += 1
            ahead += timedelta(days=1)
        # Monday to Saturday 08:00-12:00 and 13:00-20:00 Berlin time; one day closed.
        weekly = [
            {"weekday": day, "start": start, "end": end}
            for day in range(6)
            for start, end in (("08:00", "12:00"), ("13:00", "20:00"))
        ]
        closed = (now + timedelta(days=3)).date().isoformat()
        counts["availabilities"] = _copy(
            cursor,
            "availabilities",
            [
                "provider_id",
                "time_zone",
                "weekly",
                "exceptions",
                "buffer_minutes",
                "min_notice_minutes",
                "max_days_ahead",
                "default_duration_minutes",
                "updated_at",
            ],
            [
                (
                    slots_provider,
                    "Europe/Berlin",
                    json.dumps(weekly),
                    json.dumps([{"date": closed, "intervals": []}]),
                    0,
                    120,
                    SLOTS_DAYS_AHEAD,
                    60,
                    _ts(now),
                )
            ],
        )
        counts["bookings"] = _copy(
            cursor,
            "bookings",
            [
                "id",
                "consumer_id",
                "provider_id",
                "category",
                "scheduled_at",
                "lat",
                "lng",
                "address",
                "notes",
                "status",
                "last_message_seq",
                "created_at",
                "updated_at",
            ],
            bookings,
        )
        counts["booking_events"] = _copy(
            cursor,
            "booking_events",
            [
                "id",
                "booking_id",
                "from_status",
                "to_status",
                "actor_id",
                "actor_role",
                "reason",
                "created_at",
            ],
            (
                (_uuid(rng), b[0], None, "requested", b[1], "consumer", None, b[11])
                for b in bookings
            ),
        )

        def messages() -> Iterator[tuple[Any, ...]]:
            for booking_id, consumer, provider, n, created in message_plan:
                at = created
                for seq in range(1, n + 1):
                    at += timedelta(minutes=rng.randint(1, 120))
                    sender = consumer if seq % 2 else provider
                    yield (_uuid(rng), booking_id, seq, sender, f"Message {seq}", _ts(at))

        counts["messages"] = _copy(
            cursor,
            "messages",
            ["id", "booking_id", "seq", "sender_id", "body", "created_at"],
            messages(),
        )

        # ---- analytics events over the last 30 days
        category_names = [c for c, _ in CATEGORIES]
        attributes = [
            json.dumps({"screen": s, "category": c})
            for s in ("home", "search", "booking", "chat")
            for c in category_names
        ]
        metrics = [
            json.dumps({"duration_ms": d, "results": r})
            for d in range(0, 5000, 250)
            for r in (0, 5, 20)
        ]
        platforms = ["ios", "android", "web"]

        def events() -> Iterator[tuple[Any, ...]]:
            month_ago = now - timedelta(days=30)
            for _ in range(scale.events):
                at = month_ago + timedelta(seconds=rng.random() * 30 * 86400)
                yield (
                    consumers[rng.randrange(len(consumers))],
                    EVENT_NAMES[rng.randrange(len(EVENT_NAMES))],
                    _ts(at),
                    _ts(at + timedelta(seconds=rng.randint(0, 30))),
                    f"s-{rng.getrandbits(40):x}",
                    attributes[rng.randrange(len(attributes))],
                    metrics[rng.randrange(len(metrics))],
                    "2.4.1",
                    platforms[rng.randrange(3)],
                )

        counts["events"] = _copy(
            cursor,
            "events",
            [
                "user_id",
                "name",
                "occurred_at",
                "received_at",
                "session_id",
                "attributes",
                "metrics",
                "app_version",
                "platform",
            ],
            events(),
        )

        # ---- sync datasets: many small ones, and a 500-record "settings" per bench user
        datasets: list[tuple[Any, ...]] = []
        records: list[tuple[Any, ...]] = []
        stamp = _ts(now - timedelta(days=1))

        def add_dataset(owner: uuid.UUID, name: str, n: int) -> None:
            dataset_id = _uuid(rng)
            live = size = 0
            for i in range(n):
                deleted = rng.random() < 0.05
                value = None if deleted else json.dumps({"v": i, "label": f"item {i}"})
                if not deleted:
                    live += 1
                    size += len(f"key-{i}") + len(value or "")
                records.append(
                    (
                        dataset_id,
                        f"key-{i}",
                        value,
                        i + 1,
                        "t" if deleted else "f",
                        "device-1",
                        stamp,
                    )
                )
            datasets.append((dataset_id, owner, name, n, live, size, stamp, stamp))

        for owner in rng.sample(consumers, min(scale.sync_datasets, len(consumers))):
            add_dataset(owner, "settings", scale.sync_records_per_dataset)
        for user in bench_users:
            add_dataset(user.id, "settings", SYNC_RECORDS)
        counts["sync_datasets"] = _copy(
            cursor,
            "sync_datasets",
            [
                "id",
                "user_id",
                "name",
                "sync_count",
                "record_count",
                "bytes",
                "created_at",
                "updated_at",
            ],
            datasets,
        )
        counts["sync_records"] = _copy(
            cursor,
            "sync_records",
            ["dataset_id", "key", "value", "sync_count", "deleted", "device_id", "updated_at"],
            records,
        )
        raw.commit()
    finally:
        raw.close()
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.exec_driver_sql("VACUUM (ANALYZE)")
    return counts
