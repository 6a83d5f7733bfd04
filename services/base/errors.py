"""Domain errors raised by services; the API maps each to one problem+json response."""

from __future__ import annotations

import uuid
from dataclasses import dataclass


class TrellisError(Exception):
    """Base of every error a service raises on purpose."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class NotFound(TrellisError):
    """The object does not exist, or the caller may not know that it does."""


class Forbidden(TrellisError):
    """The caller is known but not allowed to do this."""


class Blocked(Forbidden):
    """One of two users blocked the other: nothing new may pass between them. The detail
    says what the caller cannot do, never which of the two blocked."""


class AccountSuspended(Forbidden):
    """An admin suspended the caller's account: every request of theirs is refused until an
    admin lifts the suspension."""


class Conflict(TrellisError):
    """The request clashes with the current state of the object."""


class AccountHasActiveBookings(Conflict):
    """The account cannot be deleted while a booking of theirs is in progress."""

    def __init__(self, booking_ids: list[uuid.UUID]) -> None:
        super().__init__(
            "Bookings of yours are in progress; complete them (or have them completed) and "
            "ask again. booking_ids lists them."
        )
        self.booking_ids = booking_ids


class ExportInProgress(Conflict):
    """The user's previous data export is still being built: one at a time."""

    def __init__(self, export_id: uuid.UUID) -> None:
        super().__init__(
            "Your previous data export is still being prepared; wait for it (export_id "
            "names it) before asking for another."
        )
        self.export_id = export_id


class AccountDeletionScheduled(Conflict):
    """The caller scheduled their own account's deletion: nothing new they would send to
    others (a booking, a message, a review, a notification, a profile) is accepted."""


class AccountDeleted(Conflict):
    """The other user scheduled their account's deletion: nothing new reaches them."""


class SlotTaken(Conflict):
    """The booking's time (with the provider's buffer) overlaps another accepted or
    in-progress booking of the provider: it cannot be accepted."""


class SlotUnavailable(Conflict):
    """The provider set availability, and the requested time is not one of their free slots."""


@dataclass(frozen=True)
class FieldError:
    """One invalid input: where it is (dotted path), what is wrong, a stable machine code."""

    field: str
    message: str
    code: str = "invalid"


class ValidationFailed(TrellisError):
    """Well-formed input that breaks a rule; carries one FieldError per offending field."""

    def __init__(self, detail: str, errors: list[FieldError] | None = None) -> None:
        super().__init__(detail)
        self.errors: list[FieldError] = errors or []


class Unavailable(TrellisError):
    """A dependency is down; the client should retry after `retry_after` seconds."""

    def __init__(self, detail: str, retry_after: int = 5) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


class RateLimited(TrellisError):
    """Too many requests of this kind; retry after `retry_after` seconds."""

    def __init__(self, detail: str, retry_after: int = 60) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


class InvalidToken(TrellisError):
    """The bearer token is not acceptable. `reason` is for the log only, never the client."""

    def __init__(self, reason: str) -> None:
        super().__init__("The access token is missing, malformed, expired or not valid here.")
        self.reason = reason


class AccountClosed(InvalidToken):
    """The token's account was deleted (purged). A token issued before the purge stays
    refused until it expires: it never brings the account back as a new, empty user."""

    def __init__(self) -> None:
        super().__init__("account purged")
        self.detail = "This account was deleted. Sign up again to use the app with a new account."


class ReauthenticationRequired(TrellisError):
    """The token is valid, but the sign-in behind it (`auth_time`) is older than this action
    allows, or unknown: the user must sign in again (not merely refresh the token, which
    keeps the first sign-in's `auth_time`)."""

    def __init__(self, max_age_seconds: int) -> None:
        super().__init__(
            f"This needs a sign-in within the last {max_age_seconds} seconds: sign in again "
            "(a refreshed token keeps the old sign-in time) and retry."
        )
        self.max_age_seconds = max_age_seconds
