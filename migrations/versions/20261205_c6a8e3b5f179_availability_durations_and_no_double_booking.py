"""availability, durations and no double booking

Revision ID: c6a8e3b5f179
Revises: b4d7f2a5ae68
Create Date: 2026-12-05 15:00:00
"""

from collections.abc import Sequence

revision: str = "c6a8e3b5f179"
down_revision: str | None = "b4d7f2a5ae68"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
