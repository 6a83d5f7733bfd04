"""The soak (issue 7): simulated app users against Trellis while faults are injected.

    .venv/bin/python -m tests.soak.run            # the long form (make soak): 300 users, 4 min
    .venv/bin/python -m tests.soak.run --short    # the form the test suite runs (< 2 min)
    options: --users N (a fifth are providers), --duration S, --seed N, --json PATH

Trellis runs under gunicorn with PostgreSQL, Redis, the JWKS URL and SNS each behind a
FaultyProxy (tests/support/faultstack.py). Every user is a real Cognito user with a real
access token and a registered phone. While they book (Idempotency-Key, retried with the
same key after a 503 or a lost connection), accept, message, read and sync, the schedule in
tests/soak/faults.py cuts and refuses PostgreSQL and takes Redis, the JWKS and SNS down.
At the end, once the outbox relays have drained, the client's ledger is held against the
database (SQL) and the emulated SNS. The summary is printed and saved as JSON; the exit
status is 1 if anything failed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from devstack.cognito import DEMO_PASSWORD, cognito_client
from devstack.processes import ROOT
from tests.soak.client import client_process
from tests.soak.faults import KINDS, counts, inject, long_schedule, short_schedule
from tests.soak.ledger import Ledger
from tests.soak.verify import Checks, verify
from tests.support.faultstack import FaultStack, fault_stack, warm_every_worker


@dataclass(frozen=True)
class SoakConfig:
    form: str  # short | long
    consumers: int
    providers: int
    duration: float  # seconds of load (faults included)
    think: tuple[float, float]  # seconds between one user's actions
    grace: float  # how long a write may keep retrying after the load ends
    drain_timeout: float  # for the outbox relays, once every link is back
    seed: int = 7


# A stuck Idempotency-Key is taken over after 60 s (services/idempotency.STALE_AFTER): the
# long form lets retries outlast it, the short one stays well under two minutes. The long
# form's users act every 5 s on average (about 60 requests/s offered in all); the short
# form's 60 users are busier, so every kind of write happens in its 30 s.
SHORT = SoakConfig("short", consumers=48, providers=12, duration=30, think=(0.5, 2.0), grace=20,
                   drain_timeout=60)  # fmt: skip
LONG = SoakConfig("long", consumers=240, providers=60, duration=240, think=(2.0, 8.0), grace=75,
                  drain_timeout=180)  # fmt: skip


def run_soak(config: SoakConfig, *, json_path: Path | None = None) -> dict[str, Any]:
    """Start the stack, run the load and the faults, verify; returns the saved summary."""
    schedule = short_schedule() if config.form == "short" else long_schedule(config.duration)
    started = time.monotonic()
    with fault_stack("trellis_soak") as stack:
        tokens = create_users(stack, config)
        warm_every_worker(stack, tokens[0][1])  # each worker holds the keys before JWKS dies
        ledger, applied, load_seconds = load_with_faults(stack, config, tokens, schedule)
        stack.heal()
        checks = verify(stack, ledger, drain_timeout=config.drain_timeout)
        summary = summarise(config, ledger, checks, applied, load_seconds, server_log(stack))
        summary["logs"] = str(stack.logs)
    summary["total_seconds"] = round(time.monotonic() - started, 1)
    path = json_path or ROOT / ".local" / "soak" / f"soak-{config.form}-{_stamp()}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(summary, indent=2))
    summary["saved_to"] = str(path)
    return summary


def create_users(stack: FaultStack, config: SoakConfig) -> list[tuple[str, str]]:
    """(role, access token) for each simulated user, created in Cognito and signed in."""
    roles = ["consumer"] * config.consumers + ["provider"] * config.providers
    threads = 8
    # boto3 clients are thread-safe to use but not to build: one per thread, built here.
    clients = [cognito_client(stack.pool.endpoint_url, stack.pool.region) for _ in range(threads)]

    def sign_up(index: int) -> tuple[str, str]:
        client, role = clients[index % threads], roles[index]
        username = f"soak-{role}-{index}"
        pool_id = stack.pool.pool_id
        client.admin_create_user(
            UserPoolId=pool_id,
            Username=username,
            UserAttributes=[{"Name": "email", "Value": f"{username}@soak.trellis.local"}],
            MessageAction="SUPPRESS",
        )
        client.admin_set_user_password(
            UserPoolId=pool_id, Username=username, Password=DEMO_PASSWORD, Permanent=True
        )
        client.admin_add_user_to_group(UserPoolId=pool_id, Username=username, GroupName=f"{role}s")
        tokens = client.admin_initiate_auth(
            UserPoolId=pool_id,
            ClientId=stack.pool.client_id,
            AuthFlow="ADMIN_USER_PASSWORD_AUTH",
            AuthParameters={"USERNAME": username, "PASSWORD": DEMO_PASSWORD},
        )["AuthenticationResult"]
        return role, tokens["AccessToken"]

    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(sign_up, range(len(roles))))


def load_with_faults(
    stack: FaultStack, config: SoakConfig, tokens: list[tuple[str, str]], schedule: list[Any]
) -> tuple[Ledger, list[dict], float]:
    """Run the users in their own process and inject the faults from this one."""
    context = multiprocessing.get_context("spawn")  # this process runs proxy threads: no fork
    ours, theirs = context.Pipe()
    settings = {k: getattr(config, k) for k in ("seed", "think", "duration", "grace")}
    process = context.Process(
        target=client_process, args=(theirs, stack.base_url, tokens, settings), daemon=True
    )
    process.start()
    try:
        started = _receive(ours, "started", timeout=300)[0]
        applied = asyncio.run(inject(stack, schedule, started))
        ledger, seconds = _receive(ours, "done", timeout=config.duration + config.grace + 300)
    finally:
        process.join(timeout=10)
        if process.is_alive():
            process.kill()
    return ledger, applied, seconds


def _receive(pipe: Connection, expected: str, *, timeout: float) -> tuple[Any, ...]:
    """The next message from the client process, which must be `expected`."""
    if not pipe.poll(timeout):
        raise RuntimeError(f"the client process sent nothing for {timeout:.0f} s")
    kind, *rest = pipe.recv()
    if kind != expected:
        raise RuntimeError(f"the client process failed:\n{rest[0] if rest else kind}")
    return tuple(rest)


def server_log(stack: FaultStack) -> dict[str, int]:
    """From gunicorn's log: unhandled errors, non-503 5xx answers, exceptions that escaped
    Flask (gunicorn's own HTML 500) and workers killed for hanging."""
    found = {
        "unhandled_errors": 0,
        "server_errors_not_503": 0,
        "escaped_flask": 0,
        "worker_timeouts": 0,
    }
    for line in (stack.logs / "gunicorn.log").read_text(errors="replace").splitlines():
        found["worker_timeouts"] += "WORKER TIMEOUT" in line
        found["escaped_flask"] += "Error handling request" in line
        if not line.startswith("{"):
            continue
        record = json.loads(line)
        found["unhandled_errors"] += record.get("message") == "unhandled error"
        status = record.get("status")
        found["server_errors_not_503"] += (
            isinstance(status, int) and status >= 500 and status != 503
        )
    return found


def summarise(
    config: SoakConfig,
    ledger: Ledger,
    checks: Checks,
    applied: list[dict],
    load_seconds: float,
    log: dict[str, int],
) -> dict[str, Any]:
    return {
        "form": config.form,
        "config": {**config.__dict__, "think": list(config.think)},
        "users": config.consumers + config.providers,
        "load_seconds": round(load_seconds, 1),
        "requests": ledger.requests,
        "requests_per_second": round(ledger.requests / max(load_seconds, 1e-9), 1),
        "responses": dict(sorted(ledger.statuses.items())),
        "errors_by_type": dict(sorted(ledger.problem_types.items())),
        "responses_by_kind": {
            k: dict(sorted(v.items())) for k, v in sorted(ledger.by_kind.items())
        },
        "latency_ms": ledger.latency_ms(),
        "violations": ledger.violations[:50],
        "violation_count": len(ledger.violations),
        "retries": dict(ledger.retries),
        "abandoned": dict(ledger.abandoned),
        "writes": {
            "acknowledged": {
                "bookings": len(ledger.bookings),
                "messages": len(ledger.messages),
                "accepts": len(ledger.accepts),
                "sync_batches": checks.sync_batches,
                "sync_records": checks.sync_records,
            },
            "checked": checks.writes_checked,
            "committed_without_acknowledgement": checks.unacknowledged_commits,
        },
        "notifications": {
            "inbox_entries": checks.notifications,
            "outbox_rows": checks.outbox_rows,
            "delivered": checks.outbox_delivered,
            "pushes_expected": checks.pushes_expected,
            "pushes_received_by_sns": checks.pushes_received,
            "drain_seconds_after_healing": checks.drain_seconds,
        },
        "faults": counts(applied),
        "fault_log": applied,
        "problems": checks.problems[:50],
        "problem_count": len(checks.problems),
        "server_log": log,
    }


def failures(summary: dict[str, Any]) -> list[str]:
    """Why the soak failed; empty when it passed."""
    reasons = []
    if summary["violation_count"]:
        reasons.append(f"{summary['violation_count']} client-side violations")
    if summary["problem_count"]:
        reasons.append(f"{summary['problem_count']} database/SNS discrepancies")
    reasons += [f"server log: {k} = {v}" for k, v in summary["server_log"].items() if v]
    reasons += [f"fault {k} never injected" for k in KINDS if not summary["faults"].get(k)]
    notes = summary["notifications"]
    if notes["delivered"] != notes["outbox_rows"]:
        reasons.append("undelivered notifications")
    return reasons


def render(summary: dict[str, Any]) -> str:
    """The summary as a few readable lines."""
    writes, notes = summary["writes"], summary["notifications"]
    acknowledged = ", ".join(f"{k} {v}" for k, v in writes["acknowledged"].items())
    lines = [
        f"soak ({summary['form']}): {summary['users']} users, {summary['load_seconds']} s of load,"
        f" {summary.get('total_seconds', '?')} s in all",
        f"  requests: {summary['requests']} ({summary['requests_per_second']}/s)",
        "  responses: " + ", ".join(f"{k}: {v}" for k, v in summary["responses"].items()),
        "  errors: " + ", ".join(f"{k}: {v}" for k, v in summary["errors_by_type"].items()),
        f"  retries: {summary['retries']}; abandoned: {summary['abandoned']}",
        f"  writes acknowledged: {acknowledged}; checked by SQL: {writes['checked']};"
        f" committed without acknowledgement: {writes['committed_without_acknowledgement']}",
        f"  notifications: {notes['inbox_entries']} inbox entries, {notes['outbox_rows']} outbox"
        f" rows, {notes['delivered']} delivered, {notes['pushes_expected']} pushes expected,"
        f" {notes['pushes_received_by_sns']} received by SNS (outbox drained"
        f" {notes['drain_seconds_after_healing']} s after healing)",
        "  faults: " + ", ".join(f"{k} {v}" for k, v in summary["faults"].items()),
        f"  violations: {summary['violation_count']}; discrepancies: {summary['problem_count']};"
        f" server log: {summary['server_log']}",
        "  latency ms (p50/p95/max): "
        + "; ".join(
            f"{k} {v['p50']}/{v['p95']}/{v['max']}" for k, v in summary["latency_ms"].items()
        ),
    ]
    lines += [f"  ! {v}" for v in summary["violations"][:10] + summary["problems"][:10]]
    if "saved_to" in summary:
        lines.append(f"  saved to {summary['saved_to']}")
    return "\n".join(lines)


def _stamp() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")


def config_from(args: argparse.Namespace) -> SoakConfig:
    config = SHORT if args.short else LONG
    if args.users:
        providers = max(1, args.users // 5)
        config = replace(config, consumers=args.users - providers, providers=providers)
    if args.duration:
        config = replace(config, duration=args.duration)
    return replace(config, seed=args.seed)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--short", action="store_true", help="the suite's form: 60 users, 30 s")
    parser.add_argument("--users", type=int, help="simulated users (a fifth are providers)")
    parser.add_argument("--duration", type=float, help="seconds of load")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", type=Path, help="where to save the summary")
    args = parser.parse_args(argv)
    summary = run_soak(config_from(args), json_path=args.json)
    print(render(summary), flush=True)
    reasons = failures(summary)
    for reason in reasons:
        print(f"soak FAILED: {reason}", file=sys.stderr)
    return 1 if reasons else 0


if __name__ == "__main__":
    sys.exit(main())
