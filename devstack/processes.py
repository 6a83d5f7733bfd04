"""Start and stop the local processes (moto_server, gunicorn) and wait until they answer."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_http(url: str, process: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    """Poll `url` until it answers 2xx; fail fast if the process dies first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"{process.args!r} exited with {process.returncode} before {url} answered"
            )
        try:
            with urllib.request.urlopen(url, timeout=1) as response:  # noqa: S310 - loopback only
                if 200 <= response.status < 300:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f}s")


def start_moto(port: int, *, log: Path | None = None) -> subprocess.Popen[bytes]:
    out = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115 - lives as long as the process
    process = subprocess.Popen(
        [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    wait_for_http(f"http://127.0.0.1:{port}/moto-api/data.json", process)
    return process


def start_gunicorn(
    port: int, env: dict[str, str], *, log: Path | None = None
) -> subprocess.Popen[bytes]:
    bind = ["--bind", f"127.0.0.1:{port}"]
    command = [str(BIN / "gunicorn"), "--config", "gunicorn.conf.py", *bind]
    return _start_served([*command, "application:application"], port, env, log)


def start_realtime(
    port: int, env: dict[str, str], *, log: Path | None = None
) -> subprocess.Popen[bytes]:
    """The realtime WebSocket process (`python -m realtime`), ready when /healthz answers."""
    return _start_served(
        [str(BIN / "python"), "-m", "realtime", "--port", str(port)], port, env, log
    )


def _start_served(
    command: list[str], port: int, env: dict[str, str], log: Path | None
) -> subprocess.Popen[bytes]:
    out = open(log, "ab") if log else None  # noqa: SIM115 - None: inherit the terminal
    process = subprocess.Popen(
        command,
        cwd=ROOT,
        env=env,
        stdout=out,
        stderr=subprocess.STDOUT if out else None,
        start_new_session=True,
    )
    wait_for_http(f"http://127.0.0.1:{port}/healthz", process)
    return process


def migrate(env: dict[str, str]) -> None:
    subprocess.run(
        [str(BIN / "alembic"), "upgrade", "head"],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
    )


def stop(process: subprocess.Popen[bytes] | None, timeout: float = 10.0) -> None:
    """SIGTERM the process group (gunicorn's workers too), SIGKILL if it lingers."""
    if process is None or process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    except ProcessLookupError:
        pass


def base_env(**extra: str) -> dict[str, str]:
    """The environment for child processes: dummy AWS credentials so nothing reaches AWS."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_EC2_METADATA_DISABLED="true",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env
