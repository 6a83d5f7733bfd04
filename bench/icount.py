"""Instructions per request, counted by valgrind: a measure other tenants cannot disturb.

    .venv/bin/python -m bench.icount /tmp/before "/v1/bookings?limit=20"
    .venv/bin/python -m bench.icount /tmp/after "/v1/bookings?limit=20" DB_PREPARED_STATEMENTS=false
    .venv/bin/python -m bench.icount --bookings 21 /tmp/after "/v1/bookings?limit=20"
    .venv/bin/python -m bench.icount --bookings 21 /tmp/after "/v1/bookings/{booking}/messages"
    .venv/bin/python -m bench.icount --bookings 21 /tmp/after "POST /v1/bookings/{booking}/messages"

Runs a source tree of Trellis (a `git archive` of a commit, or this checkout) in process
under callgrind: a fresh migrated PostgreSQL database next to TEST_DATABASE_URL, the rate
limiter on Redis at 127.0.0.1:6379, one signed-in consumer (with `--bookings N`, N
bookings of theirs with one provider, as scenario (a)'s callers have: its page of 20 and
the 21st that says there is more; N providers in all around Berlin; `{booking}` in the
path is the newest, which has three messages; a synced dataset `settings` of five
records), Flask's test client. `POST path` posts messages there instead, as scenario (d)
does. Counting is switched on only around REQUESTS requests, after WARMUP of them, so
imports, start-up and the first connections are left out, and so is the cyclic garbage
collector.
Prints the instructions per request. Needs valgrind (callgrind_control). SETTING=VALUE
arguments override settings.
"""

# ruff: noqa: S603 - a local tool: fixed commands (valgrind, callgrind_control)
from __future__ import annotations

import gc
import os
import re
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

WARMUP = 50
REQUESTS = 30


def main(argv: list[str]) -> int:
    bookings = "0"
    if argv[:1] == ["--bookings"] and len(argv) > 1:
        bookings, argv = argv[1], argv[2:]
    if len(argv) < 2 or not shutil.which("valgrind") or not bookings.isdigit():
        print(__doc__)
        return 2
    tree, path, *overrides = argv
    out = Path(tempfile.mkdtemp(prefix="trellis-icount-"))
    command = [
        "valgrind",
        "--tool=callgrind",
        "--instr-atstart=no",
        f"--callgrind-out-file={out / 'callgrind.out'}",
        sys.executable,
        "-m",
        "bench.icount",
        "--measure",
        bookings,
        str(Path(tree).resolve()),
        path,
        *overrides,
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    found = re.search(r"Collected : (\d+)", result.stderr)
    if result.returncode != 0 or found is None:
        print(result.stdout[-2000:], result.stderr[-2000:], sep="\n")
        return 1
    total = int(found.group(1))
    with_bookings = f" ({bookings} bookings)" if bookings != "0" else ""
    print(f"{tree} {path}{with_bookings} {' '.join(overrides)}: "
          f"{total // REQUESTS:,} instructions a request")  # fmt: skip
    shutil.rmtree(out, ignore_errors=True)
    return 0


def _seed_the_rest(client: Any, key: Any, consumer: Any, booking: str, providers: int) -> None:
    """More providers around Berlin (b)'s search finds, messages on the newest booking
    and a synced dataset: (c)'s and (e)'s reads."""
    from tests.support.actors import make_actor, profile_body

    for n in range(providers):
        provider = make_actor(client, key, "provider")
        near = {"lat": 52.5 + n * 0.01, "lng": 13.4}
        made = provider.put("/v1/me/provider-profile", json=profile_body(location=near))
        assert made.status_code == 200, made.get_data(as_text=True)
    for text in ("On my way", "Great", "See you"):
        sent = consumer.post(f"/v1/bookings/{booking}/messages", json={"body": text})
        assert sent.status_code == 201, sent.get_data(as_text=True)
    records = [
        {"op": "replace", "key": f"k{n}", "value": {"n": n}, "sync_count": 0} for n in range(5)
    ]
    synced = consumer.post("/v1/sync/datasets/settings", json={"records": records})
    assert synced.status_code == 200, synced.get_data(as_text=True)


def _request_of(client: Any, path: str, headers: dict[str, str]) -> Any:
    """`path` as a GET; `POST path` as scenario (d)'s message post, a new Idempotency-Key
    each time."""
    if not path.startswith("POST "):
        return lambda: client.get(path, headers=headers)
    target = path.removeprefix("POST ")
    return lambda: client.post(
        target,
        json={"body": "On my way, ten minutes"},
        headers={**headers, "Idempotency-Key": uuid.uuid4().hex},
    )


def measure(bookings: int, tree: str, path: str, overrides: list[str]) -> None:
    """Inside valgrind: serve `path` from `tree` and count only the measured requests."""
    sys.path.insert(0, tree)
    os.chdir(tree)
    from services.components import build_components
    from tests.conftest import make_app, make_settings
    from tests.support.actors import booking_body, make_actor
    from tests.support.bookings import ensure_profile
    from tests.support.database import fresh_database
    from tests.support.fakes import FakeGroups, FakePush, FakeStore
    from tests.support.tokens import FakeJwksFetcher, SigningKey

    with fresh_database("trellis_icount") as url:
        key = SigningKey()
        settings = make_settings(
            url,
            REDIS_URL="redis://127.0.0.1:6379/0",
            RATE_LIMIT_KEY_PREFIX=f"icount{uuid.uuid4().hex[:8]}",
            RESPONSE_CHECKS="false",  # the test suite's contract check: not production's cost
            **dict(item.split("=", 1) for item in overrides),
        )
        fakes = {"store": FakeStore(), "push": FakePush(), "groups": FakeGroups()}
        components = build_components(settings, jwks_fetcher=FakeJwksFetcher(key), **fakes)
        client = make_app(components).test_client()
        consumer = make_actor(client, key, "consumer")
        if bookings:
            provider = make_actor(client, key, "provider")
            ensure_profile(provider)
            for _ in range(bookings):
                made = consumer.post("/v1/bookings", json=booking_body(provider.id))
                assert made.status_code == 201, made.get_data(as_text=True)
            path = path.replace("{booking}", made.get_json()["id"])
            _seed_the_rest(client, key, consumer, made.get_json()["id"], bookings - 1)
        headers = consumer.headers()  # one token: no signing cost
        request = _request_of(client, path, headers)
        for _ in range(WARMUP):
            assert request().status_code in (200, 201)
        # The cyclic collector off while counting: a pass falls on one variant's requests
        # and not another's and moves a count by several percent.
        gc.collect()
        gc.disable()
        control = ["callgrind_control", "--instr=on", str(os.getpid())]
        subprocess.run(control, capture_output=True, check=False)
        for _ in range(REQUESTS):
            request()
        control[1] = "--instr=off"
        subprocess.run(control, capture_output=True, check=False)
        gc.enable()
        components.engine.dispose()
        components.read_sessions.kw["bind"].dispose()


if __name__ == "__main__":
    if sys.argv[1:2] == ["--measure"]:
        measure(int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5:])
    else:
        sys.exit(main(sys.argv[1:]))
