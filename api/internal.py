"""Tasks for the Elastic Beanstalk worker tier: sqsd POSTs them on the schedule in cron.yaml.

Registered only when WORKER_TASKS_ENABLED is true (otherwise these paths are plain 404s),
never documented in /openapi.json, and refused (403) unless the request comes from sqsd on
this host: the TCP peer is loopback and the User-Agent starts with `aws-sqsd`.

The peer address is the socket's (REMOTE_ADDR, or the original one if a ProxyFix ever
rewrites it), never X-Forwarded-For, which anyone can send. X-Forwarded-For is only used
to refuse: behind nginx every request's peer is loopback, but nginx appends the address it
saw, so a request relayed from a load balancer carries a non-loopback entry there.

Each task answers 200 only when it succeeded; a failure is 5xx so sqsd retries it.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from flask import Blueprint, request

from api.context import components
from services import uploads
from services.accounts import deletion_requests, purge
from services.accounts.data_export import build_pending
from services.analytics import export
from services.base import idempotency
from services.base.errors import Forbidden, Unavailable
from services.marketplace import timers
from services.marketplace.process import TimerPolicy
from services.messaging import outbox
from services.realtime import feed

LOOPBACK = frozenset({"127.0.0.1", "::1"})
SQSD_USER_AGENT = "aws-sqsd"
PENDING_UPLOADS_MAX_AGE = timedelta(hours=24)

bp = Blueprint("internal", __name__, url_prefix="/internal/tasks")


def _peer_address() -> str:
    environ = request.environ
    original = environ.get("werkzeug.proxy_fix.orig") or {}
    return str(original.get("REMOTE_ADDR") or environ.get("REMOTE_ADDR") or "")


def _relayed_from_elsewhere() -> bool:
    hops = ",".join(request.headers.getlist("X-Forwarded-For"))
    return any(hop.strip() not in LOOPBACK for hop in hops.split(",") if hop.strip())


@bp.before_request
def _only_sqsd_on_this_host() -> None:
    if (
        _peer_address() not in LOOPBACK
        or _relayed_from_elsewhere()
        or not request.headers.get("User-Agent", "").startswith(SQSD_USER_AGENT)
    ):
        raise Forbidden("Internal tasks are accepted from the worker's sqsd daemon only.")


@bp.post("/export")
def export_task() -> dict[str, Any]:
    """Export changed rows to S3 (see services/analytics/export.py): 503 when it failed or is busy.
    `complete` false: EXPORT_MAX_SECONDS stopped the run; the next one continues."""
    built = components()
    result = export.run_export(built.sessions, built.exports, built.settings, reads=built.reads)
    return {
        "task": "export",
        "run_id": str(result.run_id),
        "rows": result.rows,
        "files": len(result.files),
        "tables": result.tables,
        "complete": result.complete,
    }


@bp.post("/outbox-drain")
def outbox_drain_task() -> dict[str, Any]:
    """Deliver every due push now (safe beside the web workers' relays)."""
    built = components()
    stats = outbox.drain_all(
        built.sessions, built.push, max_backoff_seconds=built.settings.outbox_max_backoff_seconds
    )
    return {
        "task": "outbox-drain",
        "delivered": stats.delivered,
        "retried": stats.retried,
        "devices_disabled": stats.devices_disabled,
    }


@bp.post("/uploads-cleanup")
def uploads_cleanup_task() -> dict[str, Any]:
    """Delete uploads still pending after a day, with their objects."""
    removed = uploads.cleanup_pending(
        components().sessions, components().store, older_than=PENDING_UPLOADS_MAX_AGE
    )
    return {"task": "uploads-cleanup", "removed": removed}


@bp.post("/purge-idempotency-keys")
def purge_idempotency_keys_task() -> dict[str, Any]:
    """Delete Idempotency-Key records past their expiry."""
    removed = idempotency.purge_expired(components().sessions)
    return {"task": "purge-idempotency-keys", "removed": removed}


@bp.post("/export-data")
def export_data_task() -> dict[str, Any]:
    """Build pending personal data exports and delete expired ones. No new build starts
    after EXPORT_MAX_SECONDS (below gunicorn's timeout); the next run, or a web worker's
    builder, takes the rest. A failed build is recorded on its export, not answered 5xx."""
    built = components()
    settings = built.settings
    stats = build_pending(
        built.sessions, built.store, settings, max_seconds=settings.export_max_seconds
    )
    return {
        "task": "export-data",
        "built": stats.built,
        "retried": stats.retried,
        "failed": stats.failed,
        "expired": stats.expired,
    }


@bp.post("/purge-deletion-requests")
def purge_deletion_requests_task() -> dict[str, Any]:
    """Delete web deletion requests closed more than DELETION_REQUESTS_RETENTION_DAYS ago."""
    built = components()
    days = built.settings.deletion_requests_retention_days
    removed = deletion_requests.purge_closed(built.sessions, retention_days=days)
    return {"task": "purge-deletion-requests", "removed": removed}


@bp.post("/purge-changes")
def purge_changes_task() -> dict[str, Any]:
    """Delete change-feed entries older than CHANGES_RETENTION_DAYS."""
    built = components()
    removed = feed.purge_expired(
        built.sessions, retention_days=built.settings.changes_retention_days
    )
    return {"task": "purge-changes", "removed": removed}


@bp.post("/accounts-purge")
def accounts_purge_task() -> dict[str, Any]:
    """Purge accounts whose deletion grace period has ended. No new account is started after
    EXPORT_MAX_SECONDS (below gunicorn's timeout); the next run takes the rest. An account
    left behind because AWS failed is 503, so sqsd retries sooner than the next schedule."""
    built = components()
    stats = purge.purge_due(
        built.sessions,
        directory=built.groups,
        store=built.store,
        push=built.push,
        max_seconds=built.settings.export_max_seconds,
    )
    if stats.failed:
        raise Unavailable(
            f"{len(stats.failed)} accounts could not be purged (AWS failed); "
            f"{len(stats.purged)} were. The next run retries them.",
            retry_after=60,
        )
    return {"task": "accounts-purge", "purged": len(stats.purged), "complete": stats.complete}


@bp.post("/timers")
def timers_task() -> dict[str, Any]:
    """Fire every due booking timer (safe beside the web workers' relays: each fires once).
    A timer that failed is postponed and the answer is 503, so it shows in sqsd's retries."""
    built = components()
    stats = timers.run_due(built.sessions, TimerPolicy.of(built.settings))
    if stats.failed:
        raise Unavailable(
            f"{stats.failed} booking timers failed and were postponed; {stats.fired} fired.",
            retry_after=60,
        )
    return {"task": "timers", "fired": stats.fired, "moot": stats.moot}
