"""Admins grant and revoke roles: Cognito groups change, and Trellis records who did it."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from sqlalchemy import update
from sqlalchemy.orm import Session

from models import ProviderProfile, RoleChange, User
from models.base import utcnow
from services.accounts.auth import GROUP_ROLES
from services.accounts.users import UserView
from services.aws.cognito import DirectoryUnavailable, GroupDirectory, UnknownDirectoryUser
from services.base.errors import Conflict, NotFound, Unavailable

Role = Literal["consumer", "provider", "admin"]
GROUP_OF = {role: group for group, role in GROUP_ROLES.items()}


@dataclass(frozen=True, slots=True)
class RoleChangeView:
    user_id: uuid.UUID
    role: str
    action: Literal["grant", "revoke"]
    actor_id: uuid.UUID
    created_at: datetime
    subject: str  # the user's Cognito sub: their next reads must see this change


def grant_role(
    session: Session, groups: GroupDirectory, *, admin: UserView, user_id: uuid.UUID, role: Role
) -> RoleChangeView:
    """Add the user to the role's Cognito group; effective from their next token."""
    user = _directory_user(session, user_id)
    _call(groups.add_to_group, user, role)
    revocations = dict(user.role_revocations)
    revocations.pop(role, None)  # a fresh grant lifts an earlier revocation
    user.role_revocations = revocations
    return _record(session, user, role, "grant", admin)


def revoke_role(
    session: Session, groups: GroupDirectory, *, admin: UserView, user_id: uuid.UUID, role: Role
) -> RoleChangeView:
    """Remove the user from the role's group and stop honouring it at once.

    Tokens already issued still carry the group until they expire (up to an hour); the
    recorded revocation time makes Trellis ignore the role in any token issued before it.
    """
    user = _directory_user(session, user_id)
    if admin.id == user.id and role == "admin":
        raise Conflict("Admins cannot revoke their own admin role.")
    _call(groups.remove_from_group, user, role)
    user.role_revocations = {**user.role_revocations, role: utcnow().timestamp()}
    user.roles = [r for r in user.roles if r != role]
    if role == "provider":
        session.execute(
            update(ProviderProfile).where(ProviderProfile.user_id == user.id).values(active=False)
        )
    return _record(session, user, role, "revoke", admin)


def _directory_user(session: Session, user_id: uuid.UUID) -> User:
    user = session.get(User, user_id, with_for_update=True)
    if user is None:
        raise NotFound("No such user.")
    if not user.cognito_username:
        raise Conflict("This user has not signed in since usernames were recorded; ask them to.")
    return user


def _call(operation: object, user: User, role: str) -> None:
    """Change the group of the Cognito user Trellis knows: the username, checked against the
    recorded sub (a username freed by a deleted user may belong to someone else now)."""
    try:
        operation(user.cognito_username, GROUP_OF[role], sub=user.cognito_sub)  # type: ignore[operator]
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
    return RoleChangeView(user.id, role, action, admin.id, change.created_at, user.cognito_sub)
