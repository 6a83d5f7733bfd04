"""Provider profiles and provider search (category, distance, text), nearest first."""

from __future__ import annotations

import dataclasses
import math
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, case, delete, func, literal, or_, select
from sqlalchemy.orm import Session

from models import ProviderCategory, ProviderProfile, User
from services.db import transaction
from services.errors import FieldError, NotFound, ValidationFailed
from services.pagination import Page, decode_cursor, invalid_cursor, page_of, scope_of

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


@dataclass(frozen=True, slots=True)
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


def _average(rating_sum: int, rating_count: int) -> float | None:
    return round(rating_sum / rating_count, 2) if rating_count else None


def _view(p: ProviderProfile) -> ProviderView:
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
    )


def upsert_profile(session: Session, *, user_id: uuid.UUID, data: ProfileInput) -> ProviderView:
    """Create or replace the caller's profile; its search rows change in the same transaction."""
    categories = sorted(set(data.categories))
    with transaction(session):
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
        session.execute(delete(ProviderCategory).where(ProviderCategory.provider_id == user_id))
        session.add_all(
            ProviderCategory(provider_id=user_id, category=c, lat=data.lat, lng=data.lng)
            for c in categories
        )
    return _view(profile)


def own_profile(session: Session, *, user_id: uuid.UUID) -> ProviderView:
    profile = session.get(ProviderProfile, user_id)
    if profile is None:
        raise NotFound("You have no provider profile yet; create it with PUT.")
    return _view(profile)


def get_provider(session: Session, *, provider_id: uuid.UUID) -> ProviderView:
    """An active provider's public profile; inactive or unknown ones are 404."""
    profile = session.get(ProviderProfile, provider_id)
    if profile is None or not profile.active:
        raise NotFound("No such provider.")
    return _view(profile)


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
) -> Page[ProviderView]:
    """Active providers matching every filter given: nearest first with a point, else by id."""
    p = ProviderProfile
    scope = scope_of("providers", category, near, text)
    query: Select[Any] = select(p).where(p.active)
    lat_col, lng_col = p.lat, p.lng
    if category is not None:
        c = ProviderCategory
        query = query.join(c, and_(c.provider_id == p.user_id, c.category == category))
        lat_col, lng_col = c.lat, c.lng  # so the (category, lat, lng) index does the narrowing
    if text:
        escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        # The database lowercases both sides, so they agree on every letter (Greek, Turkish...).
        pattern = func.lower(literal(f"%{escaped}%"))
        query = query.where(func.lower(p.display_name + " " + p.bio).like(pattern, escape="\\"))
    if near is None:
        query = query.order_by(p.user_id)
        if cursor is not None:
            (after,) = _cursor_key(cursor, scope, 1)
            query = query.where(p.user_id > _uuid(after))
        rows = [_view(profile) for profile in session.scalars(query.limit(limit + 1))]
        return page_of(rows, limit, scope, lambda v: [str(v.id)])

    distance = _distance_km(near.lat, near.lng, lat_col, lng_col).label("distance_km")
    query = query.add_columns(distance).where(
        _bounding_box(near, lat_col, lng_col), distance <= near.radius_km
    )
    if cursor is not None:
        after_distance, after_id = _cursor_key(cursor, scope, 2)
        # bool is an int to Python but not a number to SQL: `distance > true` is a 500.
        if isinstance(after_distance, bool) or not isinstance(after_distance, (int, float)):
            raise invalid_cursor()
        query = query.where(
            or_(
                distance > after_distance,
                and_(distance == after_distance, p.user_id > _uuid(after_id)),
            )
        )
    query = query.order_by(distance, p.user_id).limit(limit + 1)
    hits: list[ProviderView] = []
    for profile, km in session.execute(query):
        view = _view(profile)
        hits.append(dataclasses.replace(view, distance_km=km))
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


def _distance_km(lat: float, lng: float, lat_col: Any, lng_col: Any) -> ColumnElement[float]:
    """Haversine great-circle distance, in SQL that PostgreSQL and SQLite both run."""
    dlat = func.radians(lat_col - lat) / 2
    dlng = func.radians(lng_col - lng) / 2
    a = func.sin(dlat) * func.sin(dlat) + math.cos(math.radians(lat)) * func.cos(
        func.radians(lat_col)
    ) * func.sin(dlng) * func.sin(dlng)
    # Rounding can push `a` a hair above 1 for antipodal points, and asin(>1) is an error.
    capped = case((a > 1, literal(1.0)), else_=a)
    return 2 * EARTH_RADIUS_KM * func.asin(func.sqrt(capped))


def _bounding_box(near: Near, lat_col: Any, lng_col: Any) -> ColumnElement[bool]:
    """An index-friendly rectangle around the circle; the exact distance filters after it."""
    dlat = near.radius_km / KM_PER_DEGREE_LAT
    south, north = near.lat - dlat, near.lat + dlat
    box = and_(lat_col >= south, lat_col <= north)
    if south <= -90 or north >= 90:
        return box  # the circle covers a pole: every longitude
    dlng = dlat / math.cos(math.radians(max(abs(south), abs(north))))
    if dlng >= 180:
        return box
    west, east = near.lng - dlng, near.lng + dlng
    if west < -180:  # wraps across the antimeridian: two longitude ranges
        return and_(box, or_(lng_col >= west + 360, lng_col <= east))
    if east > 180:
        return and_(box, or_(lng_col >= west, lng_col <= east - 360))
    return and_(box, lng_col >= west, lng_col <= east)


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
