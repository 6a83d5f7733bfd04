"""Bookable slots: a provider's availability minus their busy time, in UTC.

Availability is wall-clock time in the provider's zone: an instant is available when the
provider's clock then shows a time inside an interval of that local date (a date exception
replaces the weekly intervals of its date). Across daylight-saving changes this means:
- a 09:00-17:00 day is 08:00-16:00Z in Berlin's winter and 07:00-15:00Z in its summer;
- the skipped hour (02:00-03:00 on a spring-forward day) is simply never shown by the clock:
  02:30-04:00 that day is available from 03:00 to 04:00 local time;
- the repeated hour is shown twice: 01:00-03:00 on a fall-back day lasts three real hours.

Slots start on a grid: every `step` minutes of real time from the first instant of each
interval's day (a "window": the instants whose clock shows that date and interval; one
window can come in two pieces on a fall-back day, each starting its own grid). A slot
[start, start + duration) is offered when its start lies in [from, to), it lies wholly in
available time (touching intervals join, also across midnight), its start is at least
`min_notice_minutes` after now and at most `max_days_ahead` days after now, and
[start, start + duration + buffer) overlaps no accepted or in-progress booking's
[scheduled_at, blocked_until) (each booking carries its own buffer in blocked_until).
That last rule is exactly what the exclusion constraint on bookings refuses, so a slot
offered here can be accepted unless someone else takes it first.
"""

from __future__ import annotations

import bisect
import uuid
import zoneinfo
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from functools import cache

from sqlalchemy import select
from sqlalchemy.orm import Session

from models import Booking, ProviderProfile
from services.accounts.blocks import no_block_between
from services.accounts.users import UserView
from services.base.errors import FieldError, NotFound, ValidationFailed
from services.marketplace.availability import DEFAULT_DURATION_MINUTES, Rules, load_rules

DEFAULT_STEP_MINUTES = 30  # SLOT_STEP_MINUTES's default
MAX_RANGE = timedelta(days=31)
DEFAULT_RANGE = timedelta(days=7)
BUSY_STATUSES = ("accepted", "in_progress")
# Offsets are sampled this often and bisected where they differ: two changes of a zone's
# offset within 6 hours do not occur in tzdata.
_SAMPLE = timedelta(hours=6)

Interval = tuple[datetime, datetime]  # [start, end), aware UTC


@dataclass(frozen=True, slots=True)
class SlotList:
    time_zone: str | None  # None: the provider set no availability
    duration_minutes: int
    items: list[Interval]


