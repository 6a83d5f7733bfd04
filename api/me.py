"""/v1/me: the signed-in user."""

from __future__ import annotations

from flask import Blueprint

from api.auth import current_user
from api.context import unit
from api.endpoint import endpoint
from api.schemas.me import Me, MeUpdate
from services.accounts import users

bp = Blueprint("me", __name__, url_prefix="/v1")


@bp.get("/me")
@endpoint(summary="The signed-in user", tags=("me",), response=Me)
def get_me() -> Me:
    """Created on the first call with a new token's `sub`; roles follow `cognito:groups`."""
    return Me.model_validate(current_user())


@bp.patch("/me")
@endpoint(
    summary="Change your name or phone", tags=("me",), writes=True, body=MeUpdate, response=Me
)
def patch_me(body: MeUpdate) -> Me:
    """Only the fields sent change; `null` clears one."""
    changes = body.model_dump(exclude_unset=True)
    updated = users.update_profile(unit().session, user_id=current_user().id, changes=changes)
    return Me.model_validate(updated)
