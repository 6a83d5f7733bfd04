"""The personal-data map: every column of every table that points at a user or holds
personal data, and what becomes of it when that user's account is purged.

The purge (services/accounts/purge.py) is driven by this map and by nothing else, and
tests/integration/test_personal_data_map.py fails when a column that references `users`, or
whose name looks personal, is missing from it: a new table cannot leak past a deletion
unnoticed. Adding a table means adding it here, with the fate of each such column.

Three fates:
- delete: the rows that belong to the user go, with every column in them;
- anonymise: the rows stay (another person relies on them: the counterparty's booking, a
  provider's rating) and the named columns are cleared;
- keep: the column stays as it is, for the reason written beside it.

Each table lists its links: the columns that tie one of its rows to the purged user, and
for each, whether the rows it matches are deleted or which of their columns are cleared (a
booking's location goes with its consumer, not with its provider). Tables are purged in the
order written here, which respects the foreign keys.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

Fate = Literal["delete", "anonymise", "keep"]


class Now:
    """The value of an anonymised timestamp column: the moment of the purge."""


NOW = Now()
# What an anonymised column becomes: None, an empty JSON value, or the purge's moment.
Cleared = None | dict[str, object] | list[object] | Now


@dataclass(frozen=True)
class Link:
    """The rows whose `column` holds the user's id (with `via` = (table, column): the id of a
    row of that table whose `column` is the user's, as a sync record's dataset). `clears`
    maps each column cleared in those rows to its new value; None: the rows are deleted."""

    column: str
    clears: Mapping[str, Cleared] | None = None
    via: tuple[str, str] | None = None


@dataclass(frozen=True)
class Table:
    links: tuple[Link, ...]
    # Personal columns that go with deleted rows: named so the map's test sees each one.
    deleted: tuple[str, ...] = ()
    # Personal columns left as they are, each with the reason.
    keep: Mapping[str, str] = field(default_factory=dict)

    def fates(self) -> dict[str, Fate]:
        """Every column this entry names, with its fate."""
        named: dict[str, Fate] = {}
        for link in self.links:
            if link.clears is None:
                named[link.column] = "delete"
            else:
                named.update(dict.fromkeys(link.clears, "anonymise"))
        named.update(dict.fromkeys(self.deleted, "delete"))
        named.update(dict.fromkeys(self.keep, "keep"))
        return named


def deletes(column: str, *, via: tuple[str, str] | None = None) -> Link:
    return Link(column, None, via)


def clears(column: str, **values: Cleared) -> Link:
    """The link column itself is cleared too (to None) unless `values` says otherwise."""
    return Link(column, {column: None, **values})


PERSONAL_DATA: dict[str, Table] = {
    # The user's own things first: nothing but the user relies on them.
    "provider_categories": Table((deletes("provider_id"),), deleted=("lat", "lng")),
    "provider_profiles": Table(
        (deletes("user_id"),), deleted=("display_name", "bio", "lat", "lng", "hourly_rate_cents")
    ),
    "devices": Table(
        (deletes("user_id"),), deleted=("token", "endpoint_arn", "locale", "time_zone")
    ),
    # The user's data exports; their documents under users/{id}/exports/ go with the prefix.
    "data_exports": Table(
        (deletes("user_id"),), deleted=("key", "last_error", "links_base_url", "link_token_sha256")
    ),
    # Pushes and inbox entries to the user, and those they sent to others: a notification's
    # body quotes its sender (a chat message, a provider's note), so it goes with them.
    "outbox_messages": Table(
        (deletes("user_id"), deletes("notification_id", via=("notifications", "sender_id"))),
        deleted=("payload", "delivered_to"),
    ),
    "notifications": Table(
        (deletes("user_id"), deletes("sender_id")),
        deleted=("title", "body", "data", "message"),
    ),
    "sync_records": Table(
        (deletes("dataset_id", via=("sync_datasets", "user_id")),), deleted=("key", "value")
    ),
    "sync_datasets": Table((deletes("user_id"),), deleted=("name",)),
    # The user's change feed (ids of what changed, nothing more) and its counter.
    "changes": Table((deletes("user_id"),), deleted=("data",)),
    "change_sequences": Table((deletes("user_id"),)),
    "idempotency_keys": Table(
        (deletes("user_id"),), deleted=("key", "response_body", "response_headers")
    ),
    "blocks": Table((deletes("blocker_id"), deletes("blocked_id"))),
    "availabilities": Table((deletes("provider_id"),), deleted=("time_zone", "weekly")),
    # Shared records: the other person keeps them, without the one who left.
    "bookings": Table(
        (
            # The location and the notes are the consumer's: where they are, what they wrote.
            clears("consumer_id", lat=None, lng=None, address=None, notes=""),
            clears("provider_id"),
        ),
    ),
    "booking_events": Table((clears("actor_id", reason=None),)),
    "messages": Table((clears("sender_id", body=None, removed_at=NOW),)),
    "reviews": Table(
        # The rating stays in the provider's average; the words were the consumer's.
        (clears("consumer_id", comment=None, removed_at=NOW), clears("provider_id")),
    ),
    "role_changes": Table((clears("user_id"), clears("actor_id"))),
    # A report stays the operators' record of a moderation decision; the reporter's words go
    # with the reporter.
    "reports": Table(
        (clears("reporter_id", details=None), clears("resolved_by")),
        keep={
            "reason": "one of five fixed categories, chosen from a list",
            "note": "the operator's note on the decision, about content rather than a person",
        },
    ),
    # A request from the web form is not tied to an account (anyone may type any address):
    # it is deleted DELETION_REQUESTS_RETENTION_DAYS after an operator closes it.
    "deletion_requests": Table(
        (clears("closed_by_id"),),
        keep={
            "email": "the operator's record of a request, deleted after the retention period",
            "note": "the operator's record of a request, deleted after the retention period",
            "close_note": "the operator's record of a request, deleted after the retention period",
        },
    ),
    "events": Table(
        # Counts stay right in the dashboard; nothing ties an event to the person.
        (clears("user_id", session_id=None, attributes={}),),
        keep={"metrics": "numbers the app declared (durations, amounts), not about a person"},
    ),
    # The user's uploads; their objects under users/{id}/ are deleted from S3 first.
    "uploads": Table((deletes("owner_id"),), deleted=("filename", "key")),
    # Last, the row every other one pointed at becomes a tombstone.
    "users": Table(
        (
            Link(
                "id",
                {
                    "cognito_username": None,
                    "email": None,
                    "display_name": None,
                    "phone": None,
                    "roles": [],
                    "role_revocations": {},
                    "avatar_upload_id": None,
                    "suspended_at": None,
                    "purged_at": NOW,
                },
            ),
        ),
        keep={
            "id": "the tombstone's key; no shared record points at it any more",
            "cognito_sub": (
                "refuses tokens issued before the purge (401) instead of creating a new, "
                "empty user; Cognito's user is deleted, so it names nobody there"
            ),
        },
    ),
}


def fates_by_table() -> dict[str, dict[str, Fate]]:
    """Table -> column -> fate, for every column the map names."""
    return {table: entry.fates() for table, entry in PERSONAL_DATA.items()}


# Columns whose names look personal but hold nothing about a person, with the reason (the
# map's test asks for one of the two for every such column).
NOT_PERSONAL: dict[str, dict[str, str]] = {
    "export_watermarks": {"table_name": "the name of an exported table, not of a person"},
    "events": {"name": "the event's name as the app defines it (screen_view, purchase)"},
}