def provider_slots(
    session: Session,
    *,
    provider_id: uuid.UUID,
    viewer: UserView,
    from_: datetime | None,
    to: datetime | None,
    duration_minutes: int | None,
    step_minutes: int,
    now: datetime,
) -> SlotList:
    """The provider's free slots starting in [from_, to); 404 as for the profile (unknown,
    inactive, blocked either way), 422 for a range that is empty or over 31 days."""
    _require_visible(session, provider_id, viewer.id)
    start = from_ or now
    end = to or start + DEFAULT_RANGE
    if end <= start:
        raise ValidationFailed(
            "The range is empty.", [FieldError("to", "must be after from", "range_empty")]
        )
    if end - start > MAX_RANGE:
        raise ValidationFailed(
            "The range is too long.",
            [FieldError("to", "must be at most 31 days after from", "range_too_long")],
        )
    rules = load_rules(session, provider_id)
    if rules is None:
        return SlotList(None, duration_minutes or DEFAULT_DURATION_MINUTES, [])
    duration = timedelta(minutes=duration_minutes or rules.default_duration_minutes)
    busy = busy_times(
        session, provider_id, start, end + duration + timedelta(minutes=rules.buffer_minutes)
    )
    items = free_slots(rules, busy, start, end, duration, timedelta(minutes=step_minutes), now)
    return SlotList(rules.time_zone, int(duration.total_seconds() // 60), items)


def _require_visible(session: Session, provider_id: uuid.UUID, viewer_id: uuid.UUID) -> None:
    """404 as GET /v1/providers/{id} answers it (unknown, inactive, blocked either way), in
    one query: the profile itself is not needed here (the slots route's worker CPU, make
    bench (g))."""
    visible = session.scalar(
        select(ProviderProfile.user_id).where(
            ProviderProfile.user_id == provider_id,
            ProviderProfile.active,
            no_block_between(viewer_id, provider_id),
        )
    )
    if visible is None:
        raise NotFound("No such provider.")


def busy_times(
    session: Session,
    provider_id: uuid.UUID,
    start: datetime,
    end: datetime,
    *,
    but: uuid.UUID | None = None,
) -> list[Interval]:
    """[scheduled_at, blocked_until) of the provider's accepted and in-progress bookings that
    reach into [start, end) (those left out of the constraint as legacy overlaps included)."""
    query = select(Booking.scheduled_at, Booking.blocked_until).where(
        Booking.provider_id == provider_id,
        Booking.status.in_(BUSY_STATUSES),
        Booking.scheduled_at < end,
        Booking.blocked_until > start,
    )
    if but is not None:
        query = query.where(Booking.id != but)
    return [(s, e) for s, e in session.execute(query)]


def free_slots(
    rules: Rules,
    busy: Iterable[Interval],
    start: datetime,
    end: datetime,
    duration: timedelta,
    step: timedelta,
    now: datetime,
) -> list[Interval]:
    """Slots [s, s + duration) with s in [start, end), by the rules of this module's doc."""
    earliest = max(start, now + timedelta(minutes=rules.min_notice_minutes))
    latest = now + timedelta(days=rules.max_days_ahead)  # inclusive
    if earliest > latest:
        return []
    pieces = windows(
        rules, earliest - timedelta(days=1), min(end, latest) + duration + timedelta(days=1)
    )
    free_runs = _merge(pieces)
    run_starts = [s for s, _ in free_runs]
    taken = _merge(busy)
    taken_ends = [e for _, e in taken]
    reach = duration + timedelta(minutes=rules.buffer_minutes)
    found: list[Interval] = []
    for piece_start, piece_end in pieces:
        slot = piece_start + _steps_until(piece_start, earliest, step) * step
        while slot < piece_end and slot < end and slot <= latest:
            if _inside(free_runs, run_starts, slot, slot + duration) and not _hits(
                taken, taken_ends, slot, slot + reach
            ):
                found.append((slot, slot + duration))
            slot += step
    found.sort()
    return found


def windows(rules: Rules, start: datetime, end: datetime) -> list[Interval]:
    """The UTC pieces of every (local date, interval) of the rules that reach into
    [start, end), sorted; pieces of different intervals may touch (they are not merged)."""
    zone = _zone(rules.time_zone)
    segments = _offset_segments(zone, start - timedelta(days=2), end + timedelta(days=2))
    first = (start - timedelta(days=2)).date()
    last = (end + timedelta(days=2)).date()
    pieces: list[Interval] = []
    day = first
    while day <= last:
        midnight = datetime.combine(day, time(), tzinfo=UTC)  # local midnight, as if UTC
        for span in rules.spans_on(day):
            local_start = midnight + timedelta(minutes=span.start)
            local_end = midnight + timedelta(minutes=span.end)
            pieces += _preimage(segments, local_start, local_end, start, end)
        day += timedelta(days=1)
    pieces.sort()
    return pieces


def _preimage(
    segments: Sequence[tuple[datetime, datetime, timedelta]],
    local_start: datetime,
    local_end: datetime,
    start: datetime,
    end: datetime,
) -> list[Interval]:
    """The instants whose local clock shows a time in [local_start, local_end) (naive local
    times written as UTC), as pieces; pieces that touch across an offset change join."""
    pieces: list[Interval] = []
    for seg_start, seg_end, offset in segments:
        a = max(local_start - offset, seg_start)
        b = min(local_end - offset, seg_end)
        if a >= b or b <= start or a >= end:
            continue
        if pieces and pieces[-1][1] == a:
            pieces[-1] = (pieces[-1][0], b)
        else:
            pieces.append((a, b))
    return pieces


def _offset_segments(
    zone: zoneinfo.ZoneInfo, start: datetime, end: datetime
) -> list[tuple[datetime, datetime, timedelta]]:
    """[from, to, UTC offset] covering [start, end), split where the zone's offset changes."""
    segments: list[tuple[datetime, datetime, timedelta]] = []
    seg_start, offset = start, _offset(zone, start)
    probe = start
    while probe < end:
        following = min(probe + _SAMPLE, end)
        if _offset(zone, following) != offset:
            change = _change_between(zone, probe, following, offset)
            segments.append((seg_start, change, offset))
            seg_start, offset = change, _offset(zone, change)
        probe = following
    segments.append((seg_start, end, offset))
    return segments


def _change_between(
    zone: zoneinfo.ZoneInfo, low: datetime, high: datetime, offset: timedelta
) -> datetime:
    """The first instant in (low, high] whose offset is not `offset`, to the second."""
    while high - low > timedelta(seconds=1):
        middle = low + (high - low) / 2
        middle = middle.replace(microsecond=0)
        if middle <= low:
            middle = low + timedelta(seconds=1)
        if _offset(zone, middle) == offset:
            low = middle
        else:
            high = middle
    return high


def _offset(zone: zoneinfo.ZoneInfo, instant: datetime) -> timedelta:
    offset = instant.astimezone(zone).utcoffset()
    assert offset is not None  # a ZoneInfo always has one
    return offset


@cache
def _zone(name: str) -> zoneinfo.ZoneInfo:
    return zoneinfo.ZoneInfo(name)


def _merge(intervals: Iterable[Interval]) -> list[Interval]:
    """Sorted, overlapping or touching intervals joined: disjoint, in order."""
    merged: list[Interval] = []
    for s, e in sorted(intervals):
        if merged and s <= merged[-1][1]:
            if e > merged[-1][1]:
                merged[-1] = (merged[-1][0], e)
        else:
            merged.append((s, e))
    return merged


def _steps_until(origin: datetime, target: datetime, step: timedelta) -> int:
    """The fewest whole steps from origin that reach target (0 if origin is not before it)."""
    if target <= origin:
        return 0
    return -(-(target - origin) // step)


def _inside(runs: list[Interval], starts: list[datetime], a: datetime, b: datetime) -> bool:
    """Whether [a, b) lies in one of the disjoint, sorted runs."""
    i = bisect.bisect_right(starts, a) - 1
    return i >= 0 and runs[i][1] >= b


def _hits(taken: list[Interval], ends: list[datetime], a: datetime, b: datetime) -> bool:
    """Whether [a, b) overlaps one of the disjoint, sorted taken intervals."""
    i = bisect.bisect_right(ends, a)  # the first ending after a: only it can overlap
    return i < len(taken) and taken[i][0] < b
