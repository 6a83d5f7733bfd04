"""removed content, suspension and purge markers

Revision ID: e1a4c9d27b35
Revises: d52c8f3b0e12
Create Date: 2026-12-05 13:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "e1a4c9d27b35"
down_revision: str | None = "d52c8f3b0e12"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Columns a purge sets to NULL: the counterparty keeps the shared record, which no longer
# points at the person who left (services/accounts/purge.py).
_PARTY_COLUMNS = {
    "bookings": ("consumer_id", "provider_id"),
    "booking_events": ("actor_id",),
    "messages": ("sender_id",),
    "reviews": ("consumer_id", "provider_id"),
    "role_changes": ("user_id", "actor_id"),
}
_REMOVABLE_TEXT = {"messages": "body", "reviews": "comment"}
# A booking's location is its consumer's: cleared when they are purged.
_LOCATION = ("lat", "lng")


def upgrade() -> None:
    # Nullable columns without a default and dropped NOT NULLs: instant on PostgreSQL, and
    # the running version (which does not know them) keeps working during a rolling deploy.
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("suspended_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("purged_at", sa.DateTime(timezone=True), nullable=True))
    for table, text in _REMOVABLE_TEXT.items():
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column("removed_at", sa.DateTime(timezone=True), nullable=True))
            batch_op.alter_column(text, existing_type=sa.Text(), nullable=True)
    for table, columns in _PARTY_COLUMNS.items():
        with op.batch_alter_table(table, schema=None) as batch_op:
            for column in columns:
                batch_op.alter_column(column, existing_type=sa.Uuid(), nullable=True)
    with op.batch_alter_table("bookings", schema=None) as batch_op:
        for column in _LOCATION:
            batch_op.alter_column(column, existing_type=sa.Float(), nullable=True)


def downgrade() -> None:
    # Rows a purge anonymised cannot be given their people back: the downgrade refuses
    # rather than invent them.
    with op.batch_alter_table("bookings", schema=None) as batch_op:
        for column in _LOCATION:
            batch_op.alter_column(column, existing_type=sa.Float(), nullable=False)
    for table, columns in _PARTY_COLUMNS.items():
        with op.batch_alter_table(table, schema=None) as batch_op:
            for column in columns:
                batch_op.alter_column(column, existing_type=sa.Uuid(), nullable=False)
    for table, text in _REMOVABLE_TEXT.items():
        column = sa.column(text, sa.Text())
        op.execute(sa.table(table, column).update().where(column.is_(None)).values({text: ""}))
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.alter_column(text, existing_type=sa.Text(), nullable=False)
            batch_op.drop_column("removed_at")
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("purged_at")
        batch_op.drop_column("suspended_at")
