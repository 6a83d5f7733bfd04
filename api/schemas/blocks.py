"""Blocks between users."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, Field

from api.schemas.common import StrictModel


class BlockCreate(StrictModel):
    user_id: uuid.UUID = Field(description="the user to block")


class Block(BaseModel):
    """A user you blocked: no new booking, message or provider notification passes between
    you, and a provider among you is hidden from the other's search."""

    user_id: uuid.UUID = Field(description="the blocked user")
    created_at: datetime = Field(description="when you blocked them (the first time)")


class BlockPage(BaseModel):
    items: list[Block]
    next_cursor: str | None
