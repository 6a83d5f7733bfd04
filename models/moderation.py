"""Reports of objectionable content and how an admin resolved them."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, utcnow
from models.user import User

TARGET_TYPES = ("user", "message", "review", "provider_profile", "upload")
REASONS = ("spam", "harassment", "inappropriate", "fraud", "other")
ACTIONS = ("dismiss", "remove_content", "suspend_user")


def _one_of(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


# One open report per reporter and target, and one open system report per target: a second
# report of the same thing answers the first (ON CONFLICT DO NOTHING on these indexes).
_OPEN = "status = 'open'"


class Report(Base):
    """Someone (a user, or `system`: the content filter, reporter_id NULL) reported a user,
    message, review, provider profile or upload; an admin resolves it with an action."""

    __tablename__ = "reports"
    __table_args__ = (
        CheckConstraint(_one_of("target_type", TARGET_TYPES), name="target_type_known"),
        CheckConstraint(_one_of("reason", REASONS), name="reason_known"),
        CheckConstraint("status IN ('open', 'resolved')", name="status_known"),
        CheckConstraint(f"action IS NULL OR {_one_of('action', ACTIONS)}", name="action_known"),
        Index(
            "uq_reports_open_by_reporter",
            "reporter_id",
            "target_type",
            "target_id",
            unique=True,
            postgresql_where=text(_OPEN),
            sqlite_where=text(_OPEN),
        ),
        Index(
            "uq_reports_open_by_system",
            "target_type",
            "target_id",
            unique=True,
            postgresql_where=text(f"{_OPEN} AND reporter_id IS NULL"),
            sqlite_where=text(f"{_OPEN} AND reporter_id IS NULL"),
        ),
        # The admin's lists: open oldest first, resolved newest first.
        Index("ix_reports_status_created_at_id", "status", "created_at", "id"),
        Index("ix_reports_status_resolved_at_id", "status", "resolved_at", "id"),
        # Resolving closes every other open report of the same target.
        Index("ix_reports_target", "target_type", "target_id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    # NULL: the content filter opened it (reporter `system`).
    reporter_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"))
    target_type: Mapped[str] = mapped_column(String(16))
    # No foreign key: the target is one of five tables, and a report outlives its target.
    target_id: Mapped[uuid.UUID]
    reason: Mapped[str] = mapped_column(String(16))
    details: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(8), default="open")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # The resolution: who, when, what they did and why (all NULL while open).
    resolved_at: Mapped[datetime | None]
    resolved_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"))
    action: Mapped[str | None] = mapped_column(String(16))
    note: Mapped[str | None] = mapped_column(Text)


# GET /v1/admin/users?status=suspended walks only the suspended accounts, newest first: a
# partial index on users, declared with the moderation that writes users.suspended_at.
Index(
    "ix_users_suspended_at",
    User.__table__.c.suspended_at,
    User.__table__.c.id,
    postgresql_where=User.__table__.c.suspended_at.isnot(None),
    sqlite_where=User.__table__.c.suspended_at.isnot(None),
)
