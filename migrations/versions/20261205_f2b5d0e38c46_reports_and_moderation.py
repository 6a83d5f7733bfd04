"""reports and moderation

Revision ID: f2b5d0e38c46
Revises: e1a4c9d27b35
Create Date: 2026-12-05 14:00:00
"""

from collections.abc import Sequence

revision: str = "f2b5d0e38c46"
down_revision: str | None = "e1a4c9d27b35"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
