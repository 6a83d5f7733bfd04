"""deletion requests from the web

Revision ID: b4d7f2a5ae68
Revises: a3c6e1f49d57
Create Date: 2026-12-05 14:20:00
"""

from collections.abc import Sequence

revision: str = "b4d7f2a5ae68"
down_revision: str | None = "a3c6e1f49d57"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
