"""Cross-device sync (/v1/sync/datasets): the Cognito Sync model, on Trellis."""

from __future__ import annotations

from typing import Any

from flask import Blueprint

from api.auth import current_user
from api.context import components, unit
from api.endpoint import endpoint
from api.schemas.sync import (
    Dataset,
    DatasetChanges,
    DatasetPage,
    DatasetPath,
    SyncBatch,
    SyncSince,
)
from services import sync

bp = Blueprint("sync", __name__, url_prefix="/v1/sync")


def _changes(changes: sync.Changes) -> dict[str, Any]:
    """`DatasetChanges` in plain values (api/responses.py); a RecordView has SyncRecord's
    fields, which orjson writes as they are."""
    return {"name": changes.name, "sync_count": changes.sync_count, "records": changes.records}


def limits() -> sync.SyncLimits:
    settings = components().settings
    return sync.SyncLimits(
        datasets_per_user=settings.sync_max_datasets,
        records_per_dataset=settings.sync_max_records,
        bytes_per_dataset=settings.sync_max_dataset_bytes,
        bytes_per_value=settings.sync_max_value_bytes,
    )


@bp.get("/datasets")
@endpoint(summary="Your datasets", tags=("sync",), response=DatasetPage)
def list_datasets() -> DatasetPage:
    rows = sync.list_datasets(unit().session, user_id=current_user().id)
    items = [Dataset.model_validate(d, from_attributes=True) for d in rows]
    return DatasetPage(items=items, next_cursor=None)


@bp.get("/datasets/<name>")
@endpoint(
    summary="What changed in a dataset since a sync_count",
    tags=("sync",),
    path=DatasetPath,
    query=SyncSince,
    response=DatasetChanges,
)
def get_dataset(name: str, query: SyncSince) -> dict[str, Any]:
    """Records written after `since`, deletions included (`deleted: true`)."""
    return _changes(
        sync.changes_since(unit().session, user_id=current_user().id, name=name, since=query.since)
    )


@bp.post("/datasets/<name>")
@endpoint(
    summary="Apply a batch of record changes, all or nothing",
    tags=("sync",),
    writes=True,
    path=DatasetPath,
    body=SyncBatch,
    response=DatasetChanges,
    idempotent=True,
    errors=(sync.SyncConflict,),
)
def post_dataset(name: str, body: SyncBatch) -> dict[str, Any]:
    """409 with `conflicts` (the server's versions) if any record changed since the device
    saw it; merge and send again. Creates the dataset on first write."""
    operations = [
        sync.Operation(op=r.op, key=r.key, sync_count=r.sync_count, value=r.value)
        for r in body.records
    ]
    changes = sync.apply_batch(
        unit().session,
        user_id=current_user().id,
        name=name,
        device_id=body.device_id,
        operations=operations,
        limits=limits(),
    )
    return _changes(changes)


@bp.delete("/datasets/<name>")
@endpoint(summary="Delete a dataset", tags=("sync",), writes=True, path=DatasetPath, status=204)
def delete_dataset(name: str) -> None:
    sync.delete_dataset(unit().session, user_id=current_user().id, name=name)
