"""Suspending and lifting the suspension of an account.

A suspended account's tokens are refused on every request (403
`/problems/account-suspended`, services/accounts/users.py refuse_closed, from the commit on),
its provider profile is hidden (inactive: out of search, 404, not bookable), and its Cognito
user is disabled (AdminDisableUser), so it can neither sign in nor refresh its tokens.

No row is locked while Cognito is called: the Cognito call comes first, on what was read
without a lock, then the rows are written. A Cognito outage is 503 with nothing written;
the admin retries, and both calls are idempotent. Trellis's own refusal is what protects
Trellis: if a suspension and a lift race so that Cognito ends up holding the other's
change, Trellis still refuses (or accepts) tokens by `users.suspended_at`, and the next
suspend or unsuspend makes Cognito agree again.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import Integer, Select, bindparam, select, tuple_, update
from sqlalchemy.orm import Session

from models import User
from services.accounts.users import profile_shown, set_profile_shown
from services.aws.cognito import DirectoryUnavailable, GroupDirectory, UnknownDirectoryUser
from services.base.errors import Conflict, NotFound, Unavailable
from services.base.pagination import Page, decode_cursor, page_of, scope_of, time_and_id

log = logging.getLogger("trellis.moderation")


@dataclass(frozen=True, slots=True)
class SuspendedUserView:
    id: uuid.UUID
    email: str | None
    display_name: str | None
    suspended_at: datetime | None
    subject: str  # the user's Cognito sub: their next reads must see the change


def disable_in_cognito(session: Session, groups: GroupDirectory, user_id: uuid.UUID) -> None:
    """AdminDisableUser for the user (no lock held); 404 for an unknown user, 503 when
    Cognito cannot be reached (nothing is written then)."""
    _directory_call(session, groups.admin_disable_user, user_id)


def mark_suspended(session: Session, user_id: uuid.UUID, now: datetime) -> str:
    """Record the suspension (the first time stays) and hide the profile; the user's sub."""
    session.execute(
        update(User).where(User.id == user_id, User.suspended_at.is_(None)).values(suspended_at=now)
    )
    set_profile_shown(session, user_id, False)
    sub = session.scalar(select(User.cognito_sub).where(User.id == user_id))
    assert sub is not None
    return sub


def unsuspend(session: Session, groups: GroupDirectory, *, user_id: uuid.UUID) -> SuspendedUserView:
    """AdminEnableUser, then the account is as before: tokens accepted, the profile shown
    again if they hold the provider role and no deletion of theirs is scheduled. 404 for an
    unknown user, 409 when not suspended, 503 when Cognito cannot be reached."""
    if session.scalar(select(User.suspended_at).where(User.id == user_id)) is None:
        _require_user(session, user_id)
        raise Conflict("This account is not suspended.")
    _directory_call(session, groups.admin_enable_user, user_id)
    user = session.scalar(
        select(User)
        .where(User.id == user_id)
        .with_for_update(key_share=True)
        .execution_options(populate_existing=True)
    )
    if user is None:
        raise NotFound("No such user.")
    if user.suspended_at is None:
        raise Conflict("This account is not suspended (another admin lifted it meanwhile).")
    user.suspended_at = None
    set_profile_shown(session, user_id, profile_shown(user.roles, user))
    session.flush()
    return SuspendedUserView(user.id, user.email, user.display_name, None, user.cognito_sub)


def list_suspended(session: Session, *, cursor: str | None, limit: int) -> Page[SuspendedUserView]:
    """Suspended accounts, the most recently suspended first."""
    scope = scope_of("suspended-users")
    after = time_and_id(decode_cursor(cursor, scope)) if cursor is not None else None
    params: dict[str, Any] = {"n": limit + 1}
    if after is not None:
        params["after_at"], params["after_id"] = after
    query = _list_query(after is not None)
    rows = [SuspendedUserView(*row) for row in session.execute(query, params)]
    return page_of(rows, limit, scope, lambda v: [v.suspended_at.isoformat(), str(v.id)])


@cache
def _list_query(paged: bool) -> Select[Any]:
    u = User.__table__.c
    query = select(u.id, u.email, u.display_name, u.suspended_at, u.cognito_sub).where(
        u.suspended_at.isnot(None)
    )
    if paged:
        after = tuple_(
            bindparam("after_at", type_=u.suspended_at.type),
            bindparam("after_id", type_=u.id.type),
        )
        query = query.where(tuple_(u.suspended_at, u.id) < after)
    return query.order_by(u.suspended_at.desc(), u.id.desc()).limit(bindparam("n", type_=Integer))


def _directory_call(session: Session, operation: Callable[..., None], user_id: uuid.UUID) -> None:
    row = session.execute(
        select(User.cognito_username, User.cognito_sub).where(User.id == user_id)
    ).first()
    if row is None:
        raise NotFound("No such user.")
    username, sub = row
    if not username:
        # Never seen with a username (an account older than usernames being recorded):
        # Cognito cannot be addressed, and Trellis's own refusal still applies.
        log.warning("user %s has no recorded Cognito username: Cognito left as it is", user_id)
        return
    try:
        operation(username, sub=sub)
    except UnknownDirectoryUser:
        # The Cognito user is gone (or the username is someone else's now): nothing there
        # to disable or enable; Trellis's record is what counts.
        log.warning("user %s is no longer in Cognito: Cognito left as it is", user_id)
    except DirectoryUnavailable as exc:
        raise Unavailable("Cognito is not reachable; nothing was changed. Retry shortly.") from exc


def _require_user(session: Session, user_id: uuid.UUID) -> None:
    if session.scalar(select(User.id).where(User.id == user_id)) is None:
        raise NotFound("No such user.")
