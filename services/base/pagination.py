"""Opaque keyset cursors: base64url JSON of the last row's sort key, bound to the query."""

from __future__ import annotations

import base64
import binascii
import hashlib
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

import orjson

from services.base.errors import FieldError, ValidationFailed

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    items: list[T]
    next_cursor: str | None


def scope_of(*filters: Any) -> str:
    """A short fingerprint of a query's filters: a cursor only works for the same query."""
    return hashlib.blake2s(orjson.dumps(filters, default=str), digest_size=6).hexdigest()


def encode_cursor(scope: str, key: list[Any]) -> str:
    raw = orjson.dumps({"s": scope, "k": key}, default=str)
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode_cursor(cursor: str, scope: str, *, field: str = "cursor") -> list[Any]:
    """The sort key inside `cursor`, or 422 naming `field` if it is not one of this query's."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        data = orjson.loads(raw)
        if isinstance(data, dict) and data.get("s") == scope and isinstance(data.get("k"), list):
            return data["k"]
    except (binascii.Error, ValueError):
        pass
    raise invalid_cursor(field)


def invalid_cursor(field: str = "cursor") -> ValidationFailed:
    return ValidationFailed(
        "The cursor does not belong to this list.",
        [FieldError(field, "not a cursor of this query; start again without it", "cursor_invalid")],
    )


def time_and_id(key: list[Any]) -> tuple[datetime, uuid.UUID]:
    """A (timestamp, id) sort key, or 422: a client may decode and alter its cursor."""
    try:
        stamp, ident = key
        at, row_id = datetime.fromisoformat(stamp), uuid.UUID(ident)
    except (TypeError, ValueError):
        raise invalid_cursor() from None
    if at.tzinfo is None:
        raise invalid_cursor()
    return at, row_id


def page_of(rows: list[T], limit: int, scope: str, key: Any) -> Page[T]:
    """Cut one extra fetched row off and turn the last kept row's key into next_cursor."""
    if len(rows) <= limit:
        return Page(rows, None)
    kept = rows[:limit]
    return Page(kept, encode_cursor(scope, key(kept[-1])))
