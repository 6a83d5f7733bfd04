"""availability, durations and no double booking

Revision ID: c6a8e3b5f179
Revises: b4d7f2a5ae68
Create Date: 2026-12-05 15:00:00

- `availabilities`: one row per provider (models/scheduling.py).
- `bookings.ends_at` and `bookings.blocked_until` (ends_at + the provider's buffer), filled
  for existing rows with the default duration of 60 minutes and no buffer.
- PostgreSQL only: `CREATE EXTENSION IF NOT EXISTS btree_gist` (on RDS the master user may
  create it: it is on RDS's list of trusted extensions) and the exclusion constraint
  `bookings_no_double_booking`: two accepted or in-progress bookings of one provider never
  overlap. SQLite gets neither; the service checks there.

Existing overlapping data (providers could accept overlapping bookings until now): the
migration does not refuse, it keeps every booking as it is. Of accepted or in-progress
bookings of one provider that overlap, the one starting first (then the one created first)
stays under the constraint; each later one gets `legacy_overlap = true`, which leaves it out
of the constraint, while the slots still count it as busy time. The flagged ids are logged
(`grep legacy_overlap` in the migration's output). Operators may settle them with the
parties; nothing else changes for them.

Rolling deploy: the previous version inserts bookings without `ends_at`; on PostgreSQL a
BEFORE INSERT trigger fills it (60 minutes) and `blocked_until` when they are missing, so
it keeps working until the new version serves everything. Adding the constraint builds a
gist index under an exclusive lock on `bookings` (seconds per million rows): the revision
sets lock_timeout so it fails rather than queue requests behind a long-running transaction.
"""

import logging
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from alembic import op

revision: str = "c6a8e3b5f179"
down_revision: str | None = "b4d7f2a5ae68"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

log = logging.getLogger("alembic.runtime.migration")

DEFAULT_DURATION = timedelta(minutes=60)
BUSY = ("accepted", "in_progress")

_FILL_FUNCTION = """
CREATE OR REPLACE FUNCTION bookings_fill_ends_at() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- Rows from the version before c6a8e3b5f179 (a rolling deploy): 60 minutes, no buffer.
    IF NEW.ends_at IS NULL THEN
        NEW.ends_at := NEW.scheduled_at + interval '60 minutes';
    END IF;
    IF NEW.blocked_until IS NULL THEN
        NEW.blocked_until := NEW.ends_at;
    END IF;
    RETURN NEW;
END
$$
"""
_FILL_TRIGGER = (
    "CREATE TRIGGER bookings_fill_ends_at BEFORE INSERT ON bookings "
    "FOR EACH ROW EXECUTE FUNCTION bookings_fill_ends_at()"
)
_EXCLUDE = (
    "ALTER TABLE bookings ADD CONSTRAINT bookings_no_double_booking EXCLUDE USING gist "
    "(provider_id WITH =, tstzrange(scheduled_at, blocked_until) WITH &&) "
    "WHERE (status IN ('accepted', 'in_progress') AND NOT legacy_overlap)"
)


