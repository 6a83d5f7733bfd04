"""Admin operations: granting and revoking roles (/v1/admin...)."""

from __future__ import annotations

import uuid

from flask import Blueprint

from api.auth import current_user
from api.context import components, unit
from api.endpoint import endpoint
from api.schemas.marketplace import RoleChange, RoleGrant, RoleInPath
from services.accounts import roles

bp = Blueprint("admin", __name__, url_prefix="/v1/admin")


@bp.post("/users/<uuid:user_id>/roles")
@endpoint(
    summary="Grant a role (adds the user to its Cognito group)",
    tags=("admin",),
    writes=True,
    roles=("admin",),
    body=RoleGrant,
    response=RoleChange,
    idempotent=True,
    errors=(409,),
)
def grant_role(user_id: uuid.UUID, body: RoleGrant) -> RoleChange:
    """Takes effect when the user's app next refreshes its tokens."""
    change = roles.grant_role(
        unit().session, components().groups, admin=current_user(), user_id=user_id, role=body.role
    )
    return RoleChange.model_validate(change, from_attributes=True)


@bp.delete("/users/<uuid:user_id>/roles/<role>")
@endpoint(
    summary="Revoke a role (removes the user from its Cognito group)",
    tags=("admin",),
    writes=True,
    roles=("admin",),
    path=RoleInPath,
    response=RoleChange,
    errors=(409,),
)
def revoke_role(user_id: uuid.UUID, role: roles.Role) -> RoleChange:
    """Takes effect at once: tokens issued before the revocation lose the role."""
    change = roles.revoke_role(
        unit().session, components().groups, admin=current_user(), user_id=user_id, role=role
    )
    unit().reads_must_see_write(change.subject)  # the user's next read, even on a replica, lacks it
    return RoleChange.model_validate(change, from_attributes=True)
