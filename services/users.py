"""Users: created on first sign-in, kept in step with their token, edited by themselves."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from models import User
from models.base import utcnow
from services.auth import Identity
from services.db import transaction
from services.errors import NotFound


@dataclass(frozen=True, slots=True)
class UserView:
    """A user as the rest of Trellis sees it."""

    id: uuid.UUID
    email: str | None
    roles: tuple[str, ...]
    display_name: str | None
    phone: str | None
    created_at: datetime
    updated_at: datetime


def _view(user: User) -> UserView:
    return UserView(
        id=user.id,
        email=user.email,
        roles=tuple(user.roles),
        display_name=user.display_name,
        phone=user.phone,
        created_at=user.created_at,
        updated_at=user.updated_at,
    )


def sync_user(session: Session, *, identity: Identity) -> UserView:
    """The caller's user row, created on first sight and updated when email or roles change.

    Writes only when something changed, so an ordinary request costs one indexed read.
    """
    roles = sorted(identity.roles)
    user = session.scalar(select(User).where(User.cognito_sub == identity.sub))
    if user is None:
        _insert_if_absent(session, identity, roles)
        user = session.scalars(
            select(User)
            .where(User.cognito_sub == identity.sub)
            .execution_options(populate_existing=True)
        ).one()
    email = identity.email if identity.email is not None else user.email
    if user.roles != roles or user.email != email:
        with transaction(session):
            user.roles = roles
            user.email = email
    return _view(user)


def _insert_if_absent(session: Session, identity: Identity, roles: list[str]) -> None:
    # Two first requests from one new user can race: ON CONFLICT lets both succeed.
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    now = utcnow()
    statement = (
        insert(User)
        .values(
            id=uuid.uuid4(),
            cognito_sub=identity.sub,
            email=identity.email,
            roles=roles,
            created_at=now,
            updated_at=now,
        )
        .on_conflict_do_nothing(index_elements=[User.cognito_sub])
    )
    with transaction(session):
        session.execute(statement)


EDITABLE_FIELDS = frozenset({"display_name", "phone"})


def update_profile(
    session: Session, *, user_id: uuid.UUID, changes: Mapping[str, str | None]
) -> UserView:
    """Set the fields given (None clears one); fields left out stay as they are."""
    unknown = set(changes) - EDITABLE_FIELDS
    if unknown:
        raise ValueError(f"not editable: {sorted(unknown)}")
    with transaction(session):
        user = session.get(User, user_id, with_for_update=True)
        if user is None:
            raise NotFound("No such user.")
        for name, value in changes.items():
            setattr(user, name, value)
    return _view(user)
