"""A person who signed in through Cognito at least once."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import JSON, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, TimestampMixin


class User(TimestampMixin, Base):
    __tablename__ = "users"
    __table_args__ = (
        # The export's watermark walk and the analytics' new-users-per-day.
        Index("ix_users_updated_at_id", "updated_at", "id"),
        Index("ix_users_created_at", "created_at"),
        # The purge job (to come) walks the accounts whose grace period ended.
        Index("ix_users_purge_at", "purge_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    # Cognito's `sub`: stable for the life of the Cognito user, unlike username or email.
    cognito_sub: Mapped[str] = mapped_column(String(128), unique=True)
    # Cognito's admin APIs (group changes) address users by username, not sub.
    cognito_username: Mapped[str | None] = mapped_column(String(128))
    email: Mapped[str | None] = mapped_column(String(320))
    display_name: Mapped[str | None] = mapped_column(String(100))
    phone: Mapped[str | None] = mapped_column(String(16))
    # Sorted role names as last seen in the token's cognito:groups.
    roles: Mapped[list[str]] = mapped_column(JSON, default=list)
    # role -> when an admin last revoked it: tokens issued before that lose the role at once.
    role_revocations: Mapped[dict[str, float]] = mapped_column(JSON, default=dict)
    avatar_upload_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("uploads.id", use_alter=True, ondelete="SET NULL")
    )
    # The user asked to delete their account (DELETE /v1/me) at deletion_requested_at; it
    # is to be purged at purge_at, until when they can cancel. Both null: not scheduled.
    # While set, the account is hidden from others (services/accounts/deletion.py).
    deletion_requested_at: Mapped[datetime | None]
    purge_at: Mapped[datetime | None]
    # An admin suspended the account (a report's suspend_user): its tokens are refused and its
    # profile hidden until an admin lifts it.
    suspended_at: Mapped[datetime | None]
    # Set when the purge has emptied the row: a tombstone that holds no personal data and
    # keeps `cognito_sub` only so that a token issued before the purge is refused (401).
    purged_at: Mapped[datetime | None]
