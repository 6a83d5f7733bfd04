"""What the realtime process asks the database, run in its thread pool (never on the loop).

Sign-in uses the REST API's own code: `TokenVerifier.verify` (services/accounts/auth.py),
then `sync_user` (services/accounts/users.py) on a unit of work, so a socket is refused
exactly when a request would be: a bad or expired token, a purged or closed account (4401),
a suspended one (4403); and the roles it holds are the effective ones, less revocations.
The periodic re-check applies the same `refuse_closed` and `effective_roles` to open sockets.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from models import ChangeSequence, User
from services.accounts.auth import Identity
from services.accounts.users import effective_roles, refuse_closed, sync_user
from services.base.errors import TrellisError
from services.base.unit_of_work import UnitOfWork
from services.components import Components
from services.realtime import feed


@dataclass(frozen=True, slots=True)
class SignedIn:
    identity: Identity
    user_id: uuid.UUID
    roles: frozenset[str]
    last_seq: int


def sign_in(components: Components, token: str) -> SignedIn:
    """Verify the token and the account as a REST request does; TrellisError if refused."""
    identity = components.verifier.verify(token)
    unit = UnitOfWork(
        writes=False,
        sessions=components.sessions,
        read_sessions=components.read_sessions,
        subject=identity.sub,
    )
    try:
        user = sync_user(unit, identity=identity)
        newest = feed.last_seq(unit.session, user.id)
    finally:
        unit.close()
    return SignedIn(identity, user.id, frozenset(user.roles), newest)


@dataclass(frozen=True, slots=True)
class Standing:
    """An account's state for the re-check: its revocations, or why it is refused."""

    revocations: dict[str, float]
    refusal: TrellisError | None


def standings(components: Components, user_ids: Collection[uuid.UUID]) -> dict[uuid.UUID, Standing]:
    """One read for every connected user; a user gone from the table is closed."""
    columns = (
        User.id,
        User.role_revocations,
        User.suspended_at,
        User.purged_at,
        User.purge_at,
    )
    with components.read_sessions() as session:
        rows = session.execute(select(*columns).where(User.id.in_(list(user_ids)))).all()
    found: dict[uuid.UUID, Standing] = {}
    for row in rows:
        try:
            refuse_closed(row)
            refusal = None
        except TrellisError as exc:
            refusal = exc
        found[row.id] = Standing(dict(row.role_revocations or {}), refusal)
    return found


def roles_now(identity: Identity, standing: Standing) -> frozenset[str]:
    return frozenset(effective_roles(identity, standing.revocations))


def read_changes(
    components: Components, user_id: uuid.UUID, after: int, limit: int
) -> feed.ChangesPage:
    """The feed after `after`, on the primary (a NOTIFY arrives only after its commit, so
    the primary has the entry; a replica might not yet). ChangesExpired past the purge."""
    with components.read_sessions() as session:
        return feed.changes_after(session, user_id=user_id, after=after, limit=limit)


def newest_numbers(components: Components, user_ids: Collection[uuid.UUID]) -> dict[uuid.UUID, int]:
    """Each user's newest seq: the poll that stands in for NOTIFY on SQLite."""
    query = select(ChangeSequence.user_id, ChangeSequence.last_seq).where(
        ChangeSequence.user_id.in_(list(user_ids))
    )
    with components.read_sessions() as session:
        rows: list[Any] = session.execute(query).all()
    return {row.user_id: row.last_seq for row in rows}


def current_seq(components: Components, user_id: uuid.UUID) -> int:
    """The user's newest seq now: a subscribe without `after` starts there."""
    with components.read_sessions() as session:
        return feed.last_seq(session, user_id)
