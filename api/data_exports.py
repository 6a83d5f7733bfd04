"""Personal data exports (/v1/me/exports): "download my data"."""

from __future__ import annotations

import uuid

from flask import Blueprint, Response, redirect

from api.auth import current_user
from api.context import components, public_base_url, unit
from api.endpoint import endpoint
from api.responses import json_response
from api.schemas.data_exports import DataExport, FileLinkQuery
from services.accounts import data_export
from services.base.errors import ExportInProgress

bp = Blueprint("data_exports", __name__, url_prefix="/v1/me/exports")
# The links inside an export document: opened from wherever the document travelled (a
# laptop, a mail), so the export's token stands in for a sign-in.
files_bp = Blueprint("data_export_files", __name__, url_prefix="/exports")


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
        links_base_url=public_base_url(),
    )
    response = json_response(_export(view), 202)
    response.headers["Location"] = f"/v1/me/exports/{view.id}"
    return response


@bp.get("/<uuid:export_id>")
@endpoint(summary="One of your data exports", tags=("me",), response=DataExport, errors=(404,))
def get_export(export_id: uuid.UUID) -> DataExport:
    """`download_url` is a fresh link each time, valid for an hour; ask again for another
    until `expires_at` (7 days after the copy was built). Past then the status is `expired`
    and the document is deleted. The links to your files inside the document work until
    `expires_at` too."""
    return _export(
        data_export.get_export(
            unit().session, components().store, user_id=current_user().id, export_id=export_id
        )
    )


@files_bp.get("/<uuid:export_id>/files/<uuid:upload_id>")
@endpoint(
    summary="Open a file listed in a data export",
    tags=("me",),
    auth=False,
    query=FileLinkQuery,
    status=302,
    errors=(404,),
    # A link people click (in a browser, from the document), not an operation for clients.
    documented=False,
)
def open_export_file(export_id: uuid.UUID, upload_id: uuid.UUID, query: FileLinkQuery) -> Response:
    """The `download_url` of an upload inside an export document: redirects to the file
    (a presigned link valid 5 minutes) while the export is ready, until its `expires_at`.
    404 for a wrong token, an expired export or a file deleted since."""
    url = data_export.file_link(
        unit().session,
        components().store,
        export_id=export_id,
        upload_id=upload_id,
        token=query.token,
    )
    response = redirect(url, 302)
    response.headers["Cache-Control"] = "no-store"  # the target is signed for minutes only
    return response
