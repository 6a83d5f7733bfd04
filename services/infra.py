"""Bucket settings the app relies on, applied idempotently (`flask infra ensure`)."""

from __future__ import annotations

from services.aws.exports import ExportSink
from services.aws.s3 import ObjectStore
from services.base.settings import Settings


def ensure(store: ObjectStore, settings: Settings, exports: ExportSink | None = None) -> list[str]:
    """Create the uploads bucket (and the export bucket) if missing and apply their settings,
    archival lifecycle included; a line per thing done."""
    done = store.ensure_bucket(cors_origins=list(settings.uploads_cors_origins))
    if exports is not None:
        done += exports.ensure_bucket()
    return done
