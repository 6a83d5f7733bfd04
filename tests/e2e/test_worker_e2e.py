"""The worker tier as it runs on Elastic Beanstalk: gunicorn with WORKER_TASKS_ENABLED, sqsd
POSTing cron.yaml's routes from loopback; the export lands in the emulated S3."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator

import boto3
import pytest
import requests
import yaml

from devstack.cognito import sign_in
from devstack.processes import ROOT, base_env, free_port, start_gunicorn, stop
from tests.e2e.conftest import Stack

pytestmark = pytest.mark.e2e
SQSD = {"User-Agent": "aws-sqsd/3.0.4", "X-Aws-Sqsd-Taskname": "export"}


@pytest.fixture(scope="module")
def worker(stack: Stack) -> Iterator[str]:
    env = base_env(
        APP_ENV="test",
        DATABASE_URL=stack.database_url,
        UPLOADS_BUCKET=stack.bucket,
        WORKER_TASKS_ENABLED="true",
        OUTBOX_RELAY_IN_WEB="false",
        EXPORT_SAFETY_SECONDS="0",
        **stack.pool.trellis_env(),
    )
    port = free_port()
    process = start_gunicorn(port, env, log=stack.logs / "worker.log")
    yield f"http://127.0.0.1:{port}"
    stop(process)


def test_every_cron_job_answers_200_to_sqsd(stack: Stack, worker: str) -> None:
    # Something to export: a user and an analytics event through the web tier.
    token = sign_in(stack.pool, "consumer")["access"]
    events = {"events": [{"name": "worker.e2e", "timestamp": "2026-11-27T10:00:00Z"}]}
    posted = requests.post(
        f"{stack.base_url}/v1/events",
        json=events,
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert posted.status_code == 202, posted.text
    cron = yaml.safe_load((ROOT / "cron.yaml").read_text())["cron"]
    for job in cron:
        response = requests.post(f"{worker}{job['url']}", headers=SQSD, timeout=60)
        assert response.status_code == 200, (job["name"], response.text)
    s3 = boto3.client(
        "s3",
        endpoint_url=stack.moto_url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    listing = s3.list_objects_v2(Bucket="trellis-exports-test", Prefix="exports/events/")
    keys = [o["Key"] for o in listing.get("Contents", [])]
    assert keys and all(k.endswith(".jsonl.gz") for k in keys)
    rows = [
        json.loads(line)
        for key in keys
        for line in gzip.decompress(
            s3.get_object(Bucket="trellis-exports-test", Key=key)["Body"].read()
        ).splitlines()
    ]
    assert any(row["name"] == "worker.e2e" for row in rows)


def test_the_web_tier_has_no_internal_routes_and_the_worker_refuses_strangers(
    stack: Stack, worker: str
) -> None:
    assert (
        requests.post(
            f"{stack.base_url}/internal/tasks/export", headers=SQSD, timeout=10
        ).status_code
        == 404
    )
    no_agent = requests.post(f"{worker}/internal/tasks/export", timeout=10)
    assert no_agent.status_code == 403
    relayed = requests.post(
        f"{worker}/internal/tasks/export",
        headers={**SQSD, "X-Forwarded-For": "203.0.113.5"},
        timeout=10,
    )
    assert relayed.status_code == 403
