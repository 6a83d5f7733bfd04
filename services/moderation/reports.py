"""Reports of objectionable content (App Store Guideline 1.2) and their resolution.

A user reports what they can see (anything else is 404, as for a missing object); the
content filter opens `system` reports (services/base/content_filter.py). An admin lists the
open ones with a snapshot of each target, and resolves one with an action:

- `dismiss`: nothing changes;
- `remove_content`: the content is hidden from everyone (services/moderation/targets.py);
- `suspend_user`: the target's owner is suspended (services/moderation/suspension.py).

Resolving closes every other open report of the same target with the same action and note,
records who resolved it and when, and tells each reporter (not `system`) through their inbox.

No network call under a row lock: the S3 delete (an upload's removal) and the Cognito call
(a suspension) come first; then the open reports of the target are locked, in id order (so
two admins resolving two reports of one target wait for each other rather than deadlock),
and the outcome is written. An S3 or Cognito outage is 503 with nothing written, and the
retry does it all again (both calls are idempotent).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from datetime import datetime
from functools import cache
from typing import Any, Literal

from sqlalchemy import Integer, Select, bindparam, select, tuple_, update
from sqlalchemy.orm import Session

from models import Report, User
from models.base import utcnow
from services.accounts.users import UserView, scheduled_for_deletion
from services.aws.cognito import GroupDirectory
from services.aws.s3 import ObjectStore, StorageUnavailable
from services.base.content_filter import insert_report
from services.base.errors import Conflict, FieldError, NotFound, Unavailable, ValidationFailed
from services.base.pagination import Page, decode_cursor, page_of, scope_of, time_and_id
from services.messaging import texts
from services.messaging.notifications import notify
from services.moderation import suspension, targets
from services.realtime import feed

Action = Literal["dismiss", "remove_content", "suspend_user"]
Status = Literal["open", "resolved"]
IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/webp", "image/heic"})


@dataclass(frozen=True, slots=True)
class ReportView:
    id: uuid.UUID
    reporter_id: uuid.UUID | None
    target_type: str
    target_id: uuid.UUID
    reason: str
    details: str | None
    status: str
    created_at: datetime
    resolved_at: datetime | None
    resolved_by: uuid.UUID | None
    action: str | None
    note: str | None


@dataclass(frozen=True, slots=True)
class Reporter:
    id: uuid.UUID
    display_name: str | None


@dataclass(frozen=True, slots=True)
class AdminReportView:
    report: ReportView
    reporter: Reporter | None  # None: the content filter (`system`)
    target: targets.Snapshot


@dataclass(frozen=True, slots=True)
class Resolution:
    report: ReportView
    suspended_subject: str | None  # the suspended user's sub: their next reads must see it


# --- reporting --------------------------------------------------------------------------


def report(
    session: Session,
    *,
    reporter: UserView,
    target_type: str,
    target_id: uuid.UUID,
    reason: str,
    details: str | None,
) -> tuple[ReportView, bool]:
    """Report the target; (the report, whether it is new). While the caller's report of the
    same target is open, that one is answered. 404 unless the caller can see the target,
    422 naming target_id for the caller's own account or content."""
    target = targets.load(session, target_type, target_id)
    if target is not None and target.owner_id == reporter.id:
        raise ValidationFailed(
            "You cannot report yourself or your own content.",
            [FieldError("target_id", "your own account or content", "own_content")],
        )
    if target is None or not targets.visible(session, target, reporter.id):
        raise NotFound("No such object to report.")
    for _ in range(3):
        created = insert_report(
            session,
            reporter_id=reporter.id,
            target_type=target_type,
            target_id=target_id,
            reason=reason,
            details=details or None,
        )
        found = session.execute(_open_by(reporter.id, target_type, target_id)).first()
        # None only if the report was there and an admin resolved it meanwhile: again.
        if found is not None:
            return _view(found), created
    raise Conflict("The report changed while it was being made; send it again.")


def _open_by(reporter_id: uuid.UUID, target_type: str, target_id: uuid.UUID) -> Select[Any]:
    r = Report
    return select(*_COLUMNS).where(
        r.reporter_id == reporter_id,
        r.target_type == target_type,
        r.target_id == target_id,
        r.status == "open",
    )


# --- the admin's list -------------------------------------------------------------------


def list_reports(
    session: Session,
    store: ObjectStore,
    *,
    status: Status,
    cursor: str | None,
    limit: int,
    url_expires_in: int,
) -> Page[AdminReportView]:
    """Open reports oldest first (the longest waiting on top), resolved ones newest first;
    each with its reporter and its target as it is now."""
    scope = scope_of("reports", status)
    after = time_and_id(decode_cursor(cursor, scope)) if cursor is not None else None
    params: dict[str, Any] = {"n": limit + 1}
    if after is not None:
        params["after_at"], params["after_id"] = after
    rows = [_view(row) for row in session.execute(_list_query(status, after is not None), params)]
    page = page_of(rows, limit, scope, lambda v: [_sort_time(v).isoformat(), str(v.id)])
    items = [_admin_view(session, store, view, url_expires_in) for view in page.items]
    return Page(items, page.next_cursor)


def _sort_time(view: ReportView) -> datetime:
    return view.resolved_at if view.status == "resolved" and view.resolved_at else view.created_at


