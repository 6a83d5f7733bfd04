"""Cross-device sync, the Cognito Sync model on PostgreSQL.

A user has named datasets of records. Every successful batch bumps the dataset's
sync_count and stamps the records it wrote with it, so a device asks for "everything
after N" and gets changes and deletions (tombstones). A batch carries, for each record,
the sync_count the device last saw; if any record moved on since, nothing is applied and
the device gets the server's versions to merge. The dataset row is locked for the batch,
so counts strictly increase and no update is lost.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import orjson
from sqlalchemy import Select, and_, bindparam, delete, func, select
from sqlalchemy.orm import Session

from models import Device, SyncDataset, SyncRecord, User
from models.base import utcnow
from services.base.db import core_rows, insert_ignoring_conflict
from services.base.errors import Conflict, FieldError, NotFound, ValidationFailed
from services.base.views import row_view
from services.messaging import outbox
from services.realtime import feed


@dataclass(frozen=True)
class SyncLimits:
    datasets_per_user: int = 20
    records_per_dataset: int = 1024
    bytes_per_dataset: int = 1024 * 1024
    bytes_per_value: int = 64 * 1024


@row_view
class RecordView:
    key: str
    value: Any
    sync_count: int
    deleted: bool
    last_modified: datetime
    device_id: str | None


@dataclass(frozen=True, slots=True)
class DatasetView:
    name: str
    sync_count: int
    record_count: int
    bytes: int
    last_modified: datetime


@dataclass(frozen=True, slots=True)
class Changes:
    name: str
    sync_count: int
    records: list[RecordView]


@dataclass(frozen=True, slots=True)
class Operation:
    op: Literal["replace", "remove"]
    key: str
    sync_count: int
    value: Any = None


class SyncConflict(Conflict):
    """Records changed on the server since the device saw them; nothing was applied."""

    def __init__(self, records: list[RecordView]) -> None:
        super().__init__(
            f"{len(records)} record(s) changed since this device saw them; nothing was "
            "applied. Merge the server's versions in `conflicts` and send the batch again."
        )
        self.records = records


def list_datasets(session: Session, *, user_id: uuid.UUID) -> list[DatasetView]:
    rows = session.scalars(
        select(SyncDataset).where(SyncDataset.user_id == user_id).order_by(SyncDataset.name)
    )
    return [_dataset(d) for d in rows]


def changes_since(session: Session, *, user_id: uuid.UUID, name: str, since: int) -> Changes:
    """Records written after `since` (tombstones included); 404 for an unknown dataset."""
    params = {"user_id": user_id, "name": name, "since": since}
    rows = core_rows(session, _CHANGES, params).all()
    if not rows:
        raise NotFound("No such dataset.")
    records = [RecordView(*row[1:]) for row in rows if row.key is not None]
    return Changes(name, rows[0].dataset_sync_count, records)


_DATASETS = SyncDataset.__table__
_RECORDS = SyncRecord.__table__
# RecordView's fields in order: a row becomes RecordView(*row) without an ORM object.
_RECORD_COLUMNS = [
    _RECORDS.c[column]
    for column in ("key", "value", "sync_count", "deleted", "updated_at", "device_id")
]


def _changes_statement() -> Select[Any]:
    """One round trip: the dataset's count beside each record written after :since (one
    row with NULL record columns when there is none). Built once; values bound per request."""
    d, r = _DATASETS, _RECORDS
    since = bindparam("since", type_=r.c.sync_count.type)
    return (
        select(d.c.sync_count.label("dataset_sync_count"), *_RECORD_COLUMNS)
        .select_from(d.outerjoin(r, and_(r.c.dataset_id == d.c.id, r.c.sync_count > since)))
        .where(
            d.c.user_id == bindparam("user_id", type_=d.c.user_id.type),
            d.c.name == bindparam("name", type_=d.c.name.type),
        )
        .order_by(r.c.sync_count, r.c.key)
    )


_CHANGES = _changes_statement()


def apply_batch(
    session: Session,
    *,
    user_id: uuid.UUID,
    name: str,
    device_id: str | None,
    operations: Sequence[Operation],
    limits: SyncLimits,
) -> Changes:
    """Apply every operation or none; 409 (SyncConflict) if any record moved on."""
    _check_operations(operations, limits)
    dataset = _lock_dataset(session, user_id, name, limits)
    current = {
        r.key: r
        for r in session.scalars(
            select(SyncRecord).where(
                SyncRecord.dataset_id == dataset.id,
                SyncRecord.key.in_([op.key for op in operations]),
            )
        )
    }
    conflicts = [
        _record(current[op.key])
        if op.key in current
        else RecordView(op.key, None, 0, True, dataset.updated_at, None)  # never existed
        for op in operations
        if (current[op.key].sync_count if op.key in current else 0) != op.sync_count
    ]
    if conflicts:
        raise SyncConflict(conflicts)
    now = utcnow()
    dataset.sync_count += 1
    for op in operations:
        _account(dataset, current.get(op.key), op)
    _check_size(dataset, limits)
    written = [
        _write(session, dataset, current.get(op.key), op, device_id, now) for op in operations
    ]
    dataset.updated_at = now
    _notify_other_devices(session, user_id, name, dataset.sync_count, device_id)
    session.flush()
    return Changes(name, dataset.sync_count, [_record(r) for r in written])


def delete_dataset(
    session: Session, *, user_id: uuid.UUID, name: str, device_id: str | None = None
) -> None:
    dataset = session.scalar(
        select(SyncDataset)
        .where(SyncDataset.user_id == user_id, SyncDataset.name == name)
        .with_for_update()
    )
    if dataset is None:
        raise NotFound("No such dataset.")
    session.execute(delete(SyncRecord).where(SyncRecord.dataset_id == dataset.id))
    session.delete(dataset)
    _notify_other_devices(session, user_id, name, None, device_id)
    session.flush()


def _check_operations(operations: Sequence[Operation], limits: SyncLimits) -> None:
    problems: list[FieldError] = []
    seen: set[str] = set()
    for i, op in enumerate(operations):
        if op.key in seen:
            problems.append(
                FieldError(f"records.{i}.key", "appears twice in one batch", "duplicate")
            )
        seen.add(op.key)
        if op.op == "replace" and len(_encode(op.value)) > limits.bytes_per_value:
            problems.append(
                FieldError(
                    f"records.{i}.value",
                    f"larger than the limit of {limits.bytes_per_value} bytes per value",
                    "limit_value_bytes",
                )
            )
    if problems:
        raise ValidationFailed("The batch is not valid; nothing was applied.", problems)


def _lock_dataset(
    session: Session, user_id: uuid.UUID, name: str, limits: SyncLimits
) -> SyncDataset:
    query = (
        select(SyncDataset)
        .where(SyncDataset.user_id == user_id, SyncDataset.name == name)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    dataset = session.scalar(query)
    if dataset is not None:
        return dataset
    # A new dataset: count the user's, then insert. Concurrent creations (in any worker)
    # must not all count below the limit and all insert, so they take turns on the user's
    # row in `users` (FOR NO KEY UPDATE, held until the request ends; foreign-key checks
    # of other transactions on the row are not blocked). Under READ COMMITTED each
    # statement after the lock sees what the previous holder committed: the dataset may
    # exist by now (a second device creating the same one), else the count is current.
    # SQLite (local mode) ignores the clause and lets one writer in at a time anyway.
    session.execute(select(User.id).where(User.id == user_id).with_for_update(key_share=True))
    dataset = session.scalar(query)
    if dataset is not None:
        return dataset
    count = session.scalar(
        select(func.count()).select_from(SyncDataset).where(SyncDataset.user_id == user_id)
    )
    if (count or 0) >= limits.datasets_per_user:
        raise _limit(
            "name", f"at most {limits.datasets_per_user} datasets per user", "limit_datasets"
        )
    now = utcnow()
    values = {
        "id": uuid.uuid4(),
        "user_id": user_id,
        "name": name,
        "sync_count": 0,
        "record_count": 0,
        "bytes": 0,
        "created_at": now,
        "updated_at": now,
    }
    # Two devices creating one dataset at once: both succeed, the lock orders them.
    insert_ignoring_conflict(session, SyncDataset, values, ["user_id", "name"])
    return session.scalars(query).one()


def _write(
    session: Session,
    dataset: SyncDataset,
    record: SyncRecord | None,
    op: Operation,
    device_id: str | None,
    now: datetime,
) -> SyncRecord:
    if record is None:
        record = SyncRecord(dataset_id=dataset.id, key=op.key)
        session.add(record)
    record.value = op.value if op.op == "replace" else None
    record.deleted = op.op == "remove"
    record.sync_count = dataset.sync_count
    record.device_id = device_id
    record.updated_at = now
    return record


def _size(key: str, value: Any) -> int:
    return len(key.encode()) + len(_encode(value))


def _account(dataset: SyncDataset, before: SyncRecord | None, op: Operation) -> None:
    """Move the dataset's live record count and bytes by what `op` changes (before it runs)."""
    if before is not None and not before.deleted:
        dataset.record_count -= 1
        dataset.bytes -= _size(before.key, before.value)
    if op.op == "replace":
        dataset.record_count += 1
        dataset.bytes += _size(op.key, op.value)


