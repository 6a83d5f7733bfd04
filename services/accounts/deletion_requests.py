"""Requests to delete an account, sent from the public web page (GET /account/delete).

Google Play wants a way to ask for an account's deletion outside the app. Anyone can send
the form, for any address, so a request proves nothing: it is stored for operators, who
see beside each one the accounts that use its address (matched when listed, never stored)
and confirm with the owner before they act. Recording a request never looks at users, so
it takes the same work, and gives the same answer, whether the address has an account.

A request is personal data too: once closed, it is deleted after
DELETION_REQUESTS_RETENTION_DAYS by `purge_closed` (the worker's daily task, or
`flask --app application accounts purge-deletion-requests`).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import delete, func, select, tuple_
from sqlalchemy.orm import Session, sessionmaker

from models import DeletionRequest, User
from models.base import utcnow
from services.base.errors import Conflict, NotFound
from services.base.pagination import Page, decode_cursor, page_of, scope_of, time_and_id
from services.base.unit_of_work import transaction

Status = Literal["open", "closed"]


@dataclass(frozen=True, slots=True)
class MatchingAccount:
    """An account whose email is the request's (compared without regard to case)."""

    user_id: uuid.UUID
    purge_at: datetime | None  # set while its deletion is already scheduled

    @property
    def deletion_scheduled(self) -> bool:
        return self.purge_at is not None


@dataclass(frozen=True, slots=True)
class DeletionRequestView:
    id: uuid.UUID
    email: str
    note: str
    status: Status
    created_at: datetime
    closed_at: datetime | None
    closed_by: uuid.UUID | None
    close_note: str | None
    accounts: tuple[MatchingAccount, ...] = ()


def record(session: Session, *, email: str, note: str) -> None:
    """Store a request. Returns nothing on purpose: the page answers the same for every
    address, and this never reads users, so neither the answer nor its timing tells."""
    session.add(DeletionRequest(email=email, note=note, status="open", created_at=utcnow()))
    session.flush()


def list_requests(
    session: Session, *, status: Status | None, cursor: str | None, limit: int
) -> Page[DeletionRequestView]:
    """Requests newest first (all, or those with `status`), each with its matching accounts."""
    scope = scope_of("deletion-requests", status)
    r = DeletionRequest
    query = select(r)
    if status is not None:
        query = query.where(r.status == status)
    if cursor is not None:
        after = time_and_id(decode_cursor(cursor, scope))
        query = query.where(tuple_(r.created_at, r.id) < tuple_(*after))
    rows = session.scalars(query.order_by(r.created_at.desc(), r.id.desc()).limit(limit + 1))
    page = page_of(list(rows), limit, scope, lambda row: [row.created_at.isoformat(), str(row.id)])
    matches = _accounts_by_email(session, (row.email for row in page.items))
    items = [_view(row, matches.get(row.email.lower(), ())) for row in page.items]
    return Page(items, page.next_cursor)


def close(
    session: Session, *, request_id: uuid.UUID, admin_id: uuid.UUID, note: str
) -> DeletionRequestView:
    """Mark a request handled. 404 unknown, 409 when it is closed already."""
    row = session.get(DeletionRequest, request_id, with_for_update=True)
    if row is None:
        raise NotFound("No such deletion request.")
    if row.status == "closed":
        raise Conflict("This deletion request is closed already.")
    row.status, row.closed_at, row.closed_by_id, row.close_note = "closed", utcnow(), admin_id, note
    session.flush()
    matches = _accounts_by_email(session, (row.email,))
    return _view(row, matches.get(row.email.lower(), ()))


def purge_closed(
    sessions: sessionmaker[Session], *, retention_days: int, now: datetime | None = None
) -> int:
    """Delete requests closed more than `retention_days` ago; returns how many. Open
    requests stay until an operator closes them: each still waits for an answer."""
    cutoff = (now or utcnow()) - timedelta(days=retention_days)
    with transaction(sessions) as session:
        result = session.execute(
            delete(DeletionRequest).where(
                DeletionRequest.status == "closed", DeletionRequest.closed_at <= cutoff
            )
        )
    return result.rowcount


def _accounts_by_email(
    session: Session, emails: Iterable[str]
) -> dict[str, tuple[MatchingAccount, ...]]:
    """Lower-cased email -> the accounts using it, for one page in one query. Cognito may
    let two accounts share an address, so there can be several; purged tombstones have none."""
    wanted = sorted({email.lower() for email in emails})
    if not wanted:
        return {}
    rows = session.execute(
        select(func.lower(User.email), User.id, User.purge_at)
        .where(func.lower(User.email).in_(wanted))
        .order_by(User.created_at, User.id)
    )
    found: dict[str, list[MatchingAccount]] = {}
    for email, user_id, purge_at in rows:
        found.setdefault(email, []).append(MatchingAccount(user_id, purge_at))
    return {email: tuple(accounts) for email, accounts in found.items()}


def _view(row: DeletionRequest, accounts: Iterable[MatchingAccount]) -> DeletionRequestView:
    status: Any = row.status
    return DeletionRequestView(
        id=row.id,
        email=row.email,
        note=row.note,
        status=status,
        created_at=row.created_at,
        closed_at=row.closed_at,
        closed_by=row.closed_by_id,
        close_note=row.close_note,
        accounts=tuple(accounts),
    )
