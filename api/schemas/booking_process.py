"""GET /v1/booking-process: the booking state machine, its actions and its timers."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from api.schemas.marketplace import BookingStatus

ProcessParty = Literal["consumer", "provider", "admin"]


class _Aliased(BaseModel):
    # `from` is a Python keyword: the field is from_, the JSON member `from`.
    model_config = ConfigDict(serialize_by_alias=True, validate_by_name=True)


class ProcessAction(_Aliased):
    name: Literal["accept", "decline", "start", "complete", "cancel"]
    from_: list[BookingStatus] = Field(alias="from", description="the states it may be taken in")
    to: BookingStatus
    by: list[ProcessParty] = Field(description="who may take it (the booking's party, or admin)")
    route: str = Field(examples=["POST /v1/bookings/{booking_id}/accept"])


class ProcessTimer(_Aliased):
    name: Literal["expire", "auto_complete", "remind"]
    from_: BookingStatus = Field(alias="from", description="the state that sets it")
    to: BookingStatus | None = Field(description="the state it moves to; null: it only notifies")
    setting: str = Field(description="the setting (environment variable) that times it")
    value: int = Field(description="the setting's current value, in the unit its name says")
    description: str


class ProcessSetting(BaseModel):
    setting: str = Field(examples=["REVIEW_WINDOW_DAYS"])
    value: int = Field(examples=[14])


class ProcessReschedule(_Aliased):
    while_: list[BookingStatus] = Field(alias="while", description="states a booking moves in")
    by: list[Literal["consumer", "provider"]]
    routes: list[str] = Field(description="propose, then the other party accepts or declines")


class BookingProcess(BaseModel):
    """The booking process as this deployment runs it: the same table the API enforces."""

    states: list[BookingStatus]
    initial: BookingStatus
    terminal: list[BookingStatus] = Field(description="states nothing leaves")
    actions: list[ProcessAction]
    timers: list[ProcessTimer]
    review_window: ProcessSetting = Field(
        description="a review is refused this many days after completion"
    )
    reschedule: ProcessReschedule
