"""Schemas of provider availability and bookable slots."""

from __future__ import annotations

import zoneinfo
from datetime import date, datetime
from functools import cache
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
)

from api.schemas.common import QueryModel, StrictModel
from api.schemas.examples import future_date, on
from api.schemas.marketplace import AwareDatetime

# "HH:MM" local wall-clock time; an interval may end at "24:00" (midnight after the day).
StartTime = Annotated[
    str,
    StringConstraints(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$"),
    Field(description="local time HH:MM, 00:00-23:59", examples=["09:00"]),
]
EndTime = Annotated[
    str,
    StringConstraints(pattern=r"^(([01][0-9]|2[0-3]):[0-5][0-9]|24:00)$"),
    Field(
        description="local time HH:MM, after start; 24:00 is the end of the day", examples=["17:00"]
    ),
]
# Dates in a range every zone converts without overflow.
ExceptionDate = Annotated[date, Field(ge=date(2000, 1, 1), le=date(2199, 12, 31))]


@cache
def _zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


class Interval(StrictModel):
    start: StartTime
    end: EndTime

    @field_validator("end")
    @classmethod
    def _after_start(cls, end: str, info: ValidationInfo) -> str:
        start = info.data.get("start")  # absent when start itself was invalid
        if start is not None and end <= start:  # HH:MM compares as text
            raise ValueError("must be after start")
        return end


class WeeklyInterval(Interval):
    weekday: int = Field(ge=0, le=6, description="0 Monday ... 6 Sunday", examples=[0])


class DateException(StrictModel):
    date: ExceptionDate = Field(json_schema_extra=on(days=19))
    intervals: list[Interval] = Field(
        max_length=24, description="the day's hours instead of the weekly ones; [] is closed"
    )


def _availability_example(schema: dict[str, Any]) -> None:
    # Exception dates computed when the spec is built: a fixed one would soon be past.
    schema["examples"] = [
        {
            "time_zone": "Europe/Berlin",
            "weekly": [{"weekday": 0, "start": "09:00", "end": "17:00"}],
            "exceptions": [
                {"date": future_date(19), "intervals": []},
                {"date": future_date(22), "intervals": [{"start": "10:00", "end": "14:00"}]},
            ],
            "buffer_minutes": 15,
            "min_notice_minutes": 120,
            "max_days_ahead": 60,
            "default_duration_minutes": 60,
        }
    ]


class AvailabilityIn(StrictModel):
    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra=_availability_example)

    time_zone: str = Field(max_length=64, description="IANA zone", examples=["Europe/Berlin"])
    weekly: list[WeeklyInterval] = Field(max_length=168)
    exceptions: list[DateException] = Field(default_factory=list, max_length=400)
    buffer_minutes: int = Field(0, ge=0, le=1440, description="kept free after each booking")
    min_notice_minutes: int = Field(0, ge=0, le=525_600, description="how soon one can book")
    max_days_ahead: int = Field(60, ge=1, le=366, description="how far ahead one can book")
    default_duration_minutes: int = Field(60, ge=5, le=1440)

    @field_validator("time_zone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        if value not in _zones():
            raise ValueError("must be an IANA time zone such as Europe/Berlin")
        return value


class Availability(BaseModel):
    time_zone: str
    weekly: list[WeeklyInterval]
    exceptions: list[DateException]
    buffer_minutes: int
    min_notice_minutes: int
    max_days_ahead: int
    default_duration_minutes: int
    updated_at: datetime


class SlotQuery(QueryModel):
    # `from` is a Python keyword: the field is from_, the query name `from`.
    model_config = ConfigDict(extra="forbid", populate_by_name=False)

    from_: AwareDatetime | None = Field(
        None, alias="from", description="UTC (or any zone) start of the range; default now"
    )
    to: AwareDatetime | None = Field(
        None,
        description="end of the range (exclusive), at most 31 days after from; "
        "default from + 7 days",
    )
    duration_minutes: int | None = Field(
        None, ge=5, le=1440, description="default: the provider's default_duration_minutes"
    )


class Slot(BaseModel):
    starts_at: datetime
    ends_at: datetime


class SlotPage(BaseModel):
    time_zone: str | None = Field(
        description="the provider's zone; null when the provider has set no availability "
        "(then any time can be requested and items is empty)"
    )
    duration_minutes: int
    items: list[Slot] = Field(description="free slots starting in [from, to), oldest first")
