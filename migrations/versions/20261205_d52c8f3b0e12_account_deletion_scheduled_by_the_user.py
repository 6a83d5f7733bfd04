"""account deletion scheduled by the user

Revision ID: d52c8f3b0e12
Revises: c41b7e2a9d01
Create Date: 2026-12-05 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "d52c8f3b0e12"
down_revision: str | None = "c41b7e2a9d01"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Nullable columns without a default: instant on PostgreSQL, and the running version
    # (which does not know them) keeps working during a rolling deployment.
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("deletion_requested_at", sa.DateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(sa.Column("purge_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index("ix_users_purge_at", ["purge_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_index("ix_users_purge_at")
        batch_op.drop_column("purge_at")
        batch_op.drop_column("deletion_requested_at")
