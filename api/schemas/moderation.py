"""Reports of objectionable content, their resolution, and suspended accounts."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from api.schemas.common import PageQuery, StrictModel, Text

TargetType = Literal["user", "message", "review", "provider_profile", "upload"]
Reason = Literal["spam", "harassment", "inappropriate", "fraud", "other"]
Action = Literal["dismiss", "remove_content", "suspend_user"]


class ReportCreate(StrictModel):
    target_type: TargetType = Field(description="what kind of thing `target_id` is")
    target_id: uuid.UUID = Field(
        description="the user, message, review (its booking's id), provider profile (its "
        "provider's id) or upload"
    )
    reason: Reason
    details: Text(2000) | None = Field(None, description="what happened, in your words")


class Report(BaseModel):
    """A report: `open` until an admin resolves it."""

    id: uuid.UUID
    target_type: TargetType
    target_id: uuid.UUID
    reason: Reason
    details: str | None
    status: Literal["open", "resolved"]
    created_at: datetime


class ReportResolve(StrictModel):
    action: Action = Field(
        description="`dismiss`: nothing changes; `remove_content`: the content is hidden from "
        "everyone; `suspend_user`: its owner's account is suspended"
    )
    note: Text(2000) = Field("", description="why, for the record (not shown to the reporter)")


class Reporter(BaseModel):
    id: uuid.UUID
    display_name: str | None


class ReportTarget(BaseModel):
    """The reported thing as it is now, for the decision."""

    exists: bool = Field(description="false once the object itself was deleted")
    owner_id: uuid.UUID | None = Field(description="whose it is: whom suspend_user suspends")
    display_name: str | None = Field(
        description="the owner's name (the profile's name for a provider profile)"
    )
    text: str | None = Field(
        description="the message body, review comment or bio (a user's: their profile's); an "
        "upload's file name; null once removed"
    )
    removed: bool
    rating: int | None = Field(None, description="a review's rating")
    content_type: str | None = Field(None, description="an upload's type")
    download_url: str | None = Field(
        None, description="an image upload's short-lived link (DOWNLOAD_URL_EXPIRY_SECONDS)"
    )
    booking_id: uuid.UUID | None = Field(None, description="the booking it belongs to")


class ResolvedReport(Report):
    """A report with its resolution (all null while open)."""

    resolved_at: datetime | None
    resolved_by: uuid.UUID | None = Field(description="the admin who resolved it")
    action: Action | None
    note: str | None


class AdminReport(ResolvedReport):
    reporter: Reporter | None = Field(description="null: the content filter (`system`)")
    target: ReportTarget


class AdminReportPage(BaseModel):
    items: list[AdminReport]
    next_cursor: str | None


class ReportQuery(PageQuery):
    status: Literal["open", "resolved"] = Field(
        "open", description="`open`: oldest first; `resolved`: most recently resolved first"
    )


class SuspendedUserQuery(PageQuery):
    status: Literal["suspended"] = Field(description="only suspended accounts are listed")


class SuspendedUser(BaseModel):
    id: uuid.UUID
    email: str | None
    display_name: str | None
    suspended_at: datetime | None = Field(description="null once the suspension is lifted")


class SuspendedUserPage(BaseModel):
    items: list[SuspendedUser]
    next_cursor: str | None
