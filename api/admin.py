"""Admin operations: granting and revoking roles (/v1/admin...)."""

from __future__ import annotations

import uuid

from flask import Blueprint

from api.auth import current_user
from api.context import components, unit
from api.endpoint import endpoint
from api.schemas.deletion_requests import (
    DeletionRequest,
    DeletionRequestClose,
    DeletionRequestPage,
    DeletionRequestQuery,
)
from api.schemas.marketplace import RoleChange, RoleGrant, RoleInPath
from services.accounts import deletion_requests, roles

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


def _deletion_request(view: deletion_requests.DeletionRequestView) -> DeletionRequest:
    return DeletionRequest.model_validate(view, from_attributes=True)


@bp.get("/deletion-requests")
@endpoint(
    summary="Deletion requests sent from the web page, newest first",
    tags=("admin",),
    roles=("admin",),
    query=DeletionRequestQuery,
    response=DeletionRequestPage,
)
def list_deletion_requests(query: DeletionRequestQuery) -> DeletionRequestPage:
    """Sent by anyone from GET /account/delete: `accounts` lists the accounts that use the
    address now, with whether their deletion is already scheduled. Confirm with the owner
    (write to the address) before acting."""
    page = deletion_requests.list_requests(
        unit().session, status=query.status, cursor=query.cursor, limit=query.limit
    )
    return DeletionRequestPage(
        items=[_deletion_request(v) for v in page.items], next_cursor=page.next_cursor
    )


@bp.post("/deletion-requests/<uuid:request_id>/close")
@endpoint(
    summary="Close a deletion request (handled)",
    tags=("admin",),
    writes=True,
    roles=("admin",),
    body=DeletionRequestClose,
    response=DeletionRequest,
    idempotent=True,
    errors=(409,),
)
def close_deletion_request(request_id: uuid.UUID, body: DeletionRequestClose) -> DeletionRequest:
    """409 when it is closed already. A closed request is deleted
    DELETION_REQUESTS_RETENTION_DAYS after it was closed."""
    view = deletion_requests.close(
        unit().session, request_id=request_id, admin_id=current_user().id, note=body.note
    )
    return _deletion_request(view)
