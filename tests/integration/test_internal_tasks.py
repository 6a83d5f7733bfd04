"""Worker-tier task routes: absent unless enabled, sqsd on loopback only, 200 only on success."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session
from werkzeug.middleware.proxy_fix import ProxyFix

from models import Event, ExportRun, ExportWatermark
from models.base import utcnow
from services.base import idempotency
from services.base.settings import Settings
from services.components import Components
from tests.conftest import BuildComponents, make_app, make_settings
from tests.support.exports import FakeExportSink, jsonl_rows
from tests.support.fakes import FakeStore

TASKS = (
    "export",
    "outbox-drain",
    "uploads-cleanup",
    "purge-idempotency-keys",
    "export-data",
    "purge-deletion-requests",
    "accounts-purge",
    "timers",
    "purge-changes",
)
SQSD = {"User-Agent": "aws-sqsd/3.0.4", "X-Aws-Sqsd-Taskname": "nightly"}
LOOPBACK = {"REMOTE_ADDR": "127.0.0.1"}


@pytest.fixture
def settings(database_url: str) -> Settings:
    return make_settings(database_url, WORKER_TASKS_ENABLED="true", EXPORT_TABLES='{"events": "*"}')


@pytest.fixture
def sink() -> FakeExportSink:
    return FakeExportSink()


@pytest.fixture
def components(build: BuildComponents, sink: FakeExportSink) -> Components:
    return build(exports=sink)


def task(client: FlaskClient, name: str, *, remote: str = "127.0.0.1", **headers: str) -> Any:
    return client.post(
        f"/internal/tasks/{name}",
        headers={**SQSD, **headers},
        environ_base={"REMOTE_ADDR": remote},
    )


def add_events(session: Session, count: int) -> None:
    at = utcnow() - timedelta(hours=1)
    session.execute(
        insert(Event),
        [{"name": "open", "occurred_at": at, "received_at": at} for _ in range(count)],
    )
    session.commit()


def export_runs(session: Session) -> list[ExportRun]:
    return list(session.scalars(select(ExportRun).order_by(ExportRun.started_at)))


def test_tasks_do_not_exist_unless_enabled(build: BuildComponents, database_url: str) -> None:
    app = make_app(build(make_settings(database_url)))
    assert not [r for r in app.url_map.iter_rules() if r.rule.startswith("/internal")]
    client = app.test_client()
    for name in TASKS:
        response = task(client, name)
        assert response.status_code == 404, name
        assert response.mimetype == "application/problem+json"


@pytest.mark.parametrize("name", TASKS)
def test_sqsd_on_loopback_runs_the_task(
    client: FlaskClient, sink: FakeExportSink, name: str
) -> None:
    response = task(client, name)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json()["task"] == name


def test_export_task_exports_and_answers_with_the_run(
    client: FlaskClient, session: Session, sink: FakeExportSink
) -> None:
    add_events(session, 5)
    response = task(client, "export")
    assert response.status_code == 200, response.get_data(as_text=True)
    body = response.get_json()
    assert (
        body["rows"] == 5
        and body["files"] == 1
        and body["tables"] == {"events": 5, "deleted_users": 0}
    )
    assert body["complete"] is True
    parts = [k for k in sink.objects if k.endswith(".jsonl.gz")]
    assert len(jsonl_rows(sink.objects[parts[0]])) == 5
    assert f"exports/_manifests/{body['run_id']}.json" in sink.objects
    assert [r.status for r in export_runs(session)] == ["succeeded"]
    # Nothing new: 200 again, nothing written.
    again = task(client, "export")
    assert again.status_code == 200 and again.get_json()["rows"] == 0
    assert len(sink.objects) == 2


def test_ipv6_loopback_is_loopback(client: FlaskClient) -> None:
    assert task(client, "purge-idempotency-keys", remote="::1").status_code == 200


@pytest.mark.parametrize(
    ("remote", "headers"),
    [
        # Another host, even claiming to be sqsd and forging X-Forwarded-For.
        ("10.0.0.7", {"X-Forwarded-For": "127.0.0.1"}),
        ("203.0.113.9", {}),
        ("::ffff:10.0.0.7", {}),
        # This host, but not sqsd.
        ("127.0.0.1", {"User-Agent": "curl/8.5.0"}),
        ("127.0.0.1", {"User-Agent": ""}),
        ("127.0.0.1", {"User-Agent": "Mozilla/5.0 aws-sqsd"}),
        # nginx on this host relaying a request that came from elsewhere (load balancer).
        ("127.0.0.1", {"X-Forwarded-For": "203.0.113.9"}),
        ("127.0.0.1", {"X-Forwarded-For": "127.0.0.1, 10.0.3.4"}),
    ],
)
def test_anyone_but_local_sqsd_is_refused(
    client: FlaskClient, session: Session, sink: FakeExportSink, remote: str, headers: dict
) -> None:
    add_events(session, 2)
    for name in TASKS:
        response = task(client, name, remote=remote, **headers)
        assert response.status_code == 403, (name, remote, headers)
        assert response.mimetype == "application/problem+json"
        assert response.get_json()["type"] == "/problems/forbidden"
    assert sink.objects == {} and export_runs(session) == []


def test_sqsd_relayed_by_local_nginx_is_accepted(client: FlaskClient) -> None:
    response = task(client, "purge-idempotency-keys", **{"X-Forwarded-For": "127.0.0.1"})
    assert response.status_code == 200


def test_a_proxy_fix_cannot_launder_the_peer_address(app: Flask, sink: FakeExportSink) -> None:
    app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1)  # type: ignore[method-assign]
    client = app.test_client()
    forged = task(client, "export", remote="10.0.0.7", **{"X-Forwarded-For": "127.0.0.1"})
    assert forged.status_code == 403
    assert task(client, "export", **{"X-Forwarded-For": "127.0.0.1"}).status_code == 200


def test_a_failed_export_is_503_so_sqsd_retries_and_nothing_moves(
    client: FlaskClient, session: Session, sink: FakeExportSink
) -> None:
    add_events(session, 3)
    sink.down = True
    response = task(client, "export")
    assert response.status_code == 503
    assert response.mimetype == "application/problem+json"
    assert response.headers["Retry-After"]
    assert "simulated outage" not in response.get_data(as_text=True)  # internals stay inside
    [run] = export_runs(session)
    assert run.status == "failed" and "simulated outage" in (run.error or "")
    assert session.scalar(select(func.count()).select_from(ExportWatermark)) == 0

    sink.down = False  # sqsd's retry
    retried = task(client, "export")
    assert retried.status_code == 200 and retried.get_json()["rows"] == 3


def test_an_unexpected_task_failure_is_500(
    client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_args: object, **_kwargs: object) -> int:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(idempotency, "purge_expired", broken)
    response = task(client, "purge-idempotency-keys")
    assert response.status_code == 500
    assert "disk on fire" not in response.get_data(as_text=True)


def test_uploads_cleanup_with_s3_down_is_503(
    client: FlaskClient, actors: Any, store: FakeStore, session: Session
) -> None:
    from sqlalchemy import update

    from models import Upload

    user = actors("consumer")
    started = user.post(
        "/v1/uploads", json={"purpose": "avatar", "content_type": "image/png", "size_bytes": 10}
    )
    assert started.status_code == 201
    session.execute(update(Upload).values(created_at=utcnow() - timedelta(days=2)))
    session.commit()
    store.down = True
    assert task(client, "uploads-cleanup").status_code == 503
    store.down = False
    done = task(client, "uploads-cleanup")
    assert done.status_code == 200 and done.get_json()["removed"] == 1


def test_internal_routes_are_not_documented(client: FlaskClient) -> None:
    paths = client.get("/openapi.json").get_json()["paths"]
    assert paths and not [p for p in paths if p.startswith("/internal")]
