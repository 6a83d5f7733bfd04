"""The benchmark of issue 8: Trellis against a bare Flask hello, both under gunicorn.conf.py.

    .venv/bin/python -m bench.run            # full run (several minutes), writes BENCHMARKS.md
    .venv/bin/python -m bench.run --smoke    # tiny seed, 2 s a scenario, one round (CI)

What it does, in order:
1. installs wrk with apt-get if it is missing;
2. creates a throwaway PostgreSQL database next to TEST_DATABASE_URL, migrates it, COPYs in
   realistic data (bench/seed.py) and VACUUM ANALYZEs; the database is dropped at the end;
3. starts moto_server with a Cognito pool and BENCH_USERS consumers, signs them in
   (AdminInitiateAuth) for real RS256 access tokens; their `sub`s are seeded as users;
4. starts Trellis (application:application) and bench/hello.py, each under gunicorn with the
   production gunicorn.conf.py, and times each from exec to first answer;
   Trellis runs with APP_ENV=test (the emulator's JWKS), the rate limiter on Redis with limits
   far above the load, and OUTBOX_RELAY_IN_WEB=true (the production default: the relay
   thread in each web worker drains the outbox that message posts write);
5. warms each scenario up, then for each round and scenario runs hello then the scenario
   (A B A B ...) with wrk (-c 32, --latency; Lua scripts rotate the users' tokens and make
   unique Idempotency-Keys and bodies), samples `ss -tnp` mid-run for the connection split
   between the gunicorn workers, and reads each worker's VmHWM at the end;
6. reports medians over rounds; the ratio to hello is the median of per-round ratios.

Exit status 1 if any request failed (non-2xx/3xx as wrk counts them, or socket errors).
"""

# ruff: noqa: S603, S607, S310 - a local tool: fixed commands, loopback URLs only
from __future__ import annotations

import argparse
import base64
import json
import os
import platform
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from bench.seed import FULL, SLOTS_BOOKINGS, SMOKE, SYNC_RECORDS, BenchUser, seed
from devstack.aws import push_applications
from devstack.cognito import add_user, provision, sign_in
from devstack.processes import BIN, ROOT, base_env, free_port, start_moto, stop
from tests.support.database import fresh_database

BENCH_USERS = 8
CONNECTIONS = 32
WRK_THREADS = 2
SEARCH_POINTS = [("cleaning", 51.5074, -0.1278), ("handyman", 48.8566, 2.3522)]
SEARCH_POINTS += [("plumbing", 52.52, 13.405), ("gardening", 40.4168, -3.7038)]


@dataclass(frozen=True)
class Scenario:
    key: str
    title: str
    kind: str  # get | message | events
    # Median ratio to hello's requests/s (issue 17's targets); None where the issue sets none.
    target: float | None
    requests: list[tuple[str, str]]  # (path, token) pairs the Lua script rotates over
    # Most worker CPU per request, where an issue sets that instead (the slots route: 5 ms).
    cpu_target_ms: float | None = None


@dataclass
class Run:
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    non2xx: int
    socket_errors: int
    split: str
    cpu_ms: float  # user + system CPU of the gunicorn workers per request
    db_cpu_ms: float = float("nan")  # the bench database's PostgreSQL backends, per request
    wrk_cpu_ms: float = float("nan")  # the load generator itself, per request
    busy_cores: float = float("nan")  # the whole machine's busy CPU over the run, in cores
    other_cores: float = float("nan")  # busy cores none of the above explains (other tenants,
    # moto_server, Redis, the kernel's softirqs)
    outbox_backlog: int = 0  # pushes still undelivered when the run ended
    outbox_drain_s: float = 0.0  # how long the relay then took to deliver them


@dataclass
class Result:
    scenario: Scenario
    runs: list[Run] = field(default_factory=list)
    hello: list[Run] = field(default_factory=list)


# ---------------------------------------------------------------- processes


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    print("bench: wrk is missing, installing it with apt-get", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    apt = ["apt-get", "install", "-y", "wrk"]
    if os.geteuid() != 0:
        apt = ["sudo", "-n", *apt]
    if subprocess.run(apt, env=env, capture_output=True).returncode != 0:
        subprocess.run([*apt[:-3], "update"], env=env, capture_output=True)
        subprocess.run(apt, env=env, capture_output=True)
    found = shutil.which("wrk")
    if not found:
        raise SystemExit("bench: wrk is not installed and apt-get could not install it")
    return found


def start_server(
    app: str, port: int, env: dict[str, str], log: Path, path: str = "/", cwd: Path = ROOT
) -> tuple[Any, float]:
    """gunicorn with the gunicorn.conf.py of `cwd` (this checkout, or another source tree,
    bench/ab.py); returns the process and seconds from exec to the first 200 of `path`."""
    started = time.monotonic()
    process = subprocess.Popen(
        [str(BIN / "gunicorn"), "--config", "gunicorn.conf.py", "--bind", f"127.0.0.1:{port}", app],
        cwd=cwd,
        env=env,
        stdout=open(log, "ab"),  # noqa: SIM115 - lives as long as the process
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = started + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{app} exited with {process.returncode}; see {log}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=1) as response:
                if response.status == 200:
                    return process, time.monotonic() - started
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.01)
    stop(process)
    raise RuntimeError(f"{app} did not answer within 60 s; see {log}")


