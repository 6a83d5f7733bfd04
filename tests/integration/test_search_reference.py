"""Provider search against a brute-force Python reference, paged through to the end.

Random providers (seeded: failures reproduce) cluster near the antimeridian, both poles, Null
Island and Berlin, share exact locations (distance ties) and carry names and bios with LIKE
metacharacters. Every random query is paged through with its cursor and must return exactly the
reference's providers in the reference's order: active only; every filter given; nearest first
by (distance, id) with a point, else by id. Distances within 1e-6 km of the radius may fall on
either side of it, and the database's distances may differ from Python's by rounding only.
"""

from __future__ import annotations

import base64
import dataclasses
import itertools
import math
import random
import uuid
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
from sqlalchemy.orm import Session

from models import ProviderProfile, User
from services.base.errors import ValidationFailed
from services.base.pagination import Page
from services.marketplace import providers
from services.marketplace.providers import Near, ProfileInput, ProviderView

EARTH_RADIUS_KM = 6371.0088
BOUNDARY_KM = 1e-6
SEED = 20261127

SLUGS = ["cleaning", "plumbing", "gardening", "home-tutoring", "moving"]
# (lat, lng, spread in degrees): clusters where the bounding box has to wrap or open up.
CENTRES = [
    (52.52, 13.405, 0.3),  # Berlin
    (-17.0, 179.95, 0.4),  # Fiji, across the antimeridian
    (65.5, -179.9, 0.5),  # Chukotka, across it from the other side
    (89.7, 0.0, 0.3),  # the North Pole
    (-89.8, 120.0, 0.2),  # the South Pole
    (0.0, 0.0, 0.2),  # Null Island
]
# Non-ASCII letters only in lower case: how the database lowers Ó depends on its locale.
FIRST = ["Sam", "ANNA", "jo", "Ana-Sofía", "Zoë", "Li", "Mateo", "o'Neil", "Kai"]
LAST = ["Novak", "müller", "Smith", "Rossi", "de la Cruz", "Tanaka", "øberg"]
WORDS = [
    "flats", "offices", "Tidy", "FAST", "plumber", "garden", "café", "müller", "100%",
    "snake_case", "back\\slash", "50%_off", "under_score", "evenings", "weekends", "pets",
    "ovens", "Windows", "tiles", "ladders", "quiet", "bilingual", "c'est", "naïve",
]  # fmt: skip
SPECIAL_QUERIES = ["%", "_", "\\", "0%", "%_", "e_c", "k\\s", " ", "zzzq", "'", "100% "]


@dataclass(frozen=True)
class Ref:
    id: uuid.UUID
    display_name: str
    bio: str
    categories: frozenset[str]
    lat: float
    lng: float
    active: bool


def haversine_km(lat1: float, lng1: float, lat2: float, lng2: float) -> float:
    dlat = math.radians(lat2 - lat1) / 2
    dlng = math.radians(lng2 - lng1) / 2
    a = (
        math.sin(dlat) ** 2
        + math.cos(math.radians(lat1)) * math.cos(math.radians(lat2)) * math.sin(dlng) ** 2
    )
    return 2 * EARTH_RADIUS_KM * math.asin(math.sqrt(min(a, 1.0)))


def _wrap_lng(lng: float) -> float:
    while lng > 180:
        lng -= 360
    while lng < -180:
        lng += 360
    return lng


def _location(rng: random.Random, taken: list[tuple[float, float]]) -> tuple[float, float]:
    roll = rng.random()
    if taken and roll < 0.1:
        return rng.choice(taken)  # the same spot as someone else: a distance tie
    if roll < 0.15:
        return rng.choice([90.0, -90.0, 0.0]), rng.choice([180.0, -180.0, 0.0])
    if roll < 0.8:
        lat0, lng0, spread = rng.choice(CENTRES)
        lat = max(-90.0, min(90.0, rng.gauss(lat0, spread)))
        stretch = max(math.cos(math.radians(lat)), 0.05)
        return lat, _wrap_lng(rng.gauss(lng0, spread / stretch))
    return math.degrees(math.asin(rng.uniform(-1, 1))), rng.uniform(-180, 180)


def _case_shuffled(rng: random.Random, text: str) -> str:
    return "".join(c.upper() if c.isascii() and rng.random() < 0.5 else c for c in text)


