"""Operator commands: `flask --app application <command>`."""

from __future__ import annotations

import click
from flask import Flask
from flask.cli import with_appcontext

from api.context import components
from services import idempotency


@click.command("purge-idempotency-keys")
@with_appcontext
def purge_idempotency_keys() -> None:
    """Delete Idempotency-Key records past their expiry (run it hourly)."""
    with components().sessions() as session:
        removed = idempotency.purge_expired(session)
    click.echo(f"removed {removed} expired idempotency keys")


def register_cli(app: Flask) -> None:
    app.cli.add_command(purge_idempotency_keys)
