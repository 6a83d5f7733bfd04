"""Schemas of providers, bookings, messages, reviews and role changes."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from api.schemas.common import Line, Location, PageQuery, QueryModel, StrictModel, Text
from api.schemas.examples import at, future_datetime
from api.schemas.media import AvatarUrl

Category = Annotated[
    str,
    StringConstraints(min_length=2, max_length=40, pattern=r"^[a-z0-9]+(?:-[a-z0-9]+)*$"),
    Field(description="A slug such as `cleaning` or `home-tutoring`", examples=["cleaning"]),
]
Currency = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$"), Field(examples=["EUR"])]
BookingStatus = Literal[
    "requested", "accepted", "declined", "in_progress", "completed", "cancelled", "expired"
]


def _aware(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("must include a time zone, e.g. 2026-12-01T09:00:00Z")
    try:
        return value.astimezone(UTC)
    except OverflowError:  # e.g. 9999-12-31T23:59:59-01:00 is past year 9999 in UTC
        raise ValueError("must be between the years 1 and 9999 in UTC") from None


AwareDatetime = Annotated[datetime, AfterValidator(_aware)]


class ProviderProfileIn(StrictModel):
    # Line: a name (lists, push titles); Text: a bio is paragraphs.
    display_name: Line(100) = Field(examples=["Spotless Sam"])  # type: ignore[valid-type]
    bio: Text(2000) = Field("", examples=["Flat and office cleaning, 10 years."])  # type: ignore[valid-type]
    categories: list[Category] = Field(min_length=1, max_length=20)
    location: Location
    service_radius_km: float = Field(gt=0, le=500, examples=[15])
    hourly_rate_cents: int = Field(ge=0, le=10_000_000, examples=[2500])
    currency: Currency


class Provider(BaseModel):
    """A provider's public profile."""

    id: uuid.UUID
    display_name: str
    avatar_url: AvatarUrl
    bio: str
    categories: list[str]
    location: Location
    service_radius_km: float
    hourly_rate_cents: int
    currency: str
    rating_average: float | None = Field(description="null until the first review")
    rating_count: int


class OwnProviderProfile(Provider):
    active: bool = Field(description="false while you do not hold the provider role")


class ProviderHit(Provider):
    distance_km: float | None = Field(description="from the searched point; null without one")


class ProviderSearch(PageQuery):
    category: Category | None = None
    lat: float | None = Field(None, ge=-90, le=90)
    lng: float | None = Field(None, ge=-180, le=180)
    radius_km: float = Field(25, gt=0, le=500, description="used with lat and lng")
    # Nobody else sees a query, but a search box is one line all the same.
    q: Line(100) | None = Field(None, description="words in name or bio")  # type: ignore[valid-type]


class ProviderPage(BaseModel):
    items: list[ProviderHit]
    next_cursor: str | None


def _booking_example(schema: dict[str, Any]) -> None:
    # Computed when the spec is built: a fixed date would soon be in the past (a 422).
    schema["examples"] = [
        {
            "provider_id": "0b9c9f0e-6a39-4b8e-9b64-3c1d2f1f8a10",
            "category": "cleaning",
            "scheduled_at": future_datetime(days=7, hour=9),
            "location": {"lat": 52.52, "lng": 13.405, "address": "Alexanderplatz 1"},
            "notes": "Two rooms, bring a ladder.",
        }
    ]


class BookingCreate(StrictModel):
    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra=_booking_example)

    provider_id: uuid.UUID
    category: Category
    scheduled_at: AwareDatetime = Field(
        description="in the future, with a time zone", json_schema_extra=at(days=7, hour=9)
    )
    duration_minutes: int | None = Field(
        None,
        ge=5,
        le=1440,
        description="default: the provider's default_duration_minutes, else 60",
        examples=[60],
    )
    location: BookingLocation
    # Instructions for the provider may run over lines.
    notes: Text(2000) = ""  # type: ignore[valid-type]


class BookingLocation(Location):
    # One line: shown as the booking's label on the provider's map and list.
    address: Line(300) | None = None  # type: ignore[valid-type]


# Reasons (decline, cancel...) are free text the other party reads: line breaks are fine.
class Reason(StrictModel):
    reason: Text(1000, min_length=1) | None = None  # type: ignore[valid-type]


class CancelRequest(StrictModel):
    reason: Text(1000, min_length=1) = Field(examples=["Plans changed"])  # type: ignore[valid-type]


class RescheduleRequest(StrictModel):
    starts_at: AwareDatetime = Field(
        description="the new start: in the future, with a time zone",
        json_schema_extra=at(days=8, hour=10),
    )
    duration_minutes: int | None = Field(
        None, ge=5, le=1440, description="default: the booking's present duration"
    )


class BookingReschedule(BaseModel):
    """A pending proposal to move the booking; the other party accepts or declines it."""

    proposed_by: Literal["consumer", "provider"]
    starts_at: datetime
    ends_at: datetime


