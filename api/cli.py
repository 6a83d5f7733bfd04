"""Operator commands: `flask --app application <group> <command>`."""

from __future__ import annotations

from datetime import timedelta

import click
from flask import Flask
from flask.cli import AppGroup, with_appcontext

from api.client_config import client_config_command
from api.context import components
from services import infra, uploads
from services.accounts import deletion_requests, purge
from services.accounts.data_export import build_pending
from services.analytics import export
from services.base import idempotency
from services.marketplace import timers
from services.marketplace.process import TimerPolicy
from services.messaging import outbox


@click.command("purge-idempotency-keys")
@with_appcontext
def purge_idempotency_keys() -> None:
    """Delete Idempotency-Key records past their expiry (run it hourly)."""
    removed = idempotency.purge_expired(components().sessions)
    click.echo(f"removed {removed} expired idempotency keys")


uploads_cli = AppGroup("uploads", help="Uploads to S3.")


@uploads_cli.command("cleanup")
@click.option("--older-than-hours", default=24, show_default=True, type=click.IntRange(min=1))
def cleanup_uploads(older_than_hours: int) -> None:
    """Delete uploads still pending after this long, with their objects."""
    removed = uploads.cleanup_pending(
        components().sessions, components().store, older_than=timedelta(hours=older_than_hours)
    )
    click.echo(f"removed {removed} abandoned uploads")


outbox_cli = AppGroup("outbox", help="The push notification outbox.")


@outbox_cli.command("drain")
def drain_outbox() -> None:
    """Deliver every due push now (safe to run beside other relays)."""
    built = components()
    stats = outbox.drain_all(
        built.sessions, built.push, max_backoff_seconds=built.settings.outbox_max_backoff_seconds
    )
    click.echo(
        f"delivered {stats.delivered}, retry scheduled {stats.retried}, "
        f"devices disabled {stats.devices_disabled}"
    )


infra_cli = AppGroup("infra", help="AWS resources the app relies on.")


@infra_cli.command("ensure")
def ensure_infra() -> None:
    """Create or update the buckets' settings (for local runs and tests; production uses the
    deployment templates)."""
    built = components()
    for line in infra.ensure(built.store, built.settings, built.exports):
        click.echo(line)


export_cli = AppGroup("export", help="Scheduled export of changed rows to S3.")


@export_cli.command("run")
def run_export() -> None:
    """Export rows changed since the last successful run (safe to re-run after a failure).
    Runs stopped by EXPORT_MAX_SECONDS are followed by another until all is exported."""
    built = components()
    complete = False
    while not complete:
        try:
            result = export.run_export(
                built.sessions, built.exports, built.settings, reads=built.reads
            )
        except export.ExportBusy as exc:
            raise click.ClickException(exc.detail) from exc
        except export.ExportFailed as exc:
            raise click.ClickException(f"{exc.detail} Cause: {exc.__cause__!r}") from exc
        complete = result.complete
        done = "" if complete else " (time limit reached: continuing)"
        click.echo(
            f"run {result.run_id}: exported {result.rows} rows in {len(result.files)} files{done}"
        )
        for table, rows in result.tables.items():
            click.echo(f"  {table}: {rows}")
        if result.manifest:
            click.echo(f"manifest s3://{built.exports.bucket}/{result.manifest}")


accounts_cli = AppGroup("accounts", help="Users' accounts: their deletion and their data.")


@accounts_cli.command("purge-deletion-requests")
def purge_deletion_requests() -> None:
    """Delete web deletion requests closed more than DELETION_REQUESTS_RETENTION_DAYS ago."""
    built = components()
    days = built.settings.deletion_requests_retention_days
    removed = deletion_requests.purge_closed(built.sessions, retention_days=days)
    click.echo(f"removed {removed} closed deletion requests")


@accounts_cli.command("purge")
def purge_accounts() -> None:
    """Purge every account whose deletion grace period has ended (idempotent: a run that
    stopped half-way is finished by the next). Exits 1 when an account had to be left for
    the next run because AWS failed."""
    built = components()
    stats = purge.purge_due(
        built.sessions, directory=built.groups, store=built.store, push=built.push
    )
    click.echo(f"purged {len(stats.purged)} accounts")
    for user_id, why in stats.failed.items():
        click.echo(f"  left for the next run: {user_id} ({why})", err=True)
    if stats.failed:
        raise click.ClickException(f"{len(stats.failed)} accounts could not be purged yet")


@accounts_cli.command("export-data")
def export_data() -> None:
    """Build every pending personal data export and delete the expired ones, then exit
    (safe beside the web workers' builders and other runs: each export is claimed once)."""
    built = components()
    stats = build_pending(built.sessions, built.store, built.settings)
    click.echo(
        f"built {stats.built}, retry scheduled {stats.retried}, failed {stats.failed}, "
        f"expired {stats.expired}"
    )


timers_cli = AppGroup("timers", help="The booking timers (expiry, auto-complete, reminders).")


@timers_cli.command("run")
def run_timers() -> None:
    """Fire every due booking timer, then exit (safe beside the web workers' relays and
    other runs: each timer fires once). Exits 1 when a timer failed and was postponed."""
    built = components()
    stats = timers.run_due(built.sessions, TimerPolicy.of(built.settings))
    click.echo(f"fired {stats.fired}, moot {stats.moot}, failed {stats.failed}")
    if stats.failed:
        raise click.ClickException(f"{stats.failed} timers failed; each is retried later")


def register_cli(app: Flask) -> None:
    commands = (purge_idempotency_keys, uploads_cli, outbox_cli, infra_cli, export_cli)
    for command in (*commands, accounts_cli, timers_cli, client_config_command):
        app.cli.add_command(command)
