"""Schemas of the change feed (GET /v1/changes) and of its WebSocket frames' `change`."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from api.schemas.common import QueryModel

INT64_MAX = 2**63 - 1


class ChangesQuery(QueryModel):
    after: int | None = Field(
        None,
        ge=0,
        le=INT64_MAX,
        description="the last seq you have (`last_seq` of the last answer, a socket's last "
        "`change`, a push's `seq`); omitted: from the oldest change kept",
    )
    limit: int = Field(100, ge=1, le=500)


class Change(BaseModel):
    seq: int = Field(description="1, 2, 3... per user, with no gaps", examples=[42])
    type: str = Field(
        description="booking, message, notification, sync, report, role or account",
        examples=["message"],
    )
    created_at: datetime
    data: dict[str, Any] = Field(
        description="ids and the few fields an app needs to update its screen",
        examples=[{"booking_id": "1b4e28ba-2fa1-11d2-883f-0016d3cca427", "message_id": "…"}],
    )


class ChangePage(BaseModel):
    items: list[Change] = Field(description="oldest first")
    next_cursor: str | None = Field(description="more changes are waiting: ask with after= this")
    last_seq: int = Field(
        description="the newest seq answered (else your after): keep it, ask again with after="
    )