def upgrade() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    if postgresql:
        op.execute("SET lock_timeout = '5s'")
    op.create_table(
        "availabilities",
        sa.Column("provider_id", sa.Uuid(), nullable=False),
        sa.Column("time_zone", sa.String(length=64), nullable=False),
        sa.Column("weekly", sa.JSON(), nullable=False),
        sa.Column("exceptions", sa.JSON(), nullable=False),
        sa.Column("buffer_minutes", sa.Integer(), nullable=False),
        sa.Column("min_notice_minutes", sa.Integer(), nullable=False),
        sa.Column("max_days_ahead", sa.Integer(), nullable=False),
        sa.Column("default_duration_minutes", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "buffer_minutes BETWEEN 0 AND 1440", name=op.f("ck_availabilities_buffer_range")
        ),
        sa.CheckConstraint(
            "min_notice_minutes BETWEEN 0 AND 525600", name=op.f("ck_availabilities_notice_range")
        ),
        sa.CheckConstraint(
            "max_days_ahead BETWEEN 1 AND 366", name=op.f("ck_availabilities_ahead_range")
        ),
        sa.CheckConstraint(
            "default_duration_minutes BETWEEN 5 AND 1440",
            name=op.f("ck_availabilities_duration_range"),
        ),
        sa.ForeignKeyConstraint(
            ["provider_id"],
            ["users.id"],
            name=op.f("fk_availabilities_provider_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("provider_id", name=op.f("pk_availabilities")),
    )
    with op.batch_alter_table("bookings", schema=None) as batch_op:
        batch_op.add_column(sa.Column("ends_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("blocked_until", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(
            sa.Column("legacy_overlap", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
    _fill_ends(postgresql)
    _flag_overlaps()
    with op.batch_alter_table("bookings", schema=None) as batch_op:
        batch_op.alter_column("ends_at", existing_type=sa.DateTime(timezone=True), nullable=False)
        batch_op.alter_column(
            "blocked_until", existing_type=sa.DateTime(timezone=True), nullable=False
        )
        batch_op.create_check_constraint("ends_after_start", "ends_at > scheduled_at")
        batch_op.create_check_constraint("blocked_through_end", "blocked_until >= ends_at")
    if postgresql:
        op.execute(_FILL_FUNCTION)
        op.execute(_FILL_TRIGGER)
        op.execute("CREATE EXTENSION IF NOT EXISTS btree_gist")
        op.execute(_EXCLUDE)


def downgrade() -> None:
    # btree_gist stays installed: harmless, and other objects may have come to use it.
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE bookings DROP CONSTRAINT bookings_no_double_booking")
        op.execute("DROP TRIGGER bookings_fill_ends_at ON bookings")
        op.execute("DROP FUNCTION bookings_fill_ends_at()")
    with op.batch_alter_table("bookings", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_bookings_blocked_through_end"), type_="check")
        batch_op.drop_constraint(op.f("ck_bookings_ends_after_start"), type_="check")
        batch_op.drop_column("legacy_overlap")
        batch_op.drop_column("blocked_until")
        batch_op.drop_column("ends_at")
    op.drop_table("availabilities")


_bookings = sa.table(
    "bookings",
    sa.column("id", sa.Uuid()),
    sa.column("provider_id", sa.Uuid()),
    sa.column("status", sa.String()),
    sa.column("scheduled_at", sa.DateTime(timezone=True)),
    sa.column("ends_at", sa.DateTime(timezone=True)),
    sa.column("blocked_until", sa.DateTime(timezone=True)),
    sa.column("created_at", sa.DateTime(timezone=True)),
    sa.column("legacy_overlap", sa.Boolean()),
)


def _fill_ends(postgresql: bool) -> None:
    """ends_at = blocked_until = scheduled_at + 60 minutes for every existing booking."""
    t = _bookings
    if postgresql:  # one statement; SQLite's date arithmetic would drop the microseconds
        op.execute(
            t.update().values(
                ends_at=t.c.scheduled_at + DEFAULT_DURATION,
                blocked_until=t.c.scheduled_at + DEFAULT_DURATION,
            )
        )
        return
    bind = op.get_bind()
    for booking_id, start in bind.execute(sa.select(t.c.id, t.c.scheduled_at)).all():
        end = _aware(start) + DEFAULT_DURATION
        bind.execute(t.update().where(t.c.id == booking_id).values(ends_at=end, blocked_until=end))


def _flag_overlaps() -> None:
    """legacy_overlap = true on each busy booking overlapping an earlier-starting one kept."""
    t = _bookings
    bind = op.get_bind()
    rows = bind.execute(
        sa.select(t.c.id, t.c.provider_id, t.c.scheduled_at, t.c.blocked_until)
        .where(t.c.status.in_(BUSY), t.c.provider_id.is_not(None))
        .order_by(t.c.provider_id, t.c.scheduled_at, t.c.created_at, t.c.id)
    ).all()
    flagged: list[uuid.UUID] = []
    provider, kept_until = None, None
    for booking_id, provider_id, start, until in rows:
        if provider_id != provider:
            provider, kept_until = provider_id, None
        if kept_until is not None and _aware(start) < kept_until:
            flagged.append(booking_id)
            continue
        kept_until = max(_aware(until), kept_until) if kept_until else _aware(until)
    for booking_id in flagged:
        log.warning("legacy_overlap: booking %s overlaps an earlier accepted one", booking_id)
        bind.execute(t.update().where(t.c.id == booking_id).values(legacy_overlap=True))


def _aware(value: datetime) -> datetime:
    # SQLite hands timestamps back without a zone; Trellis stores UTC.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value
