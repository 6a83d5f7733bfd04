"""Domain errors raised by services; the API maps each to one problem+json response."""

from __future__ import annotations

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


class Conflict(TrellisError):
    """The request clashes with the current state of the object."""


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
