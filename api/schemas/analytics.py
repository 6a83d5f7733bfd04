"""Schemas of app events (POST /v1/events) and the admin summary of them."""

from __future__ import annotations

import re
from datetime import date
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetJsonSchemaHandler,
    StringConstraints,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

from api.schemas.common import FieldProblem, Line, QueryModel, StrictModel
from api.schemas.examples import at

MAX_EVENTS = 100
MAX_BODY_BYTES = 256 * 1024
MAX_PAIRS = 50

NAME_PATTERN = r"^[A-Za-z0-9_.:-]+$"
_RFC3339 = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:[Zz]|[+-]\d{2}:\d{2})$"
)
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _rfc3339(value: Any) -> Any:
    # Without this, pydantic would also take "1700000000" (Unix time) or a date alone.
    if not isinstance(value, str) or not _RFC3339.match(value):
        raise ValueError("must be an ISO 8601 date-time with a zone, e.g. 2026-05-01T09:30:00Z")
    return value


def _iso_date(value: Any) -> Any:
    if isinstance(value, str) and not _ISO_DATE.match(value):
        raise ValueError("must be a date as YYYY-MM-DD")
    return value


EventName = Annotated[
    str,
    StringConstraints(min_length=1, max_length=128, pattern=NAME_PATTERN),
    Field(examples=["booking.viewed"]),
]
Key = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=NAME_PATTERN)]
AttributeValue = Line(256, min_length=0)
Metric = Annotated[float, Field(allow_inf_nan=False)]
Timestamp = Annotated[AwareDatetime, BeforeValidator(_rfc3339)]
SessionId = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^[!-~]+$")]
Day = Annotated[date, BeforeValidator(_iso_date)]


class AnalyticsEvent(StrictModel):
    """One thing that happened in the app. Validated on its own: a bad one is rejected alone."""

    name: EventName
    # Not strict: after the format check the value is a Python str, which strict refuses.
    timestamp: Timestamp = Field(
        strict=False,
        description=(
            "the phone's clock, with a zone; at most 24 h ahead of and 30 days behind the "
            "server's (which records its own time as well)"
        ),
        json_schema_extra=at(),  # the next full hour: within the 24 h ahead it accepts
    )
    session_id: SessionId | None = Field(
        None, description="the app's session: 1-128 printable ASCII characters, no spaces"
    )
    attributes: dict[Key, AttributeValue] = Field(  # type: ignore[valid-type]
        default_factory=dict,
        max_length=MAX_PAIRS,
        description="up to 50 strings, keys 1-64 characters of A-Za-z0-9_.:-, values up to 256",
        examples=[{"category": "cleaning", "screen": "search"}],
    )
    metrics: dict[Key, Metric] = Field(
        default_factory=dict,
        max_length=MAX_PAIRS,
        description="up to 50 finite numbers, keys as for attributes",
        examples=[{"duration_ms": 1250, "results": 12}],
    )
    app_version: Line(32) | None = Field(None, examples=["2.4.1 (311)"])  # type: ignore[valid-type]
    platform: Literal["ios", "android", "web"] | None = None


class _DocumentedAsEvent:
    """Documents RawEvent as its first choice, AnalyticsEvent: what a client should send."""

    def __get_pydantic_json_schema__(
        self, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        event, _anything = handler(core_schema)["anyOf"]  # the event's $ref, and {}
        return event


# Each item is validated as an AnalyticsEvent while the body is parsed, in the same pass of
# pydantic-core: parsing the batch first and validating its events again after cost 14% of
# a 50-event request's instructions. An item that is not a valid event is kept as it came
# (Any, tried second), so one bad event cannot sink the batch: the route validates it again
# on its own to say why. Documented as an AnalyticsEvent, the shape a client should send.
RawEvent = Annotated[AnalyticsEvent | Any, Field(union_mode="left_to_right"), _DocumentedAsEvent()]


class EventBatch(StrictModel):
    """1-100 events, at most 256 KB in all."""

    events: list[RawEvent] = Field(min_length=1, max_length=MAX_EVENTS)


class RejectedEvent(BaseModel):
    index: int = Field(description="position of the event in `events`, from 0", examples=[3])
    reason: str = Field(examples=["name: String should match pattern '^[A-Za-z0-9_.:-]+$'"])
    errors: list[FieldProblem]


class EventBatchResult(BaseModel):
    """Good events are stored even when others in the batch are rejected."""

    accepted: int = Field(examples=[99])
    rejected: list[RejectedEvent]


class SummaryQuery(QueryModel):
    from_: Day | None = Field(
        None, alias="from", description="first day (UTC), YYYY-MM-DD; default: 29 days before `to`"
    )
    to: Day | None = Field(None, description="last day (UTC), YYYY-MM-DD; default: today")


class DayStats(BaseModel):
    date: date
    active_users: int = Field(description="distinct users who sent events that day")
    sessions: int = Field(description="distinct session ids that day")
    events: int
    new_users: int = Field(description="users who first signed in that day")


class DayCount(BaseModel):
    date: date
    count: int


class NameStats(BaseModel):
    name: str
    total: int
    daily: list[DayCount] = Field(description="only the days with events")


class Funnel(BaseModel):
    """Bookings requested in the range, and how many of them went on (until now)."""

    requested: int
    accepted: int
    completed: int
    accept_rate: float | None = Field(description="accepted / requested; null without requests")
    completion_rate: float | None = Field(description="completed / accepted")
    overall_rate: float | None = Field(description="completed / requested")


class ProviderStats(BaseModel):
    active: int = Field(description="provider profiles active now")
    booked: int = Field(description="providers with at least one booking requested in the range")


class AnalyticsSummary(BaseModel):
    """Days are UTC days of the server's clock (when an event was received)."""

    model_config = ConfigDict(serialize_by_alias=True, validate_by_name=True)

    from_: date = Field(alias="from")
    to: date
    days: list[DayStats] = Field(description="every day of the range, oldest first")
    active_users: int = Field(description="distinct users over the whole range")
    monthly_active_users: int = Field(description="distinct users over the 30 days ending `to`")
    events_by_name: list[NameStats] = Field(
        description="the 100 most frequent names in the range, most frequent first"
    )
    funnel: Funnel
    providers: ProviderStats
