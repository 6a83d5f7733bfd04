"""The realtime benchmark of issue 16: many authenticated sockets on one realtime process.

    .venv/bin/python -m bench.realtime                  # 5,000 sockets, 100 changes/s, 30 s
    .venv/bin/python -m bench.realtime --sockets 200 --seconds 5 --no-write   # a smoke run

What it does:
1. creates a throwaway PostgreSQL database (migrated) and N users in it;
2. serves a JWKS of its own key on loopback and starts `python -m realtime` (the Procfile's
   process, APP_ENV=test so it trusts that JWKS) with every setting at its default;
3. opens N WebSockets, one per user, each authenticating with an RS256 token in its first
   frame (the same verifier and account check as a REST request) and subscribing from 0;
4. a writer process commits "message" changes at the given rate through the same service
   call the REST API makes (services/realtime/feed.append: both parties of a random pair,
   the entries and pg_notify in the writing transaction), each stamped with the time just
   before its commit;
5. measures commit-to-delivery latency on the sockets (p50, p99, max), checks every socket's
   seqs (strictly one by one: no gap, no duplicate) and that each user's last delivered seq
   is their newest in the database (nothing lost), and reads the realtime process's RSS and
   CPU (/proc) while the sockets are open and the changes flow;
6. writes its section of BENCHMARKS.md (`--write`, the default) and prints the JSON.

Targets (issue 16): p99 <= 250 ms, RSS <= 250 MB at 5,000 sockets, zero lost or duplicated.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import http.server
import json
import multiprocessing
import os
import random
import resource
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, insert, text
from sqlalchemy.orm import sessionmaker
from websockets.asyncio.client import ClientConnection, connect

from devstack.processes import ROOT, base_env, free_port, start_realtime, stop
from models import User
from services.base.unit_of_work import transaction
from services.realtime import feed
from tests.support.database import fresh_database
from tests.support.tokens import CLIENT_ID, POOL_ID, SigningKey, token_for

SECTION = "## Realtime WebSocket (issue 16)"
CONNECT_BATCH = 250


@contextlib.contextmanager
def jwks_server(key: SigningKey) -> Iterator[str]:
    body = json.dumps({"keys": [key.jwk()]}).encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            return

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/jwks.json"
    finally:
        server.shutdown()


def create_users(database_url: str, count: int) -> list[tuple[uuid.UUID, str]]:
    now = datetime.now(UTC)
    users = [(uuid.uuid4(), f"bench-rt-{i}") for i in range(count)]
    engine = create_engine(database_url)
    with engine.begin() as connection:
        connection.execute(
            insert(User),
            [
                {
                    "id": user_id,
                    "cognito_sub": sub,
                    "roles": [],
                    "role_revocations": {},
                    "created_at": now,
                    "updated_at": now,
                }
                for user_id, sub in users
            ],
        )
    engine.dispose()
    return users


def write_changes(
    database_url: str,
    user_ids: list[str],
    rate: float,
    seconds: float,
    start_at: float,
    commits: str,
) -> None:
    """The writer process: `rate` message changes a second, each for a random pair; the
    moment each commit returned goes to the `commits` file (n, then the time)."""
    engine = create_engine(database_url, pool_size=2)
    sessions = sessionmaker(engine)
    ids = [uuid.UUID(u) for u in user_ids]
    rng = random.Random(16)  # noqa: S311 - which pair gets a change, not a secret
    while time.time() < start_at:
        time.sleep(0.01)
    interval = 1.0 / rate
    due = time.time()
    end = due + seconds
    n = 0
    done: list[str] = []
    while due < end:
        now = time.time()
        if now < due:
            time.sleep(due - now)
        pair = rng.sample(ids, 2)
        with transaction(sessions) as session:
            feed.append(session, pair, "message", {"n": n, "t": time.time()})
        done.append(f"{n} {time.time()}\n")
        n += 1
        due += interval
    engine.dispose()
    Path(commits).write_text("".join(done))


@dataclass
class Socket:
    user_id: str
    ws: ClientConnection | None = None
    last_seq: int = 0
    gaps: int = 0
    duplicates: int = 0
    received: int = 0
    arrivals: list[tuple[int, float, float]] = field(default_factory=list)  # n, stamped, at


async def open_socket(url: str, socket: Socket, token: str) -> None:
    ws = await connect(url, open_timeout=60, max_queue=64, ping_interval=None)
    await ws.send(json.dumps({"type": "auth", "token": token}))
    hello = json.loads(await ws.recv())
    assert hello["type"] == "authenticated", hello
    await ws.send(json.dumps({"type": "subscribe", "after": 0}))
    assert json.loads(await ws.recv())["type"] == "subscribed"
    socket.ws = ws


async def read_socket(socket: Socket) -> None:
    assert socket.ws is not None
    with contextlib.suppress(Exception):
        async for message in socket.ws:
            arrived = time.time()
            frame = json.loads(message)
            if frame.get("type") != "change":
                continue
            seq = frame["seq"]
            if seq <= socket.last_seq:
                socket.duplicates += 1
                continue
            if seq != socket.last_seq + 1:
                socket.gaps += 1
            socket.last_seq = seq
            socket.received += 1
            socket.arrivals.append((frame["data"]["n"], frame["data"]["t"], arrived))


def proc_status(pid: int) -> dict[str, float]:
    fields: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0]) / 1024
    return fields


def cpu_seconds(pid: int) -> float:
    parts = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    key = SigningKey()
    with fresh_database("trellis_bench_rt") as database_url, jwks_server(key) as jwks:
        users = create_users(database_url, args.sockets)
        env = base_env(
            APP_ENV="test",
            DATABASE_URL=database_url,
            COGNITO_USER_POOL_ID=POOL_ID,
            COGNITO_APP_CLIENT_IDS=CLIENT_ID,
            COGNITO_JWKS_URL=jwks,
            LOG_LEVEL="WARNING",
        )
        port = free_port()
        process = start_realtime(port, env, log=Path(args.log) if args.log else None)
        try:
            return await drive(args, database_url, users, key, process.pid, port)
        finally:
            stop(process)


async def drive(
    args: argparse.Namespace,
    database_url: str,
    users: list[tuple[uuid.UUID, str]],
    key: SigningKey,
    pid: int,
    port: int,
) -> dict[str, Any]:
    url = f"ws://127.0.0.1:{port}/v1/realtime"
    sockets = [Socket(str(user_id)) for user_id, _ in users]
    tokens = [token_for(key, sub, lifetime=7200) for _, sub in users]
    idle = proc_status(pid)
    started = time.monotonic()
    for first in range(0, len(sockets), CONNECT_BATCH):
        batch = range(first, min(first + CONNECT_BATCH, len(sockets)))
        await asyncio.gather(*(open_socket(url, sockets[i], tokens[i]) for i in batch))
    connect_seconds = time.monotonic() - started
    readers = [asyncio.create_task(read_socket(s)) for s in sockets]
    # The harness's own pauses are not the server's: its 5,000 client sockets stay out of
    # the garbage collector's full scans (which would stall this loop for a second).
    gc.collect()
    gc.freeze()
    await asyncio.sleep(2)
    connected = proc_status(pid)
    cpu_before, wall_before = cpu_seconds(pid), time.monotonic()
    wall_start = time.time()
    commits = Path(tempfile.mkdtemp(prefix="trellis-bench-rt-")) / "commits.txt"
    if args.rate > 0:
        start_at = time.time() + 1
        writer = multiprocessing.get_context("spawn").Process(
            target=write_changes,
            args=(
                database_url,
                [s.user_id for s in sockets],
                args.rate,
                args.seconds,
                start_at,
                str(commits),
            ),
        )
        writer.start()
        while writer.is_alive():
            await asyncio.sleep(0.5)
    else:
        await asyncio.sleep(args.seconds)
    await asyncio.sleep(3)  # the last deliveries
    cpu = (cpu_seconds(pid) - cpu_before) / (time.monotonic() - wall_before)
    loaded = proc_status(pid)
    newest = newest_seqs(database_url)
    lost = sum(max(0, newest.get(s.user_id, 0) - s.last_seq) for s in sockets)
    written = sum(newest.values()) // 2  # each change went to two users
    for socket in sockets:
        if socket.ws is not None:
            await socket.ws.close()
    for reader in readers:
        reader.cancel()
    committed = {}
    if commits.exists():
        for line in commits.read_text().splitlines():
            n, at = line.split()
            committed[int(n)] = float(at)
    # From the moment the writer's commit returned to the frame's arrival: the realtime path.
    latencies = [
        (at - committed[n]) * 1000 for s in sockets for n, _, at in s.arrivals if n in committed
    ]
    # The commit itself (stamped just before it): PostgreSQL's share, shared disk and all.
    commit_ms = [
        (committed[n] - t) * 1000 for s in sockets for n, t, _ in s.arrivals if n in committed
    ]
    if args.spikes:
        slow = sorted(
            (
                round(at - wall_start, 2),
                round((at - committed[n]) * 1000),
                round((committed[n] - t) * 1000),
            )
            for s in sockets
            for n, t, at in s.arrivals
            if n in committed and at - t > 0.25
        )
        print("slow (s after start, delivery ms, commit ms):", slow[:40], file=sys.stderr)
    return {
        "sockets": len(sockets),
        "connect_seconds": round(connect_seconds, 1),
        "rate_per_second": args.rate,
        "seconds": args.seconds,
        "changes_committed": written,
        "deliveries": sum(s.received for s in sockets),
        "expected_deliveries": sum(newest.values()),
        "latency_ms": {
            "p50": round(percentile(latencies, 0.50), 1),
            "p99": round(percentile(latencies, 0.99), 1),
            "max": round(max(latencies), 1) if latencies else None,
            "mean": round(statistics.fmean(latencies), 1) if latencies else None,
        },
        "commit_ms": {
            "p50": round(percentile(commit_ms, 0.50), 1),
            "p99": round(percentile(commit_ms, 0.99), 1),
            "max": round(max(commit_ms), 1) if commit_ms else None,
        },
        "gaps": sum(s.gaps for s in sockets),
        "duplicates": sum(s.duplicates for s in sockets),
        "lost": lost,
        "rss_mb": {
            "idle": round(idle.get("VmRSS", 0), 1),
            "connected": round(connected.get("VmRSS", 0), 1),
            "loaded": round(loaded.get("VmRSS", 0), 1),
            "peak": round(loaded.get("VmHWM", 0), 1),
        },
        "cpu_cores_while_writing": round(cpu, 3),
        "machine": f"{os.cpu_count()} cores",
    }


def newest_seqs(database_url: str) -> dict[str, int]:
    engine = create_engine(database_url)
    with engine.connect() as connection:
        rows = connection.execute(text("SELECT user_id, last_seq FROM change_sequences")).all()
    engine.dispose()
    return {str(user_id): seq for user_id, seq in rows}


def markdown(report: dict[str, Any], command: str) -> str:
    lat, rss, cm = report["latency_ms"], report["rss_mb"], report["commit_ms"]
    per_socket = (rss["connected"] - rss["idle"]) * 1024 / max(1, report["sockets"])
    return f"""{SECTION}

