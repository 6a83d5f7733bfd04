"""Admins grant and revoke roles: Cognito groups change, and Trellis records who did it.

No row is locked while Cognito is called. A change reads the user (no lock), makes the
Cognito call, and only then locks the user row, checks that no change of the same role was
recorded since its read, and records its own. A Cognito outage is 503 before anything is
written, so a change is recorded only once Cognito accepted it.

Two admins changing the same user's role at the same instant: without a lock around the
calls, their Cognito calls and their records could land in opposite orders, leaving Cognito
with one admin's change and Trellis with the other's. The check under the lock catches
this: a change recorded after our read may have reached Cognito after our call, so ours is
made again (after that record, hence after that call) before it is recorded, at most
ATTEMPTS times. Changes are thus recorded in the order of their last Cognito calls, and the
last one recorded is what Cognito holds. What remains: a request that gives up (409 after
ATTEMPTS rounds of contention) or fails after Cognito accepted its call (a lost answer, a
database error, a killed process) leaves a Cognito change unrecorded; the 409 and 503 ask
the admin to retry, and the retry makes Cognito and Trellis agree again. This relies on the
primary's default READ COMMITTED isolation (each statement sees what committed before it).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from models import ProviderProfile, RoleChange, User
from models.base import utcnow
from services.accounts.auth import GROUP_ROLES
from services.accounts.users import UserView
from services.aws.cognito import DirectoryUnavailable, GroupDirectory, UnknownDirectoryUser
from services.base.errors import Conflict, NotFound, Unavailable
from services.realtime import feed

Role = Literal["consumer", "provider", "admin"]
GROUP_OF = {role: group for group, role in GROUP_ROLES.items()}
ATTEMPTS = 3  # Cognito calls per request when other admins keep changing the same role


@dataclass(frozen=True, slots=True)
class RoleChangeView:
    user_id: uuid.UUID
    role: str
    action: Literal["grant", "revoke"]
    actor_id: uuid.UUID
    created_at: datetime
    subject: str  # the user's Cognito sub: their next reads must see this change


@dataclass(frozen=True, slots=True)
class _Seen:
    """What a change read without a lock: whom to call Cognito about, and how many changes
    of the role were recorded by then."""

    username: str
    sub: str
    changes: int


class _ChangedMeanwhile(Exception):
    """Another change of the role was recorded between our read and our lock."""


def grant_role(
    session: Session, groups: GroupDirectory, *, admin: UserView, user_id: uuid.UUID, role: Role
) -> RoleChangeView:
    """Add the user to the role's Cognito group; effective from their next token."""

    def record(user: User) -> RoleChangeView:
        revocations = dict(user.role_revocations)
        revocations.pop(role, None)  # a fresh grant lifts an earlier revocation
        user.role_revocations = revocations
        return _record(session, user, role, "grant", admin)

    return _change(session, groups.add_to_group, user_id, role, record)


def revoke_role(
    session: Session, groups: GroupDirectory, *, admin: UserView, user_id: uuid.UUID, role: Role
) -> RoleChangeView:
    """Remove the user from the role's group and stop honouring it at once.

    Tokens already issued still carry the group until they expire (up to an hour); the
    recorded revocation time makes Trellis ignore the role in any token issued before it.
    """
    if admin.id == user_id and role == "admin":
        raise Conflict("Admins cannot revoke their own admin role.")

    def record(user: User) -> RoleChangeView:
        user.role_revocations = {**user.role_revocations, role: utcnow().timestamp()}
        user.roles = [r for r in user.roles if r != role]
        if role == "provider":
            session.execute(
                update(ProviderProfile)
                .where(ProviderProfile.user_id == user.id)
                .values(active=False)
            )
        return _record(session, user, role, "revoke", admin)

    return _change(session, groups.remove_from_group, user_id, role, record)


def _change(
    session: Session,
    operation: Callable[..., None],
    user_id: uuid.UUID,
    role: str,
    record: Callable[[User], RoleChangeView],
) -> RoleChangeView:
    """Read, call Cognito, then lock and record, unless the role changed meanwhile (then
    call again); see the module docstring."""
    for _ in range(ATTEMPTS):
        seen = _read(session, user_id, role)
        _call(operation, seen, role)
        try:
            # A savepoint: rolling it back releases the row lock before the next call.
            with session.begin_nested():
                user = session.scalars(
                    select(User)
                    .where(User.id == user_id)
                    .with_for_update()
                    .execution_options(populate_existing=True)
                ).one_or_none()
                if user is None:
                    raise NotFound("No such user.")
                if (user.cognito_username, user.cognito_sub) != (seen.username, seen.sub) or (
                    _changes(session, user_id, role) != seen.changes
                ):
                    raise _ChangedMeanwhile
                return record(user)
        except _ChangedMeanwhile:
            continue
    raise Conflict("Other admins kept changing this user's role at the same time; retry.")


def _read(session: Session, user_id: uuid.UUID, role: str) -> _Seen:
    row = session.execute(
        select(User.cognito_username, User.cognito_sub).where(User.id == user_id)
    ).one_or_none()
    if row is None:
        raise NotFound("No such user.")
    if not row.cognito_username:
        raise Conflict("This user has not signed in since usernames were recorded; ask them to.")
    return _Seen(row.cognito_username, row.cognito_sub, _changes(session, user_id, role))


def _changes(session: Session, user_id: uuid.UUID, role: str) -> int:
    """How many changes of the role were recorded (rows are only ever added)."""
    query = select(func.count()).where(RoleChange.user_id == user_id, RoleChange.role == role)
    return session.scalar(query) or 0


def _call(operation: Callable[..., None], seen: _Seen, role: str) -> None:
    """Change the group of the Cognito user Trellis knows: the username, checked against the
    recorded sub (a username freed by a deleted user may belong to someone else now)."""
    try:
        operation(seen.username, GROUP_OF[role], sub=seen.sub)
    except UnknownDirectoryUser:
        raise NotFound(
            "This user no longer exists in Cognito: their Cognito account was deleted (its "
            "username may now belong to someone else), so nothing was changed."
        ) from None
    except DirectoryUnavailable as exc:
        raise Unavailable("Cognito is not reachable; retry shortly.") from exc


def _record(
    session: Session, user: User, role: str, action: Literal["grant", "revoke"], admin: UserView
) -> RoleChangeView:
    change = RoleChange(
        id=uuid.uuid4(),
        user_id=user.id,
        role=role,
        action=action,
        actor_id=admin.id,
        created_at=utcnow(),
    )
    session.add(change)
    feed.role_changed(session, user.id, role, action)
    return RoleChangeView(user.id, role, action, admin.id, change.created_at, user.cognito_sub)
