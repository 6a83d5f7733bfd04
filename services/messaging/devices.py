"""Push devices: a phone's token registered as an SNS platform endpoint, one row per token."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from models import Device
from models.base import utcnow
from services.accounts.users import UserView
from services.aws.sns import PushGateway, PushUnavailable
from services.base.db import insert_ignoring_conflict
from services.base.errors import NotFound, Unavailable

ATTEMPTS = 3  # rounds of a delete that keeps losing to a re-registration of the same token


@dataclass(frozen=True, slots=True)
class DeviceView:
    id: uuid.UUID
    platform: str
    enabled: bool
    app_version: str | None
    locale: str | None
    time_zone: str | None
    created_at: datetime
    last_seen_at: datetime


def register_device(
    session: Session,
    push: PushGateway,
    *,
    user: UserView,
    platform: str,
    token: str,
    app_version: str | None,
    locale: str | None,
    time_zone: str | None = None,
) -> DeviceView:
    """Idempotent: the same token again updates and re-enables it; a token that moved to
    another user (a shared or resold phone) is reassigned to the caller. `locale` and
    `time_zone` (IANA) choose the language and zone of its pushes (services/messaging/
    texts.py); each registration sets both, so a phone that moved zones says so again."""
    existing = session.scalar(
        select(Device).where(Device.platform == platform, Device.token == token)
    )
    try:
        arn = push.register(
            platform=platform,
            token=token,
            user_data=str(user.id),
            arn=existing.endpoint_arn if existing else None,
        )
    except PushUnavailable as exc:
        raise Unavailable("Push registration is not available right now; retry shortly.") from exc
    now = utcnow()
    fields = {
        "user_id": user.id,
        "endpoint_arn": arn,
        "enabled": True,
        "app_version": app_version,
        "locale": locale,
        "time_zone": time_zone,
        "last_seen_at": now,
    }
    insert_ignoring_conflict(
        session,
        Device,
        {"id": uuid.uuid4(), "platform": platform, "token": token, "created_at": now, **fields},
        ["platform", "token"],
    )
    device = session.scalars(
        select(Device)
        .where(Device.platform == platform, Device.token == token)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one()
    for name, value in fields.items():
        setattr(device, name, value)
    session.flush()
    return _view(device)


def list_devices(session: Session, *, user_id: uuid.UUID) -> list[DeviceView]:
    rows = session.scalars(
        select(Device).where(Device.user_id == user_id).order_by(Device.created_at, Device.id)
    )
    return [_view(d) for d in rows]


def delete_device(
    session: Session, push: PushGateway, *, user_id: uuid.UUID, device_id: uuid.UUID
) -> None:
    """Deletes the SNS endpoint, then the row; 404 unless the device is the user's.

    No row is locked while SNS is called: the device is read without a lock, its endpoint
    deleted, and then the row deleted by one conditional DELETE, only if it is still the
    user's and still names that endpoint. A row thus goes only after its endpoint: an SNS
    outage is 503 and the device stays. Concurrent changes to the row:
    - the same token registered again and given a new endpoint: that one is deleted in turn
      (at most ATTEMPTS rounds, then 503: retry);
    - the row deleted by a concurrent delete: done, 204;
    - the token moved to another user (a resold phone): no longer this user's device, done.
      The other user's row may then name the endpoint just deleted: their pushes find it
      gone, the device is disabled, and their app's next registration creates a new one.
    """
    for attempt in range(ATTEMPTS):
        arn = session.scalar(
            select(Device.endpoint_arn).where(Device.id == device_id, Device.user_id == user_id)
        )
        if arn is None:
            if attempt == 0:
                raise NotFound("No such device.")
            return  # deleted, or given to another user, since our last read
        try:
            push.unregister(arn)
        except PushUnavailable as exc:
            raise Unavailable("Push service unreachable; retry the delete shortly.") from exc
        deleted = session.execute(
            delete(Device).where(
                Device.id == device_id, Device.user_id == user_id, Device.endpoint_arn == arn
            )
        )
        if deleted.rowcount:  # type: ignore[attr-defined]
            return
    raise Unavailable("The device keeps being registered again; retry the delete shortly.")


def _view(d: Device) -> DeviceView:
    return DeviceView(
        d.id,
        d.platform,
        d.enabled,
        d.app_version,
        d.locale,
        d.time_zone,
        d.created_at,
        d.last_seen_at,
    )
