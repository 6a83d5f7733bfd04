"""reports and moderation

Revision ID: f2b5d0e38c46
Revises: e1a4c9d27b35
Create Date: 2026-12-05 14:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "f2b5d0e38c46"
down_revision: str | None = "e1a4c9d27b35"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_OPEN = "status = 'open'"
_SYSTEM = f"{_OPEN} AND reporter_id IS NULL"


def upgrade() -> None:
    op.create_table(
        "reports",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("reporter_id", sa.Uuid(), nullable=True),
        sa.Column("target_type", sa.String(length=16), nullable=False),
        sa.Column("target_id", sa.Uuid(), nullable=False),
        sa.Column("reason", sa.String(length=16), nullable=False),
        sa.Column("details", sa.Text(), nullable=True),
        sa.Column("status", sa.String(length=8), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("resolved_by", sa.Uuid(), nullable=True),
        sa.Column("action", sa.String(length=16), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "target_type IN ('user', 'message', 'review', 'provider_profile', 'upload')",
            name=op.f("ck_reports_target_type_known"),
        ),
        sa.CheckConstraint(
            "reason IN ('spam', 'harassment', 'inappropriate', 'fraud', 'other')",
            name=op.f("ck_reports_reason_known"),
        ),
        sa.CheckConstraint("status IN ('open', 'resolved')", name=op.f("ck_reports_status_known")),
        sa.CheckConstraint(
            "action IS NULL OR action IN ('dismiss', 'remove_content', 'suspend_user')",
            name=op.f("ck_reports_action_known"),
        ),
        sa.ForeignKeyConstraint(
            ["reporter_id"], ["users.id"], name=op.f("fk_reports_reporter_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["resolved_by"], ["users.id"], name=op.f("fk_reports_resolved_by_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reports")),
    )
    with op.batch_alter_table("reports", schema=None) as batch_op:
        batch_op.create_index(
            "uq_reports_open_by_reporter",
            ["reporter_id", "target_type", "target_id"],
            unique=True,
            postgresql_where=sa.text(_OPEN),
            sqlite_where=sa.text(_OPEN),
        )
        batch_op.create_index(
            "uq_reports_open_by_system",
            ["target_type", "target_id"],
            unique=True,
            postgresql_where=sa.text(_SYSTEM),
            sqlite_where=sa.text(_SYSTEM),
        )
        batch_op.create_index(
            "ix_reports_status_created_at_id", ["status", "created_at", "id"], unique=False
        )
        batch_op.create_index(
            "ix_reports_status_resolved_at_id", ["status", "resolved_at", "id"], unique=False
        )
        batch_op.create_index("ix_reports_target", ["target_type", "target_id"], unique=False)
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.create_index(
            "ix_users_suspended_at",
            ["suspended_at", "id"],
            unique=False,
            postgresql_where=sa.text("suspended_at IS NOT NULL"),
            sqlite_where=sa.text("suspended_at IS NOT NULL"),
        )


def downgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_index("ix_users_suspended_at")
    with op.batch_alter_table("reports", schema=None) as batch_op:
        batch_op.drop_index("ix_reports_target")
        batch_op.drop_index("ix_reports_status_resolved_at_id")
        batch_op.drop_index("ix_reports_status_created_at_id")
        batch_op.drop_index("uq_reports_open_by_system")
        batch_op.drop_index("uq_reports_open_by_reporter")

    op.drop_table("reports")
