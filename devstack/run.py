"""`make run`: Trellis on http://127.0.0.1:8000 with SQLite and an emulated Cognito. No AWS.

One instance a checkout: a second one refuses before it starts or writes anything. Demo
users keep their identities across restarts: moto's random generator is seeded before
the pool is provisioned, so the pool id, the app client id and every demo user's `sub`
come out the same each time, and the users rows (their bookings, their profile) are theirs
again. Should they ever differ (a database from an older `make run`, another moto), the
SQLite database is moved aside with a message rather than left full of orphaned rows.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import socket
import sys
import time
import urllib.request
from pathlib import Path
from types import FrameType
from typing import IO

from sqlalchemy.engine import make_url

from devstack.aws import ensure_buckets, push_applications
from devstack.cognito import DEMO_USERS, demo_subs, provision
from devstack.processes import (
    ROOT,
    base_env,
    migrate,
    start_gunicorn,
    start_moto,
    start_realtime,
    stop,
)

# TRELLIS_LOCAL_DIR moves the state (tests run a `make run` of their own beside yours).
STATE = Path(os.environ.get("TRELLIS_LOCAL_DIR", ROOT / ".local"))
POOL_FILE = STATE / "pool.json"
LOCK_FILE = STATE / "run.lock"
IDENTITIES_FILE = STATE / "identities.json"
DEFAULT_DATABASE_URL = "sqlite:///instance/trellis-dev.db"
MOTO_SEED = 18  # any fixed number: the same seed gives the same pool, client and subs


class AlreadyRunning(Exception):
    """Raised before anything is started or written: the message says what is in the way."""


def main() -> int:
    port = int(os.environ.get("PORT", "8000"))
    moto_port = int(os.environ.get("MOTO_PORT", "5000"))
    realtime_port = int(os.environ.get("REALTIME_PORT", "8001"))
    STATE.mkdir(parents=True, exist_ok=True)
    try:
        lock = take_lock(port, moto_port, realtime_port)
    except AlreadyRunning as refusal:
        print(refusal, file=sys.stderr)
        return 1
    with lock:
        return serve(port, moto_port, realtime_port)


def take_lock(port: int, moto_port: int, realtime_port: int) -> IO[str]:
    """Hold .local/run.lock for the life of this process (the kernel drops it on exit,
    even on SIGKILL), then make sure every port is free."""
    lock = open(LOCK_FILE, "a+")  # noqa: SIM115 - held open until the process ends
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.seek(0)
        running = json.loads(lock.read() or "{}")
        lock.close()
        raise AlreadyRunning(
            f"make run: Trellis is already running from {ROOT} (pid {running.get('pid', '?')}, "
            f"http://127.0.0.1:{running.get('port', '?')}, moto_server on port "
            f"{running.get('moto_port', '?')}). It is left untouched; stop it first "
            f"(Ctrl-C in its terminal, or kill {running.get('pid', '<pid>')})."
        ) from None
    for name, number, setting in (
        ("Trellis", port, "PORT"),
        ("moto_server", moto_port, "MOTO_PORT"),
        ("the realtime process", realtime_port, "REALTIME_PORT"),
    ):
        if port_in_use(number):
            lock.close()
            raise AlreadyRunning(
                f"make run: port {number} (for {name}) is already in use on 127.0.0.1 by "
                f"another program; stop it, or choose another port: {setting}=... make run"
            )
    lock.seek(0)
    lock.truncate()
    running = {
        "pid": os.getpid(),
        "port": port,
        "moto_port": moto_port,
        "realtime_port": realtime_port,
    }
    lock.write(json.dumps(running))
    lock.flush()
    return lock


def port_in_use(port: int) -> bool:
    # SO_REUSEADDR so that connections of an instance just stopped (TIME_WAIT) do not count:
    # on Linux the bind still fails while anything listens there. No SO_REUSEPORT: with it,
    # the bind would succeed beside a gunicorn with reuse_port (and a second one join it).
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def serve(port: int, moto_port: int, realtime_port: int) -> int:
    (ROOT / "instance").mkdir(exist_ok=True)
    moto = gunicorn = realtime = None

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    try:
        print(f"Starting moto_server (local AWS emulation) on 127.0.0.1:{moto_port} ...")
        moto = start_moto(moto_port, log=STATE / "moto.log")
        seed_moto(moto_port)
        pool = provision(f"http://127.0.0.1:{moto_port}")
        pool.save(POOL_FILE)
        database_url = os.environ.get("DATABASE_URL", DEFAULT_DATABASE_URL)
        keep_identities(database_url, demo_subs(pool))
        env = base_env(
            APP_ENV="development",
            UPLOADS_BUCKET="trellis-uploads-local",
            DATABASE_URL=database_url,
            **pool.trellis_env(),
            **push_applications(pool.endpoint_url),
        )
        print(f"Migrating {database_url} ...")
        migrate(env)
        ensure_buckets(env)
        print(f"Starting Trellis (gunicorn) on 127.0.0.1:{port} ...")
        gunicorn = start_gunicorn(port, env)
        print(f"Starting the realtime WebSocket process on 127.0.0.1:{realtime_port} ...")
        realtime = start_realtime(realtime_port, env, log=STATE / "realtime.log")
        print(banner(port, realtime_port), flush=True)
        processes = {"moto_server": moto, "gunicorn": gunicorn, "the realtime process": realtime}
        while all(process.poll() is None for process in processes.values()):
            time.sleep(0.5)
        which = next(name for name, process in processes.items() if process.poll() is not None)
        print(f"{which} exited (see {STATE / 'moto.log'} and above); stopping.", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nStopping Trellis and moto_server ...")
        return 0
    except RuntimeError as failure:  # a process died or never answered while starting
        print(f"make run: {failure} (see {STATE / 'moto.log'} and above)", file=sys.stderr)
        return 1
    finally:
        stop(realtime)
        stop(gunicorn)
        stop(moto)


def seed_moto(moto_port: int) -> None:
    """Seed moto's random ids before the first call, so provisioning repeats them."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{moto_port}/moto-api/seed?a={MOTO_SEED}", method="POST"
    )
    with urllib.request.urlopen(request, timeout=5):  # noqa: S310 - loopback only
        pass


