"""Personal data exports ("download my data")."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from api.schemas.common import QueryModel


class DataExport(BaseModel):
    """A copy of your data: one gzip-compressed JSON document (profile, provider profile,
    bookings with their history, messages, reviews, uploads, devices, notifications, sync
    datasets, blocks, analytics events)."""

    id: uuid.UUID
    status: Literal["pending", "ready", "failed", "expired"] = Field(
        description="pending: being prepared; ready: download it from download_url; failed: "
        "it could not be built, ask again; expired: its 7 days are over, ask again"
    )
    created_at: datetime
    download_url: str | None = Field(
        None,
        description="ready only: a link to the .json.gz document, valid for an hour (GET the "
        "export again for a new one until expires_at)",
    )
    expires_at: datetime | None = Field(
        None, description="ready and expired: when the document is (was) deleted"
    )
    size_bytes: int | None = Field(None, description="ready only: the compressed size")


class FileLinkQuery(QueryModel):
    token: str = Field(
        min_length=1,
        max_length=100,
        description="The export's token, as the link in the document carries it",
    )
