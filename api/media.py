"""Uploads (/v1/uploads), push devices (/v1/devices) and the inbox (/v1/notifications)."""

from __future__ import annotations

import uuid
from datetime import timedelta

from flask import Blueprint, Response, request

from api.auth import current_user
from api.context import components, unit
from api.endpoint import endpoint
from api.errors import problem_for
from api.responses import json_response
from api.schemas.media import (
    Device,
    DeviceCreate,
    DevicePage,
    Notification,
    NotificationCreate,
    NotificationPage,
    NotificationQuery,
    PresignedPost,
    ReadAll,
    Upload,
    UploadCreate,
)
from services import uploads
from services.base.errors import ValidationFailed
from services.messaging import devices, notifications, texts

bp = Blueprint("media", __name__, url_prefix="/v1")


def _upload(view: uploads.UploadView, expires_in: int | None = None) -> Upload:
    post = None
    if view.upload is not None and expires_in is not None:
        post = PresignedPost(
            url=view.upload.url,
            fields=view.upload.fields,
            expires_at=view.created_at + timedelta(seconds=expires_in),
        )
    return Upload(
        id=view.id,
        purpose=view.purpose,  # type: ignore[arg-type]
        booking_id=view.booking_id,
        content_type=view.content_type,
        size_bytes=view.size_bytes,
        filename=view.filename,
        status=view.status,  # type: ignore[arg-type]
        created_at=view.created_at,
        completed_at=view.completed_at,
        download_url=view.download_url,
        upload=post,
    )


@bp.post("/uploads")
@endpoint(
    summary="Start an upload: get a presigned POST",
    tags=("uploads",),
    limit="rate_limit_uploads",
    writes=True,
    body=UploadCreate,
    response=Upload,
    status=201,
    idempotent=True,
    errors=(403,),
    location=True,
)
def create_upload(body: UploadCreate) -> Response:
    """Type and size are checked against the purpose's limits before any URL is issued.
    provider_document needs the provider role."""
    settings = components().settings
    view = uploads.issue_upload(
        unit().session,
        components().store,
        owner=current_user(),
        data=uploads.NewUpload(
            purpose=body.purpose,
            content_type=body.content_type,
            size_bytes=body.size_bytes,
            filename=body.filename,
            booking_id=body.booking_id,
        ),
        limits=components().upload_limits,
        expires_in=settings.upload_url_expiry_seconds,
    )
    response = json_response(_upload(view, settings.upload_url_expiry_seconds), 201)
    response.headers["Location"] = f"/v1/uploads/{view.id}"
    return response


@bp.post("/uploads/<uuid:upload_id>/complete")
@endpoint(
    summary="Confirm an upload: checks what S3 received",
    tags=("uploads",),
    limit="rate_limit_uploads",
    writes=True,
    response=Upload,
    idempotent=True,
    errors=(409, ValidationFailed),
)
def complete_upload(upload_id: uuid.UUID) -> Upload | Response:
    """422 (and the object deleted) if its size or type differ from what was declared."""
    completion = uploads.complete_upload(
        unit().session, components().store, owner=current_user(), upload_id=upload_id
    )
    if completion.problems:
        # Returned, not raised: the rejection is kept (the object is gone) and then answered.
        refusal = ValidationFailed(
            "The uploaded file is not what was declared; it was deleted.", list(completion.problems)
        )
        return problem_for(refusal)
    return _upload(completion.upload)


@bp.get("/uploads/<uuid:upload_id>")
@endpoint(summary="An upload, with a short-lived download URL", tags=("uploads",), response=Upload)
def get_upload(upload_id: uuid.UUID) -> Upload:
    """For its owner and, for booking attachments, the booking's other party."""
    view = uploads.get_upload(
        unit().session,
        components().store,
        viewer=current_user(),
        upload_id=upload_id,
        expires_in=components().settings.download_url_expiry_seconds,
    )
    return _upload(view)


@bp.delete("/uploads/<uuid:upload_id>")
@endpoint(summary="Delete an upload and its file", tags=("uploads",), writes=True, status=204)
def delete_upload(upload_id: uuid.UUID) -> None:
    uploads.delete_upload(
        unit().session, components().store, owner=current_user(), upload_id=upload_id
    )


