"""Admin operations: granting and revoking roles (/v1/admin...)."""

from __future__ import annotations

import uuid

from flask import Blueprint

from api.auth import current_user
from api.context import components, db_session, reads_must_see_write
from api.endpoint import endpoint
from api.schemas.marketplace import RoleChange, RoleGrant, RoleInPath
from services.accounts import roles

bp = Blueprint("admin", __name__, url_prefix="/v1/admin")


@bp.post("/users/<uuid:user_id>/roles")
@endpoint(
    summary="Grant a role (adds the user to its Cognito group)",
    tags=("admin",),
    roles=("admin",),
    body=RoleGrant,
    response=RoleChange,
    idempotent=True,
    errors=(409,),
)
def grant_role(user_id: uuid.UUID, body: RoleGrant) -> RoleChange:
    """Takes effect when the user's app next refreshes its tokens."""
    change = roles.grant_role(
        db_session(), components().groups, admin=current_user(), user_id=user_id, role=body.role
    )
    return RoleChange.model_validate(change, from_attributes=True)


@bp.delete("/users/<uuid:user_id>/roles/<role>")
@endpoint(
    summary="Revoke a role (removes the user from its Cognito group)",
    tags=("admin",),
    roles=("admin",),
    path=RoleInPath,
    response=RoleChange,
    errors=(409,),
)
def revoke_role(user_id: uuid.UUID, role: roles.Role) -> RoleChange:
    """Takes effect at once: tokens issued before the revocation lose the role."""
    change = roles.revoke_role(
        db_session(), components().groups, admin=current_user(), user_id=user_id, role=role
    )
    reads_must_see_write(change.subject)  # the user's next read, even on a replica, lacks it
    return RoleChange.model_validate(change, from_attributes=True)
