"""/v1/me: the signed-in user, and the deletion of their account."""

from __future__ import annotations

from datetime import timedelta

from flask import Blueprint

from api.auth import current_user
from api.context import components, unit
from api.endpoint import endpoint
from api.schemas.me import AccountDeletion, Me, MeUpdate
from services.accounts import deletion, users
from services.base.errors import AccountHasActiveBookings

bp = Blueprint("me", __name__, url_prefix="/v1")


def _me(user: users.UserView) -> Me:
    scheduled = deletion.deletion_of(user)
    avatar_key = users.avatar_keys(unit().session, [user.id]).get(user.id)
    return Me(
        id=user.id,
        email=user.email,
        roles=list(user.roles),
        display_name=user.display_name,
        phone=user.phone,
        avatar_url=components().avatar_urls.url(avatar_key),
        created_at=user.created_at,
        updated_at=user.updated_at,
        deletion=AccountDeletion.model_validate(scheduled) if scheduled else None,
    )


@bp.get("/me")
@endpoint(summary="The signed-in user", tags=("me",), response=Me)
def get_me() -> Me:
    """Created on the first call with a new token's `sub`; roles follow `cognito:groups`.
    `deletion` shows your account's scheduled deletion (null when none)."""
    return _me(current_user())


@bp.patch("/me")
@endpoint(
    summary="Change your name or phone", tags=("me",), writes=True, body=MeUpdate, response=Me
)
def patch_me(body: MeUpdate) -> Me:
    """Only the fields sent change; `null` clears one."""
    changes = body.model_dump(exclude_unset=True)
    updated = users.update_profile(
        unit().session,
        user_id=current_user().id,
        changes=changes,
        content=components().content_filter,
    )
    return _me(updated)


@bp.delete("/me")
@endpoint(
    summary="Delete your account",
    tags=("me",),
    writes=True,
    response=AccountDeletion,
    status=202,
    idempotent=True,
    errors=(AccountHasActiveBookings,),
    max_auth_age="account_deletion_max_auth_age_seconds",
)
def delete_me() -> AccountDeletion:
    """Schedules your account's deletion: `purge_at` is `ACCOUNT_DELETION_GRACE_HOURS` from
    now, and until then DELETE /v1/me/deletion cancels it. Needs a sign-in within the last
    `ACCOUNT_DELETION_MAX_AUTH_AGE_SECONDS` (the token's `auth_time`), else 401
    `/problems/reauthentication-required`: sign in again and retry. 409
    `/problems/account-has-active-bookings` (their ids in `booking_ids`) while a booking of
    yours is in progress; otherwise your requested and accepted bookings are cancelled
    (reason "account deleted"; the other party is notified), your provider profile is
    hidden, and nobody can book, message or notify you. You can still sign in, read and
    cancel the deletion; new bookings, messages, reviews, notifications and profile changes
    of yours are 409 `/problems/account-deletion-scheduled`. Asked again while scheduled:
    202 with the same `purge_at`."""
    grace = timedelta(hours=components().settings.account_deletion_grace_hours)
    scheduled = deletion.schedule(unit().session, user=current_user(), grace=grace)
    return AccountDeletion.model_validate(scheduled)


@bp.delete("/me/deletion")
@endpoint(
    summary="Cancel your account's deletion",
    tags=("me",),
    writes=True,
    status=204,
    idempotent=True,
    errors=(404, 409),
)
def cancel_deletion() -> None:
    """During the grace period (before `purge_at`): your account is visible again, your
    provider profile too while you hold the provider role; cancelled bookings stay
    cancelled. 404 when no deletion is scheduled, 409 once `purge_at` has passed."""
    deletion.cancel(unit().session, user_id=current_user().id)
