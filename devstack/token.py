"""`make token AS=consumer`: print a fresh token for a demo user of the running `make run`."""

from __future__ import annotations

import argparse
import sys

from devstack.cognito import DEMO_USERS, LocalPool, sign_in
from devstack.run import POOL_FILE


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("user", nargs="?", default="consumer", choices=sorted(DEMO_USERS))
    parser.add_argument("--kind", choices=["access", "id"], default="access")
    args = parser.parse_args(argv)
    if not POOL_FILE.exists():
        print("No local pool: start `make run` first.", file=sys.stderr)
        return 2
    try:
        tokens = sign_in(LocalPool.load(POOL_FILE), args.user)
    except Exception as exc:
        print(f"Sign-in failed ({exc}); is `make run` still running?", file=sys.stderr)
        return 1
    print(tokens[args.kind])
    return 0


if __name__ == "__main__":
    sys.exit(main())