class BookingMove(BaseModel):
    from_starts_at: datetime
    from_ends_at: datetime
    to_starts_at: datetime
    to_ends_at: datetime


class BookingEvent(BaseModel):
    from_status: BookingStatus | None
    to_status: BookingStatus
    actor_id: uuid.UUID | None = Field(
        description="null once the actor deleted their account, and for `system`"
    )
    actor_role: Literal["consumer", "provider", "admin", "system"] = Field(
        description="`system`: a timer (expiry, auto-complete)"
    )
    reason: str | None
    at: datetime
    kind: Literal["transition", "rescheduled"] = Field(
        "transition",
        description="`rescheduled`: the booking moved to another time (from_status equals "
        "to_status; `move` has the times before and after)",
    )
    move: BookingMove | None = Field(None, description="set on `rescheduled` entries")


class Booking(BaseModel):
    id: uuid.UUID
    consumer_id: uuid.UUID | None = Field(
        description="null once the consumer deleted their account"
    )
    provider_id: uuid.UUID | None = Field(
        description="null once the provider deleted their account"
    )
    category: str
    scheduled_at: datetime = Field(description="the start")
    ends_at: datetime
    duration_minutes: int
    location: BookingLocationOut
    notes: str
    status: BookingStatus
    created_at: datetime
    updated_at: datetime
    reschedule: BookingReschedule | None = Field(
        None, description="the pending proposal of another time, if any"
    )
    history: list[BookingEvent] | None = Field(
        description="every state change and move; null in lists"
    )
    consumer: BookingParty | None = Field(
        None, description="who the consumer is; null in lists (GET the booking)"
    )
    provider: BookingParty | None = Field(
        None, description="who the provider is; null in lists (GET the booking)"
    )


class BookingParty(BaseModel):
    """A booking's party. Once that party deleted their account:
    `{"id": null, "display_name": null, "deleted": true, "avatar_url": null}`; the booking
    stays."""

    id: uuid.UUID | None
    display_name: str | None = Field(
        description="the provider's profile name; the consumer's account name (may be null)"
    )
    deleted: bool
    avatar_url: AvatarUrl


class BookingLocationOut(BaseModel):
    lat: float | None = Field(description="null once the consumer deleted their account")
    lng: float | None = Field(description="null once the consumer deleted their account")
    address: str | None


class BookingListQuery(PageQuery):
    role: Literal["consumer", "provider"] | None = Field(
        None, description="only bookings where you are this party; both when absent"
    )
    status: BookingStatus | None = None


class BookingPage(BaseModel):
    items: list[Booking]
    next_cursor: str | None


class MessageCreate(StrictModel):
    # Chat messages keep their line breaks.
    body: Text(4000, min_length=1) = Field(examples=["On my way!"])  # type: ignore[valid-type]


class Message(BaseModel):
    id: uuid.UUID
    booking_id: uuid.UUID
    seq: int = Field(description="1, 2, 3... per booking")
    sender_id: uuid.UUID | None = Field(description="null once the sender deleted their account")
    body: str | None = Field(description="null once removed")
    removed: bool = Field(
        description="a moderator removed the message, or its sender deleted their account"
    )
    created_at: datetime


class MessageQuery(QueryModel):
    after: str | None = Field(None, max_length=512, description="a `next_cursor` or `poll_cursor`")
    limit: int = Field(50, ge=1, le=100)


class MessagePage(BaseModel):
    items: list[Message]
    next_cursor: str | None = Field(description="more messages are waiting: fetch with after=")
    poll_cursor: str = Field(description="poll later with after= to get only newer messages")


class ReviewCreate(StrictModel):
    rating: int = Field(ge=1, le=5, examples=[5])
    # A review may be paragraphs.
    comment: Text(2000) = ""  # type: ignore[valid-type]


class Review(BaseModel):
    booking_id: uuid.UUID
    provider_id: uuid.UUID | None = Field(description="null once that account is deleted")
    consumer_id: uuid.UUID | None = Field(description="null once that account is deleted")
    rating: int = Field(description="stays in the provider's average when the comment goes")
    comment: str | None = Field(description="null once removed")
    removed: bool = Field(
        description="a moderator removed the comment, or its author deleted their account"
    )
    created_at: datetime


class RoleGrant(StrictModel):
    role: Literal["consumer", "provider", "admin"]


class RoleInPath(BaseModel):
    """Path arguments of DELETE .../roles/{role} (text, like a query string)."""

    role: Literal["consumer", "provider", "admin"] = Field(description="the role to revoke")


class RoleChange(BaseModel):
    user_id: uuid.UUID | None = Field(description="null once that account is deleted")
    role: str
    action: Literal["grant", "revoke"]
    actor_id: uuid.UUID | None = Field(description="null once that account is deleted")
    created_at: datetime


BookingCreate.model_rebuild()
Booking.model_rebuild()
