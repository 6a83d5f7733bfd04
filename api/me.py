"""/v1/me: the signed-in user."""

from __future__ import annotations

from flask import Blueprint, Response

from api.auth import authenticated, current_user
from api.context import db_session
from api.responses import json_response
from api.schemas import Me, MeUpdate
from api.validation import parse_json
from services import users

bp = Blueprint("me", __name__, url_prefix="/v1")


@bp.get("/me")
@authenticated()
def get_me() -> Response:
    """The caller. 401 without a valid token."""
    return json_response(Me.model_validate(current_user()))


@bp.patch("/me")
@authenticated()
def patch_me() -> Response:
    """Change display_name and/or phone. 400/415/422 on bad input, 401 without a token."""
    changes = parse_json(MeUpdate).model_dump(exclude_unset=True)
    updated = users.update_profile(db_session(), user_id=current_user().id, changes=changes)
    return json_response(Me.model_validate(updated))
