"""Provider profiles and provider search (category, distance, text), nearest first."""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass
from functools import cache
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Float,
    Integer,
    Select,
    Text,
    and_,
    bindparam,
    case,
    delete,
    func,
    literal,
    or_,
    select,
)
from sqlalchemy.orm import Session

from models import ProviderCategory, ProviderProfile, User
from services.accounts.blocks import either_blocked, no_block_between
from services.accounts.users import (
    avatar_key_of,
    avatar_keys,
    deletion_scheduled_refusal,
    scheduled_for_deletion,
)
from services.base.content_filter import ContentFilter, flag
from services.base.db import core_rows
from services.base.errors import FieldError, NotFound, ValidationFailed
from services.base.pagination import Page, decode_cursor, invalid_cursor, page_of, scope_of
from services.base.views import row_view

EARTH_RADIUS_KM = 6371.0088
KM_PER_DEGREE_LAT = math.pi * EARTH_RADIUS_KM / 180


@dataclass(frozen=True, slots=True)
class ProfileInput:
    display_name: str
    bio: str
    categories: list[str]
    lat: float
    lng: float
    service_radius_km: float
    hourly_rate_cents: int
    currency: str


@row_view
class ProviderView:
    id: uuid.UUID
    display_name: str
    bio: str
    categories: list[str]
    lat: float
    lng: float
    service_radius_km: float
    hourly_rate_cents: int
    currency: str
    active: bool
    rating_average: float | None
    rating_count: int
    distance_km: float | None = None
    avatar_key: str | None = None  # the provider's avatar object (services/media_urls.py)


def _average(rating_sum: int, rating_count: int) -> float | None:
    return round(rating_sum / rating_count, 2) if rating_count else None


def _view(p: Any, distance_km: float | None = None, avatar_key: str | None = None) -> ProviderView:
    """A profile (an ORM object or a search row with the same names) as a ProviderView."""
    return ProviderView(
        id=p.user_id,
        display_name=p.display_name,
        bio=p.bio,
        categories=list(p.categories),
        lat=p.lat,
        lng=p.lng,
        service_radius_km=p.service_radius_km,
        hourly_rate_cents=p.hourly_rate_cents,
        currency=p.currency,
        active=p.active,
        rating_average=_average(p.rating_sum, p.rating_count),
        rating_count=p.rating_count,
        distance_km=distance_km,
        avatar_key=avatar_key,
    )


def _with_avatar(session: Session, profile: ProviderProfile) -> ProviderView:
    return _view(profile, avatar_key=avatar_keys(session, [profile.user_id]).get(profile.user_id))


def upsert_profile(
    session: Session,
    *,
    user_id: uuid.UUID,
    data: ProfileInput,
    content: ContentFilter | None = None,
) -> ProviderView:
    """Create or replace the caller's profile; its search rows change in the same transaction.
    409 while the caller's account deletion is scheduled (their row held first: a deletion
    scheduled meanwhile then hides a profile created here). A name or bio that hits the
    content filter is kept and opens a system report of the profile (`content` None: no
    check, for tools that seed data)."""
    if scheduled_for_deletion(session, [user_id], hold=True):
        raise deletion_scheduled_refusal("change your provider profile")
    categories = sorted(set(data.categories))
    profile = session.get(ProviderProfile, user_id, with_for_update=True)
    if profile is None:
        profile = ProviderProfile(user_id=user_id, rating_sum=0, rating_count=0, active=True)
        session.add(profile)
    profile.display_name = data.display_name
    profile.bio = data.bio
    profile.categories = categories
    profile.lat, profile.lng = data.lat, data.lng
    profile.service_radius_km = data.service_radius_km
    profile.hourly_rate_cents = data.hourly_rate_cents
    profile.currency = data.currency
    session.flush()
    if content is not None:
        texts = (data.display_name, data.bio)
        flag(session, content, target_type="provider_profile", target_id=user_id, texts=texts)
    session.execute(delete(ProviderCategory).where(ProviderCategory.provider_id == user_id))
    session.add_all(
        ProviderCategory(provider_id=user_id, category=c, lat=data.lat, lng=data.lng)
        for c in categories
    )
    session.flush()
    return _with_avatar(session, profile)


