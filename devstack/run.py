"""`make run`: Trellis on http://127.0.0.1:8000 with SQLite and an emulated Cognito. No AWS."""

from __future__ import annotations

import os
import signal
import sys
import time
from types import FrameType

from devstack.aws import ensure_buckets, push_applications
from devstack.cognito import DEMO_USERS, provision
from devstack.processes import ROOT, base_env, migrate, start_gunicorn, start_moto, stop

STATE = ROOT / ".local"
POOL_FILE = STATE / "pool.json"


def main() -> int:
    port = int(os.environ.get("PORT", "8000"))
    moto_port = int(os.environ.get("MOTO_PORT", "5000"))
    STATE.mkdir(exist_ok=True)
    (ROOT / "instance").mkdir(exist_ok=True)
    moto = gunicorn = None

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    try:
        print(f"Starting moto_server (local AWS emulation) on 127.0.0.1:{moto_port} ...")
        moto = start_moto(moto_port, log=STATE / "moto.log")
        pool = provision(f"http://127.0.0.1:{moto_port}")
        pool.save(POOL_FILE)
        env = base_env(
            APP_ENV="development",
            UPLOADS_BUCKET="trellis-uploads-local",
            **pool.trellis_env(),
            **push_applications(pool.endpoint_url),
        )
        env.setdefault("DATABASE_URL", "sqlite:///instance/trellis-dev.db")
        print(f"Migrating {env['DATABASE_URL']} ...")
        migrate(env)
        ensure_buckets(env)
        print(f"Starting Trellis (gunicorn) on 127.0.0.1:{port} ...")
        gunicorn = start_gunicorn(port, env)
        print(banner(port))
        while moto.poll() is None and gunicorn.poll() is None:
            time.sleep(0.5)
        print("A child process exited; stopping.", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nStopping Trellis and moto_server ...")
        return 0
    finally:
        stop(gunicorn)
        stop(moto)


def banner(port: int) -> str:
    users = ", ".join(DEMO_USERS)
    return f"""
Trellis is running on http://127.0.0.1:{port}  (Ctrl-C stops everything)

Demo users ({users}) are signed in through the emulated Cognito:
  make token AS=consumer          # prints an access token (AS=provider, AS=admin)
  make token AS=consumer KIND=id  # prints an ID token instead

Try it:
  curl -s -H "Authorization: Bearer $(make -s token AS=consumer)" http://127.0.0.1:{port}/v1/me
"""


if __name__ == "__main__":
    sys.exit(main())
