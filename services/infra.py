"""Bucket settings the app relies on, applied idempotently (`flask infra ensure`)."""

from __future__ import annotations

from services.aws.s3 import ObjectStore
from services.settings import Settings


def ensure(store: ObjectStore, settings: Settings) -> list[str]:
    """Create the uploads bucket if missing and apply its settings; a line per thing done."""
    return store.ensure_bucket(cors_origins=list(settings.uploads_cors_origins))
