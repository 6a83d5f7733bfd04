"""Blocks (/v1/blocks): the users the caller blocked."""

from __future__ import annotations

import uuid

from flask import Blueprint

from api.auth import current_user
from api.context import unit
from api.endpoint import endpoint
from api.schemas.blocks import Block, BlockCreate, BlockPage
from api.schemas.common import PageQuery
from services.accounts import blocks

bp = Blueprint("blocks", __name__, url_prefix="/v1/blocks")


def _block(view: blocks.BlockView) -> Block:
    return Block(user_id=view.user_id, created_at=view.created_at)


@bp.post("")
@endpoint(
    summary="Block a user",
    tags=("blocks",),
    writes=True,
    body=BlockCreate,
    response=Block,
    status=201,
    idempotent=True,
    errors=(404,),
)
def create_block(body: BlockCreate) -> Block:
    """From now on neither of you can book, message or notify the other (403
    `/problems/blocked`), and a provider among you is left out of the other's search (404
    on their profile); bookings you already share can still be read and cancelled.
    Blocking again answers `201` with the same block (its first `created_at`). 422 for
    yourself, 404 for an unknown user. The blocked user is not told."""
    return _block(blocks.block(unit().session, blocker_id=current_user().id, user_id=body.user_id))


@bp.get("")
@endpoint(
    summary="Users you blocked, newest first", tags=("blocks",), query=PageQuery, response=BlockPage
)
def list_blocks(query: PageQuery) -> BlockPage:
    page = blocks.list_blocks(
        unit().session, blocker_id=current_user().id, cursor=query.cursor, limit=query.limit
    )
    return BlockPage(items=[_block(v) for v in page.items], next_cursor=page.next_cursor)


@bp.delete("/<uuid:user_id>")
@endpoint(summary="Unblock a user", tags=("blocks",), writes=True, status=204)
def delete_block(user_id: uuid.UUID) -> None:
    """Everything a block stopped is possible again (unless they blocked you too). 404
    unless you blocked this user: a block of you is not yours to lift."""
    blocks.unblock(unit().session, blocker_id=current_user().id, user_id=user_id)
