"""Request and response schemas: they validate input and shape output."""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

Role = Literal["consumer", "provider", "admin"]

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")


def _printable(value: str) -> str:
    # Names end up in push notifications and on other people's screens.
    if _CONTROL.search(value):
        raise ValueError("must not contain control characters (newlines, tabs, ...)")
    return value


def _e164(value: str) -> str:
    if not _E164.match(value):
        raise ValueError("must be an E.164 number: '+', country code, number, no spaces")
    return value


DisplayName = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=100),
    AfterValidator(_printable),
]
Phone = Annotated[str, StringConstraints(strip_whitespace=True), AfterValidator(_e164)]


class Me(BaseModel):
    """The signed-in user."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    email: str | None
    roles: list[Role]
    display_name: str | None
    phone: str | None
    created_at: datetime
    updated_at: datetime


class MeUpdate(BaseModel):
    """Fields of the signed-in user that they may change; null clears a field."""

    model_config = ConfigDict(extra="forbid")

    display_name: DisplayName | None = Field(None, examples=["Ada L."])
    phone: Phone | None = Field(None, description="E.164 phone number", examples=["+14155550123"])


class Health(BaseModel):
    status: Literal["ok", "ready"]
