"""booking timers, the expired state, reschedule proposals

Revision ID: d7e2a4f81c3b
Revises: c6a8e3b5f179
Create Date: 2026-12-05 20:30:00

- `booking_timers`: pending timed transitions (services/marketplace/timers.py), due_at
  indexed so "what is due" is one range scan.
- `bookings.status` may be `expired`; `bookings.reschedule_*`: the pending proposal.
- `booking_events.kind` (`transition`, or `rescheduled`) and the moved times.

Existing open bookings get their timers with the settings' defaults (24 h request TTL, 60
minutes reminder, 12 h auto-complete): requests older than a day expire on the first run.
"""

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from alembic import op

revision: str = "d7e2a4f81c3b"
down_revision: str | None = "c6a8e3b5f179"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_OLD_STATUSES = (
    "status IN ('requested', 'accepted', 'declined', 'in_progress', 'completed', 'cancelled')"
)
_NEW_STATUSES = (
    "status IN ('requested', 'accepted', 'declined', 'in_progress', 'completed', "
    "'cancelled', 'expired')"
)
_RESCHEDULE_WHOLE = (
    "(reschedule_by IS NULL AND reschedule_starts_at IS NULL AND reschedule_ends_at "
    "IS NULL) OR (reschedule_by IN ('consumer', 'provider') AND reschedule_starts_at "
    "IS NOT NULL AND reschedule_ends_at > reschedule_starts_at)"
)


def upgrade() -> None:
    op.create_table(
        "booking_timers",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("booking_id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "kind IN ('expire', 'auto_complete', 'remind')",
            name=op.f("ck_booking_timers_kind_known"),
        ),
        sa.ForeignKeyConstraint(
            ["booking_id"],
            ["bookings.id"],
            name=op.f("fk_booking_timers_booking_id_bookings"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_booking_timers")),
        sa.UniqueConstraint("booking_id", "kind", name=op.f("uq_booking_timers_booking_id")),
    )
    with op.batch_alter_table("booking_timers", schema=None) as batch_op:
        batch_op.create_index("ix_booking_timers_due_at", ["due_at"], unique=False)
    with op.batch_alter_table("bookings", schema=None) as batch_op:
        batch_op.add_column(sa.Column("reschedule_by", sa.String(length=16), nullable=True))
        batch_op.add_column(
            sa.Column("reschedule_starts_at", sa.DateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(
            sa.Column("reschedule_ends_at", sa.DateTime(timezone=True), nullable=True)
        )
        batch_op.drop_constraint(op.f("ck_bookings_status_known"), type_="check")
        batch_op.create_check_constraint("status_known", _NEW_STATUSES)
        batch_op.create_check_constraint("reschedule_whole", _RESCHEDULE_WHOLE)
    with op.batch_alter_table("booking_events", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "kind", sa.String(length=16), server_default=sa.text("'transition'"), nullable=False
            )
        )
        for name in ("from_starts_at", "from_ends_at", "to_starts_at", "to_ends_at"):
            batch_op.add_column(sa.Column(name, sa.DateTime(timezone=True), nullable=True))
    _arm_existing()


def downgrade() -> None:
    op.execute("UPDATE bookings SET status = 'cancelled' WHERE status = 'expired'")
    with op.batch_alter_table("booking_events", schema=None) as batch_op:
        for name in ("to_ends_at", "to_starts_at", "from_ends_at", "from_starts_at", "kind"):
            batch_op.drop_column(name)
    with op.batch_alter_table("bookings", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_bookings_reschedule_whole"), type_="check")
        batch_op.drop_constraint(op.f("ck_bookings_status_known"), type_="check")
        batch_op.create_check_constraint("status_known", _OLD_STATUSES)
        batch_op.drop_column("reschedule_ends_at")
        batch_op.drop_column("reschedule_starts_at")
        batch_op.drop_column("reschedule_by")
    with op.batch_alter_table("booking_timers", schema=None) as batch_op:
        batch_op.drop_index("ix_booking_timers_due_at")
    op.drop_table("booking_timers")


def _arm_existing() -> None:
    """Timers for the bookings open now, as bookings.set_timers would set them."""
    bookings = sa.table(
        "bookings",
        sa.column("id", sa.Uuid()),
        sa.column("status", sa.String()),
        sa.column("created_at", sa.DateTime(timezone=True)),
        sa.column("scheduled_at", sa.DateTime(timezone=True)),
        sa.column("ends_at", sa.DateTime(timezone=True)),
    )
    timers = sa.table(
        "booking_timers",
        sa.column("id", sa.Uuid()),
        sa.column("booking_id", sa.Uuid()),
        sa.column("kind", sa.String()),
        sa.column("due_at", sa.DateTime(timezone=True)),
        sa.column("attempts", sa.Integer()),
        sa.column("created_at", sa.DateTime(timezone=True)),
    )
    bind = op.get_bind()
    now = datetime.now(UTC)
    rows = bind.execute(
        sa.select(
            bookings.c.id,
            bookings.c.status,
            bookings.c.created_at,
            bookings.c.scheduled_at,
            bookings.c.ends_at,
        ).where(bookings.c.status.in_(("requested", "accepted", "in_progress")))
    ).all()
    values = []
    for booking_id, status, created, start, end in rows:
        created, start, end = _aware(created), _aware(start), _aware(end)
        if status == "requested":
            kind, due = "expire", min(created + timedelta(hours=24), start)
        elif status == "accepted":
            if start <= now:
                continue
            kind, due = "remind", max(start - timedelta(minutes=60), now)
        else:
            kind, due = "auto_complete", end + timedelta(hours=12)
        values.append(
            {
                "id": uuid.uuid4(),
                "booking_id": booking_id,
                "kind": kind,
                "due_at": due,
                "attempts": 0,
                "created_at": now,
            }
        )
    if values:
        bind.execute(timers.insert(), values)


def _aware(value: datetime) -> datetime:
    # SQLite hands timestamps back without a zone; Trellis stores UTC.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value