def workers_of(master: int) -> list[int]:
    try:
        children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    except OSError:
        return []
    return sorted(int(pid) for pid in children)


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pids: list[int]) -> float:
    """utime + stime of the processes (their threads included), in seconds."""
    return sum(cpu_by_pid(pids).values())


def cpu_by_pid(pids: list[int]) -> dict[int, float]:
    """utime + stime of each process still alive, in seconds."""
    ticks = os.sysconf("SC_CLK_TCK")
    found = {}
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # it ended
        found[pid] = (int(fields[11]) + int(fields[12])) / ticks
    return found


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine spent busy (all cores), from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return (sum(values) - idle) / os.sysconf("SC_CLK_TCK")


def children_cpu_seconds() -> float:
    """CPU of this process's waited-for children (wrk), in seconds."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


class Backends:
    """The bench database: its PostgreSQL backends (for their CPU) and its outbox."""

    def __init__(self, database_url: str) -> None:
        self._engine = create_engine(database_url, poolclass=NullPool)

    def pids(self) -> list[int]:
        query = text(
            "SELECT pid FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        with self._engine.connect() as connection:
            return [int(pid) for pid in connection.execute(query).scalars()]

    def undelivered(self) -> int:
        query = text("SELECT count(*) FROM outbox_messages WHERE delivered_at IS NULL")
        with self._engine.connect() as connection:
            return int(connection.execute(query).scalar_one())

    def settle_outbox(self, timeout: float = 120.0) -> tuple[int, float]:
        """Pushes the web workers' relay still owes after a run, and the seconds it took to
        deliver them: the next run starts only then, so one scenario's deliveries do not load
        the next (hello's included)."""
        started = time.monotonic()
        backlog = left = self.undelivered()
        while left and time.monotonic() - started < timeout:
            time.sleep(0.2)
            left = self.undelivered()
        return backlog, time.monotonic() - started

    def dispose(self) -> None:
        self._engine.dispose()


def connection_split(port: int, workers: list[int]) -> str:
    """Established connections on the server side of `port`, per gunicorn worker."""
    out = subprocess.run(
        ["ss", "-tnpH", "state", "established", f"( sport = :{port} )"],
        capture_output=True,
        text=True,
    ).stdout
    counts = dict.fromkeys(workers, 0)
    for pid in re.findall(r"pid=(\d+)", out):
        if int(pid) in counts:
            counts[int(pid)] += 1
    return "/".join(str(counts[w]) for w in workers)


def http(method: str, url: str, token: str, body: Any = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Authorization", f"Bearer {token}")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode(errors="replace")


# ---------------------------------------------------------------- wrk and its Lua

LUA = r"""
local reqs = %(requests)s
local kind = %(kind)s
local tag = %(tag)s
local parts = %(parts)s
local counter = 0
local nthreads = 0
local threads = {}

function setup(thread)
  nthreads = nthreads + 1
  thread:set("tid", nthreads)
  table.insert(threads, thread)
end

function request()
  counter = counter + 1
  local r = reqs[(counter + tid * 7) %% #reqs + 1]
  local headers = {["Authorization"] = r[2], ["Accept"] = "application/json"}
  if kind == "get" then
    return wrk.format("GET", r[1], headers, nil)
  end
  local n = tag .. "-" .. tid .. "-" .. counter
  headers["Content-Type"] = "application/json"
  if kind == "message" then
    headers["Idempotency-Key"] = n
    return wrk.format("POST", r[1], headers, '{"body":"bench message ' .. n .. '"}')
  end
  return wrk.format("POST", r[1], headers, table.concat(parts, n))
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCH_RESULT {\"requests\":%%d,\"duration_us\":%%d,\"status\":%%d,\"connect\":%%d," ..
    "\"read\":%%d,\"write\":%%d,\"timeout\":%%d,\"p50_us\":%%d,\"p99_us\":%%d}\n",
    summary.requests, summary.duration, e.status, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"""


def _lua_string(value: str) -> str:
    return json.dumps(value)  # ASCII only here: a JSON string is a Lua string


def lua_script(scenario: Scenario, tag: str, events_parts: list[str]) -> str:
    requests = (
        "{"
        + ", ".join(
            "{" + _lua_string(path) + ", " + _lua_string(f"Bearer {token}") + "}"
            for path, token in scenario.requests
        )
        + "}"
    )
    parts = "{" + ", ".join(_lua_string(p) for p in events_parts) + "}"
    return LUA % {
        "requests": requests,
        "kind": _lua_string(scenario.kind),
        "tag": _lua_string(tag),
        "parts": parts,
    }


def events_body_parts() -> list[str]:
    """A 50-event batch as JSON, split where the per-request session id goes."""
    marker = "@@SESSION@@"
    now = datetime.now(UTC)
    events = [
        {
            "name": ["screen.view", "search.performed", "provider.viewed"][i % 3],
            "timestamp": (now - timedelta(seconds=50 - i)).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "session_id": marker,
            "attributes": {"screen": "search", "category": "cleaning"},
            "metrics": {"duration_ms": 120 + i, "results": i % 20},
            "app_version": "2.4.1 (311)",
            "platform": "ios" if i % 2 else "android",
        }
        for i in range(50)
    ]
    return json.dumps({"events": events}, separators=(",", ":")).split(marker)


def wrk(
    wrk_bin: str,
    url: str,
    script: Path,
    duration: float,
    port: int,
    workers: list[int],
    backends: Backends | None = None,
) -> Run:
    split: list[str] = []
    sampler = threading.Timer(duration / 2, lambda: split.append(connection_split(port, workers)))
    sampler.start()
    db_pids = backends.pids() if backends else []
    db_before = cpu_by_pid(db_pids)
    cpu_before, wrk_before, busy_before = (
        cpu_seconds(workers),
        children_cpu_seconds(),
        machine_busy_seconds(),
    )
    started = time.monotonic()
    completed = subprocess.run(
        [
            wrk_bin,
            f"-t{WRK_THREADS}",
            f"-c{CONNECTIONS}",
            f"-d{max(1, round(duration))}s",
            "--timeout",
            "10s",
            "--latency",
            "-s",
            str(script),
            url,
        ],
        capture_output=True,
        text=True,
    )
    cpu = cpu_seconds(workers) - cpu_before
    wall = time.monotonic() - started
    busy = machine_busy_seconds() - busy_before
    wrk_cpu = children_cpu_seconds() - wrk_before
    db_pids = sorted(set(db_pids) | set(backends.pids() if backends else []))
    db_cpu = sum(t - db_before.get(pid, 0.0) for pid, t in cpu_by_pid(db_pids).items())
    sampler.join()
    match = re.search(r"BENCH_RESULT (\{.*\})", completed.stdout)
    if completed.returncode != 0 or match is None:
        raise RuntimeError(
            f"wrk failed ({completed.returncode}): {completed.stdout}\n{completed.stderr}"
        )
    data = json.loads(match.group(1))
    non2xx_line = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", completed.stdout)
    non2xx = int(non2xx_line.group(1)) if non2xx_line else 0
    return Run(
        rps=data["requests"] / (data["duration_us"] / 1e6),
        p50_ms=data["p50_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        requests=data["requests"],
        non2xx=max(non2xx, data["status"]),
        socket_errors=data["connect"] + data["read"] + data["write"] + data["timeout"],
        split=split[0] if split else "?",
        cpu_ms=1000 * cpu / max(1, data["requests"]),
        db_cpu_ms=1000 * db_cpu / max(1, data["requests"]) if backends else float("nan"),
        wrk_cpu_ms=1000 * wrk_cpu / max(1, data["requests"]),
        busy_cores=busy / wall,
        other_cores=max(0.0, busy - cpu - db_cpu - wrk_cpu) / wall,
    )


# ---------------------------------------------------------------- the run


def subject_of(token: str) -> tuple[str, str]:
    payload = token.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return claims["sub"], claims.get("username", "")


def sign_up(pool: Any, count: int) -> list[BenchUser]:
    """`count` consumers signed up in the Cognito stand-in, each with an access token."""
    users = []
    for i in range(count):
        name = f"bench-user-{i}"
        email = f"{name}@bench.trellis.local"
        add_user(pool, name, email=email, groups=["consumers"])
        token = sign_in(pool, name)["access"]
        sub, username = subject_of(token)
        users.append(BenchUser(username or name, sub, email, token))
    return users


def trellis_env(database_url: str, redis_url: str, pool: Any, **extra: str) -> dict[str, str]:
    """A benchmarked Trellis's environment: limits out of the way, the relay in the web tier."""
    return base_env(
        APP_ENV="test",
        DATABASE_URL=database_url,
        REDIS_URL=redis_url,
        RATE_LIMIT_KEY_PREFIX=f"bench{uuid.uuid4().hex[:12]}",
        RATE_LIMIT_DEFAULT="1000000/minute",
        RATE_LIMIT_ANONYMOUS="1000000/minute",
        OUTBOX_RELAY_IN_WEB="true",
        **pool.trellis_env(),
        **push_applications(pool.endpoint_url),
        **extra,
    )


def slots_provider_of(engine: Any) -> Any:
    """The seeded provider with availability: the slots scenario's."""
    with engine.connect() as connection:
        return connection.scalar(text("SELECT provider_id FROM availabilities"))


def scenarios_for(users: list[BenchUser], base: str, slots_provider: Any) -> list[Scenario]:
    def first(user: BenchUser, path: str) -> str:
        status, body = http("GET", base + path, user.token)
        if status != 200:
            raise RuntimeError(f"GET {path} answered {status}: {body}")
        return body["next_cursor"]

    polls = []
    for user in users:
        after = first(user, f"/v1/bookings/{user.poll_booking}/messages?limit=50")
        polls.append((f"/v1/bookings/{user.poll_booking}/messages?after={after}", user.token))
    searches = [
        f"/v1/providers?category={c}&lat={lat}&lng={lng}&radius_km=25"
        for c, lat, lng in SEARCH_POINTS
    ]
    since = SYNC_RECORDS - 20
    # A week of one provider's free slots from tomorrow, 500 accepted bookings ahead of them.
    week = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
    span = f"from={week:%Y-%m-%dT%H:%M:%SZ}&to={week + timedelta(days=7):%Y-%m-%dT%H:%M:%SZ}"
    slots = f"/v1/providers/{slots_provider}/slots?{span}&duration_minutes=60"
    return [
        Scenario("a", "GET /v1/bookings?limit=20", "get", 0.30,
                 [("/v1/bookings?limit=20", u.token) for u in users]),
        Scenario("b", "GET /v1/providers (category + 25 km radius)", "get", 0.25,
                 [(searches[i % len(searches)], u.token) for i, u in enumerate(users)]),
        Scenario("c", "GET /v1/bookings/{id}/messages?after=", "get", 0.30, polls),
        Scenario("d", "POST /v1/bookings/{id}/messages (Idempotency-Key)", "message", 0.12,
                 [(f"/v1/bookings/{b}/messages", u.token) for u in users for b in u.post_bookings]),
        Scenario("e", f"GET /v1/sync/datasets/settings?since={since}", "get", 0.30,
                 [(f"/v1/sync/datasets/settings?since={since}", u.token) for u in users]),
        Scenario("f", "POST /v1/events (50 events a batch)", "events", 0.15,
                 [("/v1/events", u.token) for u in users]),
        Scenario("g", f"GET /v1/providers/{{id}}/slots (7 days, {SLOTS_BOOKINGS} bookings ahead)",
                 "get", None, [(slots, u.token) for u in users], cpu_target_ms=5.0),
    ]  # fmt: skip


FLOOR_STEPS = {
    "token": "the token verified (cached, as in Trellis); an empty list",
    "limit": "+ one fixed-window hit in Redis (`limits`)",
    "query": "+ the caller's row and 21 bookings: Trellis's SQL, raw psycopg2, orjson",
    "prepared": "+ both statements prepared on the server (PREPARE / EXECUTE)",
}


def floor_scenarios(users: list[BenchUser]) -> list[Scenario]:
    """bench/floor.py's steps: the least work (a)'s answer needs, one piece added a step."""
    return [
        Scenario(f"floor-{step}", title, "get", 0.0,
                 [(f"/floor/{step}?limit=20", u.token) for u in users])
        for step, title in FLOOR_STEPS.items()
    ]  # fmt: skip


def probe(base: str, scenario: Scenario, parts: list[str]) -> None:
    """One request of each kind by hand, so a broken scenario fails loudly before wrk runs."""
    path, token = scenario.requests[0]
    if scenario.kind == "get":
        status, body = http("GET", base + path, token)
        expected = 200
    elif scenario.kind == "message":
        request = urllib.request.Request(
            base + path, data=json.dumps({"body": "probe"}).encode(), method="POST"
        )
        request.add_header("Authorization", f"Bearer {token}")
        request.add_header("Content-Type", "application/json")
        request.add_header("Idempotency-Key", f"probe-{uuid.uuid4()}")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                status, body = response.status, response.read()
        except urllib.error.HTTPError as error:
            status, body = error.code, error.read()
        expected = 201
    else:
        status, body = http("POST", base + path, token, json.loads("probe".join(parts)))
        expected = 202
        if status == 202 and (body["accepted"] != 50 or body["rejected"]):
            raise RuntimeError(f"events probe: {body}")
    if status != expected:
        raise RuntimeError(f"{scenario.title}: probe answered {status}: {body!r:.500}")
    wants_items = scenario.key in ("a", "c", "e", "g", "floor-query", "floor-prepared")
    if (
        scenario.kind == "get"
        and wants_items
        and not body.get("records" if scenario.key == "e" else "items")
    ):
        raise RuntimeError(f"{scenario.title}: probe answered no items")


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def machine() -> dict[str, str]:
    cpu = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
    wrk_version = subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.split("\n")[
        0
    ]
    return {
        "nproc": str(os.cpu_count()),
        "memory": f"{mem_kb / 1024 / 1024:.1f} GiB",
        "cpu": cpu,
        "python": platform.python_version(),
        "kernel": platform.release(),
        "wrk": wrk_version.strip(),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    wrk_bin = ensure_wrk()
    scale = SMOKE if args.smoke else FULL
    logs = Path(tempfile.mkdtemp(prefix="trellis-bench-"))
    moto = trellis = hello = floor = None
    report: dict[str, Any] = {"logs": str(logs), "machine": machine(), "args": vars(args)}
    report["loadavg"] = {"start": os.getloadavg()}
    report["date"] = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    try:
        moto_port = free_port()
        moto = start_moto(moto_port, log=logs / "moto.log")
        pool = provision(f"http://127.0.0.1:{moto_port}")
        users = sign_up(pool, args.users)
        with fresh_database("trellis_bench") as database_url:
            engine = create_engine(database_url)
            started = time.monotonic()
            counts = seed(engine, scale, users)
            slots_provider = slots_provider_of(engine)
            engine.dispose()
            report["seed"] = {"seconds": round(time.monotonic() - started, 1), "rows": counts}
            print(f"bench: seeded in {report['seed']['seconds']} s: {counts}", flush=True)
            env = trellis_env(database_url, args.redis_url, pool)
            trellis_port, hello_port = free_port(), free_port()
            trellis, trellis_start = start_server(
                "application:application", trellis_port, env, logs / "trellis.log", "/healthz"
            )
            started = time.monotonic()
            status, _ = http("GET", f"http://127.0.0.1:{trellis_port}/v1/me", users[0].token)
            first_auth = time.monotonic() - started
            if status != 200:
                raise RuntimeError(f"GET /v1/me answered {status}")
            hello, hello_start = start_server(
                "bench.hello:app", hello_port, base_env(), logs / "hello.log"
            )
            floor_port = free_port()
            floor, _ = start_server("bench.floor:app", floor_port, env, logs / "floor.log")
            report["startup"] = {
                "trellis_s": trellis_start,
                "trellis_first_authenticated_s": first_auth,
                "hello_s": hello_start,
            }
            base = f"http://127.0.0.1:{trellis_port}"
            for user in users:  # each user's first request (the row exists; nothing to write)
                http("GET", base + "/v1/me", user.token)
            scenarios = [
                s for s in scenarios_for(users, base, slots_provider) if s.key in args.scenarios
            ]
            parts = events_body_parts()
            for scenario in scenarios:
                probe(base, scenario, parts)
            floor_base = f"http://127.0.0.1:{floor_port}"
            floors = floor_scenarios(users) if "a" in args.scenarios else []
            for scenario in floors:
                probe(floor_base, scenario, parts)
            hello_scenario = Scenario("hello", "hello", "get", 0, [("/", u.token) for u in users])
            trellis_workers, hello_workers = workers_of(trellis.pid), workers_of(hello.pid)
            floor_workers = workers_of(floor.pid)
            backends = Backends(database_url)
            scripts = logs / "lua"
            scripts.mkdir()

            def drive(scenario: Scenario, tag: str, duration: float) -> Run:
                script = scripts / f"{tag}.lua"
                script.write_text(lua_script(scenario, tag, parts))
                if scenario.key == "hello":
                    return wrk(wrk_bin, f"http://127.0.0.1:{hello_port}", script, duration,
                               hello_port, hello_workers)  # fmt: skip
                if scenario.key.startswith("floor"):
                    return wrk(wrk_bin, floor_base, script, duration, floor_port, floor_workers,
                               backends)  # fmt: skip
                run = wrk(wrk_bin, base, script, duration, trellis_port, trellis_workers,
                          backends)  # fmt: skip
                run.outbox_backlog, run.outbox_drain_s = backends.settle_outbox()
                return run

            run_id = uuid.uuid4().hex[:8]
            print("bench: warming up", flush=True)
            for scenario in [hello_scenario, *scenarios, *floors]:
                drive(scenario, f"{run_id}-warm-{scenario.key}", args.warmup)
            results = {s.key: Result(s) for s in scenarios}
            floor_results = {s.key: Result(s) for s in floors}
            for round_no in range(1, args.rounds + 1):
                for scenario in scenarios:
                    a = drive(
                        hello_scenario, f"{run_id}-r{round_no}-hello-{scenario.key}", args.duration
                    )
                    b = drive(scenario, f"{run_id}-r{round_no}-{scenario.key}", args.duration)
                    results[scenario.key].hello.append(a)
                    results[scenario.key].runs.append(b)
                    print(
                        f"bench: round {round_no} {scenario.key}: hello {a.rps:7.0f} req/s "
                        f"[{a.split}]  {scenario.key} {b.rps:7.0f} req/s [{b.split}] "
                        f"ratio {b.rps / a.rps:.3f}  p99 {b.p99_ms:.1f} ms  "
                        f"errors {b.non2xx + b.socket_errors + a.non2xx + a.socket_errors}",
                        flush=True,
                    )
                    # The floor steps after (a), each against (a)'s hello of this round.
                    for step in floors if scenario.key == "a" else []:
                        c = drive(step, f"{run_id}-r{round_no}-{step.key}", args.duration)
                        floor_results[step.key].hello.append(a)
                        floor_results[step.key].runs.append(c)
                        print(
                            f"bench: round {round_no} {step.key}: {c.rps:7.0f} req/s ratio "
                            f"{c.rps / a.rps:.3f}  errors {c.non2xx + c.socket_errors}",
                            flush=True,
                        )
            report["loadavg"]["end"] = os.getloadavg()
            report["rss_mb"] = {
                "trellis": [round(peak_rss_mb(p), 1) for p in trellis_workers],
                "hello": [round(peak_rss_mb(p), 1) for p in hello_workers],
            }
            report["results"] = summarise(results)
            report["floor"] = summarise(floor_results)
            report["tracebacks"] = (
                (logs / "trellis.log").read_text(errors="replace").count("Traceback")
            )
            backends.dispose()
            stop(trellis)
            stop(hello)
            stop(floor)
    finally:
        stop(trellis)
        stop(hello)
        stop(floor)
        stop(moto)
    return report


def summarise(results: dict[str, Result]) -> list[dict[str, Any]]:
    rows = []
    for key, result in results.items():
        ratios = [b.rps / a.rps for a, b in zip(result.hello, result.runs, strict=True)]
        rows.append(
            {
                "key": key,
                "title": result.scenario.title,
                "target": result.scenario.target,
                "cpu_target_ms": result.scenario.cpu_target_ms,
                "rps": median([r.rps for r in result.runs]),
                "hello_rps": median([r.rps for r in result.hello]),
                "ratio": median(ratios),
                "ratios": [round(r, 3) for r in ratios],
                "p50_ms": median([r.p50_ms for r in result.runs]),
                "p99_ms": median([r.p99_ms for r in result.runs]),
                "hello_p50_ms": median([r.p50_ms for r in result.hello]),
                "hello_p99_ms": median([r.p99_ms for r in result.hello]),
                "cpu_ms": median([r.cpu_ms for r in result.runs]),
                "hello_cpu_ms": median([r.cpu_ms for r in result.hello]),
                "db_cpu_ms": median([r.db_cpu_ms for r in result.runs]),
                "wrk_cpu_ms": median([r.wrk_cpu_ms for r in result.runs]),
                "hello_wrk_cpu_ms": median([r.wrk_cpu_ms for r in result.hello]),
                "busy_cores": median([r.busy_cores for r in result.runs]),
                "other_cores": median([r.other_cores for r in result.runs]),
                "hello_other_cores": median([r.other_cores for r in result.hello]),
                "outbox_backlog": [r.outbox_backlog for r in result.runs],
                "outbox_drain_s": [round(r.outbox_drain_s, 1) for r in result.runs],
                "requests": sum(r.requests for r in result.runs),
                "non2xx": sum(r.non2xx for r in result.runs),
                "socket_errors": sum(r.socket_errors for r in result.runs),
                "hello_errors": sum(r.non2xx + r.socket_errors for r in result.hello),
                "split": [r.split for r in result.runs],
                "hello_split": [r.split for r in result.hello],
            }
        )
    return rows


def errors_in(report: dict[str, Any]) -> int:
    rows = [*report["results"], *report.get("floor", ())]
    return sum(r["non2xx"] + r["socket_errors"] + r["hello_errors"] for r in rows)


def met(ok: bool) -> str:
    return "met" if ok else "**not met**"


def markdown(report: dict[str, Any], command: str) -> str:
    m = report["machine"]
    rss = report["rss_mb"]
    start = report["startup"]
    lines = [
        "# Benchmarks",
        "",
        "Written by `bench/run.py` (issue 8). Throughput is the ratio to a bare Flask JSON hello",
        "(`bench/hello.py`) served by the same `gunicorn.conf.py` on the same machine in the same",
        "run, hello and scenario interleaved (A B A B ...); every figure is the median over",
        "rounds, the ratio the median of per-round ratios.",
        "",
        f"- Command: `{command}`",
        f"- Date: {report.get('date') or datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- Machine: {m['nproc']} vCPU ({m['cpu']}), {m['memory']} RAM, Linux {m['kernel']}, "
        f"Python {m['python']}, {m['wrk']}; wrk, gunicorn, PostgreSQL, Redis and moto_server "
        "all share these cores",
        f"- Load: wrk -t{WRK_THREADS} -c{CONNECTIONS}, {report['args']['duration']} s a run "
        "after a "
        f"{report['args']['warmup']} s warm-up per scenario, {report['args']['rounds']} rounds; "
        f"{report['args']['users']} signed-in users' tokens rotated per request",
        "- Trellis: gunicorn.conf.py as in production (gthread, WEB_CONCURRENCY and "
        "GUNICORN_THREADS unset: 2 workers x 4 threads), APP_ENV=test, rate limiter on Redis "
        "(limits 1,000,000/minute), OUTBOX_RELAY_IN_WEB=true (the production default)",
        "- Load average (1, 5, 15 min) before the run: "
        + ", ".join(f"{x:.2f}" for x in report.get("loadavg", {}).get("start", ()))
        + "; after: "
        + ", ".join(f"{x:.2f}" for x in report.get("loadavg", {}).get("end", ()))
        + " (anything above the harness's own load is another process sharing the cores)",
        f"- Seed ({report['seed']['seconds']} s, COPY): "
        + ", ".join(f"{k} {v:,}" for k, v in report["seed"]["rows"].items()),
        "",
        "| scenario | req/s | ratio to hello (target) | p50 ms | p99 ms | p99 / p50 (≤ 2.5x) "
        "| worker CPU ms/req | non-2xx | socket errors |",
        "|---|---:|---|---:|---:|---|---:|---:|---:|",
    ]
    for r in report["results"]:
        tail = r["p99_ms"] / r["p50_ms"] if r["p50_ms"] else float("nan")
        lines.append(
            f"| ({r['key']}) {r['title']} | {r['rps']:,.0f} | {r['ratio']:.3f}x "
            f"({_ratio_target(r)}) | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} "
            f"| {tail:.2f}x ({met(tail <= 2.5)}) "
            f"| {r.get('cpu_ms', float('nan')):.2f}{_cpu_target(r)} | {r['non2xx']} "
            f"| {r['socket_errors']} |"
        )
    hello_rps = median([r["hello_rps"] for r in report["results"]])
    hello_p50 = median([r["hello_p50_ms"] for r in report["results"]])
    hello_p99 = median([r["hello_p99_ms"] for r in report["results"]])
    hello_errors = sum(r["hello_errors"] for r in report["results"])
    hello_cpu = median([r.get("hello_cpu_ms", float("nan")) for r in report["results"]])
    lines.append(
        f"| hello (reference, all its runs) | {hello_rps:,.0f} | 1 | {hello_p50:.2f} "
        f"| {hello_p99:.2f} | 1 | {hello_cpu:.2f} | {hello_errors} | (included) |"
    )
    events = next((r for r in report["results"] if r["key"] == "f"), None)
    peak = max(rss["trellis"]) if rss["trellis"] else float("nan")
    lines += [
        "",
        "Per-round ratios: "
        + "; ".join(
            f"({r['key']}) {', '.join(str(x) for x in r['ratios'])}" for r in report["results"]
        ),
        "",
        "- Peak RSS per Trellis worker (VmHWM): "
        f"{', '.join(f'{x:.1f} MB' for x in rss['trellis'])} "
        f"(≤ 150 MB: {met(peak <= 150)}); hello workers: "
        f"{', '.join(f'{x:.1f} MB' for x in rss['hello'])}",
        f"- Start-up to first answer (exec of gunicorn to the first 200 of /healthz): "
        f"{start['trellis_s']:.2f} s (≤ 2 s: {met(start['trellis_s'] <= 2)}); then the first "
        "authenticated GET /v1/me (JWKS fetch included) took "
        f"{start['trellis_first_authenticated_s']:.3f} s; "
        f"hello: {start['hello_s']:.2f} s",
        f"- Errors: {errors_in(report)} non-2xx/3xx or socket errors in all runs "
        f"(zero required: {met(errors_in(report) == 0)}); tracebacks in Trellis's log: "
        f"{report['tracebacks']}",
    ]
    if events:
        lines.append(f"- Events: {events['rps'] * 50:,.0f} events/s at the median (50 a request)")
    lines += cpu_table(report)
    lines += floor_table(report)
    lines += [
        "",
        "## Connection split between the two gunicorn workers",
        "",
        "Established connections per worker, sampled with `ss -tnp` half-way through each run. "
        "wrk opens its 32 keep-alive connections at once; on one shared listening socket the "
        "gthread worker that woke first took most of them for the whole run (32/0 splits were "
        "seen, swinging throughput about 3x between runs). gunicorn.conf.py sets `reuse_port`: "
        "each worker listens on its own socket "
        "and the kernel spreads the connections.",
        "",
        "| scenario | Trellis, per round | hello before it, per round |",
        "|---|---|---|",
    ]
    for r in report["results"]:
        lines.append(f"| ({r['key']}) | {', '.join(r['split'])} | {', '.join(r['hello_split'])} |")
    return "\n".join(lines) + "\n"


def _ratio_target(row: dict[str, Any]) -> str:
    target = row.get("target")
    if target is None:
        return "no ratio target"
    return f"≥ {target:.2f}x: {met(row['ratio'] >= target)}"


def _cpu_target(row: dict[str, Any]) -> str:
    target = row.get("cpu_target_ms")
    if target is None:
        return ""
    return f" (< {target:g} ms: {met(row.get('cpu_ms', float('nan')) < target)})"


def cpu_table(report: dict[str, Any]) -> list[str]:
    """Where each scenario's CPU went, per request and for the machine, medians over rounds."""
    nan = float("nan")
    cores = report["machine"]["nproc"]
    lines = [
        "",
        "## Where the CPU went",
        "",
        "Per request: the gunicorn workers, the bench database's PostgreSQL backends and wrk "
        f"(user + system, from /proc). Machine: busy cores of the {cores} over the run "
        "(/proc/stat), and the busy cores none of those explains (other tenants' processes, "
        f"moto_server, Redis, the kernel). The machine is saturated when busy is near {cores}.",
        "",
        "| scenario | workers ms/req | PostgreSQL ms/req | wrk ms/req | machine busy cores "
        "| other cores | hello: workers ms/req, wrk ms/req, other cores |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in report["results"]:
        lines.append(
            f"| ({r['key']}) | {r.get('cpu_ms', nan):.2f} | {r.get('db_cpu_ms', nan):.2f} "
            f"| {r.get('wrk_cpu_ms', nan):.2f} | {r.get('busy_cores', nan):.2f} "
            f"| {r.get('other_cores', nan):.2f} | {r.get('hello_cpu_ms', nan):.2f}, "
            f"{r.get('hello_wrk_cpu_ms', nan):.2f}, {r.get('hello_other_cores', nan):.2f} |"
        )
    backlogs = [
        f"({r['key']}) {', '.join(str(n) for n in r['outbox_backlog'])} undelivered, "
        f"delivered in {', '.join(f'{t:.1f}' for t in r['outbox_drain_s'])} s"
        for r in report["results"]
        if any(r.get("outbox_backlog", ()))
    ]
    lines += [
        "",
        "Pushes the web workers' outbox relay still owed when a run ended (per round; the next "
        "run waits until they are delivered): " + ("; ".join(backlogs) or "none"),
    ]
    return lines


def floor_table(report: dict[str, Any]) -> list[str]:
    """The floor steps under (a) (bench/floor.py), each against (a)'s hello of its round."""
    if not report.get("floor"):
        return []
    nan = float("nan")
    lines = [
        "",
        "## The floor under (a)",
        "",
        "`bench/floor.py`, served by the same gunicorn.conf.py with Trellis's environment and "
        "run after (a) in every round against (a)'s hello: the least work (a)'s answer needs, "
        "one piece added a step, with none of Trellis's layers (SQLAlchemy, pydantic, "
        "Flask-Limiter, the access log, the headers). No Flask application on this stack does "
        "(a)'s work at a better ratio than the last steps.",
        "",
        "| step | req/s | ratio to hello | worker CPU ms/req | PostgreSQL ms/req | p99 ms "
        "| non-2xx |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report["floor"]:
        lines.append(
            f"| {r['key'].removeprefix('floor-')}: {r['title']} | {r['rps']:,.0f} "
            f"| {r['ratio']:.3f}x | {r.get('cpu_ms', nan):.2f} | {r.get('db_cpu_ms', nan):.2f} "
            f"| {r['p99_ms']:.2f} | {r['non2xx'] + r['socket_errors']} |"
        )
    a = next((r for r in report["results"] if r["key"] == "a"), None)
    if a is not None:
        lines.append(
            f"| (a) Trellis, for comparison | {a['rps']:,.0f} | {a['ratio']:.3f}x "
            f"| {a.get('cpu_ms', nan):.2f} | {a.get('db_cpu_ms', nan):.2f} | {a['p99_ms']:.2f} "
            f"| {a['non2xx'] + a['socket_errors']} |"
        )
    return lines


NOTES = "\n## Notes (by hand"


def write_table(path: Path, text: str) -> None:
    """Write the generated table, keeping a hand-written "## Notes (by hand ...)" tail."""
    old = path.read_text() if path.exists() else ""
    path.write_text(text + (old[old.index(NOTES) :] if NOTES in old else ""))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny seed, 2 s runs, one round")
    parser.add_argument("--duration", type=int, help="seconds per measured run (default 10)")
    parser.add_argument("--warmup", type=int, help="seconds of warm-up per scenario (3)")
    parser.add_argument("--rounds", type=int, help="A B A B rounds (3)")
    parser.add_argument("--users", type=int, default=BENCH_USERS)
    parser.add_argument("--scenarios", default="abcdefg")
    parser.add_argument(
        "--redis-url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    )
    parser.add_argument(
        "--output", type=Path, help="markdown table (default BENCHMARKS.md; none with --smoke)"
    )
    parser.add_argument("--json", type=Path, help="also write the raw report as JSON here")
    parser.add_argument("--render", type=Path, help="only re-render a --json report's table")
    args = parser.parse_args(argv)
    if args.render:
        saved = json.loads(args.render.read_text())
        for key in ("duration", "warmup", "rounds", "users"):
            saved["args"][key] = int(saved["args"][key])
        text = markdown(saved, saved.get("command", "make bench"))
        write_table(args.output or ROOT / "BENCHMARKS.md", text)
        print(text)
        return 0
    args.duration = args.duration or (2 if args.smoke else 10)
    args.warmup = args.warmup or (1 if args.smoke else 3)
    args.rounds = args.rounds or (1 if args.smoke else 3)
    output = args.output or (None if args.smoke else ROOT / "BENCHMARKS.md")
    report = run(args)
    command = "make bench" if not sys.argv[1:] else "python -m bench.run " + " ".join(sys.argv[1:])
    text = markdown(report, command)
    print(text)
    if output:
        write_table(output, text)
    if args.json:
        args.json.write_text(
            json.dumps(
                {**report, "command": command, "args": {k: str(v) for k, v in vars(args).items()}},
                indent=2,
            )
        )
    errors = errors_in(report)
    if errors or report["tracebacks"]:
        print(
            f"bench: FAILED: {errors} failed requests, {report['tracebacks']} tracebacks",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
