"""The booking process: its states, the actions people take, the timers that act on their
own. The one description the code (services/marketplace/bookings.py, timers.py), the API's
routes and enum, and GET /v1/booking-process all read: tests/integration/
test_booking_process.py fails when any of them drifts from it.

    requested   -> accepted | declined | cancelled | expired (timer)
    accepted    -> in_progress | cancelled
    in_progress -> completed (also by timer)

A booking that is requested or accepted may also be moved to another time (reschedule:
proposed by one party, accepted or declined by the other); that changes no state.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from services.base.settings import Settings

Party = Literal["consumer", "provider", "admin"]
Action = Literal["accept", "decline", "start", "complete", "cancel"]
TimerKind = Literal["expire", "auto_complete", "remind"]
STATUSES = (
    "requested",
    "accepted",
    "declined",
    "in_progress",
    "completed",
    "cancelled",
    "expired",
)
INITIAL = "requested"
# While a booking is in one of these states, either party may propose another time.
RESCHEDULABLE = frozenset({"requested", "accepted"})
RESCHEDULE_ROUTES = (
    "POST /v1/bookings/{booking_id}/reschedule",
    "POST /v1/bookings/{booking_id}/reschedule/accept",
    "POST /v1/bookings/{booking_id}/reschedule/decline",
)


@dataclass(frozen=True)
class Transition:
    sources: frozenset[str]
    target: str
    parties: frozenset[Party]


TRANSITIONS: dict[Action, Transition] = {
    "accept": Transition(frozenset({"requested"}), "accepted", frozenset({"provider"})),
    "decline": Transition(frozenset({"requested"}), "declined", frozenset({"provider"})),
    "start": Transition(frozenset({"accepted"}), "in_progress", frozenset({"provider"})),
    "complete": Transition(frozenset({"in_progress"}), "completed", frozenset({"provider"})),
    # Admins may cancel too: operators need it to settle disputes.
    "cancel": Transition(
        frozenset({"requested", "accepted"}),
        "cancelled",
        frozenset({"consumer", "provider", "admin"}),
    ),
}


@dataclass(frozen=True)
class TimerRule:
    """A timer set while a booking is in `state`; firing moves it to `target` (None: it
    changes nothing, it only tells the parties). `setting` names the Settings field."""

    state: str
    target: str | None
    setting: str
    description: str


TIMERS: dict[TimerKind, TimerRule] = {
    "expire": TimerRule(
        "requested",
        "expired",
        "booking_request_ttl_hours",
        "A request the provider has not answered expires this many hours after it was made, "
        "or at its start if that comes first.",
    ),
    "remind": TimerRule(
        "accepted",
        None,
        "reminder_minutes_before",
        "Both parties get a reminder this many minutes before the start (at once when "
        "accepted later than that; not at all once the start has passed).",
    ),
    "auto_complete": TimerRule(
        "in_progress",
        "completed",
        "auto_complete_after_hours",
        "A booking in progress completes itself this many hours after its end.",
    ),
}
# Not a timer row: a review is refused once this long has passed since completion (checked
# when the review arrives, so no runner's delay can stretch it).
REVIEW_WINDOW_SETTING = "review_window_days"


@dataclass(frozen=True)
class TimerPolicy:
    """The timers' settings, applied when a timer is set (a change of setting applies to
    timers set from then on)."""

    booking_request_ttl_hours: int = 24
    auto_complete_after_hours: int = 12
    reminder_minutes_before: int = 60
    review_window_days: int = 14

    @classmethod
    def of(cls, settings: Settings) -> TimerPolicy:
        return cls(
            booking_request_ttl_hours=settings.booking_request_ttl_hours,
            auto_complete_after_hours=settings.auto_complete_after_hours,
            reminder_minutes_before=settings.reminder_minutes_before,
            review_window_days=settings.review_window_days,
        )

    @property
    def review_window(self) -> timedelta:
        return timedelta(days=self.review_window_days)

    def due(
        self, kind: TimerKind, *, created_at: datetime, starts: datetime, ends: datetime
    ) -> datetime:
        """When a timer of `kind` fires for a booking of these times."""
        if kind == "expire":
            return min(created_at + timedelta(hours=self.booking_request_ttl_hours), starts)
        if kind == "remind":
            return starts - timedelta(minutes=self.reminder_minutes_before)
        return ends + timedelta(hours=self.auto_complete_after_hours)


def setting_alias(name: str) -> str:
    """A Settings field's environment variable (booking_request_ttl_hours ->
    BOOKING_REQUEST_TTL_HOURS)."""
    alias = Settings.model_fields[name].alias
    assert alias is not None
    return alias


def terminal_states() -> list[str]:
    """States no action and no timer leaves."""
    leaving = {s for t in TRANSITIONS.values() for s in t.sources}
    leaving |= {rule.state for rule in TIMERS.values() if rule.target is not None}
    return [s for s in STATUSES if s not in leaving]


def action_route(action: Action) -> str:
    """The route that takes `action` (api/bookings.py registers one per TRANSITIONS entry)."""
    return f"POST /v1/bookings/{{booking_id}}/{action}"


def describe(policy: TimerPolicy) -> dict[str, Any]:
    """The process as GET /v1/booking-process shows it (settings at their current values)."""
    return {
        "states": list(STATUSES),
        "initial": INITIAL,
        "terminal": terminal_states(),
        "actions": [
            {
                "name": name,
                "from": sorted(t.sources),
                "to": t.target,
                "by": sorted(t.parties),
                "route": action_route(name),
            }
            for name, t in TRANSITIONS.items()
        ],
        "timers": [
            {
                "name": kind,
                "from": rule.state,
                "to": rule.target,
                "setting": setting_alias(rule.setting),
                "value": getattr(policy, rule.setting),
                "description": rule.description,
            }
            for kind, rule in TIMERS.items()
        ],
        "review_window": {
            "setting": setting_alias(REVIEW_WINDOW_SETTING),
            "value": policy.review_window_days,
        },
        "reschedule": {
            "while": sorted(RESCHEDULABLE),
            "by": ["consumer", "provider"],
            "routes": list(RESCHEDULE_ROUTES),
        },
    }
