"""Scheduled export to moto's S3: content, secrets, watermarks, ties, the safety margin,
failure and rerun, one run at a time, 100k rows in bounded memory, the CLI, archival rules.

These tests commit (the export uses several transactions and a server-side cursor), so they
run on a database of their own that is emptied after each test.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import re
import secrets
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any

import boto3
import pytest
from flask.testing import FlaskCliRunner
from sqlalchemy import Engine, create_engine, func, insert, select, text, update
from sqlalchemy.orm import Session, sessionmaker

from api import create_app
from models import (
    Base,
    Booking,
    BookingEvent,
    Device,
    Event,
    ExportRun,
    ExportWatermark,
    IdempotencyKey,
    Message,
    OutboxMessage,
    ProviderProfile,
    Review,
    User,
)
from models.base import utcnow
from services.analytics import export
from services.aws.exports import MIN_CHUNK_BYTES, ExportSink, S3ExportStore
from services.aws.s3 import S3Store
from services.base.settings import Settings
from services.components import Components, build_components
from tests.conftest import dispose, make_settings
from tests.support.aws import REGION, emulated_aws
from tests.support.database import ROOT, fresh_database
from tests.support.exports import FailingSink, jsonl_rows
from tests.support.fakes import FakePush
from tests.support.tokens import FakeJwksFetcher, SigningKey

BUCKET = "trellis-exports-test"
UPLOADS_BUCKET = "trellis-uploads-test"
SECRET = "SECRET"  # in every column that must never leave the database
PART_KEY = re.compile(
    r"^exports/(?P<table>[a-z_]+)/dt=(?P<dt>\d{4}-\d{2}-\d{2})/"
    r"(?P<run>[0-9a-f-]{36})-(?P<part>\d{5})\.jsonl\.gz$"
)
EXPORT_TIMESTAMP = "%Y-%m-%d %H:%M:%S.%f"


@pytest.fixture(scope="module")
def export_url() -> Iterator[str]:
    with fresh_database("trellis_export") as url:
        yield url


@pytest.fixture(scope="module")
def engine(export_url: str) -> Iterator[Engine]:
    engine = create_engine(export_url)
    yield engine
    engine.dispose()


@pytest.fixture(autouse=True)
def _empty_afterwards(engine: Engine) -> Iterator[None]:
    yield
    with engine.begin() as connection:
        tables = ", ".join(t.name for t in reversed(Base.metadata.sorted_tables))
        connection.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))


@pytest.fixture
def sessions(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False)


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with emulated_aws():
        yield boto3.client("s3", region_name=REGION)


@pytest.fixture
def kms_key(s3: Any) -> str:
    return str(boto3.client("kms", region_name=REGION).create_key()["KeyMetadata"]["Arn"])


@pytest.fixture
def sink(s3: Any, kms_key: str) -> S3ExportStore:
    store = S3ExportStore(bucket=BUCKET, region=REGION, kms_key_id=kms_key)
    store.ensure_bucket()
    return store


def export_settings(url: str, **overrides: object) -> Settings:
    return make_settings(url, **{k.upper(): str(v) for k, v in overrides.items()})


# --- data ---------------------------------------------------------------------------------


@dataclass
class World:
    consumer: uuid.UUID
    provider: uuid.UUID
    bookings: list[uuid.UUID]
    started: datetime


def add(engine: Engine, model: type[Any], rows: list[dict[str, Any]]) -> None:
    with engine.begin() as connection:
        connection.execute(insert(model), rows)


def seed_world(engine: Engine, *, events: int = 20) -> World:
    """A small marketplace, with SECRET in every column the export must leave behind."""
    t0 = utcnow().replace(microsecond=123456) - timedelta(hours=2)
    consumer, provider = uuid.uuid4(), uuid.uuid4()
    add(
        engine,
        User,
        [
            {
                "id": user_id,
                "cognito_sub": f"{SECRET}-sub-{n}",
                "cognito_username": f"{SECRET}-name-{n}",
                "email": f"{SECRET}-{n}@example.com",
                "phone": "+4915100000001",
                "display_name": f"{SECRET} person",
                "roles": [role],
                "role_revocations": {},
                "created_at": t0,
                "updated_at": t0,
            }
            for n, (user_id, role) in enumerate(((consumer, "consumers"), (provider, "providers")))
        ],
    )
    add(
        engine,
        ProviderProfile,
        [
            {
                "user_id": provider,
                "display_name": "Spotless Sam",
                "bio": "Flats and offices",
                "categories": ["cleaning", "windows"],
                "lat": 52.52,
                "lng": 13.405,
                "service_radius_km": 15.0,
                "hourly_rate_cents": 2500,
                "currency": "EUR",
                "rating_sum": 5,
                "rating_count": 1,
                "created_at": t0,
                "updated_at": t0,
            }
        ],
    )
    bookings = [uuid.uuid4() for _ in range(5)]
    add(
        engine,
        Booking,
        [
            {
                "id": booking_id,
                "consumer_id": consumer,
                "provider_id": provider,
                "category": "cleaning",
                "scheduled_at": t0 + timedelta(days=1),
                "lat": 52.5,
                "lng": 13.4,
                "address": f"{SECRET} Street 1",
                "notes": f"door code {SECRET}",
                "status": "requested",
                "last_message_seq": 1,
                "created_at": t0 + timedelta(seconds=i),
                "updated_at": t0 + timedelta(seconds=i),
            }
            for i, booking_id in enumerate(bookings)
        ],
    )
    add(
        engine,
        BookingEvent,
        [
            {
                "booking_id": booking_id,
                "from_status": None,
                "to_status": "requested",
                "actor_id": consumer,
                "actor_role": "consumer",
                "created_at": t0 + timedelta(seconds=i),
            }
            for i, booking_id in enumerate(bookings)
        ],
    )
    add(
        engine,
        Message,
        [
            {
                "booking_id": booking_id,
                "seq": 1,
                "sender_id": consumer,
                "body": f"my {SECRET} message",
                "created_at": t0 + timedelta(seconds=i),
            }
            for i, booking_id in enumerate(bookings)
        ],
    )
    add(
        engine,
        Review,
        [
            {
                "booking_id": bookings[0],
                "consumer_id": consumer,
                "provider_id": provider,
                "rating": 5,
                "comment": "Spotless",
                "created_at": t0,
            }
        ],
    )
    add_events(engine, events, start=t0)
    add(
        engine,
        Device,
        [
            {
                "user_id": consumer,
                "platform": "ios",
                "token": f"{SECRET}-device-token",
                "endpoint_arn": f"arn:aws:sns:us-east-1:123456789012:endpoint/APNS/x/{SECRET}",
                "created_at": t0,
                "last_seen_at": t0,
            }
        ],
    )
    add(
        engine,
        IdempotencyKey,
        [
            {
                "user_id": consumer,
                "key": "k1",
                "fingerprint": "f" * 64,
                "state": "completed",
                "locked_at": t0,
                "expires_at": t0 + timedelta(days=1),
                "response_status": 201,
                "response_body": f'{{"url": "{SECRET}"}}'.encode(),
                "response_headers": {},
            }
        ],
    )
    add(
        engine,
        OutboxMessage,
        [{"user_id": consumer, "payload": {"title": f"{SECRET} push"}, "created_at": t0}],
    )
    return World(consumer=consumer, provider=provider, bookings=bookings, started=t0)


WORLD_ROWS = {
    "users": 2,
    "provider_profiles": 1,
    "bookings": 5,
    "booking_events": 5,
    "messages": 5,
    "reviews": 1,
    "events": 20,
}
# Every run also reports the accounts purged since the last one (none in the world).
EXPORTED = {**WORLD_ROWS, "deleted_users": 0}


def add_events(
    engine: Engine, count: int, *, start: datetime, step: timedelta = timedelta(milliseconds=3)
) -> None:
    add(
        engine,
        Event,
        [
            {
                "name": "screen_view",
                "occurred_at": start + i * step,
                "received_at": start + i * step,
                "session_id": f"s-{i // 10}",
                "attributes": {"screen": "booking"},
                "metrics": {"ms": float(i)},
                "app_version": "1.2.3",
                "platform": "ios",
            }
            for i in range(count)
        ],
    )


# --- reading what was exported ---------------------------------------------------------------


def keys(s3: Any) -> list[str]:
    found: list[str] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET):
        found += [o["Key"] for o in page.get("Contents", [])]
    return sorted(found)


def body(s3: Any, key: str) -> bytes:
    return bytes(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())


def exported_rows(s3: Any, table: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for key in keys(s3):
        match = PART_KEY.match(key)
        if match and match["table"] == table:
            rows += jsonl_rows(body(s3, key))
    return rows


def watermarks(engine: Engine) -> dict[str, tuple[datetime, str]]:
    with engine.connect() as connection:
        return {
            row.table_name: (row.last_changed_at, row.last_key)
            for row in connection.execute(select(ExportWatermark))
        }


def runs(engine: Engine) -> list[Any]:
    with engine.connect() as connection:
        return list(connection.execute(select(ExportRun).order_by(ExportRun.started_at)))


def stamp(moment: datetime) -> str:
    return moment.strftime(EXPORT_TIMESTAMP)


# --- tests ----------------------------------------------------------------------------------


def test_parts_are_gzip_jsonl_with_kms_a_manifest_and_no_secrets(
    engine: Engine, sessions: sessionmaker[Session], s3: Any, sink: S3ExportStore, kms_key: str
) -> None:
    world = seed_world(engine)
    settings = export_settings(engine.url.render_as_string(False), export_part_rows=2)
    result = export.run_export(sessions, sink, settings)

    assert result.tables == EXPORTED and result.rows == sum(WORLD_ROWS.values())
    manifest_key = f"exports/_manifests/{result.run_id}.json"
    assert result.manifest == manifest_key
    assert keys(s3) == sorted([*result.files, manifest_key])
    for key in result.files:
        match = PART_KEY.match(key)
        assert match and match["run"] == str(result.run_id), key
        head = s3.head_object(Bucket=BUCKET, Key=key)
        assert head["ServerSideEncryption"] == "aws:kms"
        assert head["SSEKMSKeyId"] == kms_key
        assert 1 <= len(jsonl_rows(body(s3, key))) <= 2  # EXPORT_PART_ROWS

    # Every row once, in the configured columns, values as in the database.
    expected_columns = {t.name: t.column_names for t in export.plan_tables()}
    for table, count in WORLD_ROWS.items():
        rows = exported_rows(s3, table)
        assert len(rows) == count, table
        assert all(list(row) == expected_columns[table] for row in rows), table
    bookings = {row["id"]: row for row in exported_rows(s3, "bookings")}
    assert set(bookings) == {str(b) for b in world.bookings}
    first = bookings[str(world.bookings[0])]
    assert first == {
        "id": str(world.bookings[0]),
        "consumer_id": str(world.consumer),
        "provider_id": str(world.provider),
        "category": "cleaning",
        "scheduled_at": stamp(world.started + timedelta(days=1)),
        "status": "requested",
        "last_message_seq": 1,
        "created_at": stamp(world.started),
        "updated_at": stamp(world.started),
    }
    profile = exported_rows(s3, "provider_profiles")[0]
    assert profile["categories"] == ["cleaning", "windows"] and profile["lat"] == 52.52
    event = exported_rows(s3, "events")[0]
    assert event["attributes"] == {"screen": "booking"} and event["metrics"] == {"ms": 0.0}

    # Nothing secret or personal anywhere: not in parts, not in the manifest.
    for key in keys(s3):
        raw = body(s3, key)
        text_ = (gzip.decompress(raw) if key.endswith(".gz") else raw).decode()
        assert SECRET not in text_, key
        for name in ("token", "endpoint_arn", "email", "phone", "address", "notes", "body"):
            assert f'"{name}"' not in text_, (key, name)

    manifest = json.loads(body(s3, manifest_key))
    assert manifest["run_id"] == str(result.run_id) and manifest["rows"] == result.rows
    listed = [f["key"] for t in manifest["tables"].values() for f in t["files"]]
    assert sorted(listed) == sorted(result.files)
    assert {name: t["rows"] for name, t in manifest["tables"].items()} == EXPORTED
    bookings_entry = manifest["tables"]["bookings"]
    assert bookings_entry["since"] is None
    assert bookings_entry["until"]["key"] == str(world.bookings[-1])
    assert bookings_entry["changed_column"] == "updated_at"
    assert manifest["tables"]["events"]["changed_column"] == "received_at"

    marks = watermarks(engine)
    assert set(marks) == set(WORLD_ROWS)
    assert marks["bookings"] == (world.started + timedelta(seconds=4), str(world.bookings[-1]))
    [run] = runs(engine)
    assert (run.id, run.status, run.rows, run.error) == (result.run_id, "succeeded", 39, None)
    assert sorted(run.files) == sorted(result.files) and run.finished_at is not None


def test_each_run_exports_the_accounts_purged_since_the_last_one(
    engine: Engine, sessions: sessionmaker[Session], s3: Any, sink: S3ExportStore
) -> None:
    """Copies downstream hold rows of people who since left: every run lists who, whatever
    EXPORT_TABLES says, with nothing but the id and when (and never anyone else)."""
    world = seed_world(engine)
    settings = export_settings(engine.url.render_as_string(False), export_tables='{"events": "*"}')
    purged_at = utcnow().replace(microsecond=250000) - timedelta(minutes=5)

    def purge(user_id: uuid.UUID, at: datetime) -> None:
        with engine.begin() as connection:
            connection.execute(update(User).where(User.id == user_id).values(purged_at=at))

    purge(world.consumer, purged_at)
    first = export.run_export(sessions, sink, settings)
    assert first.tables == {"events": 20, "deleted_users": 1}
    [part] = [k for k in first.files if PART_KEY.match(k)["table"] == "deleted_users"]  # type: ignore[index]
    assert part.startswith(f"exports/deleted_users/dt={purged_at.date().isoformat()}/")
    assert jsonl_rows(body(s3, part)) == [
        {"id": str(world.consumer), "purged_at": stamp(purged_at)}
    ]
    assert export.run_export(sessions, sink, settings).tables["deleted_users"] == 0
    purge(world.provider, purged_at + timedelta(minutes=1))
    third = export.run_export(sessions, sink, settings)
    assert third.tables == {"events": 0, "deleted_users": 1}
    rows = sorted(exported_rows(s3, "deleted_users"), key=lambda row: row["purged_at"])
    assert [r["id"] for r in rows] == [str(world.consumer), str(world.provider)]


def test_devices_export_leaves_token_and_endpoint_behind(
    engine: Engine, sessions: sessionmaker[Session], s3: Any, sink: S3ExportStore
) -> None:
    seed_world(engine)
    url = engine.url.render_as_string(False)
    settings = export_settings(url, export_tables='{"devices": "*"}')
    result = export.run_export(sessions, sink, settings)
    assert result.tables == {"devices": 1, "deleted_users": 0}
    [device] = exported_rows(s3, "devices")
    assert "token" not in device and "endpoint_arn" not in device
    assert device["platform"] == "ios" and SECRET not in json.dumps(device)


def test_incremental_runs_take_only_new_and_changed_rows_and_an_idle_run_writes_nothing(
    engine: Engine, sessions: sessionmaker[Session], s3: Any, sink: S3ExportStore
) -> None:
    world = seed_world(engine)
    settings = export_settings(engine.url.render_as_string(False))
    first = export.run_export(sessions, sink, settings)
    assert first.rows == 39

    changed_at = utcnow() - timedelta(minutes=2)
    with engine.begin() as connection:
        connection.execute(
            update(Booking)
            .where(Booking.id == world.bookings[2])
            .values(status="cancelled", updated_at=changed_at)
        )
    add_events(engine, 3, start=changed_at)
    second = export.run_export(sessions, sink, settings)
    assert second.tables == {**dict.fromkeys(EXPORTED, 0), "bookings": 1, "events": 3}
    assert all(PART_KEY.match(k)["run"] == str(second.run_id) for k in second.files)  # type: ignore[index]
    assert {PART_KEY.match(k)["table"] for k in second.files} == {"bookings", "events"}  # type: ignore[index]
    latest = [r for r in exported_rows(s3, "bookings") if r["status"] == "cancelled"]
    assert [r["id"] for r in latest] == [str(world.bookings[2])]
    assert latest[0]["updated_at"] == stamp(changed_at)
    manifest = json.loads(body(s3, str(second.manifest)))
    assert manifest["tables"]["bookings"]["since"]["key"] == str(world.bookings[-1])
    assert manifest["tables"]["users"]["rows"] == 0

    before = keys(s3)
    marks = watermarks(engine)
    idle = export.run_export(sessions, sink, settings)
    assert (idle.rows, idle.files, idle.manifest) == (0, [], None)
    assert keys(s3) == before  # no files, no manifest
    assert watermarks(engine) == marks
    assert [(r.status, r.rows) for r in runs(engine)] == [
        ("succeeded", 39),
        ("succeeded", 4),
        ("succeeded", 0),
    ]


def test_rows_sharing_the_watermark_timestamp_are_neither_lost_nor_repeated(
    engine: Engine, sessions: sessionmaker[Session], s3: Any, sink: S3ExportStore
) -> None:
    moment = utcnow() - timedelta(minutes=10)
    add_events(engine, 7, start=moment, step=timedelta(0))  # ids 1..7, one timestamp
    url = engine.url.render_as_string(False)
    settings = export_settings(url, export_tables='{"events": "*"}', export_part_rows=3)
    first = export.run_export(sessions, sink, settings)
    assert first.rows == 7 and len(first.files) == 3  # 3 + 3 + 1
    assert watermarks(engine)["events"] == (moment, "7")

    # Two more with the very same timestamp (a "> timestamp" watermark would lose them,
    # a ">= timestamp" one would export 1..7 again).
    add_events(engine, 2, start=moment, step=timedelta(0))
    second = export.run_export(sessions, sink, settings)
    assert second.rows == 2
    ids = sorted(row["id"] for row in exported_rows(s3, "events"))
    assert ids == list(range(1, 10))


def test_rows_inside_the_safety_margin_wait_for_the_next_run(
    engine: Engine, sessions: sessionmaker[Session], s3: Any, sink: S3ExportStore
) -> None:
    now = utcnow()
    add_events(engine, 1, start=now - timedelta(minutes=5))
    add_events(engine, 1, start=now - timedelta(seconds=10))  # may still have company
    url = engine.url.render_as_string(False)
    settings = export_settings(url, export_tables='{"events": "*"}', export_safety_seconds=60)
    assert export.run_export(sessions, sink, settings, now=now).rows == 1
    later = export.run_export(sessions, sink, settings, now=now + timedelta(minutes=2))
    assert later.rows == 1
    assert sorted(row["id"] for row in exported_rows(s3, "events")) == [1, 2]


def test_failure_mid_upload_moves_nothing_records_the_error_and_a_rerun_exports_every_row(
    engine: Engine, sessions: sessionmaker[Session], s3: Any, sink: S3ExportStore
) -> None:
    seed_world(engine)
    url = engine.url.render_as_string(False)
    settings = export_settings(url, export_part_rows=10)
    first = export.run_export(sessions, sink, settings)
    after_first = keys(s3)
    marks = watermarks(engine)

    add_events(engine, 100, start=utcnow() - timedelta(minutes=5))
    with engine.begin() as connection:
        connection.execute(
            # Declined, not accepted: the world's bookings share one provider and one time,
            # and two accepted ones would overlap (the exclusion constraint refuses that).
            update(Booking).values(status="declined", updated_at=utcnow() - timedelta(minutes=3))
        )
    # bookings (5 rows: part 1) go up; events fail in their 3rd part, mid-stream.
    failing = FailingSink(sink, fail_on_part=4)
    with pytest.raises(export.ExportFailed) as caught:
        export.run_export(sessions, failing, settings)
    assert failing.opened == 4
    assert "simulated failure" in str(caught.value.__cause__)

    assert watermarks(engine) == marks
    failed = runs(engine)[-1]
    assert failed.status == "failed" and failed.finished_at is not None
    assert "StorageUnavailable: simulated failure in the middle of an upload" in failed.error
    assert failed.files == [] and failed.rows == 0
    assert keys(s3) == after_first  # the failed run's parts were deleted
    assert not s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads")

    rerun = export.run_export(sessions, sink, settings)
    assert rerun.tables["events"] == 100 and rerun.tables["bookings"] == 5
    with engine.connect() as connection:
        event_ids = set(connection.scalars(select(Event.id)))
    assert {row["id"] for row in exported_rows(s3, "events")} == event_ids  # each at least once
    declined = [r for r in exported_rows(s3, "bookings") if r["status"] == "declined"]
    assert len(declined) == 5
    assert [r.status for r in runs(engine)] == ["succeeded", "failed", "succeeded"]
    assert first.run_id != rerun.run_id


def ticking(step: float = 3.0) -> Any:
    """A clock that moves `step` seconds each time it is read."""
    readings = iter(range(10_000))
    return lambda: next(readings) * step


def test_a_run_stops_at_the_time_limit_and_the_next_one_carries_on(
    engine: Engine, sessions: sessionmaker[Session], s3: Any, sink: S3ExportStore
) -> None:
    seed_world(engine)
    url = engine.url.render_as_string(False)
    settings = export_settings(url, export_part_rows=2, export_max_seconds=5)
    results = []
    while not results or not results[-1].complete:
        results.append(export.run_export(sessions, sink, settings, clock=ticking()))
        assert len(results) < 40
    assert len(results) > 3  # it really was cut into several runs...
    assert all(r.rows > 0 for r in results[:-1])  # ...each of which made progress
    assert not results[0].complete and results[0].tables["users"] == 2
    first = json.loads(body(s3, str(results[0].manifest)))
    assert first["complete"] is False and first["tables"]["users"]["complete"] is True
    # Every row exactly once across the runs: stopping loses and repeats nothing.
    for table, count in WORLD_ROWS.items():
        assert len(exported_rows(s3, table)) == count, table
    assert export.run_export(sessions, sink, settings).rows == 0


def test_only_one_export_runs_at_a_time(
    engine: Engine, sessions: sessionmaker[Session], s3: Any, sink: S3ExportStore
) -> None:
    seed_world(engine)
    settings = export_settings(engine.url.render_as_string(False))
    with engine.connect() as other:
        other.begin()
        assert other.scalar(select(func.pg_try_advisory_xact_lock(export.LOCK_KEY)))
        with pytest.raises(export.ExportBusy):
            export.run_export(sessions, sink, settings)
        other.rollback()
    assert keys(s3) == [] and watermarks(engine) == {}
    assert runs(engine)[-1].error.startswith("ExportBusy")
    assert export.run_export(sessions, sink, settings).rows == 39


def test_s3_objects_stream_in_multipart_chunks_and_an_abort_leaves_nothing(
    s3: Any, sink: S3ExportStore, kms_key: str
) -> None:
    store = S3ExportStore(
        bucket=BUCKET, region=REGION, kms_key_id=kms_key, chunk_bytes=MIN_CHUNK_BYTES
    )
    data = os.urandom(12 * 1024 * 1024)
    big = store.open("exports/t/big.bin", content_type="application/gzip")
    for start in range(0, len(data), 1024 * 1024):
        big.write(data[start : start + 1024 * 1024])
    assert big.commit() == len(data)
    head = s3.head_object(Bucket=BUCKET, Key="exports/t/big.bin")
    assert head["ETag"].strip('"').endswith("-3")  # 5 MiB + 5 MiB + 2 MiB
    assert head["ServerSideEncryption"] == "aws:kms" and head["SSEKMSKeyId"] == kms_key
    assert body(s3, "exports/t/big.bin") == data

    broken = store.open("exports/t/broken.bin", content_type="application/gzip")
    broken.write(data[: 6 * 1024 * 1024])  # one chunk is up
    assert len(s3.list_multipart_uploads(Bucket=BUCKET)["Uploads"]) == 1
    broken.abort()
    assert not s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads")
    assert "exports/t/broken.bin" not in keys(s3)

    small = store.open("exports/t/small.bin", content_type="application/gzip")
    small.write(b"tiny")
    assert small.commit() == 4
    assert s3.head_object(Bucket=BUCKET, Key="exports/t/small.bin")["SSEKMSKeyId"] == kms_key
    with pytest.raises(ValueError, match="chunk_bytes"):
        S3ExportStore(bucket=BUCKET, region=REGION, kms_key_id=None, chunk_bytes=1024)


def copy_events(engine: Engine, count: int) -> None:
    """Bulk-load events with COPY (100k rows in about a second)."""
    start = utcnow() - timedelta(days=3)
    lines = io.StringIO()
    for i in range(count):
        at = (start + timedelta(milliseconds=2 * i)).isoformat()
        payload = secrets.token_hex(32)
        attributes = f'{{""screen"": ""booking_detail"", ""payload"": ""{payload}""}}'
        lines.write(f',screen_view,{at},{at},s-{i // 50},"{attributes}","{{""ms"": {i}.5}}",')
        lines.write(f"1.2.{i % 7},ios\n")
    lines.seek(0)
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        cursor.copy_expert(
            "COPY events (user_id, name, occurred_at, received_at, session_id, attributes, "
            "metrics, app_version, platform) FROM STDIN WITH (FORMAT csv)",
            lines,
        )
        raw.commit()
    finally:
        raw.close()


def test_100k_rows_export_in_bounded_memory(engine: Engine) -> None:
    started = time.perf_counter()
    copy_events(engine, 100_000)
    loaded = time.perf_counter() - started
    probe = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.support.export_probe",
            engine.url.render_as_string(False),
            '{"events": "*"}',
            "25000",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert probe.returncode == 0, probe.stderr[-3000:]
    figures = json.loads(probe.stdout.strip().splitlines()[-1])
    mib = figures["peak_delta"] / 2**20
    print(
        f"\nexport of {figures['rows']} rows: {figures['files']} parts, "
        f"{figures['bytes'] / 2**20:.1f} MiB gzip, {figures['seconds']} s; peak RSS "
        f"+{mib:.1f} MiB over {figures['rss_before'] / 2**20:.0f} MiB (COPY {loaded:.1f} s)"
    )
    assert figures["rows"] == 100_000 and figures["files"] == 4
    assert figures["rows_read"] == 100_000 and figures["distinct_ids"] == 100_000
    # Measured about 16 MiB, moto's copy of the 5.4 MiB it received included. The same run
    # without a server-side cursor peaks near 55 MiB (libpq holds every row), and with the
    # rows loaded as Python objects near 180 MiB.
    assert mib < 32, figures


def test_cli_runs_the_export_and_infra_ensure_sets_archival_rules(
    engine: Engine, s3: Any, kms_key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = engine.url.render_as_string(False)
    settings = export_settings(url, export_bucket=BUCKET, uploads_bucket=UPLOADS_BUCKET)
    exports = S3ExportStore(bucket=BUCKET, region=REGION, kms_key_id=kms_key)
    built: list[Components] = []

    def cli(settings: Settings, exports: ExportSink) -> FlaskCliRunner:
        components = build_components(
            settings,
            jwks_fetcher=FakeJwksFetcher(SigningKey()),
            store=S3Store(bucket=UPLOADS_BUCKET, region=REGION, kms_key_id=kms_key),
            exports=exports,
            push=FakePush(),
        )
        built.append(components)
        return create_app(components=components).test_cli_runner()

    runner = cli(settings, exports)
    try:
        ensured = runner.invoke(args=["infra", "ensure"])
        assert ensured.exit_code == 0, ensured.output
        assert f"{BUCKET}: created" in ensured.output
        assert f"{UPLOADS_BUCKET}: created" in ensured.output
        for bucket in (UPLOADS_BUCKET, BUCKET):
            [rule] = s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
            assert rule["Status"] == "Enabled" and rule["Filter"] == {"Prefix": ""}
            assert rule["Transitions"] == [{"Days": 180, "StorageClass": "GLACIER"}]
            assert rule["NoncurrentVersionExpiration"] == {"NoncurrentDays": 30}
            assert rule["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 7}
            assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
            assert all(
                s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"].values()
            )
            encryption = s3.get_bucket_encryption(Bucket=bucket)
            default = encryption["ServerSideEncryptionConfiguration"]["Rules"][0]
            assert default["ApplyServerSideEncryptionByDefault"] == {
                "SSEAlgorithm": "aws:kms",
                "KMSMasterKeyID": kms_key,
            }
        # The uploads bucket keeps its CORS rule; the export bucket needs none.
        assert s3.get_bucket_cors(Bucket=UPLOADS_BUCKET)["CORSRules"]
        again = runner.invoke(args=["infra", "ensure"])
        assert again.exit_code == 0 and f"{BUCKET}: exists" in again.output

        seed_world(engine)
        ran = runner.invoke(args=["export", "run"])
        assert ran.exit_code == 0, ran.output
        assert "exported 39 rows" in ran.output and "bookings: 5" in ran.output
        assert f"manifest s3://{BUCKET}/exports/_manifests/" in ran.output
        idle = runner.invoke(args=["export", "run"])
        assert idle.exit_code == 0 and "exported 0 rows in 0 files" in idle.output

        # Runs cut short by EXPORT_MAX_SECONDS are followed by more until all is out.
        add_events(engine, 30, start=utcnow() - timedelta(minutes=5))
        limited = export_settings(url, export_part_rows=10, export_max_seconds=5)
        runner = cli(limited, exports)
        monkeypatch.setattr(export, "run_export", partial(export.run_export, clock=ticking()))
        looped = runner.invoke(args=["export", "run"])
        assert looped.exit_code == 0, looped.output
        assert looped.output.count("(time limit reached: continuing)") >= 1
        assert looped.output.count("exported") >= 2
        assert len(exported_rows(s3, "events")) == 20 + 30

        add_events(engine, 3, start=utcnow() - timedelta(minutes=2))  # after the watermark
        runner = cli(limited, FailingSink(exports, fail_on_part=1))
        failed = runner.invoke(args=["export", "run"])
        assert failed.exit_code == 1, failed.output
        assert "failed; it can be run again" in failed.output and "simulated" in failed.output
    finally:
        for components in built:
            dispose(components)
