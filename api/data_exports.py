"""Personal data exports (/v1/me/exports): "download my data"."""

from __future__ import annotations

import uuid

from flask import Blueprint, Response

from api.auth import current_user
from api.context import components, unit
from api.endpoint import endpoint
from api.responses import json_response
from api.schemas.data_exports import DataExport
from services.accounts import data_export
from services.base.errors import ExportInProgress

bp = Blueprint("data_exports", __name__, url_prefix="/v1/me/exports")


def _export(view: data_export.ExportView) -> DataExport:
    return DataExport.model_validate(view, from_attributes=True)


@bp.post("")
@endpoint(
    summary="Ask for a copy of your data",
    tags=("me",),
    writes=True,
    response=DataExport,
    status=202,
    idempotent=True,
    errors=(ExportInProgress, 429),
    location=True,
)
def create_export() -> Response:
    """The copy is prepared in the background: poll the `Location` (or wait for the
    `data_export_ready` notification) until it is `ready`, then download it within 7 days.
    409 (`/problems/export-in-progress`, `export_id` names it) while your previous one is
    still pending; 429 (`/problems/rate-limited`, `Retry-After`) after `EXPORTS_PER_DAY`
    (default 3) in 24 hours."""
    view = data_export.request_export(
        unit().session,
        user_id=current_user().id,
        per_day=components().settings.exports_per_day,
    )
    response = json_response(_export(view), 202)
    response.headers["Location"] = f"/v1/me/exports/{view.id}"
    return response


@bp.get("/<uuid:export_id>")
@endpoint(summary="One of your data exports", tags=("me",), response=DataExport, errors=(404,))
def get_export(export_id: uuid.UUID) -> DataExport:
    """`download_url` is a fresh link each time, valid until `expires_at` (7 days after the
    copy was built). Past then the status is `expired` and the document is deleted."""
    return _export(
        data_export.get_export(
            unit().session, components().store, user_id=current_user().id, export_id=export_id
        )
    )