`{command}`, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {report["machine"]} (shared with
the load generator and PostgreSQL). {report["sockets"]:,} authenticated sockets on one
realtime process (connected in {report["connect_seconds"]} s); a writer committed
{report["changes_committed"]:,} message changes at {report["rate_per_second"]}/s for
{report["seconds"]} s (each to both parties of a random pair, through feed.append:
entries and pg_notify in the writing transaction). Commit-to-delivery runs from the
moment the writer's commit returned to the frame's arrival at the client; the commit
itself is listed apart (PostgreSQL's fsync on a disk other tenants share).

| measure | figure | target |
|---|---:|---:|
| commit-to-delivery p50 | {lat["p50"]} ms | |
| commit-to-delivery p99 | {lat["p99"]} ms | ≤ 250 ms |
| commit-to-delivery max | {lat["max"]} ms | |
| the commit itself p50 / p99 / max | {cm["p50"]} / {cm["p99"]} / {cm["max"]} ms | |
| deliveries / expected | {report["deliveries"]:,} / {report["expected_deliveries"]:,} | all |
| gaps, duplicates, lost | {report["gaps"]}, {report["duplicates"]}, {report["lost"]} | 0, 0, 0 |
| RSS idle / connected / loaded | {rss["idle"]} / {rss["connected"]} / {rss["loaded"]} MB | |
| RSS peak | {rss["peak"]} MB | ≤ 250 MB |
| memory per idle socket | {per_socket:.1f} KiB | |
| CPU of the realtime process while writing | {report["cpu_cores_while_writing"]} cores | |
"""


def write_section(path: Path, text: str) -> None:
    """Replace this benchmark's section of BENCHMARKS.md (appended the first time, after
    the hand-written notes that bench/run.py keeps)."""
    old = path.read_text() if path.exists() else "# Benchmarks\n"
    if SECTION in old:
        start = old.index(SECTION)
        rest = old[start + len(SECTION) :]
        end = rest.find("\n## ")
        tail = rest[end + 1 :] if end >= 0 else ""
        path.write_text(old[:start] + text + ("\n" + tail if tail else ""))
    else:
        path.write_text(old.rstrip("\n") + "\n\n" + text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sockets", type=int, default=5000)
    parser.add_argument("--rate", type=float, default=100.0, help="changes a second")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--no-write", action="store_true", help="leave BENCHMARKS.md alone")
    parser.add_argument("--log", help="the realtime process's log file")
    parser.add_argument("--spikes", action="store_true", help="list deliveries over 250 ms")
    args = parser.parse_args(argv)
    report = asyncio.run(measure(args))
    print(json.dumps(report, indent=2))
    if not args.no_write:
        command = "python -m bench.realtime " + " ".join(argv or [])
        write_section(ROOT / "BENCHMARKS.md", markdown(report, command.strip()))
    ok = report["gaps"] == report["duplicates"] == report["lost"] == 0
    return 0 if ok and report["deliveries"] == report["expected_deliveries"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
