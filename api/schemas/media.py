"""Schemas of uploads, devices and notifications."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    Field,
    StringConstraints,
    ValidationError,
    ValidatorFunctionWrapHandler,
    WrapValidator,
    field_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from api.schemas.common import Line, PageQuery, StrictModel, Text
from services.messaging.notifications import (
    RESERVED_DATA_KEYS,
    RESERVED_KEY_CODE,
    RESERVED_KEY_MESSAGE,
    reserved_data_key,
)
from services.messaging.texts import known_zones

Purpose = Literal["avatar", "booking_attachment", "provider_document"]
# Wherever a person is shown (services/media_urls.py).
AvatarUrl = Annotated[
    str | None,
    Field(
        description=(
            "the person's avatar image: a short-lived URL (a presigned GET valid "
            "DOWNLOAD_URL_EXPIRY_SECONDS, or the CDN's); null when they have none. A new "
            "avatar has a new URL: fetch it again rather than keep it"
        ),
        examples=[
            "https://assets.example.com/users/0b9c9f0e-6a39-4b8e-9b64-3c1d2f1f8a10/avatar/6f1c2d3e-0a1b-4c5d-8e9f-a0b1c2d3e4f5"
        ],
    ),
]
MediaType = Annotated[
    str,
    StringConstraints(max_length=100, pattern=r"^[a-z0-9][a-z0-9.+-]*/[a-z0-9][a-z0-9.+-]*$"),
    Field(examples=["image/jpeg"]),
]


def _a_name_not_a_path(value: str) -> str:
    if "/" in value or "\\" in value or value in (".", ".."):
        raise ValueError("must be a file name, not a path")
    return value


# One line: shown to the other party as the attachment's name.
FileName = Annotated[Line(255), AfterValidator(_a_name_not_a_path)]  # type: ignore[misc]


class UploadCreate(StrictModel):
    purpose: Purpose
    content_type: MediaType
    size_bytes: int = Field(ge=1, le=5 * 1024**3, description="exact size of the file")
    filename: FileName | None = Field(None, description="shown to people; never used in the key")  # type: ignore[valid-type]
    booking_id: uuid.UUID | None = Field(None, description="required for booking_attachment")


class PresignedPost(BaseModel):
    """POST the file as multipart/form-data: every field, then the file as `file`."""

    url: str
    fields: dict[str, str]
    expires_at: datetime


class Upload(BaseModel):
    id: uuid.UUID
    purpose: Purpose
    booking_id: uuid.UUID | None
    content_type: str
    size_bytes: int
    filename: str | None
    status: Literal["pending", "ready", "rejected", "removed"] = Field(
        description="`removed`: a moderator removed it (the file is deleted)"
    )
    created_at: datetime
    completed_at: datetime | None
    download_url: str | None = Field(description="short-lived; only when ready")
    upload: PresignedPost | None = Field(None, description="only in the answer to POST")


class DeviceCreate(StrictModel):
    platform: Literal["ios", "android"]
    # APNs tokens are hex; FCM registration tokens use [A-Za-z0-9_:-].
    token: Annotated[
        str, StringConstraints(min_length=8, max_length=4096, pattern=r"^[A-Za-z0-9_:.-]+$")
    ]
    app_version: Line(32) | None = None  # type: ignore[valid-type]
    locale: (
        Annotated[
            str, StringConstraints(max_length=35, pattern=r"^[A-Za-z]{2,3}([_-][A-Za-z0-9]{2,8})*$")
        ]
        | None
    ) = Field(
        None,
        examples=["de-DE"],
        description="the language of its pushes: German (de) or English (en; any other too)",
    )
    time_zone: str | None = Field(
        None,
        max_length=64,
        examples=["Europe/Berlin"],
        description="IANA zone its pushes show times in; default: the provider's, else UTC",
    )

    @field_validator("time_zone")
    @classmethod
    def _known_zone(cls, value: str | None) -> str | None:
        if value is not None and value not in known_zones():
            raise ValueError("must be an IANA time zone such as Europe/Berlin")
        return value


class Device(BaseModel):
    id: uuid.UUID
    platform: Literal["ios", "android"]
    enabled: bool = Field(description="false once the push service reported it gone")
    app_version: str | None
    locale: str | None
    time_zone: str | None
    created_at: datetime
    last_seen_at: datetime


class DevicePage(BaseModel):
    items: list[Device]
    next_cursor: str | None


DataKey = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]
# One line each: the app may show a value, e.g. an ETA, in a label.
DataValue = Line(500, min_length=0)


def _no_key_trellis_sets(value: object, handler: ValidatorFunctionWrapHandler) -> dict[str, str]:
    """Refuse each key Trellis writes itself (deep_link...), in any spelling, as 422
    naming `data.<key>`: the link of a provider's notification is Trellis's to make."""
    data: dict[str, str] = handler(value)
    reserved = [key for key in data if reserved_data_key(key)]
    if reserved:
        raise ValidationError.from_exception_data(
            "data",
            [
                InitErrorDetails(
                    type=PydanticCustomError(
                        RESERVED_KEY_CODE, "{key} " + RESERVED_KEY_MESSAGE, {"key": key}
                    ),
                    loc=(key,),
                    input=data[key],
                )
                for key in reserved
            ],
        )
    return data


class NotificationCreate(StrictModel):
    user_id: uuid.UUID = Field(description="a consumer who has a booking with you")
    # A push title is one line; its body wraps and may break lines.
    title: Line(100) = Field(examples=["Running 10 minutes late"])  # type: ignore[valid-type]
    body: Text(1000, min_length=1) = Field(examples=["Traffic on the A100, sorry!"])  # type: ignore[valid-type]
    data: Annotated[dict[DataKey, DataValue], WrapValidator(_no_key_trellis_sets)] = Field(  # type: ignore[valid-type]
        default_factory=dict,
        max_length=20,
        description=(
            "string values for the app. Trellis adds `booking_id` and `deep_link` (your "
            "newest booking with the consumer); "
            + ", ".join(f"`{key}`" for key in sorted(RESERVED_DATA_KEYS))
            + " are Trellis's and refused in any spelling (case, `_`, `-`, `.`)"
        ),
    )


class Notification(BaseModel):
    id: uuid.UUID
    kind: str = Field(examples=["booking.accepted"])
    title: str
    body: str
    data: dict[str, str]
    sender_id: uuid.UUID | None
    read: bool
    created_at: datetime


class NotificationQuery(PageQuery):
    unread: bool | None = Field(None, description="true: unread only; false: read only")


class NotificationPage(BaseModel):
    items: list[Notification]
    next_cursor: str | None


class ReadAll(BaseModel):
    updated: int