def _check_size(dataset: SyncDataset, limits: SyncLimits) -> None:
    if dataset.record_count > limits.records_per_dataset:
        raise _limit(
            "records", f"at most {limits.records_per_dataset} records per dataset", "limit_records"
        )
    if dataset.bytes > limits.bytes_per_dataset:
        raise _limit(
            "records",
            f"at most {limits.bytes_per_dataset} bytes per dataset",
            "limit_dataset_bytes",
        )


def _notify_other_devices(
    session: Session, user_id: uuid.UUID, name: str, sync_count: int | None, device_id: str | None
) -> None:
    """A silent push to the user's other phones. A sender that passes its Trellis device id
    (from POST /v1/devices) as device_id counts as already reached, so it is not pushed."""
    data = {"dataset": name, "sync_count": "" if sync_count is None else str(sync_count)}
    if sync_count is None:
        data["deleted"] = "true"
    payload: dict[str, Any] = {"kind": "sync", "silent": True, "data": data}
    message = outbox.enqueue(session, user_id=user_id, payload=payload)
    own = _own_device(session, user_id, device_id)
    if own is not None:
        message.delivered_to = [str(own)]
    feed.dataset_changed(session, user_id, name, sync_count, device_id)


def _own_device(session: Session, user_id: uuid.UUID, device_id: str | None) -> uuid.UUID | None:
    try:
        candidate = uuid.UUID(device_id or "")
    except ValueError:
        return None
    return session.scalar(
        select(Device.id).where(Device.id == candidate, Device.user_id == user_id)
    )


def _limit(field: str, message: str, code: str) -> ValidationFailed:
    return ValidationFailed(
        f"A sync limit was reached: {message}.", [FieldError(field, message, code)]
    )


def _encode(value: Any) -> bytes:
    return orjson.dumps(value)


def _record(r: SyncRecord) -> RecordView:
    return RecordView(r.key, r.value, r.sync_count, r.deleted, r.updated_at, r.device_id)


def _dataset(d: SyncDataset) -> DatasetView:
    return DatasetView(d.name, d.sync_count, d.record_count, d.bytes, d.updated_at)
