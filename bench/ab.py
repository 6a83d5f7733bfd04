"""Side by side: bench/run.py's scenarios against several source trees of Trellis at once.

    git archive <before> | tar -x -C /tmp/before   # one tree per version to compare
    git archive <after>  | tar -x -C /tmp/after
    .venv/bin/python -m bench.ab --tree before=/tmp/before --tree after=/tmp/after \
        --scenarios abcde --rounds 3 --duration 5 --json /tmp/ab.json

One seed, one moto_server, one hello; each tree's Trellis under gunicorn.conf.py from its
own directory (this checkout's virtualenv). Every round drives hello, then each tree in
turn, the trees' order rotated round by round, so a busy machine slows them alike. Reports
per scenario and tree the medians of the ratio to hello, the workers' and PostgreSQL's CPU
per request and the latencies. `--env tree:NAME=VALUE` sets a setting for one tree (e.g.
`after:DB_PREPARED_STATEMENTS=false`). Issue 17's levers were measured with it
(BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine

import bench.run as bench
from bench.seed import FULL, SMOKE, BenchUser, seed
from devstack.cognito import provision
from devstack.processes import base_env, free_port, start_moto, stop
from tests.support.database import fresh_database

FIELDS = ("ratio", "rps", "cpu_ms", "db_cpu_ms", "p50_ms", "p99_ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tree", action="append", required=True, help="NAME=DIRECTORY")
    parser.add_argument("--env", action="append", default=[], help="NAME:SETTING=VALUE")
    parser.add_argument("--scenarios", default="ab")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--smoke", action="store_true", help="the tiny seed")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    trees = dict(item.split("=", 1) for item in args.tree)
    extra: dict[str, dict[str, str]] = {name: {} for name in trees}
    for item in args.env:
        name, setting = item.split(":", 1)
        key, value = setting.split("=", 1)
        extra[name][key] = value
    report = compare(args, trees, extra)
    for key, per_tree in report["summary"].items():
        for name, row in per_tree.items():
            print(f"ab: {key} {name}: " + ", ".join(f"{f} {row[f]}" for f in (*FIELDS, "errors")))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


def compare(
    args: argparse.Namespace, trees: dict[str, str], extra: dict[str, dict[str, str]]
) -> dict[str, Any]:
    wrk_bin = bench.ensure_wrk()
    logs = Path(tempfile.mkdtemp(prefix="trellis-ab-"))
    processes: list[Any] = []
    moto = None
    try:
        moto_port = free_port()
        moto = start_moto(moto_port, log=logs / "moto.log")
        pool = provision(f"http://127.0.0.1:{moto_port}")
        users = bench.sign_up(pool, bench.BENCH_USERS)
        with fresh_database("trellis_bench") as database_url:
            engine = create_engine(database_url)
            seed(engine, SMOKE if args.smoke else FULL, users)
            slots_provider = bench.slots_provider_of(engine)
            engine.dispose()
            servers: dict[str, tuple[int, str, Any]] = {}
            for name, root in trees.items():
                env = bench.trellis_env(
                    database_url, "redis://127.0.0.1:6379/0", pool, **extra[name]
                )
                port = free_port()
                process, _ = bench.start_server(
                    "application:application",
                    port,
                    env,
                    logs / f"{name}.log",
                    "/healthz",
                    cwd=Path(root),
                )
                processes.append(process)
                base = f"http://127.0.0.1:{port}"
                for user in users:
                    bench.http("GET", base + "/v1/me", user.token)
                servers[name] = (port, base, process)
            hello_port = free_port()
            hello, _ = bench.start_server(
                "bench.hello:app", hello_port, base_env(), logs / "hello.log"
            )
            processes.append(hello)
            results = _rounds(
                args, wrk_bin, database_url, users, servers, hello, hello_port, logs, slots_provider
            )
            # Before the database is dropped: requests wrk left in flight still run.
            for process in processes:
                stop(process)
    finally:
        for process in processes:
            stop(process)
        stop(moto)
    summary = {
        key: {name: _summary(rows) for name, rows in per_tree.items()}
        for key, per_tree in results.items()
    }
    tracebacks = {
        name: (logs / f"{name}.log").read_text(errors="replace").count("Traceback")
        for name in trees
    }
    return {"trees": trees, "env": extra, "results": results, "summary": summary,
            "tracebacks": tracebacks, "logs": str(logs)}  # fmt: skip


def _rounds(
    args: argparse.Namespace,
    wrk_bin: str,
    database_url: str,
    users: list[BenchUser],
    servers: dict[str, tuple[int, str, Any]],
    hello: Any,
    hello_port: int,
    logs: Path,
    slots_provider: Any,
) -> dict[str, dict[str, list[dict[str, float]]]]:
    parts = bench.events_body_parts()
    first = next(iter(servers.values()))[1]
    scenarios = {s.key: s for s in bench.scenarios_for(users, first, slots_provider)}
    keys = [k for k in args.scenarios if k in scenarios]
    for _, base, _ in servers.values():
        for key in keys:
            bench.probe(base, scenarios[key], parts)
    hello_scenario = bench.Scenario("hello", "hello", "get", 0, [("/", u.token) for u in users])
    backends = bench.Backends(database_url)
    scripts = logs / "lua"
    scripts.mkdir()
    hello_workers = bench.workers_of(hello.pid)

    def drive(scenario: bench.Scenario, target: str, tag: str, duration: float) -> bench.Run:
        script = scripts / f"{tag}.lua"
        script.write_text(bench.lua_script(scenario, tag, parts))
        if target == "hello":
            url = f"http://127.0.0.1:{hello_port}"
            return bench.wrk(wrk_bin, url, script, duration, hello_port, hello_workers)
        port, base, process = servers[target]
        workers = bench.workers_of(process.pid)
        run = bench.wrk(wrk_bin, base, script, duration, port, workers, backends)
        run.outbox_backlog, run.outbox_drain_s = backends.settle_outbox()
        return run

    run_id = uuid.uuid4().hex[:6]
    for key in keys:
        drive(hello_scenario, "hello", f"{run_id}-warm-hello-{key}", args.warmup)
        for name in servers:
            drive(scenarios[key], name, f"{run_id}-warm-{name}-{key}", args.warmup)
    names = list(servers)
    results: dict[str, dict[str, list[dict[str, float]]]] = {}
    for round_no in range(args.rounds):
        turn = round_no % len(names)
        for key in keys:
            h = drive(hello_scenario, "hello", f"{run_id}-r{round_no}-hello-{key}", args.duration)
            for name in names[turn:] + names[:turn]:
                tag = f"{run_id}-r{round_no}-{name}-{key}"
                run = drive(scenarios[key], name, tag, args.duration)
                row = {
                    "ratio": run.rps / h.rps,
                    "rps": run.rps,
                    "hello_rps": h.rps,
                    "cpu_ms": run.cpu_ms,
                    "db_cpu_ms": run.db_cpu_ms,
                    "p50_ms": run.p50_ms,
                    "p99_ms": run.p99_ms,
                    "errors": run.non2xx + run.socket_errors,
                }
                results.setdefault(key, {}).setdefault(name, []).append(row)
                print(
                    f"ab: round {round_no + 1} {key} {name}: ratio {row['ratio']:.3f}, "
                    f"workers {run.cpu_ms:.2f} ms, PostgreSQL {run.db_cpu_ms:.2f} ms a request",
                    flush=True,
                )
    backends.dispose()
    return results


def _summary(rows: list[dict[str, float]]) -> dict[str, float]:
    summary = {f: round(bench.median([r[f] for r in rows]), 3) for f in FIELDS}
    summary["errors"] = sum(r["errors"] for r in rows)
    return summary


if __name__ == "__main__":
    main()