def own_profile(session: Session, *, user_id: uuid.UUID) -> ProviderView:
    profile = session.get(ProviderProfile, user_id)
    if profile is None:
        raise NotFound("You have no provider profile yet; create it with PUT.")
    return _with_avatar(session, profile)


def get_provider(session: Session, *, provider_id: uuid.UUID, viewer_id: uuid.UUID) -> ProviderView:
    """An active provider's public profile; inactive or unknown ones are 404, and so is one
    the viewer blocked or who blocked the viewer."""
    profile = session.get(ProviderProfile, provider_id)
    if profile is None or not profile.active or either_blocked(session, viewer_id, provider_id):
        raise NotFound("No such provider.")
    return _with_avatar(session, profile)


@dataclass(frozen=True, slots=True)
class Near:
    lat: float
    lng: float
    radius_km: float


def search(
    session: Session,
    *,
    category: str | None,
    near: Near | None,
    text: str | None,
    cursor: str | None,
    limit: int,
    viewer: uuid.UUID | None = None,
) -> Page[ProviderView]:
    """Active providers matching every filter given: nearest first with a point, else by id.
    Providers the viewer blocked, or who blocked the viewer, are left out (None: nobody's
    blocks apply, for tools)."""
    scope = scope_of("providers", category, near, text)
    params: dict[str, Any] = {"category": category, "n": limit + 1, "viewer": viewer}
    if text:
        # The database lowercases both sides, so they agree on every letter (Greek, Turkish...).
        escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        params["pattern"] = f"%{escaped}%"
    if near is None:
        if cursor is not None:
            (after,) = _cursor_key(cursor, scope, 1)
            params["after_id"] = _uuid(after)
        query = _search_query(category is not None, bool(text), None, cursor is not None)
        rows = [_view(row, None, row.avatar_key) for row in core_rows(session, query, params)]
        return page_of(rows, limit, scope, lambda v: [str(v.id)])

    box, box_params = _bounding_box(near)
    params.update(box_params)
    params.update(
        lat=near.lat, lng=near.lng, cos_lat=math.cos(math.radians(near.lat)), radius=near.radius_km
    )
    if cursor is not None:
        after_distance, after_id = _cursor_key(cursor, scope, 2)
        # bool is an int to Python but not a number to SQL: `distance > true` is a 500.
        if isinstance(after_distance, bool) or not isinstance(after_distance, (int, float)):
            raise invalid_cursor()
        params.update(after_distance=after_distance, after_id=_uuid(after_id))
    query = _search_query(category is not None, bool(text), box, cursor is not None)
    rows = core_rows(session, query, params)
    hits = [_view(row, row.distance_km, row.avatar_key) for row in rows]
    return page_of(hits, limit, scope, lambda v: [v.distance_km, str(v.id)])


def _cursor_key(cursor: str, scope: str, length: int) -> list[Any]:
    """The cursor's sort key; a key of the wrong shape is 422 like any foreign cursor."""
    key = decode_cursor(cursor, scope)
    if len(key) != length:
        raise invalid_cursor()
    return key


def _uuid(value: object) -> uuid.UUID:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise invalid_cursor() from None


_PROFILES = ProviderProfile.__table__
_CATEGORIES = ProviderCategory.__table__
_VIEW_COLUMNS = [
    _PROFILES.c[name]
    for name in (
        "user_id",
        "display_name",
        "bio",
        "categories",
        "lat",
        "lng",
        "service_radius_km",
        "hourly_rate_cents",
        "currency",
        "active",
        "rating_sum",
        "rating_count",
    )
]


