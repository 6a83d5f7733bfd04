"""EXPLAIN (ANALYZE, BUFFERS) of the SQL that services.marketplace.providers.search() sends,
at 100k providers.

    .venv/bin/python -m bench.search_explain [--providers N] [--runs N] [--sql] [--quiet]

Creates a throwaway PostgreSQL database next to TEST_DATABASE_URL (tests/support/database.py),
migrates it to head, COPYs in N active providers (users, provider_profiles, provider_categories)
spread over Europe with denser clusters around ~30 cities, VACUUM ANALYZEs, then for each search
case calls the real service with a session and captures the statement psycopg2 sends (mogrified:
the literal SQL the server receives). Each statement runs once to warm the cache, then
`EXPLAIN (ANALYZE, BUFFERS)` --runs times; the median execution time is reported. The database
is dropped at the end.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import random
import re
import statistics
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session

from services.base.pagination import Page
from services.marketplace import providers
from services.marketplace.providers import Near
from tests.support.database import fresh_database

TARGET_MS = 50.0
RARE_WORD = "harpsichord"  # in ~1% of bios
COMMON_WORD = "weekend"  # in ~10% of bios (an extra case)
PLUMBING_WORD = "boiler"  # in ~30% of plumbers' bios only (and no babysitter is a plumber)

# (name, lat, lng, weight): weights roughly follow metro population.
CITIES = [
    ("London", 51.5074, -0.1278, 9),
    ("Paris", 48.8566, 2.3522, 8),
    ("Madrid", 40.4168, -3.7038, 6),
    ("Berlin", 52.5200, 13.4050, 6),
    ("Rome", 41.9028, 12.4964, 5),
    ("Barcelona", 41.3874, 2.1686, 5),
    ("Milan", 45.4642, 9.1900, 4),
    ("Athens", 37.9838, 23.7275, 3),
    ("Hamburg", 53.5511, 9.9937, 3),
    ("Vienna", 48.2082, 16.3738, 3),
    ("Warsaw", 52.2297, 21.0122, 3),
    ("Budapest", 47.4979, 19.0402, 3),
    ("Munich", 48.1351, 11.5820, 3),
    ("Bucharest", 44.4268, 26.1025, 3),
    ("Amsterdam", 52.3676, 4.9041, 3),
    ("Brussels", 50.8503, 4.3517, 2),
    ("Stockholm", 59.3293, 18.0686, 2),
    ("Prague", 50.0755, 14.4378, 2),
    ("Copenhagen", 55.6761, 12.5683, 2),
    ("Lisbon", 38.7223, -9.1393, 2),
    ("Dublin", 53.3498, -6.2603, 2),
    ("Manchester", 53.4808, -2.2426, 2),
    ("Lyon", 45.7640, 4.8357, 2),
    ("Cologne", 50.9375, 6.9603, 2),
    ("Naples", 40.8518, 14.2681, 2),
    ("Frankfurt", 50.1109, 8.6821, 2),
    ("Zurich", 47.3769, 8.5417, 1),
    ("Oslo", 59.9139, 10.7522, 1),
    ("Helsinki", 60.1699, 24.9384, 1),
    ("Krakow", 50.0647, 19.9450, 1),
    ("Porto", 41.1579, -8.6291, 1),
]
CLUSTERED_SHARE = 0.8  # the rest is spread uniformly over Europe's bounding box
EUROPE = (36.0, 70.0, -10.0, 40.0)  # south, north, west, east

# (slug, weight): a provider has 1-3 distinct ones; "cleaning" ends up on ~30% of providers.
CATEGORIES = [
    ("cleaning", 20),
    ("handyman", 12),
    ("plumbing", 8),
    ("gardening", 8),
    ("electrical", 7),
    ("moving", 6),
    ("painting", 6),
    ("home-tutoring", 5),
    ("babysitting", 5),
    ("pet-sitting", 5),
    ("dog-walking", 5),
    ("personal-training", 4),
    ("photography", 3),
    ("hairdressing", 3),
    ("massage", 3),
    ("computer-repair", 3),
    ("car-repair", 3),
    ("cooking", 2),
    ("music-lessons", 2),
    ("translation", 2),
    ("chimney-sweeping", 0.1),  # rare: ~0.1% of providers
]


def _words(text: str) -> list[str]:
    return text.split()


FIRST = _words(
    "Sam Alex Maria Jonas Lena Luca Sofia Noah Emma Mateo Chiara Piotr Anna Lars Ingrid Tomas "
    "Elena Hugo Clara Marco Ines Jan Eva Karim Nora Oscar Zofia Felix Marta Aoife"
)
LAST = _words(
    "Novak Rossi Muller Garcia Dubois Jansen Kowalski Nielsen Silva Murphy Horvat Papadopoulos "
    "Schmidt Lopez Moreau Bianchi Andersson Popescu Fischer Costa Weber Martin Kovacs Svoboda"
)
ADJECTIVES = _words("Spotless Handy Speedy Friendly Reliable Tidy Quick Careful Honest Bright")
VOCABULARY = _words(
    "flats offices houses gardens windows carpets ovens fridges bathrooms kitchens stairs "
    "repairs fitting assembly furniture shelves doors locks tiles floors walls ceilings "
    "experienced insured certified friendly reliable punctual careful tidy fast affordable "
    "years clients references available evenings mornings short notice eco products "
    "pets children seniors students families landlords agencies small large jobs projects "
    "english german french spanish italian polish dutch languages spoken fluent basic "
    "tools van parking included extra charge quote free first visit regular one-off deep "
    "move-in move-out end-of-tenancy after-party renovation dust allergy vegan"
)


@dataclass(frozen=True)
class Case:
    name: str
    kwargs: dict[str, Any]
    extra: bool = False  # beyond the brief's list: reported, but not part of the exit status
    continues: str | None = None  # the case whose next_cursor this one pages on with


BERLIN_10, BERLIN_50 = Near(52.5200, 13.4050, 10.0), Near(52.5200, 13.4050, 50.0)
LONDON = (51.5074, -0.1278)
CASES = [
    Case("category + point 10 km", {"category": "cleaning", "near": BERLIN_10}),
    Case("category + point 50 km", {"category": "cleaning", "near": BERLIN_50}),
    Case("point 10 km (London, densest)", {"near": Near(*LONDON, 10.0)}),
    Case(f"q={RARE_WORD} (~1%)", {"text": RARE_WORD}),
    Case(f"category + q={RARE_WORD}", {"category": "cleaning", "text": RARE_WORD}),
    Case(
        "page 2 of category + point 10 km",
        {"category": "cleaning", "near": BERLIN_10},
        continues="category + point 10 km",
    ),
    Case("no filters", {}),
    Case("point 50 km (London)", {"near": Near(*LONDON, 50.0)}, extra=True),
    Case("point 500 km (London, the API's maximum)", {"near": Near(*LONDON, 500.0)}, extra=True),
    Case("category only (~30%)", {"category": "cleaning"}, extra=True),
    Case("category only (~0.1%)", {"category": "chimney-sweeping"}, extra=True),
    Case(f"q={COMMON_WORD} (~10%)", {"text": COMMON_WORD}, extra=True),
    Case("q=zzzz (no match)", {"text": "zzzz"}, extra=True),
    Case("q=zz (2 letters: no trigram; no match)", {"text": "zz"}, extra=True),
    Case("category + q=zz", {"category": "cleaning", "text": "zz"}, extra=True),
    Case("point 50 km + q=zz", {"near": BERLIN_50, "text": "zz"}, extra=True),
    Case(
        f"category=plumbing + q={PLUMBING_WORD}",
        {"category": "plumbing", "text": PLUMBING_WORD},
        extra=True,
    ),
    Case(
        f"category=babysitting + q={PLUMBING_WORD} (never together)",
        {"category": "babysitting", "text": PLUMBING_WORD},
        extra=True,
    ),
    Case(
        f"category + point 50 km + q={RARE_WORD}",
        {"category": "cleaning", "near": BERLIN_50, "text": RARE_WORD},
        extra=True,
    ),
]


# ---------------------------------------------------------------- data


def _weighted(rng: random.Random, pairs: list[tuple[Any, float]]) -> Callable[[], Any]:
    values = [v for v, _ in pairs]
    cumulative = []
    total = 0.0
    for _, w in pairs:
        total += w
        cumulative.append(total)
    return lambda: rng.choices(values, cum_weights=cumulative)[0]


def _location(rng: random.Random, pick_city: Callable[[], Any]) -> tuple[float, float]:
    south, north, west, east = EUROPE
    if rng.random() >= CLUSTERED_SHARE:
        return rng.uniform(south, north), rng.uniform(west, east)
    _name, lat, lng, weight = pick_city()
    sigma_km = 6 + 2 * weight  # bigger cities sprawl further
    if rng.random() < 0.15:
        sigma_km *= 3  # commuter towns around the city
    dlat = rng.gauss(0, sigma_km / 111.2)
    dlng = rng.gauss(0, sigma_km / (111.2 * math.cos(math.radians(lat))))
    return max(-90.0, min(90.0, lat + dlat)), max(-180.0, min(180.0, lng + dlng))


def _bio(rng: random.Random, plumber: bool) -> str:
    words = rng.choices(VOCABULARY, k=rng.randint(6, 24))
    if plumber and rng.random() < 0.3:
        words.insert(rng.randrange(len(words) + 1), PLUMBING_WORD)
    if rng.random() < 0.01:
        words.insert(rng.randrange(len(words) + 1), RARE_WORD)
    if rng.random() < 0.10:
        words.insert(rng.randrange(len(words) + 1), COMMON_WORD)
    return " ".join(words).capitalize() + "."


def _name(rng: random.Random) -> str:
    if rng.random() < 0.3:
        return f"{rng.choice(ADJECTIVES)} {rng.choice(FIRST)}"
    return f"{rng.choice(FIRST)} {rng.choice(LAST)}"


def _copy(cursor: Any, table: str, columns: list[str], rows: Iterator[tuple[Any, ...]]) -> None:
    """COPY rows in text format (values here never hold tabs, newlines or backslashes)."""
    buffer = io.StringIO()
    for row in rows:
        buffer.write("\t".join(str(v) for v in row))
        buffer.write("\n")
    buffer.seek(0)
    cursor.copy_expert(f"COPY {table} ({', '.join(columns)}) FROM STDIN", buffer)


def seed(engine: Engine, count: int, rng: random.Random) -> dict[str, int]:
    """COPY `count` active providers with their users and category rows; returns row counts."""
    pick_city = _weighted(rng, [(c, c[3]) for c in CITIES])
    pick_category = _weighted(rng, CATEGORIES)
    now = datetime.now(UTC).isoformat()
    users, profiles, categories = [], [], []
    for i in range(count):
        user_id = uuid.UUID(int=rng.getrandbits(128), version=4)
        lat, lng = _location(rng, pick_city)
        wanted = rng.choices((1, 2, 3), weights=(50, 35, 15))[0]
        slugs: set[str] = set()
        while len(slugs) < wanted:
            slugs.add(pick_category())
        if {"plumbing", "babysitting"} <= slugs:
            slugs.discard("babysitting")  # so category + PLUMBING_WORD can find nothing
        chosen = sorted(slugs)
        users.append((user_id, f"bench-{i}", '["providers"]', "{}", now, now))
        profiles.append(
            (
                user_id,
                _name(rng),
                _bio(rng, "plumbing" in slugs),
                json.dumps(chosen),
                repr(lat),
                repr(lng),
                rng.choice((5, 10, 15, 25, 50)),
                rng.randrange(1500, 9000, 50),
                "EUR",
                "t",
                0,
                0,
                now,
                now,
            )
        )
        categories.extend((user_id, slug, repr(lat), repr(lng)) for slug in chosen)
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        _copy(
            cursor,
            "users",
            ["id", "cognito_sub", "roles", "role_revocations", "created_at", "updated_at"],
            iter(users),
        )
        _copy(
            cursor,
            "provider_profiles",
            [
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
                "created_at",
                "updated_at",
            ],
            iter(profiles),
        )
        _copy(
            cursor,
            "provider_categories",
            ["provider_id", "category", "lat", "lng"],
            iter(categories),
        )
        # Every provider has an avatar, so a search page shows (and signs) 20 faces. The ids
        # come from the user's, not from rng: the providers stay the same as without them.
        avatars = [
            (
                avatar_id := uuid.uuid5(user_id, "avatar"),
                user_id,
                "avatar",
                "image/jpeg",
                48_000,
                f"users/{user_id}/avatar/{avatar_id}",
                "ready",
                now,
                now,
            )
            for user_id, *_ in users
        ]
        _copy(
            cursor,
            "uploads",
            [
                "id",
                "owner_id",
                "purpose",
                "content_type",
                "size_bytes",
                "key",
                "status",
                "created_at",
                "completed_at",
            ],
            iter(avatars),
        )
        cursor.execute(
            "UPDATE users SET avatar_upload_id = uploads.id FROM uploads"
            " WHERE uploads.owner_id = users.id AND uploads.purpose = 'avatar'"
        )
        raw.commit()
    finally:
        raw.close()
    return {
        "users": len(users),
        "provider_profiles": len(profiles),
        "categories": len(categories),
        "avatars": len(avatars),
    }


def vacuum_analyze(engine: Engine) -> None:
    """What autovacuum would have done by now: statistics, visibility map, GIN pending list."""
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        for table in ("users", "provider_profiles", "provider_categories", "uploads"):
            connection.exec_driver_sql(f"VACUUM (ANALYZE) {table}")


# ---------------------------------------------------------------- capture and explain


@contextmanager
def captured_statements(engine: Engine) -> Iterator[list[str]]:
    """Every statement the engine sends, as the literal SQL the server receives."""
    statements: list[str] = []

    def capture(
        conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool
    ) -> None:
        statements.append(cursor.mogrify(statement, parameters).decode())

    event.listen(engine, "before_cursor_execute", capture)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", capture)


def search_sql(engine: Engine, **kwargs: Any) -> tuple[str, Page[Any]]:
    """Call the real service and return the one SELECT it ran, with its page."""
    # A signed-in viewer, as every request has: the statement carries its block anti-joins.
    arguments = {"category": None, "near": None, "text": None, "cursor": None, "limit": 20}
    arguments.update(viewer=uuid.uuid4(), **kwargs)
    with captured_statements(engine) as statements, Session(engine) as session:
        page = providers.search(session, **arguments)
        session.rollback()
    selects = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
    if len(selects) != 1:
        raise RuntimeError(f"expected one SELECT from search(), got {len(selects)}")
    return selects[0], page


@dataclass
class Result:
    name: str
    rows: int
    execution_ms: list[float]
    planning_ms: float
    access: str
    plan: list[str]

    @property
    def median(self) -> float:
        return statistics.median(self.execution_ms)


_ACCESS = re.compile(
    r"(Seq Scan on \w+|Index Only Scan using \w+|Index Scan using \w+|Bitmap Index Scan on \w+)"
)


def explain(engine: Engine, name: str, sql: str, rows: int, runs: int) -> Result:
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        cursor.execute(sql)  # warm the cache: the service would have just run it anyway
        cursor.fetchall()
        times, plan, planning = [], [], 0.0
        for _ in range(runs):
            cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql)
            plan = [line for (line,) in cursor.fetchall()]
            for line in plan:
                if line.startswith("Execution Time:"):
                    times.append(float(line.split()[2]))
                elif line.startswith("Planning Time:"):
                    planning = float(line.split()[2])
        raw.rollback()
    finally:
        raw.close()
    seen: list[str] = []
    for line in plan:
        for match in _ACCESS.findall(line):
            if match not in seen:
                seen.append(match)
    access = ", ".join(
        s.replace("Index Only Scan using", "IOS")
        .replace("Bitmap Index Scan on", "Bitmap")
        .replace("Index Scan using", "IS")
        .replace("Seq Scan on", "Seq")
        for s in seen
    )
    return Result(name, rows, times, planning, access, plan)


def _short(sql: str, width: int = 400) -> str:
    flat = " ".join(sql.split())
    return flat if len(flat) <= width else flat[:width] + " ..."


def run(count: int, runs: int, show_sql: bool, quiet: bool) -> int:
    rng = random.Random(20261127)  # noqa: S311 (test data, not secrets)
    with fresh_database("trellis_bench") as url:
        engine = create_engine(url)
        try:
            started = time.perf_counter()
            counts = seed(engine, count, rng)
            seeded = time.perf_counter() - started
            vacuum_analyze(engine)
            analysed = time.perf_counter() - started - seeded
            print(
                f"seeded {counts} in {seeded:.1f} s; VACUUM ANALYZE {analysed:.1f} s "
                f"(database {url.rsplit('/', 1)[-1]})\n"
            )
            results: list[tuple[Case, Result]] = []
            cursors: dict[str, str | None] = {}
            for case in CASES:
                kwargs = dict(case.kwargs)
                if case.continues is not None:
                    kwargs["cursor"] = cursors[case.continues]
                    if kwargs["cursor"] is None:
                        raise RuntimeError(f"{case.continues!r} has one page only")
                sql, page = search_sql(engine, **kwargs)
                cursors[case.name] = page.next_cursor
                result = explain(engine, case.name, sql, len(page.items), runs)
                results.append((case, result))
                if not quiet:
                    print(f"=== {case.name}: {result.median:.2f} ms (median of {runs})")
                    print(sql if show_sql else _short(sql))
                    print("\n".join(result.plan))
                    print()
        finally:
            engine.dispose()
    print(f"{'case':<48} {'rows':>4} {'exec ms':>8} {'min':>7} {'plan ms':>7}  access path")
    for extra in (False, True):
        if extra:
            print("extra cases, beyond the brief:")
        for case, r in results:
            if case.extra == extra:
                flag = "" if r.median < TARGET_MS else "  <-- over target"
                print(
                    f"{case.name:<48} {r.rows:>4} {r.median:>8.2f} {min(r.execution_ms):>7.2f} "
                    f"{r.planning_ms:>7.2f}  {r.access}{flag}"
                )
    slow = [c.name for c, r in results if r.median >= TARGET_MS and not c.extra]
    slow_extra = [c.name for c, r in results if r.median >= TARGET_MS and c.extra]
    print(f"\ntarget: under {TARGET_MS:.0f} ms; over: {slow or 'none'}; extra over: {slow_extra}")
    return 1 if slow else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--providers", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=5, help="EXPLAIN ANALYZE runs per case")
    parser.add_argument("--sql", action="store_true", help="print each statement in full")
    parser.add_argument("--quiet", action="store_true", help="the summary table only")
    args = parser.parse_args(argv)
    return run(args.providers, args.runs, args.sql, args.quiet)


if __name__ == "__main__":
    sys.exit(main())
