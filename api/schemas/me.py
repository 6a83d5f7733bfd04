"""The signed-in user."""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from api.schemas.common import JsonPattern, Line, StrictModel
from api.schemas.media import AvatarUrl

Role = Literal["consumer", "provider", "admin"]

_E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")


def _e164(value: str) -> str:
    if not _E164.match(value):
        raise ValueError("must be an E.164 number: '+', country code, number, no spaces")
    return value


Phone = Annotated[
    str,
    StringConstraints(strip_whitespace=True),
    AfterValidator(_e164),
    JsonPattern(_E164.pattern),
]


class AccountDeletion(BaseModel):
    """Your account's deletion, scheduled with DELETE /v1/me."""

    model_config = ConfigDict(from_attributes=True)

    status: Literal["scheduled"]
    requested_at: datetime
    purge_at: datetime = Field(
        description=(
            "When the grace period ends and the account is to be purged; until then "
            "DELETE /v1/me/deletion cancels the deletion"
        )
    )


class Me(BaseModel):
    """The signed-in user."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    email: str | None = Field(examples=["ada@example.com"])
    roles: list[Role]
    display_name: str | None = Field(examples=["Ada L."])
    phone: str | None = Field(examples=["+14155550123"])
    avatar_url: AvatarUrl
    created_at: datetime
    updated_at: datetime
    deletion: AccountDeletion | None = Field(
        description="Your account's scheduled deletion; null when none is scheduled"
    )


class MeUpdate(StrictModel):
    """Fields of the signed-in user they may change; null clears a field, absent keeps it."""

    # One line: shown to others beside bookings and messages and in push notifications.
    display_name: Line(100) | None = Field(None, examples=["Ada L."])  # type: ignore[valid-type]
    phone: Phone | None = Field(None, description="E.164 phone number", examples=["+14155550123"])


class ReplicaHealth(BaseModel):
    """A read replica as last checked; reads skip it unless `state` is ok."""

    name: str = Field(description="host:port/database")
    state: Literal["ok", "lagging", "down"]
    lag_seconds: float | None = Field(description="Replay lag; null when it did not answer")
    error: str | None = None


class Health(BaseModel):
    status: Literal["ok", "ready"]


class Readiness(Health):
    replicas: list[ReplicaHealth] = Field(
        default_factory=list, description="Each DATABASE_READ_URL replica (empty when none)"
    )
