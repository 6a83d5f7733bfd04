"""A personal data export is built in bounded memory: a user with 100,000 analytics events
(about 40 MB of JSON) is exported by a fresh process into moto_server's S3 while its peak
resident set grows by less than 32 MiB, and the document holds every event.

The build runs in a child process (this module run as a script) so the test runner's heap
stays out of the figure. After a warm-up (imports, a database connection, the S3 client),
the child resets its high-water mark (writing 5 to /proc/self/clear_refs sets VmHWM to the
current RSS) and reads VmHWM after the build: the kernel's own peak, no sampling.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import orjson
import pytest
from sqlalchemy import create_engine, text

from devstack.cognito import LocalPool, provision
from devstack.processes import base_env, free_port, start_moto, stop
from tests.support.database import fresh_database

ROOT = Path(__file__).resolve().parents[2]
EVENTS = 100_000
BUCKET = "trellis-uploads-export-memory"
MAX_GROWTH = 32 * 1024 * 1024


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def probe() -> dict[str, Any]:
    """In the child: warm up, reset the peak, build every pending export, report."""
    from datetime import timedelta

    from models.base import utcnow
    from services.accounts.data_export import build_pending
    from services.base.settings import load_settings
    from services.components import build_components

    built = build_components(load_settings())
    built.store.ensure_bucket(cors_origins=["*"])
    # Warm-up: the pool's connection, the S3 client, a presign and a small streamed object.
    # An hour ago nothing was due yet: the pass runs its queries and claims nothing.
    build_pending(built.sessions, built.store, built.settings, now=utcnow() - timedelta(hours=1))
    warm = built.store.open_write("warm-up", content_type="text/plain")
    warm.write(b"x")
    warm.commit()
    built.store.presign_get(key="warm-up", expires_in=60)
    with open("/proc/self/clear_refs", "w") as clear:
        clear.write("5")  # VmHWM := VmRSS
    before = _status_kib("VmRSS")
    stats = build_pending(built.sessions, built.store, built.settings)
    return {
        "built": stats.built,
        "failed": stats.failed,
        "retried": stats.retried,
        "rss_before_kib": before,
        "hwm_after_kib": _status_kib("VmHWM"),
    }


@pytest.fixture
def aws(tmp_path: Path) -> Iterator[LocalPool]:
    """A moto_server of its own, not the e2e stack's: moto's /moto-api/data.json (which the
    push tests read) fails for the rest of a server's life once a multipart upload left its
    parts there (moto looks up a bucket for each part and finds none)."""
    port = free_port()
    moto = start_moto(port, log=tmp_path / "moto.log")
    try:
        yield provision(f"http://127.0.0.1:{port}")
    finally:
        stop(moto)


@pytest.fixture
def database() -> Iterator[str]:
    with fresh_database("trellis_export_memory") as url:
        yield url


def _seed(url: str) -> tuple[uuid.UUID, uuid.UUID]:
    """A user with EVENTS events (about 500 bytes of JSON each, with hex and base64 digests
    that compress little, so the document spans two 8 MiB parts) and a pending export."""
    user_id, export_id = uuid.uuid4(), uuid.uuid4()
    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO users (id, cognito_sub, email, display_name, roles, "
                "role_revocations, created_at, updated_at) VALUES (:id, :sub, "
                "'big@example.com', 'Big Data', '[\"consumer\"]', '{}', now(), now())"
            ),
            {"id": user_id, "sub": f"sub-{user_id.hex[:12]}"},
        )
        connection.execute(
            text(
                "INSERT INTO events (user_id, name, occurred_at, received_at, session_id, "
                "attributes, metrics, app_version, platform) "
                "SELECT :id, 'screen.view', now() - g * interval '1 second', now(), "
                "'session-' || (g / 100), json_build_object('screen', md5(g::text), "
                "'referrer', md5((g + 1)::text), 'query', md5((g + 2)::text), 'n', g::text, "
                "'digest', translate(encode(sha512(g::text::bytea), 'base64'), E'\\n', '')), "
                "json_build_object('duration_ms', g % 1000), '1.0.0', 'ios' "
                "FROM generate_series(1, :n) AS g"
            ),
            {"id": user_id, "n": EVENTS},
        )
        connection.execute(
            text(
                "INSERT INTO data_exports (id, user_id, status, created_at, available_at, "
                "attempts) VALUES (:id, :user_id, 'pending', now(), now(), 0)"
            ),
            {"id": export_id, "user_id": user_id},
        )
    engine.dispose()
    return user_id, export_id


def test_a_hundred_thousand_events_export_in_bounded_memory(aws: LocalPool, database: str) -> None:
    user_id, export_id = _seed(database)
    env = base_env(
        APP_ENV="test",
        DATABASE_URL=database,
        UPLOADS_BUCKET=BUCKET,
        DATA_EXPORTS_IN_WEB="false",
        OUTBOX_RELAY_IN_WEB="false",
        **aws.trellis_env(),
    )
    child = subprocess.run(
        [sys.executable, "-m", "tests.e2e.test_data_export_memory_e2e"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert child.returncode == 0, child.stderr[-3000:]
    report = json.loads(child.stdout.strip().splitlines()[-1])
    assert (report["built"], report["failed"], report["retried"]) == (1, 0, 0), report
    growth = (report["hwm_after_kib"] - report["rss_before_kib"]) * 1024
    print(f"peak RSS growth {growth / 2**20:.1f} MiB")
    assert growth < MAX_GROWTH, f"peak RSS grew by {growth / 2**20:.1f} MiB: {report}"

    s3 = boto3.client(
        "s3",
        endpoint_url=aws.endpoint_url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    key = f"users/{user_id}/exports/{export_id}.json.gz"
    head = s3.head_object(Bucket=BUCKET, Key=key)
    assert head["ServerSideEncryption"] == "aws:kms"
    compressed = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
    assert len(compressed) > 8 * 1024 * 1024  # several multipart parts, not one PUT
    raw = gzip.decompress(compressed)
    assert len(raw) > MAX_GROWTH  # the document itself would not have fitted
    doc = orjson.loads(raw)
    events = doc["analytics_events"]
    assert len(events) == EVENTS
    assert len({e["id"] for e in events}) == EVENTS
    assert doc["profile"]["email"] == "big@example.com"
    assert doc["user_id"] == str(user_id) and doc["export_id"] == str(export_id)


if __name__ == "__main__":
    os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")
    print(json.dumps(probe()))
