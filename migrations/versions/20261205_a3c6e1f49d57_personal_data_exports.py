"""personal data exports

Revision ID: a3c6e1f49d57
Revises: f2b5d0e38c46
Create Date: 2026-12-05 14:10:00
"""

from collections.abc import Sequence

revision: str = "a3c6e1f49d57"
down_revision: str | None = "f2b5d0e38c46"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
