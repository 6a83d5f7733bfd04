"""A person who signed in through Cognito at least once."""

from __future__ import annotations

import uuid

from sqlalchemy import JSON, String
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, TimestampMixin


class User(TimestampMixin, Base):
    __tablename__ = "users"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    # Cognito's `sub`: stable for the life of the Cognito user, unlike username or email.
    cognito_sub: Mapped[str] = mapped_column(String(128), unique=True)
    email: Mapped[str | None] = mapped_column(String(320))
    display_name: Mapped[str | None] = mapped_column(String(100))
    phone: Mapped[str | None] = mapped_column(String(16))
    # Sorted role names as last seen in the token's cognito:groups.
    roles: Mapped[list[str]] = mapped_column(JSON, default=list)
