"""The booking timers' runner: fires every due timer once, however many runners there are.

Timers are rows of `booking_timers`, written and deleted with the changes of their booking
(bookings.set_timers). Runners (`flask --app application timers run`, the worker tier's
`timers` task, the outbox relay thread of each web worker) claim due timers together with
their bookings `FOR UPDATE SKIP LOCKED`: a runner never waits on another, nor on a request
that holds a booking (that timer is left for the next pass; the request's own reset of the
timers wins). A timer is deleted in the transaction that fires it, so it fires at most once;
one whose booking has moved on is deleted without effect. A timer due while nothing ran
(a deploy, an outage) fires on the next run: due means due_at <= now.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session, sessionmaker

from models import Booking, BookingTimer
from models.base import utcnow
from services.base.unit_of_work import transaction
from services.marketplace.bookings import fire_timer
from services.marketplace.process import TimerKind, TimerPolicy

log = logging.getLogger(__name__)

BATCH = 100
# A timer whose firing raised is tried again this long later (times its attempts, capped).
RETRY_AFTER = timedelta(minutes=1)
MAX_RETRY_AFTER = timedelta(hours=1)


@dataclass
class TimerStats:
    fired: int = 0
    moot: int = 0  # the booking had moved on: deleted without effect
    failed: int = 0  # postponed after an error

    def add(self, other: TimerStats) -> None:
        self.fired += other.fired
        self.moot += other.moot
        self.failed += other.failed

    @property
    def handled(self) -> int:
        return self.fired + self.moot + self.failed


def run_batch(
    sessions: sessionmaker[Session],
    policy: TimerPolicy,
    *,
    now: datetime | None = None,
    batch: int = BATCH,
) -> TimerStats:
    """Fire up to `batch` due timers in one transaction (a savepoint each, so one that
    fails is postponed without undoing the others)."""
    now = now or utcnow()
    stats = TimerStats()
    with transaction(sessions) as session:
        due = session.execute(
            select(BookingTimer, Booking)
            .join(Booking, Booking.id == BookingTimer.booking_id)
            .where(BookingTimer.due_at <= now)
            .order_by(BookingTimer.due_at, BookingTimer.id)
            .limit(batch)
            .with_for_update(skip_locked=True)
        ).all()
        for timer, booking in due:
            _fire_one(session, timer, booking, policy, now, stats)
    return stats


def run_due(
    sessions: sessionmaker[Session], policy: TimerPolicy, *, now: datetime | None = None
) -> TimerStats:
    """Batch after batch until nothing more is due (a batch that only failed stops it)."""
    total = TimerStats()
    while True:
        stats = run_batch(sessions, policy, now=now)
        total.add(stats)
        if stats.fired + stats.moot == 0:
            return total


def _fire_one(
    session: Session,
    timer: BookingTimer,
    booking: Booking,
    policy: TimerPolicy,
    now: datetime,
    stats: TimerStats,
) -> None:
    kind: TimerKind = timer.kind  # type: ignore[assignment]
    timer_id, attempts = timer.id, timer.attempts
    try:
        with session.begin_nested():
            # Deleted first: firing resets the booking's timers, and this one must be gone
            # whatever that writes.
            session.execute(delete(BookingTimer).where(BookingTimer.id == timer_id))
            fired = fire_timer(session, booking, kind, policy, now)
            session.flush()
    except Exception:
        # Not expected (the changes a timer makes break no rule), but one bad row must not
        # stall every timer behind it: postponed, logged, retried.
        log.exception("booking timer failed", extra={"timer_id": str(timer_id), "kind": kind})
        delay = min(MAX_RETRY_AFTER, RETRY_AFTER * (attempts + 1))
        retry = session.get(BookingTimer, timer_id)
        if retry is not None:
            retry.attempts = attempts + 1
            retry.due_at = now + delay
        stats.failed += 1
        return
    if fired:
        stats.fired += 1
    else:
        stats.moot += 1
