"""deletion requests from the web

Revision ID: b4d7f2a5ae68
Revises: a3c6e1f49d57
Create Date: 2026-12-05 14:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "b4d7f2a5ae68"
down_revision: str | None = "a3c6e1f49d57"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "deletion_requests",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("email", sa.String(length=254), nullable=False),
        sa.Column("note", sa.String(length=2000), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("closed_by_id", sa.Uuid(), nullable=True),
        sa.Column("close_note", sa.String(length=2000), nullable=True),
        sa.CheckConstraint(
            "status IN ('open', 'closed')", name=op.f("ck_deletion_requests_status")
        ),
        sa.ForeignKeyConstraint(
            ["closed_by_id"],
            ["users.id"],
            name=op.f("fk_deletion_requests_closed_by_id_users"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deletion_requests")),
    )
    with op.batch_alter_table("deletion_requests", schema=None) as batch_op:
        batch_op.create_index("ix_deletion_requests_closed_at", ["closed_at"], unique=False)
        batch_op.create_index(
            "ix_deletion_requests_created_at_id", ["created_at", "id"], unique=False
        )
        batch_op.create_index(
            "ix_deletion_requests_status_created_at_id",
            ["status", "created_at", "id"],
            unique=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("deletion_requests", schema=None) as batch_op:
        batch_op.drop_index("ix_deletion_requests_status_created_at_id")
        batch_op.drop_index("ix_deletion_requests_created_at_id")
        batch_op.drop_index("ix_deletion_requests_closed_at")

    op.drop_table("deletion_requests")
