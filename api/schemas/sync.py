"""Schemas of cross-device sync."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, Field, StringConstraints

from api.schemas.common import QueryModel, StrictModel

DatasetName = Annotated[
    str,
    StringConstraints(pattern=r"^[A-Za-z0-9_.:-]{1,128}$"),
    Field(examples=["settings"]),
]


def _key_bytes(value: str) -> str:
    if len(value.encode()) > 1024:
        raise ValueError("must be at most 1024 bytes in UTF-8")
    return value


RecordKey = Annotated[
    str,
    StringConstraints(min_length=1, max_length=1024, pattern=r"^[^\x00-\x1f\x7f]+$"),
    AfterValidator(_key_bytes),
]


class DatasetPath(BaseModel):
    name: DatasetName


class SyncOperation(StrictModel):
    op: Literal["replace", "remove"]
    key: RecordKey
    value: Any = Field(None, description="any JSON; for replace")
    sync_count: int = Field(
        ge=0, description="the record's sync_count as this device last saw it; 0 if none"
    )


class SyncBatch(StrictModel):
    device_id: str | None = Field(
        None,
        max_length=128,
        pattern=r"^[A-Za-z0-9_.:-]+$",
        description="this device; pass the id from POST /v1/devices to skip its own push",
    )
    records: list[SyncOperation] = Field(min_length=1, max_length=100)


class SyncSince(QueryModel):
    since: int = Field(0, ge=0, description="the dataset sync_count this device has")


class SyncRecord(BaseModel):
    key: str
    value: Any
    sync_count: int
    deleted: bool
    last_modified: datetime
    device_id: str | None


class DatasetChanges(BaseModel):
    name: str
    sync_count: int
    records: list[SyncRecord]


class Dataset(BaseModel):
    name: str
    sync_count: int
    record_count: int
    bytes: int
    last_modified: datetime


class DatasetPage(BaseModel):
    items: list[Dataset]
    next_cursor: str | None