@cache
def _list_query(status: Status, paged: bool) -> Select[Any]:
    t = Report.__table__.c
    at = t.created_at if status == "open" else t.resolved_at
    query = select(*_COLUMNS).where(t.status == status)
    if paged:
        after = tuple_(bindparam("after_at", type_=at.type), bindparam("after_id", type_=t.id.type))
        key = tuple_(at, t.id)
        query = query.where(key > after if status == "open" else key < after)
    order = (at, t.id) if status == "open" else (at.desc(), t.id.desc())
    return query.order_by(*order).limit(bindparam("n", type_=Integer))


def _admin_view(
    session: Session, store: ObjectStore, view: ReportView, url_expires_in: int
) -> AdminReportView:
    reporter = None
    if view.reporter_id is not None:
        name = session.scalar(select(User.display_name).where(User.id == view.reporter_id))
        reporter = Reporter(view.reporter_id, name)
    target = targets.load(session, view.target_type, view.target_id)
    snapshot = targets.snapshot(target, session)
    upload = target.upload if target is not None else None
    if upload is not None and upload.status == "ready" and upload.content_type in IMAGE_TYPES:
        snapshot = _with_link(snapshot, store, upload.key, url_expires_in)
    return AdminReportView(view, reporter, snapshot)


def _with_link(
    snapshot: targets.Snapshot, store: ObjectStore, key: str, expires_in: int
) -> targets.Snapshot:
    try:
        url = store.presign_get(key=key, expires_in=expires_in)
    except StorageUnavailable:
        return snapshot  # the list still shows everything else
    return replace(snapshot, download_url=url)


# --- resolving --------------------------------------------------------------------------


def resolve(
    session: Session,
    groups: GroupDirectory,
    store: ObjectStore,
    *,
    admin: UserView,
    report_id: uuid.UUID,
    action: Action,
    note: str,
) -> Resolution:
    """Resolve the report (and every other open report of its target) with `action`.
    404 unknown, 409 resolved already, 409 for suspending yourself or an owner who is gone,
    503 when S3 or Cognito cannot be reached (nothing written)."""
    first = session.execute(select(*_COLUMNS).where(Report.id == report_id)).first()
    if first is None:
        raise NotFound("No such report.")
    _require_open(first.status)
    target = targets.load(session, first.target_type, first.target_id)
    owner = target.owner_id if target is not None else None
    if action == "suspend_user":
        if owner is None:
            raise Conflict("The reported content no longer has an owner to suspend.")
        if owner == admin.id:
            raise Conflict("You cannot suspend your own account.")
        suspension.disable_in_cognito(session, groups, owner)
    if action == "remove_content" and target is not None and target.upload is not None:
        _delete_object(store, target.upload.key)
    # Only now, every network call made, the target's open reports are locked.
    now = utcnow()
    closed = _lock_open(session, first.target_type, first.target_id)
    if report_id not in closed:
        _require_open("resolved")
    subject = None
    if action == "remove_content" and target is not None:
        targets.remove(session, target, now)
    elif action == "suspend_user" and owner is not None:
        subject = suspension.mark_suspended(session, owner, now)
        feed.account_suspended(session, owner)
    session.execute(
        update(Report)
        .where(Report.id.in_(list(closed)))
        .values(status="resolved", resolved_at=now, resolved_by=admin.id, action=action, note=note)
    )
    _tell_reporters(session, closed, action)
    row = session.execute(select(*_COLUMNS).where(Report.id == report_id)).one()
    return Resolution(_view(row), subject)


def _require_open(status: str) -> None:
    if status != "open":
        raise Conflict("This report is resolved already.")


def _lock_open(session: Session, target_type: str, target_id: uuid.UUID) -> dict[uuid.UUID, Any]:
    """The open reports of the target, locked in id order: report id -> reporter id."""
    rows = session.execute(
        select(Report.id, Report.reporter_id)
        .where(
            Report.target_type == target_type,
            Report.target_id == target_id,
            Report.status == "open",
        )
        .order_by(Report.id)
        .with_for_update()
    ).all()
    return {row.id: row.reporter_id for row in rows}


def _delete_object(store: ObjectStore, key: str) -> None:
    try:
        store.delete(key)
    except StorageUnavailable as exc:
        raise Unavailable("File storage is not reachable; nothing was changed. Retry.") from exc


def _tell_reporters(session: Session, closed: dict[uuid.UUID, Any], action: str) -> None:
    """An inbox entry (and its push, through the outbox) for each reporter, not `system`,
    and not one whose own account deletion is scheduled (nothing new reaches them)."""
    reporters = {r for r in closed.values() if r is not None}
    leaving = scheduled_for_deletion(session, reporters) if reporters else set()
    for report_id, reporter_id in sorted(closed.items()):
        if reporter_id is None or reporter_id in leaving:
            continue
        feed.report_resolved(session, reporter_id, report_id, action)
        notify(
            session,
            user_id=reporter_id,
            kind="report_resolved",
            message=texts.Message(f"report.{action}"),
            data={"report_id": str(report_id), "action": action},
        )


# --- rows -------------------------------------------------------------------------------

_COLUMNS = [
    Report.__table__.c[name]
    for name in (
        "id",
        "reporter_id",
        "target_type",
        "target_id",
        "reason",
        "details",
        "status",
        "created_at",
        "resolved_at",
        "resolved_by",
        "action",
        "note",
    )
]


def _view(row: Any) -> ReportView:
    return ReportView(*row)
