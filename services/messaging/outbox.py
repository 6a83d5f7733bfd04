"""The transactional outbox: pushes are written with the change that caused them and
delivered afterwards by a relay, at least once, never for work that rolled back.

Several relays may drain at once (a thread in each web worker, the worker tier, the CLI):
`FOR UPDATE SKIP LOCKED` hands each due message to one of them.
"""

from __future__ import annotations

import logging
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from models import Device, Notification, OutboxMessage
from models.base import utcnow
from services.aws.sns import EndpointGone, PushGateway, PushUnavailable
from services.base import metrics
from services.base.background import WakeableLoop
from services.base.unit_of_work import transaction
from services.messaging import texts

log = logging.getLogger(__name__)

PENDING_FLAG = "trellis.outbox_pending"
BASE_BACKOFF_SECONDS = 2.0
BATCH = 100  # messages a drain takes at most
# The web relay's passes are at least this far apart: under a stream of message posts one
# pass drains what a few dozen commits enqueued instead of one pass per commit, whose fixed
# cost (two transactions, the timers' query) doubled a message post's worker CPU
# (BENCHMARKS.md, Lever 5). A lone push after a quiet spell goes out at once.
PASS_GAP_SECONDS = 0.05

# Trellis's app scheme: the one place it is spelled. Deep links are Trellis's to make
# (deep_link() below), to its own app only; a push never carries any other (sns_message).
APP_SCHEME = "trellis"
DEEP_LINK_PREFIX = f"{APP_SCHEME}://"
DEEP_LINK_KEY = "deep_link"


def deep_link(*path: object) -> str:
    """Trellis's link to a screen of its app: deep_link("bookings", id) is
    trellis://bookings/<id>."""
    return DEEP_LINK_PREFIX + "/".join(str(part) for part in path)


def key_form(key: str) -> str:
    """A data key as an app might read it after renaming (deep_link, deepLink, Deep-Link
    and DEEPLINK are one key to iOS's convertFromSnakeCase, Gson or a camel-casing JS
    client): lower case, letters and digits only."""
    return "".join(c for c in key.lower() if c.isalnum())


def trellis_links_only(data: dict[str, str]) -> dict[str, str]:
    """`data` without a deep link that is not Trellis's: a `deep_link` outside its scheme,
    or the key in another spelling. Rows written before provider data refused the key,
    or by a future bug, thus never send a phone elsewhere."""
    link_form = key_form(DEEP_LINK_KEY)
    kept = {}
    for key, value in data.items():
        if key_form(key) == link_form and not (
            key == DEEP_LINK_KEY and value.startswith(DEEP_LINK_PREFIX)
        ):
            log.warning("deep link dropped: not Trellis's", extra={"key": key[:64]})
            continue
        kept[key] = value
    return kept


def enqueue(
    session: Session,
    *,
    user_id: uuid.UUID,
    payload: dict[str, Any],
    notification_id: uuid.UUID | None = None,
) -> OutboxMessage:
    """Add a push to the caller's transaction; it is sent only if that transaction commits."""
    message = OutboxMessage(
        id=uuid.uuid4(),
        user_id=user_id,
        notification_id=notification_id,
        payload=payload,
        created_at=utcnow(),
        available_at=utcnow(),
        attempts=0,
        delivered_to=[],
    )
    session.add(message)
    session.info[PENDING_FLAG] = True
    return message


@dataclass
class DrainStats:
    delivered: int = 0
    retried: int = 0
    devices_disabled: int = 0
    taken: int = 0  # messages the drain took (delivered or retried)

    def add(self, other: DrainStats) -> None:
        self.delivered += other.delivered
        self.retried += other.retried
        self.devices_disabled += other.devices_disabled
        self.taken += other.taken


