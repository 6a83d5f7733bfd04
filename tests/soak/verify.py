"""After the soak: hold the ledger against PostgreSQL (by SQL) and the emulated SNS."""

from __future__ import annotations

import json
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, create_engine, text

from tests.soak.ledger import Ledger
from tests.support.faultstack import FaultStack


@dataclass
class Checks:
    """What was checked, and every discrepancy found (`problems` must end up empty)."""

    bookings: int = 0
    messages: int = 0
    accepts: int = 0
    sync_records: int = 0
    sync_batches: int = 0
    unacknowledged_commits: dict[str, int] = field(default_factory=dict)
    notifications: int = 0
    outbox_rows: int = 0
    outbox_delivered: int = 0
    pushes_expected: int = 0
    pushes_received: int = 0
    drain_seconds: float = 0.0
    problems: list[str] = field(default_factory=list)

    @property
    def writes_checked(self) -> int:
        return self.bookings + self.messages + self.accepts + self.sync_records


def verify(stack: FaultStack, ledger: Ledger, *, drain_timeout: float) -> Checks:
    """Every acknowledged write is in the database, nothing is duplicated, every push landed."""
    checks = Checks()
    engine = create_engine(stack.database_url)
    try:
        with engine.connect() as db:
            check_bookings(db, ledger, checks)
            check_messages(db, ledger, checks)
            check_accepts(db, ledger, checks)
            check_sync(db, ledger, checks)
        checks.drain_seconds = wait_for_outbox(engine, drain_timeout)
        with engine.connect() as db:
            check_outbox(db, stack, checks)
    finally:
        engine.dispose()
    return checks


def check_bookings(db: Connection, ledger: Ledger, checks: Checks) -> None:
    """One booking per Idempotency-Key (the key is the booking's notes), none lost."""
    rows: dict[str, list[str]] = defaultdict(list)
    for notes, booking_id in db.execute(
        text("SELECT notes, id FROM bookings WHERE notes LIKE 'soak-%'")
    ):
        rows[notes].append(str(booking_id))
    for key, ids in rows.items():
        if len(ids) > 1:
            checks.problems.append(f"booking key {key} made {len(ids)} bookings")
        if key not in ledger.tried_keys["booking"]:
            checks.problems.append(f"booking {ids} from a key no user sent")
    for key, booking_id in ledger.bookings.items():
        if rows.get(key) != [booking_id]:
            checks.problems.append(f"acknowledged booking {booking_id} ({key}): {rows.get(key)}")
        checks.bookings += 1
    checks.unacknowledged_commits["booking"] = len(set(rows) - set(ledger.bookings))


def check_messages(db: Connection, ledger: Ledger, checks: Checks) -> None:
    """One message per Idempotency-Key (in its body), in the booking it was sent to."""
    rows: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for body, booking_id, message_id in db.execute(
        text("SELECT body, booking_id, id FROM messages WHERE body LIKE 'soak %'")
    ):
        rows[body.removeprefix("soak ")].append((str(booking_id), str(message_id)))
    for key, found in rows.items():
        if len(found) > 1:
            checks.problems.append(f"message key {key} made {len(found)} messages")
    for key, sent in ledger.messages.items():
        if rows.get(key) != [sent]:
            checks.problems.append(f"acknowledged message {sent} ({key}): {rows.get(key)}")
        checks.messages += 1
    checks.unacknowledged_commits["message"] = len(set(rows) - set(ledger.messages))


def check_accepts(db: Connection, ledger: Ledger, checks: Checks) -> None:
    """Every acknowledged acceptance holds, and no booking was accepted twice."""
    events = {
        str(booking_id): count
        for booking_id, count in db.execute(
            text(
                "SELECT booking_id, count(*) FROM booking_events "
                "WHERE to_status = 'accepted' GROUP BY booking_id"
            )
        )
    }
    status = {str(i): s for i, s in db.execute(text("SELECT id, status FROM bookings"))}
    for booking_id, count in events.items():
        if count > 1:
            checks.problems.append(f"booking {booking_id} accepted {count} times")
    for booking_id in ledger.accepts:
        found = status.get(booking_id)
        if found != "accepted":
            checks.problems.append(f"acknowledged accept of {booking_id}: status {found}")
        checks.accepts += 1