@bp.post("/devices")
@endpoint(
    summary="Register this phone for push",
    tags=("devices",),
    limit="rate_limit_notifications",
    writes=True,
    body=DeviceCreate,
    response=Device,
)
def register_device(body: DeviceCreate) -> Device:
    """Idempotent per token: sending it again updates and re-enables the device."""
    view = devices.register_device(
        unit().session,
        components().push,
        user=current_user(),
        platform=body.platform,
        token=body.token,
        app_version=body.app_version,
        locale=body.locale,
        time_zone=body.time_zone,
    )
    return Device.model_validate(view, from_attributes=True)


@bp.get("/devices")
@endpoint(summary="Your registered devices", tags=("devices",), response=DevicePage)
def list_devices() -> DevicePage:
    rows = devices.list_devices(unit().session, user_id=current_user().id)
    return DevicePage(
        items=[Device.model_validate(v, from_attributes=True) for v in rows], next_cursor=None
    )


@bp.delete("/devices/<uuid:device_id>")
@endpoint(summary="Unregister a device", tags=("devices",), writes=True, status=204)
def delete_device(device_id: uuid.UUID) -> None:
    devices.delete_device(
        unit().session, components().push, user_id=current_user().id, device_id=device_id
    )


@bp.post("/notifications")
@endpoint(
    summary="Notify a consumer you have a booking with",
    tags=("notifications",),
    limit="rate_limit_notifications",
    writes=True,
    roles=("provider",),
    body=NotificationCreate,
    response=Notification,
    status=201,
    idempotent=True,
    errors=(404, 429),
)
def send_notification(body: NotificationCreate) -> Notification:
    """Providers only; 404 for anyone who has no booking with you or whose account
    deletion is scheduled, 403 (`/problems/blocked`) once either of you blocked the other,
    409 (`/problems/account-deletion-scheduled`) while yours is; rate-limited per consumer."""
    view = notifications.send_from_provider(
        unit().session,
        sender=current_user(),
        user_id=body.user_id,
        title=body.title,
        body=body.body,
        data=dict(body.data),
        per_hour=components().settings.provider_notifications_per_hour,
    )
    return Notification.model_validate(view, from_attributes=True)


@bp.get("/notifications")
@endpoint(
    summary="Your notifications, newest first",
    tags=("notifications",),
    query=NotificationQuery,
    response=NotificationPage,
    localized=True,
)
def list_notifications(query: NotificationQuery) -> NotificationPage:
    """Trellis's own notifications (bookings, messages) are written in the language
    `Accept-Language` asks for (English or German), else in that of your most recently
    seen device (`locale`), else English; times in that device's `time_zone`, else the
    provider's, else UTC. A provider's notification is shown as they wrote it."""
    page = notifications.inbox(
        unit().session,
        user_id=current_user().id,
        unread=query.unread,
        cursor=query.cursor,
        limit=query.limit,
        reader=_reader(),
    )
    return NotificationPage(
        items=[Notification.model_validate(v, from_attributes=True) for v in page.items],
        next_cursor=page.next_cursor,
    )


@bp.post("/notifications/<uuid:notification_id>/read")
@endpoint(
    summary="Mark one notification read",
    tags=("notifications",),
    writes=True,
    response=Notification,
    localized=True,
)
def read_notification(notification_id: uuid.UUID) -> Notification:
    """In the language and zone GET /v1/notifications uses."""
    view = notifications.mark_read(
        unit().session,
        user_id=current_user().id,
        notification_id=notification_id,
        reader=_reader(),
    )
    return Notification.model_validate(view, from_attributes=True)


def _reader() -> texts.Reader:
    """Whom the inbox is rendered for: Accept-Language, else the caller's latest device."""
    wanted = [tag for tag, _ in request.accept_languages]
    return notifications.reader_of(unit().session, current_user().id, wanted)


@bp.post("/notifications/read-all")
@endpoint(
    writes=True, summary="Mark every notification read", tags=("notifications",), response=ReadAll
)
def read_all_notifications() -> ReadAll:
    return ReadAll(updated=notifications.mark_all_read(unit().session, user_id=current_user().id))
