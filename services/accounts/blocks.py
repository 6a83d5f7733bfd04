"""Blocks: a user blocks another, and nothing new passes between the two.

Once either of two users blocked the other, neither may book the other, message the other or
send them a provider notification (403 `Blocked`), and the provider is hidden from the other's
provider search and profile (404). Bookings they already share stay readable and cancellable.
A block is the blocker's own: only they see, list or lift it; the blocked user is never told.

The checks go both ways and cost two index probes: the primary key (blocker_id, blocked_id)
and the index (blocked_id, blocker_id).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Integer,
    Select,
    and_,
    bindparam,
    delete,
    exists,
    or_,
    select,
    tuple_,
)
from sqlalchemy.orm import Session

from models import Block, User
from models.base import utcnow
from services.base.db import insert_ignoring_conflict
from services.base.errors import Conflict, FieldError, NotFound, ValidationFailed
from services.base.pagination import Page, decode_cursor, page_of, scope_of, time_and_id


@dataclass(frozen=True, slots=True)
class BlockView:
    user_id: uuid.UUID  # the blocked user
    created_at: datetime


_BLOCKS = Block.__table__


def block(session: Session, *, blocker_id: uuid.UUID, user_id: uuid.UUID) -> BlockView:
    """Block `user_id`; blocking again changes nothing and answers the block as it was.
    422 naming user_id for yourself, 404 for an unknown user."""
    if user_id == blocker_id:
        raise ValidationFailed(
            "You cannot block yourself.",
            [FieldError("user_id", "you cannot block yourself", "self_block")],
        )
    if session.scalar(select(User.id).where(User.id == user_id)) is None:
        raise NotFound("No such user.")
    values = {"blocker_id": blocker_id, "blocked_id": user_id, "created_at": utcnow()}
    for _ in range(3):
        insert_ignoring_conflict(session, Block, values, ["blocker_id", "blocked_id"])
        created_at = session.scalar(
            select(Block.created_at).where(
                Block.blocker_id == blocker_id, Block.blocked_id == user_id
            )
        )
        # None only if the block was there and the caller lifted it meanwhile: again.
        if created_at is not None:
            return BlockView(user_id, created_at)
    raise Conflict("The block changed while it was being made; send the request again.")


def unblock(session: Session, *, blocker_id: uuid.UUID, user_id: uuid.UUID) -> None:
    """Lift the caller's block of `user_id`; 404 if they had none (whoever else blocked whom)."""
    result = session.execute(
        delete(Block).where(Block.blocker_id == blocker_id, Block.blocked_id == user_id)
    )
    if result.rowcount == 0:
        raise NotFound("No such block.")


def list_blocks(
    session: Session, *, blocker_id: uuid.UUID, cursor: str | None, limit: int
) -> Page[BlockView]:
    """The users the caller blocked, newest block first."""
    scope = scope_of("blocks", str(blocker_id))
    after = time_and_id(decode_cursor(cursor, scope)) if cursor is not None else None
    params: dict[str, Any] = {"blocker_id": blocker_id, "n": limit + 1}
    if after is not None:
        params["after_at"], params["after_id"] = after
    rows = [BlockView(*row) for row in session.execute(_list_query(after is not None), params)]
    return page_of(rows, limit, scope, lambda v: [v.created_at.isoformat(), str(v.user_id)])


@cache
def _list_query(paged: bool) -> Select[Any]:
    t = _BLOCKS
    query = select(t.c.blocked_id, t.c.created_at).where(
        t.c.blocker_id == bindparam("blocker_id", type_=t.c.blocker_id.type)
    )
    if paged:
        after = tuple_(
            bindparam("after_at", type_=t.c.created_at.type),
            bindparam("after_id", type_=t.c.blocked_id.type),
        )
        query = query.where(tuple_(t.c.created_at, t.c.blocked_id) < after)
    return query.order_by(t.c.created_at.desc(), t.c.blocked_id.desc()).limit(
        bindparam("n", type_=Integer)
    )


def either_blocked(session: Session, a: uuid.UUID, b: uuid.UUID) -> bool:
    """Whether `a` blocked `b` or `b` blocked `a` (two primary-key probes)."""
    return bool(session.scalar(select(or_(_blocked(a, b), _blocked(b, a)))))


def no_block_between(a: Any, b: Any) -> ColumnElement[bool]:
    """SQL: neither `a` blocked `b` nor `b` blocked `a`; `a` and `b` are ids, bound
    parameters or columns of the enclosing statement (the subqueries correlate to it).

    Two NOT EXISTS joined by AND, never NOT (x OR y): PostgreSQL plans each as an anti-join
    on its own index (by blocker for one direction, by blocked for the other), where a NOT
    over an OR stays a per-row subplan."""
    return and_(~_blocked(a, b), ~_blocked(b, a))


def _blocked(blocker: Any, blocked: Any) -> ColumnElement[bool]:
    t = _BLOCKS
    return exists().where(t.c.blocker_id == blocker, t.c.blocked_id == blocked)
