"""Problem types whose body carries extension members (RFC 9457 §3.2), one schema each.

`Problem` (api/schemas/common.py) documents the members every problem has. A problem type
that adds members gets its own schema here, with `type` fixed and the members required, so
that a generated client reads `conflicts` or `booking_ids` as typed fields instead of a raw
dict. api/errors.py maps each domain error to its schema (`PROBLEM_SCHEMAS`); a route names
the errors it raises in `@endpoint(errors=...)` and its responses reference these schemas.
"""

from __future__ import annotations

import uuid
from enum import StrEnum

from pydantic import Field

from api.schemas.common import FieldProblem, Problem
from api.schemas.sync import SyncRecord


# Each `type` is a one-value enum with a name of its own, not an inline constant: Swift's
# generator names an inline enum after its property, and `Type` is reserved in Swift.
class ValidationFailedType(StrEnum):
    VALIDATION_FAILED = "/problems/validation-failed"


class SyncConflictType(StrEnum):
    SYNC_CONFLICT = "/problems/sync-conflict"


class ActiveBookingsType(StrEnum):
    ACCOUNT_HAS_ACTIVE_BOOKINGS = "/problems/account-has-active-bookings"


class ExportInProgressType(StrEnum):
    EXPORT_IN_PROGRESS = "/problems/export-in-progress"


class ValidationProblem(Problem):
    """422 `/problems/validation-failed`: the request was well-formed but broke a rule."""

    type: ValidationFailedType  # type: ignore[assignment]
    errors: list[FieldProblem] = Field(
        description="one entry per invalid field: its dotted path, why, a stable code"
    )


class SyncConflictProblem(Problem):
    """409 `/problems/sync-conflict`: records changed on the server since the device saw
    them; nothing was applied. Merge the server's versions and send the batch again."""

    type: SyncConflictType  # type: ignore[assignment]
    conflicts: list[SyncRecord] = Field(description="the server's version of each record")


class ActiveBookingsProblem(Problem):
    """409 `/problems/account-has-active-bookings`: the account cannot be deleted while
    bookings of it are in progress."""

    type: ActiveBookingsType  # type: ignore[assignment]
    booking_ids: list[uuid.UUID] = Field(description="the bookings in progress")


class ExportInProgressProblem(Problem):
    """409 `/problems/export-in-progress`: one data export at a time."""

    type: ExportInProgressType  # type: ignore[assignment]
    export_id: uuid.UUID = Field(description="the export still being prepared")
