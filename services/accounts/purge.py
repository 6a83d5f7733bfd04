"""The purge: accounts whose grace period has ended are emptied, as the personal-data map
(services/accounts/personal_data.py) says, and become tombstones.

From `purge_at` on, the account's tokens are refused (users.refuse_closed), so nothing new
of theirs arrives while it is purged. For each account due, in this order:

1. outside any transaction (no network call under a row lock), what lives in AWS goes: the
   push endpoints of their devices (SNS), every object under `users/{id}/` (S3), the Cognito
   user. Each step is idempotent: a rerun after a crash does it again harmlessly;
2. one transaction applies the map: their own rows deleted, shared ones anonymised, the users
   row emptied and stamped `purged_at`. It takes the row FOR UPDATE SKIP LOCKED and only while
   `purged_at` is NULL, so any number of runners purge each account once;
3. after the commit, the endpoints of any device registered in the instant between 1 and 2
   (a request in flight at `purge_at`) and any object written then are deleted too.

A run stops at the first AWS failure of an account and leaves it for the next run (its
`purged_at` is still NULL); the other accounts go on.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Table, delete, select, update
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.sql.elements import ColumnElement

from models import Base, Device, User
from models.base import utcnow
from services.accounts.personal_data import NOW, PERSONAL_DATA, Cleared, Link
from services.aws.cognito import DirectoryUnavailable, GroupDirectory
from services.aws.s3 import ObjectStore, StorageUnavailable
from services.aws.sns import PushGateway, PushUnavailable
from services.base.unit_of_work import transaction

log = logging.getLogger("trellis.purge")

# Accounts purged per database read of the due list: a run continues until none is due.
BATCH = 100


@dataclass
class PurgeStats:
    purged: list[uuid.UUID] = field(default_factory=list)
    # Accounts left for the next run, with why.
    failed: dict[uuid.UUID, str] = field(default_factory=dict)
    # False when the run stopped at its time limit with accounts still due.
    complete: bool = True


def user_prefix(user_id: uuid.UUID) -> str:
    """Where everything of the user's lives in the uploads bucket."""
    return f"users/{user_id}/"


def purge_due(
    sessions: sessionmaker[Session],
    *,
    directory: GroupDirectory,
    store: ObjectStore,
    push: PushGateway,
    now: datetime | None = None,
    max_seconds: float | None = None,
) -> PurgeStats:
    """Purge every account whose `purge_at` is at or before `now`. `max_seconds` stops it
    from starting another account after that long (the worker tier runs this inside a
    request); `stats.complete` is False then, and the next run goes on."""
    moment = now or utcnow()
    started = time.monotonic()
    stats = PurgeStats()
    while True:
        query = select(User.id).where(User.purge_at <= moment, User.purged_at.is_(None))
        if stats.failed:  # left for the next run
            query = query.where(User.id.not_in(list(stats.failed)))
        with transaction(sessions) as session:
            due = session.scalars(query.order_by(User.purge_at, User.id).limit(BATCH)).all()
        if not due:
            return stats
        for user_id in due:
            if max_seconds is not None and time.monotonic() - started >= max_seconds:
                stats.complete = False
                return stats
            try:
                if purge_account(sessions, user_id, directory=directory, store=store, push=push):
                    stats.purged.append(user_id)
            except (DirectoryUnavailable, StorageUnavailable, PushUnavailable) as exc:
                log.warning("purge of %s postponed: %r", user_id, exc)
                stats.failed[user_id] = f"{type(exc).__name__}: {exc}"


def purge_account(
    sessions: sessionmaker[Session],
    user_id: uuid.UUID,
    *,
    directory: GroupDirectory,
    store: ObjectStore,
    push: PushGateway,
) -> bool:
    """Purge one account whose grace period has ended. False when there was nothing to do
    (already purged, not due, or another runner holds it)."""
    with transaction(sessions) as session:
        user = session.execute(
            select(User.cognito_username, User.cognito_sub, User.purge_at, User.purged_at).where(
                User.id == user_id
            )
        ).one_or_none()
        arns = _device_arns(session, user_id)
    if user is None or user.purged_at is not None or user.purge_at is None:
        return False
    if user.purge_at > utcnow():
        return False
    # 1. AWS first: a crash after this step leaves the row to be purged by the next run.
    _forget_devices(push, arns)
    store.delete_prefix(user_prefix(user_id))
    directory.delete_account(user.cognito_username, sub=user.cognito_sub)
    # 2. The database, once.
    with transaction(sessions) as session:
        late_arns = _apply_map(session, user_id)
    if late_arns is None:
        return False
    # 3. What arrived in between.
    _forget_devices(push, [arn for arn in late_arns if arn not in arns])
    store.delete_prefix(user_prefix(user_id))
    log.info("account purged", extra={"user_id": str(user_id)})
    return True


def _device_arns(session: Session, user_id: uuid.UUID) -> list[str]:
    return list(session.scalars(select(Device.endpoint_arn).where(Device.user_id == user_id)))


def _forget_devices(push: PushGateway, arns: list[str]) -> None:
    for arn in arns:
        push.unregister(arn)  # a missing endpoint counts as deleted


def _apply_map(session: Session, user_id: uuid.UUID) -> list[str] | None:
    """Every table in the map's order; the device endpoints deleted with their rows, or None
    when the account is not (or no longer) this runner's to purge."""
    held = session.scalar(
        select(User.id)
        .where(User.id == user_id, User.purged_at.is_(None))
        .with_for_update(skip_locked=True)
    )
    if held is None:
        return None
    arns = _device_arns(session, user_id)
    now = utcnow()
    tables = Base.metadata.tables
    for name, entry in PERSONAL_DATA.items():
        table = tables[name]
        for link in entry.links:
            rows = _rows_of(table, link, user_id)
            if link.clears is None:
                session.execute(delete(table).where(rows))
            else:
                values = {column: _value(cleared, now) for column, cleared in link.clears.items()}
                session.execute(update(table).where(rows).values(values))
    return arns


def _rows_of(table: Table, link: Link, user_id: uuid.UUID) -> ColumnElement[bool]:
    column = table.c[link.column]
    if link.via is None:
        return column == user_id
    parent_name, owner = link.via
    parent = Base.metadata.tables[parent_name]
    return column.in_(select(parent.c.id).where(parent.c[owner] == user_id))


def _value(cleared: Cleared, now: datetime) -> Any:
    return now if cleared is NOW else cleared
