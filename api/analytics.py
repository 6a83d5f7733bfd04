"""App events in (POST /v1/events) and the admin summary out (/v1/admin/analytics/summary)."""

from __future__ import annotations

import json
from typing import Any

import orjson
from flask import Blueprint, request
from pydantic import ValidationError

from api.auth import current_user
from api.context import unit
from api.endpoint import endpoint
from api.schemas.analytics import (
    MAX_BODY_BYTES,
    AnalyticsEvent,
    AnalyticsSummary,
    DayCount,
    DayStats,
    EventBatch,
    EventBatchResult,
    Funnel,
    NameStats,
    ProviderStats,
    RejectedEvent,
    SummaryQuery,
)
from api.schemas.common import FieldProblem
from services.analytics import events as analytics
from services.base.errors import FieldError

bp = Blueprint("analytics", __name__, url_prefix="/v1")


@bp.before_request
def _limit_body() -> None:
    """A batch is at most 256 KB (413 beyond), below the service-wide MAX_BODY_BYTES."""
    limit = request.max_content_length
    request.max_content_length = MAX_BODY_BYTES if limit is None else min(limit, MAX_BODY_BYTES)


@bp.post("/events")
@endpoint(
    summary="Record a batch of app events",
    tags=("analytics",),
    writes=True,
    body=EventBatch,
    response=EventBatchResult,
    status=202,
    idempotent=True,
)
def record_events(body: EventBatch) -> EventBatchResult:
    """Any signed-in user; the events are recorded as theirs, with the server's time too.
    The envelope is checked strictly (1-100 events, 256 KB: `422`/`413` for the whole batch),
    each event on its own: the good ones are stored and each bad one is listed under
    `rejected` with its index and why, so the app can drop it instead of retrying it.
    """
    events, rejected = _events(body.events)
    result = analytics.record_events(unit().session, user_id=current_user().id, events=events)
    rejected.extend(result.rejected)
    return EventBatchResult(
        accepted=result.accepted,
        rejected=[
            RejectedEvent(
                index=r.index,
                reason=r.reason,
                errors=[
                    FieldProblem(field=e.field, message=e.message, code=e.code) for e in r.errors
                ],
            )
            for r in sorted(rejected, key=lambda r: r.index)
        ],
    )


def _events(
    items: list[AnalyticsEvent | Any],
) -> tuple[list[analytics.NewEvent], list[analytics.Rejection]]:
    """The good events, and each bad one's rejection.

    The body's parsing validated the good ones already (RawEvent); each other item is
    validated as a JSON body of its own, with the strict rules of every body, to say why not.
    """
    events: list[analytics.NewEvent] = []
    rejected: list[analytics.Rejection] = []
    for index, item in enumerate(items):
        event = item
        if not isinstance(event, AnalyticsEvent):
            try:
                event = AnalyticsEvent.model_validate_json(_json(item))
            except ValidationError as exc:
                rejected.append(analytics.Rejection(index, _field_errors(exc)))
                continue
        events.append(
            analytics.NewEvent(
                index=index,
                name=event.name,
                occurred_at=event.timestamp,
                session_id=event.session_id,
                attributes=event.attributes,
                metrics=event.metrics,
                app_version=event.app_version,
                platform=event.platform,
            )
        )
    return events, rejected


def _json(value: Any) -> bytes:
    try:
        return orjson.dumps(value)
    except orjson.JSONEncodeError:  # an integer beyond 64 bits, which orjson does not write
        return json.dumps(value).encode()


def _short(part: str) -> str:
    # A key too long to accept is not echoed back whole.
    return part if len(part) <= 64 else part[:64] + "…"


def _field_errors(exc: ValidationError) -> tuple[FieldError, ...]:
    errors = exc.errors(include_url=False, include_input=False, include_context=False)
    return tuple(
        FieldError(
            field=".".join(_short(str(part)) for part in error["loc"]) or "event",
            message=error["msg"].removeprefix("Value error, "),
            code=error["type"],
        )
        for error in errors
    )


@bp.get("/admin/analytics/summary")
@endpoint(
    summary="Active users, sessions, events, the booking funnel and providers, by day",
    tags=("admin",),
    roles=("admin",),
    query=SummaryQuery,
    response=AnalyticsSummary,
)
def analytics_summary(query: SummaryQuery) -> AnalyticsSummary:
    """Admins only. Days are UTC days of the server's clock. `from`/`to` default to the last
    30 days; a range over 366 days, `from` after `to` or a malformed date is `422`."""
    summary = analytics.summarize(unit().session, first=query.from_, last=query.to)
    return AnalyticsSummary(
        from_=summary.from_,
        to=summary.to,
        days=[
            DayStats(
                date=d.date,
                active_users=d.active_users,
                sessions=d.sessions,
                events=d.events,
                new_users=d.new_users,
            )
            for d in summary.days
        ],
        active_users=summary.active_users,
        monthly_active_users=summary.monthly_active_users,
        events_by_name=[
            NameStats(
                name=n.name,
                total=n.total,
                daily=[DayCount(date=day, count=count) for day, count in n.daily],
            )
            for n in summary.events_by_name
        ],
        funnel=Funnel(
            requested=summary.funnel.requested,
            accepted=summary.funnel.accepted,
            completed=summary.funnel.completed,
            accept_rate=summary.funnel.accept_rate,
            completion_rate=summary.funnel.completion_rate,
            overall_rate=summary.funnel.overall_rate,
        ),
        providers=ProviderStats(active=summary.active_providers, booked=summary.booked_providers),
    )
