"""indexes for the export watermark walk and analytics

Revision ID: b1e9c0d4a7f2
Revises: 8a4d6f3b2c17
Create Date: 2026-11-27 18:32:10.120872
"""

from collections.abc import Sequence

from alembic import op

revision: str = "b1e9c0d4a7f2"
down_revision: str | None = "8a4d6f3b2c17"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("booking_events", schema=None) as batch_op:
        batch_op.create_index("ix_booking_events_created_at_id", ["created_at", "id"], unique=False)

    with op.batch_alter_table("bookings", schema=None) as batch_op:
        batch_op.create_index("ix_bookings_created_at", ["created_at"], unique=False)
        batch_op.create_index("ix_bookings_updated_at_id", ["updated_at", "id"], unique=False)

    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.create_index("ix_messages_created_at_id", ["created_at", "id"], unique=False)

    with op.batch_alter_table("provider_profiles", schema=None) as batch_op:
        batch_op.create_index(
            "ix_provider_profiles_updated_at_user_id", ["updated_at", "user_id"], unique=False
        )

    with op.batch_alter_table("reviews", schema=None) as batch_op:
        batch_op.create_index(
            "ix_reviews_created_at_booking_id", ["created_at", "booking_id"], unique=False
        )

    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.create_index("ix_users_created_at", ["created_at"], unique=False)
        batch_op.create_index("ix_users_updated_at_id", ["updated_at", "id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_index("ix_users_updated_at_id")
        batch_op.drop_index("ix_users_created_at")

    with op.batch_alter_table("reviews", schema=None) as batch_op:
        batch_op.drop_index("ix_reviews_created_at_booking_id")

    with op.batch_alter_table("provider_profiles", schema=None) as batch_op:
        batch_op.drop_index("ix_provider_profiles_updated_at_user_id")

    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_index("ix_messages_created_at_id")

    with op.batch_alter_table("bookings", schema=None) as batch_op:
        batch_op.drop_index("ix_bookings_updated_at_id")
        batch_op.drop_index("ix_bookings_created_at")

    with op.batch_alter_table("booking_events", schema=None) as batch_op:
        batch_op.drop_index("ix_booking_events_created_at_id")
