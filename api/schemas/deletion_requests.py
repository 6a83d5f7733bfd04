"""Requests to delete an account: the public web form, and the operators' view of them."""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from api.schemas.common import JsonPattern, Line, PageQuery, StrictModel, Text

# The WHATWG HTML definition of a valid e-mail address: what the page's <input type=email>
# accepts, so the browser and the server agree. An address Cognito holds fits it.
_EMAIL = re.compile(
    r"^[a-zA-Z0-9.!#$%&'*+/=?^_`{|}~-]+@[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?"
    r"(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)*$"
)
EMAIL_MAX_LENGTH = 254  # RFC 5321's longest path, less its angle brackets
NOTE_MAX_LENGTH = 2000


def _email(value: str) -> str:
    if not _EMAIL.match(value) or len(value.partition("@")[0]) > 64:
        raise ValueError("must be an email address such as name@example.com")
    return value


Email = Annotated[
    Line(EMAIL_MAX_LENGTH),  # type: ignore[valid-type]
    AfterValidator(_email),
    JsonPattern(_EMAIL.pattern),
]


class DeletionRequestForm(BaseModel):
    """The web form's fields (form-encoded, so every value is text)."""

    model_config = ConfigDict(extra="ignore")  # a browser may add a submit button's name

    email: Email = Field(description="the address of the account to delete")
    note: Text(NOTE_MAX_LENGTH) = Field("", description="anything the operator should know")  # type: ignore[valid-type]


class DeletionRequestQuery(PageQuery):
    status: Literal["open", "closed"] | None = Field(None, description="only requests in it")


class DeletionRequestClose(StrictModel):
    note: Text(NOTE_MAX_LENGTH, min_length=1) = Field(  # type: ignore[valid-type]
        description="what was done, e.g. 'account deleted after the owner confirmed by email'"
    )


class MatchingAccount(BaseModel):
    """An account that uses the request's address (compared without regard to case)."""

    user_id: uuid.UUID
    deletion_scheduled: bool = Field(description="its owner already scheduled its deletion")
    purge_at: datetime | None = Field(description="when it is purged, while scheduled")


class DeletionRequest(BaseModel):
    """A request from the public page GET /account/delete. Anyone can send one for any
    address: confirm with the owner (write to the address) before acting on it."""

    id: uuid.UUID
    email: str = Field(examples=["ada@example.com"])
    note: str = Field(description="what the sender wrote; may be empty")
    status: Literal["open", "closed"]
    created_at: datetime
    closed_at: datetime | None
    closed_by: uuid.UUID | None = Field(description="the admin who closed it")
    close_note: str | None
    accounts: list[MatchingAccount] = Field(
        description="accounts using this address now (none: no such account, or purged)"
    )


class DeletionRequestPage(BaseModel):
    items: list[DeletionRequest]
    next_cursor: str | None