def keep_identities(database_url: str, subs: dict[str, str]) -> None:
    """The database's users rows follow Cognito `sub`s: if the demo users' subs are not
    the ones this database was used with, move a SQLite database aside (a fresh one is
    migrated) and say so; another database is only warned about."""
    known = json.loads(IDENTITIES_FILE.read_text()) if IDENTITIES_FILE.exists() else {}
    path = sqlite_path(database_url)
    used_before = known.get(database_url) is not None or (path is not None and path.exists())
    if used_before and known.get(database_url) != subs:
        if path is not None and path.exists():
            aside = path.with_name(f"{path.name}.{time.strftime('%Y%m%d-%H%M%S')}.bak")
            path.rename(aside)
            print(
                f"The demo users' identities are not those {path.name} was used with (a "
                f"database from an older `make run`): it is moved to {aside} and a fresh one "
                "is created, so no profile or booking is left without its owner."
            )
        else:
            print(
                f"warning: the demo users' Cognito identities are new for {database_url}: "
                "rows made by earlier demo users there now belong to nobody; empty it for a "
                "clean start.",
                file=sys.stderr,
            )
    known[database_url] = subs
    IDENTITIES_FILE.write_text(json.dumps(known, indent=2))


def sqlite_path(database_url: str) -> Path | None:
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return None
    return (ROOT / url.database).resolve()


def banner(port: int, realtime_port: int) -> str:
    users = ", ".join(DEMO_USERS)
    return f"""
Trellis is running on http://127.0.0.1:{port}  (Ctrl-C stops everything)
Realtime WebSocket:   ws://127.0.0.1:{realtime_port}/v1/realtime  (docs/realtime.md)

Demo users ({users}) are signed in through the emulated Cognito:
  make token AS=consumer          # prints an access token (AS=provider, AS=admin)
  make token AS=consumer KIND=id  # prints an ID token instead

Try it:
  curl -s -H "Authorization: Bearer $(make -s token AS=consumer)" http://127.0.0.1:{port}/v1/me
"""


if __name__ == "__main__":
    sys.exit(main())
