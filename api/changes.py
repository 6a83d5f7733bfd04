"""The change feed (/v1/changes): what happened to your bookings, messages, inbox, sync
datasets, reports and roles, numbered per user. The realtime WebSocket (realtime/, see
docs/realtime.md) streams the same entries live."""

from __future__ import annotations

from flask import Blueprint

from api.auth import current_user
from api.context import unit
from api.endpoint import endpoint
from api.schemas.changes import Change, ChangePage, ChangesQuery
from services.realtime import feed

bp = Blueprint("changes", __name__, url_prefix="/v1/changes")


@bp.get("")
@endpoint(
    summary="Your changes after a seq, oldest first",
    tags=("changes",),
    query=ChangesQuery,
    response=ChangePage,
    errors=(feed.ChangesExpired,),
)
def list_changes(query: ChangesQuery) -> ChangePage:
    """Keep `last_seq` and ask again with `after=` it. 410 `/problems/changes-expired` when
    changes after `after` are past CHANGES_RETENTION_DAYS and deleted: reload your lists,
    then go on from the `last_seq` of a request without `after`."""
    page = feed.changes_after(
        unit().session, user_id=current_user().id, after=query.after, limit=query.limit
    )
    items = [Change.model_validate(item, from_attributes=True) for item in page.items]
    return ChangePage(items=items, next_cursor=page.next_cursor, last_seq=page.last_seq)
