"""Reports (/v1/reports): anyone signed in reports objectionable content they can see; admins
list and resolve them and lift suspensions (/v1/admin/reports, /v1/admin/users?status=...).

The admin routes are a blueprint of their own under /v1/admin (beside api/admin.py's), so
moderation stays in one place."""

from __future__ import annotations

import uuid

from flask import Blueprint, Response

from api.auth import current_user
from api.context import components, unit
from api.endpoint import endpoint
from api.responses import json_response
from api.schemas.moderation import (
    AdminReport,
    AdminReportPage,
    Report,
    ReportCreate,
    Reporter,
    ReportQuery,
    ReportResolve,
    ReportTarget,
    ResolvedReport,
    SuspendedUser,
    SuspendedUserPage,
    SuspendedUserQuery,
)
from services.moderation import reports, suspension

bp = Blueprint("reports", __name__, url_prefix="/v1/reports")
admin_bp = Blueprint("moderation", __name__, url_prefix="/v1/admin")


@bp.post("")
@endpoint(
    summary="Report a user or content",
    tags=("reports",),
    writes=True,
    body=ReportCreate,
    response=Report,
    status=201,
    also=(200,),
    idempotent=True,
    errors=(404,),
    limit="rate_limit_reports",
)
def create_report(body: ReportCreate) -> Report | Response:
    """Report a user, message, review (`target_id`: its booking's id), provider profile (its
    provider's id) or upload that you can see; an admin looks at it. `201` with the new
    report; `200` with your report of the same thing while it is still open (reporting
    again adds nothing). 404 for anything you cannot see, exactly as for an id that does not
    exist; 422 naming `target_id` for yourself or your own content. At most
    `RATE_LIMIT_REPORTS` (default 20 an hour)."""
    view, created = reports.report(
        unit().session,
        reporter=current_user(),
        target_type=body.target_type,
        target_id=body.target_id,
        reason=body.reason,
        details=body.details,
    )
    report = Report.model_validate(view, from_attributes=True)
    return report if created else json_response(report, 200)


def _resolved(view: reports.ReportView) -> ResolvedReport:
    return ResolvedReport.model_validate(view, from_attributes=True)


def _admin_report(item: reports.AdminReportView) -> AdminReport:
    reporter = item.reporter
    return AdminReport(
        **_resolved(item.report).model_dump(),
        reporter=Reporter(id=reporter.id, display_name=reporter.display_name) if reporter else None,
        target=ReportTarget.model_validate(item.target, from_attributes=True),
    )


@admin_bp.get("/reports")
@endpoint(
    summary="Reports, open (oldest first) or resolved (newest first)",
    tags=("admin",),
    roles=("admin",),
    query=ReportQuery,
    response=AdminReportPage,
)
def list_reports(query: ReportQuery) -> AdminReportPage:
    """Each with its reporter (null for the content filter, `system`) and the target as it
    is now: the text, who wrote it, and for an image a short-lived link to look at it."""
    page = reports.list_reports(
        unit().session,
        components().store,
        status=query.status,
        cursor=query.cursor,
        limit=query.limit,
        url_expires_in=components().settings.download_url_expiry_seconds,
    )
    return AdminReportPage(
        items=[_admin_report(item) for item in page.items], next_cursor=page.next_cursor
    )


@admin_bp.post("/reports/<uuid:report_id>/resolve")
@endpoint(
    summary="Resolve a report: dismiss, remove the content, or suspend its owner",
    tags=("admin",),
    writes=True,
    roles=("admin",),
    body=ReportResolve,
    response=ResolvedReport,
    idempotent=True,
    errors=(409,),
)
def resolve_report(report_id: uuid.UUID, body: ReportResolve) -> ResolvedReport:
    """Every other open report of the same target is resolved with it (same action and
    note), and each reporter is told in their inbox. `remove_content` hides a message or
    review (`"removed": true`, the rating stays), clears a bio (`""`), deletes an upload's
    file, or clears a user's name and bio. `suspend_user` suspends the owner: their tokens
    are refused at once (403 `/problems/account-suspended`), their profile is hidden and
    their Cognito user disabled. 409 when resolved already (or for suspending yourself),
    503 with nothing changed when S3 or Cognito cannot be reached."""
    outcome = reports.resolve(
        unit().session,
        components().groups,
        components().store,
        admin=current_user(),
        report_id=report_id,
        action=body.action,
        note=body.note,
    )
    if outcome.suspended_subject is not None:
        unit().reads_must_see_write(outcome.suspended_subject)
    return _resolved(outcome.report)


def _suspended(view: suspension.SuspendedUserView) -> SuspendedUser:
    return SuspendedUser.model_validate(view, from_attributes=True)


@admin_bp.get("/users")
@endpoint(
    summary="Suspended accounts, the most recently suspended first",
    tags=("admin",),
    roles=("admin",),
    query=SuspendedUserQuery,
    response=SuspendedUserPage,
)
def list_suspended_users(query: SuspendedUserQuery) -> SuspendedUserPage:
    page = suspension.list_suspended(unit().session, cursor=query.cursor, limit=query.limit)
    return SuspendedUserPage(
        items=[_suspended(v) for v in page.items], next_cursor=page.next_cursor
    )


@admin_bp.post("/users/<uuid:user_id>/unsuspend")
@endpoint(
    summary="Lift an account's suspension",
    tags=("admin",),
    writes=True,
    roles=("admin",),
    response=SuspendedUser,
    idempotent=True,
    errors=(409,),
)
def unsuspend_user(user_id: uuid.UUID) -> SuspendedUser:
    """Cognito enables the user again, their tokens are accepted, and their provider profile
    is shown again if they hold the provider role and no deletion of theirs is scheduled.
    404 for an unknown user, 409 when not suspended, 503 when Cognito cannot be reached."""
    view = suspension.unsuspend(unit().session, components().groups, user_id=user_id)
    unit().reads_must_see_write(view.subject)
    return _suspended(view)