@cache
def _search_query(by_category: bool, by_text: bool, box: str | None, paged: bool) -> Select[Any]:
    """The search statement for one shape of filters, built once (building the distance
    expression per request cost more than running it); values are bound at execution."""
    p = _PROFILES
    viewer = bindparam("viewer", type_=p.c.user_id.type)
    # Two anti-joins on the blocks indexes; nothing to scan while the viewer has no blocks.
    avatar = avatar_key_of(p.c.user_id).label("avatar_key")
    query: Select[Any] = select(*_VIEW_COLUMNS, avatar).where(
        p.c.active, no_block_between(viewer, p.c.user_id)
    )
    lat_col, lng_col = p.c.lat, p.c.lng
    if by_category:
        c = _CATEGORIES
        on = and_(c.c.provider_id == p.c.user_id, c.c.category == bindparam("category"))
        query = query.join(c, on)
        lat_col, lng_col = c.c.lat, c.c.lng  # so the (category, lat, lng) index does the narrowing
    if by_text:
        pattern = func.lower(bindparam("pattern", type_=Text))
        query = query.where(func.lower(p.c.display_name + " " + p.c.bio).like(pattern, escape="\\"))
    limit = bindparam("n", type_=Integer)
    after_id = bindparam("after_id", type_=p.c.user_id.type)
    if box is None:
        if paged:
            query = query.where(p.c.user_id > after_id)
        return query.order_by(p.c.user_id).limit(limit)

    distance = _distance_km(lat_col, lng_col).label("distance_km")
    query = query.add_columns(distance).where(
        _box_condition(box, lat_col, lng_col), distance <= bindparam("radius", type_=Float)
    )
    if paged:
        after_distance = bindparam("after_distance", type_=Float)
        query = query.where(
            or_(distance > after_distance, and_(distance == after_distance, p.c.user_id > after_id))
        )
    return query.order_by(distance, p.c.user_id).limit(limit)


def _distance_km(lat_col: Any, lng_col: Any) -> ColumnElement[float]:
    """Haversine great-circle distance from (:lat, :lng), :cos_lat = cos(radians(:lat)), in
    SQL that PostgreSQL and SQLite both run."""
    lat, lng = bindparam("lat", type_=Float), bindparam("lng", type_=Float)
    dlat = func.radians(lat_col - lat) / 2
    dlng = func.radians(lng_col - lng) / 2
    a = func.sin(dlat) * func.sin(dlat) + bindparam("cos_lat", type_=Float) * func.cos(
        func.radians(lat_col)
    ) * func.sin(dlng) * func.sin(dlng)
    # Rounding can push `a` a hair above 1 for antipodal points, and asin(>1) is an error.
    capped = case((a > 1, literal(1.0)), else_=a)
    return 2 * EARTH_RADIUS_KM * func.asin(func.sqrt(capped))


def _bounding_box(near: Near) -> tuple[str, dict[str, float]]:
    """An index-friendly rectangle around the circle (the exact distance filters after it):
    its shape ("lat": latitudes only, "range": one longitude range, "wrap": two, across the
    antimeridian) and its bounds."""
    dlat = near.radius_km / KM_PER_DEGREE_LAT
    south, north = near.lat - dlat, near.lat + dlat
    bounds = {"south": south, "north": north}
    if south <= -90 or north >= 90:
        return "lat", bounds  # the circle covers a pole: every longitude
    dlng = dlat / math.cos(math.radians(max(abs(south), abs(north))))
    if dlng >= 180:
        return "lat", bounds
    west, east = near.lng - dlng, near.lng + dlng
    if west < -180:  # wraps across the antimeridian: two longitude ranges
        return "wrap", {**bounds, "west": west + 360, "east": east}
    if east > 180:
        return "wrap", {**bounds, "west": west, "east": east - 360}
    return "range", {**bounds, "west": west, "east": east}


def _box_condition(box: str, lat_col: Any, lng_col: Any) -> ColumnElement[bool]:
    south, north = bindparam("south", type_=Float), bindparam("north", type_=Float)
    west, east = bindparam("west", type_=Float), bindparam("east", type_=Float)
    lats = and_(lat_col >= south, lat_col <= north)
    if box == "lat":
        return lats
    if box == "wrap":
        return and_(lats, or_(lng_col >= west, lng_col <= east))
    return and_(lats, lng_col >= west, lng_col <= east)


def require_active_provider(session: Session, provider_id: uuid.UUID) -> ProviderProfile:
    """The bookable profile, or 422 naming provider_id."""
    profile = session.scalar(
        select(ProviderProfile)
        .join(User, User.id == ProviderProfile.user_id)
        .where(ProviderProfile.user_id == provider_id, ProviderProfile.active)
    )
    if profile is None:
        raise ValidationFailed(
            "That provider cannot be booked.",
            [FieldError("provider_id", "no active provider with this id", "provider_unknown")],
        )
    return profile