def drain(
    sessions: sessionmaker[Session],
    push: PushGateway,
    *,
    batch: int = BATCH,
    max_backoff_seconds: float = 300.0,
    now: datetime | None = None,
) -> DrainStats:
    """Deliver one batch of due messages in a transaction of its own; returns what happened
    to them."""
    now = now or utcnow()
    stats = DrainStats()
    with transaction(sessions) as session:
        due = session.scalars(
            select(OutboxMessage)
            .where(OutboxMessage.delivered_at.is_(None), OutboxMessage.available_at <= now)
            .order_by(OutboxMessage.available_at, OutboxMessage.id)
            .limit(batch)
            .with_for_update(skip_locked=True)
        ).all()
        stats.taken = len(due)
        devices = _devices_of(session, {message.user_id for message in due})
        badges: dict[uuid.UUID, int] = {}  # the batch's messages to one user share a count
        gone: set[uuid.UUID] = set()
        for message in due:
            targets = devices.get(message.user_id, [])
            _deliver(session, push, message, targets, badges, now, max_backoff_seconds, stats, gone)
        # Disabled last, just before the commit: an UPDATE mid-batch would hold the device
        # rows locked through every later SNS call, and a device delete would wait on it.
        if gone:
            session.execute(update(Device).where(Device.id.in_(gone)).values(enabled=False))
    return stats


def drain_all(sessions: sessionmaker[Session], push: PushGateway, **kwargs: Any) -> DrainStats:
    """Drain batch after batch until nothing is due: a batch that was not full took every
    due message no other relay held (a pass to find none would cost a transaction), and a
    batch that only retried stops it too."""
    total = DrainStats()
    while True:
        stats = drain(sessions, push, **kwargs)
        total.add(stats)
        if stats.delivered == 0 or stats.taken < kwargs.get("batch", BATCH):
            if metrics.outbox_report.count(total.retried, total.devices_disabled):
                _report_backlog(sessions)
            return total


def _report_backlog(sessions: sessionmaker[Session]) -> None:
    """The outbox metrics line (services/base/metrics.py): what is still undelivered."""
    with transaction(sessions) as session:
        backlog, oldest = session.execute(
            select(func.count(), func.min(OutboxMessage.created_at)).where(
                OutboxMessage.delivered_at.is_(None)
            )
        ).one()
    age = (utcnow() - oldest).total_seconds() if oldest is not None else 0.0
    metrics.outbox_report.emit(backlog, max(0.0, age))


def _devices_of(session: Session, users: set[uuid.UUID]) -> dict[uuid.UUID, list[Device]]:
    """The enabled devices of the batch's recipients, in one query."""
    found: dict[uuid.UUID, list[Device]] = {}
    if users:
        for device in session.scalars(
            select(Device).where(Device.user_id.in_(users), Device.enabled)
        ):
            found.setdefault(device.user_id, []).append(device)
    return found


def _deliver(
    session: Session,
    push: PushGateway,
    message: OutboxMessage,
    devices: list[Device],
    badges: dict[uuid.UUID, int],
    now: datetime,
    max_backoff: float,
    stats: DrainStats,
    gone: set[uuid.UUID],
) -> None:
    done = set(message.delivered_to)
    pending = [d for d in devices if str(d.id) not in done and d.id not in gone]
    # The badge needs a count query: only for an alert actually going out.
    badge = 0
    if pending and not message.payload.get("silent"):
        if message.user_id not in badges:
            badges[message.user_id] = _unread(session, message.user_id)
        badge = badges[message.user_id]
    error: str | None = None
    for device in pending:
        try:
            reader = texts.Reader(device.locale, device.time_zone)
            push.publish(
                arn=device.endpoint_arn,
                message=sns_message(device.platform, message, badge, reader),
            )
            done.add(str(device.id))
        except EndpointGone:
            gone.add(device.id)  # uninstalled or token revoked: never retry this one
            stats.devices_disabled += 1
        except PushUnavailable as exc:
            error = str(exc)[:1000]
        except Exception as exc:
            # A garbled answer (botocore's ResponseParserError is no BotoCoreError) or an
            # adapter bug: retry this message later. Letting it escape would roll back the
            # whole batch, re-send the pushes already out, and leave this message first in
            # line for the next pass, and the next: the outbox would stall behind it.
            log.exception("push failed unexpectedly", extra={"outbox_id": str(message.id)})
            error = f"{type(exc).__name__}: {exc}"[:1000]
    message.delivered_to = sorted(done)
    message.attempts += 1
    if error is None:
        message.delivered_at = now
        message.last_error = None
        stats.delivered += 1
        return
    message.last_error = error
    message.available_at = now + backoff(message.attempts, max_backoff)
    stats.retried += 1
    log.warning("push retry scheduled", extra={"outbox_id": str(message.id), "error": error})