def check_sync(db: Connection, ledger: Ledger, checks: Checks) -> None:
    """Each acknowledged record is there with its value and sync_count; counts add up."""
    datasets = {
        str(user_id): (dataset_id, count)
        for user_id, dataset_id, count in db.execute(
            text("SELECT user_id, id, sync_count FROM sync_datasets WHERE name = 'soak'")
        )
    }
    extra = 0
    for user_id, log in ledger.sync.items():
        if not log.batches:
            continue
        dataset_id, server_count = datasets.get(user_id, (None, 0))
        checks.sync_batches += log.batches
        if server_count < log.batches:
            checks.problems.append(
                f"user {user_id}: {log.batches} batches, sync_count {server_count}"
            )
        extra += max(0, server_count - log.batches)
        records = _records(db, dataset_id)
        for key, (value, count) in log.notes.items():
            if records.get(key) != (value, count):
                checks.problems.append(
                    f"sync {user_id}/{key}: {(value, count)} vs {records.get(key)}"
                )
            checks.sync_records += 1
        if log.profile is not None:
            value, count = records.get("profile", (None, 0))
            if count < log.profile[1] or (count == log.profile[1] and value != log.profile[0]):
                checks.problems.append(f"sync {user_id}/profile: {log.profile} vs {(value, count)}")
            checks.sync_records += 1
    checks.unacknowledged_commits["sync"] = extra


def _records(db: Connection, dataset_id: Any) -> dict[str, tuple[Any, int]]:
    if dataset_id is None:
        return {}
    rows = db.execute(
        text("SELECT key, value, sync_count FROM sync_records WHERE dataset_id = :d"),
        {"d": dataset_id},
    )
    return {key: (_json(value), count) for key, value, count in rows}


def wait_for_outbox(engine: Any, timeout: float) -> float:
    """Seconds until the relays delivered every outbox row; fails after `timeout`."""
    started = time.monotonic()
    query = text("SELECT count(*) FROM outbox_messages WHERE delivered_at IS NULL")
    while True:
        with engine.connect() as db:
            waiting = db.execute(query).scalar_one()
        if waiting == 0:
            return round(time.monotonic() - started, 1)
        if time.monotonic() - started > timeout:
            raise AssertionError(f"{waiting} outbox rows undelivered after {timeout:.0f} s")
        time.sleep(0.5)


def check_outbox(db: Connection, stack: FaultStack, checks: Checks) -> None:
    """Every outbox row is delivered, and SNS received it at each of its user's devices."""
    checks.notifications = db.execute(text("SELECT count(*) FROM notifications")).scalar_one()
    rows = db.execute(
        text(
            "SELECT o.id, o.delivered_at IS NOT NULL, d.endpoint_arn, d.enabled "
            "FROM outbox_messages o LEFT JOIN devices d ON d.user_id = o.user_id"
        )
    ).all()
    received = _received(stack)
    checks.pushes_received = sum(len(ids) for ids in received.values())
    for outbox_id, delivered, arn, enabled in rows:
        checks.outbox_rows += 1
        checks.outbox_delivered += int(delivered)
        if arn is None or not enabled:
            checks.problems.append(f"outbox {outbox_id}: its user has no enabled device")
            continue
        checks.pushes_expected += 1
        if str(outbox_id) not in received.get(arn, ()):
            checks.problems.append(f"outbox {outbox_id}: never reached {arn}")


def _received(stack: FaultStack) -> dict[str, list[str]]:
    """Endpoint ARN -> outbox ids of the pushes SNS received there (APNs or FCM)."""
    return {
        arn: [_outbox_id(message) for message in messages]
        for arn, messages in stack.sns_messages().items()
    }


def _outbox_id(message: dict[str, Any]) -> str:
    if "APNS" in message:
        return str(json.loads(message["APNS"])["trellis"]["outbox_id"])
    return str(json.loads(message["GCM"])["fcmV1Message"]["message"]["data"]["outbox_id"])


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value