def seed_providers(
    session: Session,
    rng: random.Random,
    count: int,
    at: list[tuple[float, float]] | None = None,
) -> list[Ref]:
    """`count` providers (`at` these places) through the service, so category rows are its own."""
    users = [User(cognito_sub=f"ref-{uuid.uuid4().hex}", roles=["providers"]) for _ in range(count)]
    session.add_all(users)
    session.commit()
    refs: list[Ref] = []
    taken: list[tuple[float, float]] = []
    for user in users:
        lat, lng = at[len(taken)] if at else _location(rng, taken)
        taken.append((lat, lng))
        name = f"{rng.choice(FIRST)} {rng.choice(LAST)}"
        bio = " ".join(rng.choices(WORDS, k=rng.randint(0, 7)))
        categories = rng.sample(SLUGS, rng.randint(1, 3))
        data = ProfileInput(name, bio, categories, lat, lng, 10.0, 2500, "EUR")
        providers.upsert_profile(session, user_id=user.id, data=data)
        refs.append(Ref(user.id, name, bio, frozenset(categories), lat, lng, True))
    # Providers who lost the role stay in the tables but must never be found.
    inactive = set(rng.sample(range(count), count // 8))
    for i in inactive:
        session.get_one(ProviderProfile, refs[i].id).active = False
        refs[i] = dataclasses.replace(refs[i], active=False)
    session.commit()
    return refs


@dataclass(frozen=True)
class Query:
    category: str | None
    near: Near | None
    text: str | None
    limit: int


def random_query(rng: random.Random, refs: list[Ref]) -> Query:
    category = rng.choice([None, None, *SLUGS, "nobody-does-this"])
    near = None
    if rng.random() < 0.75:
        roll = rng.random()
        if roll < 0.4:
            anchor = rng.choice(refs)
            lat, lng = anchor.lat, anchor.lng
        elif roll < 0.8:
            lat, lng, _ = rng.choice(CENTRES)
        else:
            lat, lng = math.degrees(math.asin(rng.uniform(-1, 1))), rng.uniform(-180, 180)
        radius = rng.choice([0.05, 1.0, 5.0, 25.0, 60.0, 150.0, 500.0, 3000.0, 20100.0])
        if rng.random() < 0.15:  # exactly on someone: the boundary case
            other = rng.choice(refs)
            radius = max(haversine_km(lat, lng, other.lat, other.lng), 0.001)
        near = Near(lat, lng, radius)
    text = None
    roll = rng.random()
    if roll < 0.2:
        text = _case_shuffled(rng, rng.choice(WORDS))
    elif roll < 0.4:
        source = rng.choice(refs)
        haystack = f"{source.display_name} {source.bio}"  # may span the name-bio join
        start = rng.randrange(len(haystack))
        text = _case_shuffled(rng, haystack[start : start + rng.randint(1, 8)])
    elif roll < 0.5:
        text = rng.choice(SPECIAL_QUERIES)
    limit = rng.choice([1, 2, 3, 5, 10, 20, 50, 100])
    return Query(category, near, text, limit)


def expected(refs: list[Ref], query: Query) -> tuple[dict[uuid.UUID, float | None], set[uuid.UUID]]:
    """Providers that must be found (id -> distance), and those on the boundary that may be."""
    must: dict[uuid.UUID, float | None] = {}
    maybe: set[uuid.UUID] = set()
    needle = query.text.lower() if query.text else None
    for ref in refs:
        if not ref.active or (query.category and query.category not in ref.categories):
            continue
        if needle is not None and needle not in f"{ref.display_name} {ref.bio}".lower():
            continue
        if query.near is None:
            must[ref.id] = None
            continue
        km = haversine_km(query.near.lat, query.near.lng, ref.lat, ref.lng)
        if abs(km - query.near.radius_km) <= BOUNDARY_KM:
            maybe.add(ref.id)
        elif km < query.near.radius_km:
            must[ref.id] = km
    return must, maybe


def page_through(session: Session, query: Query) -> list[ProviderView]:
    found: list[ProviderView] = []
    cursor: str | None = None
    for _ in range(10_000):
        page = providers.search(
            session,
            category=query.category,
            near=query.near,
            text=query.text,
            cursor=cursor,
            limit=query.limit,
        )
        assert len(page.items) <= query.limit
        if page.next_cursor is not None:
            assert len(page.items) == query.limit, "a page with a next_cursor must be full"
        found.extend(page.items)
        if page.next_cursor is None:
            return found
        cursor = page.next_cursor
    raise AssertionError("pagination never ended")


def check(refs: list[Ref], query: Query, found: list[ProviderView]) -> None:
    must, maybe = expected(refs, query)
    ids = [v.id for v in found]
    assert len(set(ids)) == len(ids), "a provider came back twice"
    assert set(must) <= set(ids), f"missing {set(must) - set(ids)}"
    assert set(ids) <= set(must) | maybe, f"unexpected {set(ids) - set(must) - maybe}"
    if query.near is None:
        assert ids == sorted(ids)
        assert all(v.distance_km is None for v in found)
        return
    by_id = {r.id: r for r in refs}
    keys = [(v.distance_km, v.id) for v in found]
    assert all(a < b for a, b in itertools.pairwise(keys)), "not (distance, id) order"
    for v in found:
        ref = by_id[v.id]
        km = haversine_km(query.near.lat, query.near.lng, ref.lat, ref.lng)
        assert v.distance_km is not None
        assert math.isclose(v.distance_km, km, rel_tol=1e-9, abs_tol=BOUNDARY_KM)
        assert (v.lat, v.lng, v.bio) == (ref.lat, ref.lng, ref.bio)


@pytest.fixture
def refs(session: Session) -> list[Ref]:
    return seed_providers(session, random.Random(SEED), 320)


def test_same_earth_radius_as_the_service() -> None:
    assert providers.EARTH_RADIUS_KM == EARTH_RADIUS_KM


def test_random_queries_match_the_reference(session: Session, refs: list[Ref]) -> None:
    rng = random.Random(SEED + 1)
    seen = {"point": 0, "nonempty": 0, "multipage": 0, "boundary": 0}
    for n in range(300):
        query = random_query(rng, refs)
        found = page_through(session, query)
        try:
            check(refs, query, found)
        except AssertionError as exc:
            raise AssertionError(f"query #{n} {query}: {exc}") from None
        seen["point"] += query.near is not None
        seen["nonempty"] += bool(found)
        seen["multipage"] += len(found) > query.limit
        seen["boundary"] += bool(expected(refs, query)[1])
    # The random queries really exercise what they are meant to.
    assert seen["point"] > 150 and seen["nonempty"] > 150, seen
    assert seen["multipage"] > 70 and seen["boundary"] > 5, seen


CIRCLES = [
    Near(-17.0, 179.95, 80.0),  # the box wraps west of the antimeridian
    Near(-17.0, -179.9, 80.0),  # ... and east of it
    Near(65.5, 180.0, 150.0),
    Near(89.7, 0.0, 100.0),  # the circle covers the North Pole: every longitude
    Near(-89.8, -60.0, 60.0),  # ... the South Pole, from the other side
    Near(0.0, 0.0, 20100.0),  # more than half the circumference: the whole Earth
]


def test_wrapping_and_polar_circles(session: Session, refs: list[Ref]) -> None:
    for near in CIRCLES:
        for category in (None, "cleaning"):
            query = Query(category, near, None, 4)
            found = page_through(session, query)
            check(refs, query, found)
            assert len(found) > 4, f"{near}, {category}: the cluster should fill two pages"


def destination(lat: float, lng: float, km: float, bearing: float) -> tuple[float, float]:
    """The point `km` from (lat, lng) heading `bearing` degrees from north, on the sphere."""
    d, phi, theta = km / EARTH_RADIUS_KM, math.radians(lat), math.radians(bearing)
    lat2 = math.asin(math.sin(phi) * math.cos(d) + math.cos(phi) * math.sin(d) * math.cos(theta))
    dlng = math.atan2(
        math.sin(theta) * math.sin(d) * math.cos(phi),
        math.cos(d) - math.sin(phi) * math.sin(lat2),
    )
    return math.degrees(lat2), _wrap_lng(lng + math.degrees(dlng))


RINGS = [
    Near(70.0, 25.0, 500.0),  # far north: the circle is widest well north of its centre
    Near(-17.0, 179.95, 300.0),  # across the antimeridian
    Near(84.0, -170.0, 600.0),  # wider than 180 degrees of longitude, short of the pole
    Near(-3.0, -60.0, 250.0),
]


def test_rings_just_inside_are_found_and_just_outside_are_not(session: Session) -> None:
    """Providers every 5 degrees of bearing, 0.01% inside and outside each circle."""
    places = []
    for ring in RINGS:
        for bearing in range(0, 360, 5):
            for factor in (0.9999, 1.0001):
                places.append(destination(ring.lat, ring.lng, ring.radius_km * factor, bearing))
    refs = seed_providers(session, random.Random(SEED + 3), len(places), at=places)
    for ring in RINGS:
        for category in (None, "cleaning"):
            query = Query(category, ring, None, 100)
            found = page_through(session, query)
            check(refs, query, found)
            assert len(found) > 10
            assert all(r.distance_km and r.distance_km < ring.radius_km for r in found)


def test_pagination_boundaries(session: Session, refs: list[Ref]) -> None:
    for near in (None, Near(52.52, 13.405, 100.0), Near(-17.0, 179.95, 100.0)):
        # limit=1: one provider a page, all of them in the end.
        query = Query("plumbing", near, None, 1)
        everything = page_through(session, query)
        check(refs, query, everything)
        total = len(everything)
        assert total > 3

        def search(limit: int, cursor: str | None = None, near: Near | None = near) -> Page[Any]:
            return providers.search(
                session, category="plumbing", near=near, text=None, cursor=cursor, limit=limit
            )

        exact = search(total)  # the limit is exactly the count: nothing after it
        assert [v.id for v in exact.items] == [v.id for v in everything]
        assert exact.next_cursor is None
        one_short = search(total - 1)
        assert one_short.next_cursor is not None
        last = search(total - 1, one_short.next_cursor)
        assert [v.id for v in last.items] == [everything[-1].id] and last.next_cursor is None
        half = total // 2  # two exactly full pages (and one odd one out, if any)
        first = search(half)
        second = search(half, first.next_cursor)
        assert len(second.items) == half
        assert (second.next_cursor is None) == (total == 2 * half)
        assert [v.id for v in first.items + second.items] == [v.id for v in everything[: 2 * half]]


def _recoded(cursor: str, key: list[object]) -> str:
    """A cursor with the same scope (so it passes the fingerprint check) but another key."""
    data = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    data["k"] = key
    return base64.urlsafe_b64encode(orjson.dumps(data)).rstrip(b"=").decode()


def test_malformed_keys_of_a_matching_scope_are_invalid(session: Session, refs: list[Ref]) -> None:
    some_id = str(refs[0].id)
    for near in (None, Near(52.52, 13.405, 100.0)):

        def search(cursor: str | None, near: Near | None = near) -> Page[Any]:
            return providers.search(
                session, category="cleaning", near=near, text=None, cursor=cursor, limit=2
            )

        cursor = search(None).next_cursor
        assert cursor is not None
        for key in ([], [some_id] * 3, [True, some_id], ["far", some_id], [None], [1.5, None]):
            with pytest.raises(ValidationFailed) as caught:
                search(_recoded(cursor, key))
            assert [e.field for e in caught.value.errors] == ["cursor"], (near, key)


# ---------------------------------------------------------------- through HTTP


@pytest.fixture
def few(session: Session) -> list[Ref]:
    return seed_providers(session, random.Random(SEED + 2), 60)


def _cursor_error_fields(response: Any) -> list[str]:
    assert response.status_code == 422, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    return [e["field"] for e in response.get_json()["errors"]]


def test_garbage_and_foreign_cursors_are_422(few: list[Ref], actors: Any) -> None:
    consumer = actors("consumer")
    first = consumer.get("/v1/providers?limit=2").get_json()
    assert first["next_cursor"]
    some_id = str(few[0].id)
    garbage = [
        "garbage",
        "%%%",
        base64.urlsafe_b64encode(b"not json").decode(),
        base64.urlsafe_b64encode(b"[1, 2]").decode(),
        base64.urlsafe_b64encode(orjson.dumps({"s": "0" * 12, "k": [some_id]})).decode(),
        _recoded(first["next_cursor"], []),
        _recoded(first["next_cursor"], ["not-a-uuid"]),
    ]
    for cursor in garbage:
        response = consumer.get("/v1/providers", query_string={"cursor": cursor})
        assert _cursor_error_fields(response) == ["cursor"], cursor


def test_cursor_reused_with_other_filters_is_422(few: list[Ref], actors: Any) -> None:
    consumer = actors("consumer")
    base = {"lat": -17.0, "lng": 179.95, "radius_km": 100, "q": "e", "limit": 1}
    cursor = consumer.get("/v1/providers", query_string=base).get_json()["next_cursor"]
    assert cursor
    same = consumer.get("/v1/providers", query_string={**base, "cursor": cursor})
    assert same.status_code == 200, same.get_data(as_text=True)
    changes = [
        {"category": "plumbing"},
        {"lat": -17.01},
        {"lng": 179.9},
        {"radius_km": 99},
        {"q": "E"},
        {"q": None},
        {"lat": None, "lng": None, "radius_km": None},
    ]
    for change in changes:
        params = {k: v for k, v in {**base, **change, "cursor": cursor}.items() if v is not None}
        response = consumer.get("/v1/providers", query_string=params)
        assert _cursor_error_fields(response) == ["cursor"], change
