"""notification events rendered per reader, device time zones

Revision ID: a9d3e5c7b1f4
Revises: f3c9a1d5e7b2
Create Date: 2026-12-06 03:00:00

- `devices.time_zone`: the IANA zone a phone shows times in (optional at registration).
- `notifications.message`: Trellis's own notifications store their event (message id,
  parameters, fallback zone) and are rendered per reader (services/messaging/texts.py);
  existing rows keep NULL and their stored title and body, shown as they are.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "a9d3e5c7b1f4"
down_revision: str | None = "f3c9a1d5e7b2"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.add_column(sa.Column("time_zone", sa.String(length=64), nullable=True))
    with op.batch_alter_table("notifications", schema=None) as batch_op:
        batch_op.add_column(sa.Column("message", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("notifications", schema=None) as batch_op:
        batch_op.drop_column("message")
    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.drop_column("time_zone")