def backoff(attempts: int, cap_seconds: float) -> timedelta:
    """Exponential (2 s, 4 s, 8 s...) with ±10% jitter, never above the cap."""
    delay = min(cap_seconds, BASE_BACKOFF_SECONDS * 2 ** max(0, attempts - 1))
    return timedelta(seconds=delay * random.uniform(0.9, 1.0))  # noqa: S311 - not crypto


def _unread(session: Session, user_id: uuid.UUID) -> int:
    return (
        session.scalar(
            select(func.count())
            .select_from(Notification)
            .where(Notification.user_id == user_id, Notification.read_at.is_(None))
        )
        or 0
    )


def sns_message(
    platform: str, message: OutboxMessage, badge: int, reader: texts.Reader = texts.ENGLISH
) -> str:
    """SNS MessageStructure=json: an APNs and an FCM (HTTP v1) payload, built per platform,
    its text rendered for the device (`reader`: its locale and zone) when the push carries
    Trellis's event (`message`); a provider's text goes as it was written."""
    payload = message.payload
    data = trellis_links_only({str(k): str(v) for k, v in dict(payload.get("data") or {}).items()})
    data |= {"outbox_id": str(message.id), "kind": str(payload.get("kind", ""))}
    if message.notification_id:
        data["notification_id"] = str(message.notification_id)
    silent = bool(payload.get("silent"))
    title, body = str(payload.get("title", "")), str(payload.get("body", ""))
    event = payload.get("message")
    if isinstance(event, dict):
        title, body = texts.render(texts.Message.from_json(event), reader)
    apns: dict[str, Any] = {"trellis": data}
    if silent:
        apns["aps"] = {"content-available": 1}
    else:
        apns["aps"] = {"alert": {"title": title, "body": body}, "badge": badge, "sound": "default"}
    fcm: dict[str, Any] = {"data": data, "android": {"priority": "high"}}
    if not silent:
        fcm["notification"] = {"title": title, "body": body}
        fcm["android"]["notification"] = {"notification_count": badge}
    apns_json = orjson.dumps(apns).decode()
    document = {
        "default": body or str(payload.get("kind", "")),
        "APNS": apns_json,
        "APNS_SANDBOX": apns_json,
        "GCM": orjson.dumps({"fcmV1Message": {"message": fcm}}).decode(),
    }
    return orjson.dumps(document).decode()


class OutboxRelay(WakeableLoop):
    """The outbox's background loop in a web worker: woken after a commit that enqueued
    pushes, and every `interval` seconds in case another process left some behind; its
    passes at least `gap` seconds apart (PASS_GAP_SECONDS)."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        push: PushGateway,
        *,
        interval: float = 5.0,
        max_backoff_seconds: float = 300.0,
        drainer: Callable[..., DrainStats] = drain_all,
        gap: float = PASS_GAP_SECONDS,
    ) -> None:
        last_pass = -gap

        def drain() -> DrainStats:
            nonlocal last_pass  # only this loop's one thread runs it
            time.sleep(max(0.0, last_pass + gap - time.monotonic()))
            try:
                return drainer(sessions, push, max_backoff_seconds=max_backoff_seconds)
            finally:
                last_pass = time.monotonic()

        super().__init__("outbox-relay", drain, interval=interval)
