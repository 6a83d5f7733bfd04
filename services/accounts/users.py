"""Users: created on first sign-in, kept in step with their token, edited by themselves."""

from __future__ import annotations

import uuid
from collections.abc import Collection, Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, ScalarSelect, bindparam, select, update
from sqlalchemy.orm import Session

from models import ProviderProfile, Upload, User
from models.base import utcnow
from services.accounts.auth import Identity
from services.base.content_filter import ContentFilter, flag
from services.base.db import core_rows, insert_ignoring_conflict
from services.base.errors import (
    AccountClosed,
    AccountDeletionScheduled,
    AccountSuspended,
    NotFound,
)
from services.base.unit_of_work import UnitOfWork
from services.base.views import row_view


@row_view
class UserView:
    """A user as the rest of Trellis sees it; `roles` are the effective roles."""

    id: uuid.UUID
    email: str | None
    roles: tuple[str, ...]
    display_name: str | None
    phone: str | None
    created_at: datetime
    updated_at: datetime
    # Set while the user's own account deletion is scheduled (services/accounts/deletion.py).
    deletion_requested_at: datetime | None = None
    purge_at: datetime | None = None


def view_of(user: Any) -> UserView:
    """A user (an ORM object or a row with the same names) as a UserView."""
    return UserView(
        id=user.id,
        email=user.email,
        roles=tuple(user.roles),
        display_name=user.display_name,
        phone=user.phone,
        created_at=user.created_at,
        updated_at=user.updated_at,
        deletion_requested_at=user.deletion_requested_at,
        purge_at=user.purge_at,
    )


def effective_roles(identity: Identity, revocations: Mapping[str, float]) -> list[str]:
    """The token's roles, less any an admin revoked after the token was issued."""
    return sorted(r for r in identity.roles if identity.issued_at >= revocations.get(r, 0.0))


# Just what a request needs to authorise the caller, built once (building a select per
# request cost more than running it); no ORM object for the common case.
_USERS = User.__table__.c
_CALLER = select(
    _USERS.id,
    _USERS.email,
    _USERS.roles,
    _USERS.display_name,
    _USERS.phone,
    _USERS.created_at,
    _USERS.updated_at,
    _USERS.cognito_username,
    _USERS.role_revocations,
    _USERS.deletion_requested_at,
    _USERS.purge_at,
    _USERS.suspended_at,
    _USERS.purged_at,
).where(_USERS.cognito_sub == bindparam("sub"))


def sync_user(unit: UnitOfWork, *, identity: Identity) -> UserView:
    """The caller's user row, created on first sight and updated when email or roles change.

    Writes only when something changed, so an ordinary request costs one indexed read of a
    few columns (on the unit's own session, a replica's for a read). A write is bookkeeping:
    it commits at once on the primary, whatever becomes of the request's work.
    """
    row = core_rows(unit.session, _CALLER, {"sub": identity.sub}).one_or_none()
    if row is not None:
        refuse_closed(row)
        if not _stale(row, identity):
            return view_of(row)
    with unit.bookkeeping() as writer:
        # The row first (FOR NO KEY UPDATE), then the profile: the order a deletion being
        # scheduled takes them in, so the two wait for each other instead of deadlocking,
        # and the purge_at read here is the one that holds.
        user = writer.scalar(
            select(User).where(User.cognito_sub == identity.sub).with_for_update(key_share=True)
        )
        if user is None:
            user = _create(writer, identity)
        refuse_closed(user)  # purged or suspended since the read above
        if _stale(user, identity):
            roles, email, username = _from_token(user, identity)
            if ("provider" in roles) != ("provider" in user.roles):
                set_profile_shown(writer, user.id, profile_shown(roles, user))
            user.roles, user.email, user.cognito_username = roles, email, username
    return view_of(user)


def refuse_closed(user: Any) -> None:
    """Refuse the token of an account that is gone (401) and a suspended account's (403), at
    once and on every request. An account is gone from the end of its grace period on,
    purged or not yet: nothing new of theirs arrives while the purge runs, and a tombstone
    never comes back to life as a new, empty user."""
    if user.purged_at is not None or (user.purge_at is not None and user.purge_at <= utcnow()):
        raise AccountClosed()
    if user.suspended_at is not None:
        raise AccountSuspended(
            "Your account is suspended. Contact the app's support if you think this is wrong."
        )


def _from_token(user: Any, identity: Identity) -> tuple[list[str], str | None, str | None]:
    """The roles, email and username the stored user should have after this token."""
    roles = effective_roles(identity, user.role_revocations)
    email = identity.email if identity.email is not None else user.email
    return roles, email, identity.username or user.cognito_username


