"""export file links: the base URL and the token's hash

Revision ID: e8b1f4c2a7d3
Revises: d7e2a4f81c3b
Create Date: 2026-12-06 02:45:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "e8b1f4c2a7d3"
down_revision: str | None = "d7e2a4f81c3b"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Nullable, no default: exports built before this keep their (presigned) links.
    op.add_column("data_exports", sa.Column("links_base_url", sa.String(2048), nullable=True))
    op.add_column("data_exports", sa.Column("link_token_sha256", sa.String(64), nullable=True))


def downgrade() -> None:
    op.drop_column("data_exports", "link_token_sha256")
    op.drop_column("data_exports", "links_base_url")
