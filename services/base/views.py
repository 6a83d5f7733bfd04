"""`@row_view`: the dataclass of the views a hot read makes once per row."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar, dataclass_transform

T = TypeVar("T")


@dataclass_transform()
def row_view(cls: type[T]) -> type[T]:
    """A slotted dataclass like the other views, but not frozen: a frozen dataclass's
    __init__ sets each field through object.__setattr__, about 7x slower than plain
    assignment (1.9 against 0.28 µs for 16 fields), and a page of bookings, providers,
    messages or records makes one per row on every request (BENCHMARKS.md, issue 17).
    Treat them as read-only all the same: nothing assigns to a view after it is made."""
    return dataclass(slots=True)(cls)
