"""Schemas of cross-device sync."""

from __future__ import annotations

import json
import math
import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, Field, StringConstraints
from pydantic_core import PydanticCustomError

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


INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_NOT_FINITE = (
    "must hold only finite numbers: {where} is NaN, Infinity or beyond "
    "±1.7976931348623157e308, which JSON (RFC 8259) cannot carry. "
    "Send a finite number, null, or a string instead"
)
_OUT_OF_RANGE = (
    "must hold only integers within the signed 64-bit range "
    f"({INT64_MIN} to {INT64_MAX}): {{where}} is beyond it. Trellis does not store bigger "
    "integers because many clients cannot read them back exactly (JavaScript loses digits "
    "above 2^53, Swift's Int overflows above 2^63-1). Send it as a string instead"
)

# A key of the path to a value inside a JSON value, and the path to its parent.
_Link = tuple[str | int, "_Link"] | None


def _json_path(link: _Link) -> str:
    """`a[1]["two words"].b` for the link to a value; long keys are shortened, not echoed."""
    parts: list[str] = []
    while link is not None:
        key, link = link
        if isinstance(key, int):
            parts.append(f"[{key}]")
        else:
            short = key if len(key) <= 64 else key[:64] + "…"
            dotted = _IDENTIFIER.match(short) is not None
            parts.append(f".{short}" if dotted else f"[{json.dumps(short, ensure_ascii=False)}]")
    return "".join(reversed(parts)).removeprefix(".")


def _portable(value: Any) -> Any:
    """Refuse a number that is not finite or an integer beyond int64, anywhere in `value`.

    The JSON parser takes NaN and Infinity, and turns 1e400 into Infinity: PostgreSQL would
    refuse those (a 500). It keeps integers of any size exactly, which clients then misread.
    Walked with a stack, not recursion: the first offender in document order is named."""
    stack: list[tuple[Any, _Link]] = [(value, None)]
    while stack:
        item, link = stack.pop()
        if isinstance(item, dict):
            stack.extend((item[key], (key, link)) for key in reversed(item))
        elif isinstance(item, list):
            stack.extend((item[i], (i, link)) for i in range(len(item) - 1, -1, -1))
        elif isinstance(item, float) and not math.isfinite(item):
            raise PydanticCustomError("number_not_finite", _NOT_FINITE, _where(link))
        elif isinstance(item, int) and not INT64_MIN <= item <= INT64_MAX:  # bool: 0 or 1
            raise PydanticCustomError("integer_out_of_range", _OUT_OF_RANGE, _where(link))
    return value


def _where(link: _Link) -> dict[str, str]:
    return {"where": f"the value at {_json_path(link)}" if link else "the value itself"}


JsonValue = Annotated[Any, AfterValidator(_portable)]
"""Any JSON a client stores and reads back as it sent it, on every platform."""


class DatasetPath(BaseModel):
    name: DatasetName


class SyncOperation(StrictModel):
    op: Literal["replace", "remove"]
    key: RecordKey
    value: JsonValue = Field(
        None,
        description=(
            "any JSON, for replace; numbers must be finite and integers within the signed "
            "64-bit range (send bigger ones as strings)"
        ),
    )
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