def _stale(user: Any, identity: Identity) -> bool:
    """Whether the stored user (an ORM object or a row) lags behind the token."""
    return (user.roles, user.email, user.cognito_username) != _from_token(user, identity)


def _create(session: Session, identity: Identity) -> User:
    # Two first requests from one new user can race: ON CONFLICT lets both succeed.
    now = utcnow()
    values = {
        "id": uuid.uuid4(),
        "cognito_sub": identity.sub,
        "cognito_username": identity.username,
        "email": identity.email,
        "roles": [],
        "role_revocations": {},
        "created_at": now,
        "updated_at": now,
    }
    insert_ignoring_conflict(session, User, values, ["cognito_sub"])
    query = select(User).where(User.cognito_sub == identity.sub)
    return session.scalars(query.execution_options(populate_existing=True)).one()


# users.avatar_upload_id is only ever a ready upload: set by completing one, cleared by
# deleting it, a moderator hiding it, or the purge.
def avatar_key_of(user_id: ColumnElement[uuid.UUID]) -> ScalarSelect[str]:
    """A column for a statement: the avatar's object key of the user whose id is `user_id`
    (a column of the statement's own tables), NULL when they have none."""
    return (
        select(Upload.key)
        .join(User, User.avatar_upload_id == Upload.id)
        .where(User.id == user_id)
        .scalar_subquery()
    )


def avatar_keys(session: Session, user_ids: Collection[uuid.UUID]) -> dict[uuid.UUID, str]:
    """The avatar's object key of those of `user_ids` who have one."""
    if not user_ids:
        return {}
    rows = session.execute(
        select(User.id, Upload.key)
        .join(Upload, Upload.id == User.avatar_upload_id)
        .where(User.id.in_(list(user_ids)))
    )
    return {row.id: row.key for row in rows}


def profile_shown(roles: Collection[str], user: Any) -> bool:
    """Whether the user's provider profile is shown (in search, bookable): while they hold
    the provider role, with no deletion of theirs scheduled and no suspension."""
    return "provider" in roles and user.purge_at is None and user.suspended_at is None


def set_profile_shown(session: Session, user_id: uuid.UUID, active: bool) -> None:
    session.execute(
        update(ProviderProfile).where(ProviderProfile.user_id == user_id).values(active=active)
    )


def scheduled_for_deletion(
    session: Session, user_ids: Collection[uuid.UUID], *, hold: bool = False
) -> set[uuid.UUID]:
    """Those of `user_ids` whose account deletion is scheduled (one primary-key read).

    `hold=True` also holds their rows FOR SHARE until the transaction ends. Scheduling a
    deletion takes the user's row first (services/accounts/deletion.py), so either this
    waits for that and sees it, or the deletion waits for this transaction and then sees
    what it wrote (a booking, which it cancels, a profile, which it hides). Hold before
    locking any booking row, never after: a deletion locks the user, then their bookings.
    """
    query = select(User.id, User.purge_at).where(User.id.in_(user_ids))
    if hold:
        query = query.with_for_update(read=True)
    return {row.id for row in session.execute(query) if row.purge_at is not None}


def deletion_scheduled_refusal(action: str) -> AccountDeletionScheduled:
    """The 409 for a user whose own deletion is scheduled and who tries to `action`: until
    they cancel it, nothing new of theirs reaches anyone."""
    return AccountDeletionScheduled(
        f"Your account is scheduled for deletion, so you cannot {action}; cancel the "
        "deletion first (DELETE /v1/me/deletion)."
    )


EDITABLE_FIELDS = frozenset({"display_name", "phone"})


def update_profile(
    session: Session,
    *,
    user_id: uuid.UUID,
    changes: Mapping[str, str | None],
    content: ContentFilter,
) -> UserView:
    """Set the fields given (None clears one); fields left out stay as they are. A display
    name that hits the content filter is kept and opens a system report of the user."""
    unknown = set(changes) - EDITABLE_FIELDS
    if unknown:
        raise ValueError(f"not editable: {sorted(unknown)}")
    user = session.get(User, user_id, with_for_update=True)
    if user is None:
        raise NotFound("No such user.")
    for name, value in changes.items():
        setattr(user, name, value)
    if "display_name" in changes:
        texts = (changes["display_name"],)
        flag(session, content, target_type="user", target_id=user_id, texts=texts)
    session.flush()  # updated_at comes from the database's onupdate
    return view_of(user)
