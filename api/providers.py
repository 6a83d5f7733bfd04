"""Provider profiles (/v1/me/provider-profile) and provider search (/v1/providers)."""

from __future__ import annotations

import uuid
from typing import Any

from flask import Blueprint

from api.auth import current_user
from api.context import components, unit
from api.endpoint import endpoint
from api.schemas.marketplace import (
    OwnProviderProfile,
    Provider,
    ProviderPage,
    ProviderProfileIn,
    ProviderSearch,
)
from services.base.errors import FieldError, ValidationFailed
from services.marketplace import providers
from services.media_urls import AvatarUrls

bp = Blueprint("providers", __name__, url_prefix="/v1")


def _public(view: providers.ProviderView, avatars: AvatarUrls) -> dict[str, Any]:
    """`Provider` in plain values (api/responses.py); a page fetches `avatars` once."""
    return {
        "id": view.id,
        "display_name": view.display_name,
        "avatar_url": avatars.url(view.avatar_key),
        "bio": view.bio,
        "categories": view.categories,
        "location": {"lat": view.lat, "lng": view.lng},
        "service_radius_km": view.service_radius_km,
        "hourly_rate_cents": view.hourly_rate_cents,
        "currency": view.currency,
        "rating_average": view.rating_average,
        "rating_count": view.rating_count,
    }


@bp.put("/me/provider-profile")
@endpoint(
    summary="Create or replace your provider profile",
    tags=("providers",),
    writes=True,
    roles=("provider",),
    body=ProviderProfileIn,
    response=OwnProviderProfile,
    errors=(409,),
)
def put_provider_profile(body: ProviderProfileIn) -> dict[str, Any]:
    """Needs the provider role. Replaces the whole profile; ratings are kept. 409
    (`/problems/account-deletion-scheduled`) while your account's deletion is scheduled."""
    data = providers.ProfileInput(
        display_name=body.display_name,
        bio=body.bio,
        categories=list(body.categories),
        lat=body.location.lat,
        lng=body.location.lng,
        service_radius_km=body.service_radius_km,
        hourly_rate_cents=body.hourly_rate_cents,
        currency=body.currency,
    )
    view = providers.upsert_profile(
        unit().session,
        user_id=current_user().id,
        data=data,
        content=components().content_filter,
    )
    return {**_public(view, components().avatar_urls), "active": view.active}


@bp.get("/me/provider-profile")
@endpoint(
    summary="Your provider profile",
    tags=("providers",),
    roles=("provider",),
    response=OwnProviderProfile,
    errors=(404,),
)
def get_provider_profile() -> dict[str, Any]:
    """404 until you have created one."""
    view = providers.own_profile(unit().session, user_id=current_user().id)
    return {**_public(view, components().avatar_urls), "active": view.active}


@bp.get("/providers")
@endpoint(
    summary="Search providers", tags=("providers",), query=ProviderSearch, response=ProviderPage
)
def search_providers(query: ProviderSearch) -> dict[str, Any]:
    """Active providers by category, distance from a point (nearest first) and words.

    `lat` and `lng` go together; `radius_km` (default 25) applies when they are given.
    Providers you blocked, or who blocked you, are left out.
    """
    if (query.lat is None) != (query.lng is None):
        missing = "lat" if query.lat is None else "lng"
        raise ValidationFailed(
            "lat and lng go together.", [FieldError(missing, "required with the other", "missing")]
        )
    near = None
    if query.lat is not None and query.lng is not None:
        near = providers.Near(query.lat, query.lng, query.radius_km)
    page = providers.search(
        unit().session,
        category=query.category,
        near=near,
        text=query.q,
        cursor=query.cursor,
        limit=query.limit,
        viewer=current_user().id,
    )
    avatars = components().avatar_urls
    items = [_public(v, avatars) | {"distance_km": v.distance_km} for v in page.items]
    return {"items": items, "next_cursor": page.next_cursor}


@bp.get("/providers/<uuid:provider_id>")
@endpoint(summary="A provider's public profile", tags=("providers",), response=Provider)
def get_provider(provider_id: uuid.UUID) -> dict[str, Any]:
    """With `rating_average` and `rating_count`; 404 for unknown or inactive providers, and
    for one you blocked or who blocked you."""
    view = providers.get_provider(
        unit().session, provider_id=provider_id, viewer_id=current_user().id
    )
    return _public(view, components().avatar_urls)
