"""A PostgreSQL primary with a streaming hot standby, started by the suite on spare ports.

Both are real clusters made with initdb and pg_basebackup (as the `postgres` user when the
suite runs as root), so tests can pause replay, stop either server and start it again.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import create_engine, text

from devstack.processes import free_port
from tests.support.database import migrate_to_head

DATABASE = "trellis"


def _bindir() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    if initdb is None:
        raise RuntimeError("initdb not found: install PostgreSQL's server package")
    return Path(initdb).parent


def _run(*args: str) -> None:
    """Run a PostgreSQL tool as `postgres` (it refuses to run as root)."""
    command = list(args)
    if os.geteuid() == 0:
        command = ["runuser", "-u", "postgres", "--", *command]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed: {result.stderr or result.stdout}")


@dataclass
class Server:
    """One cluster: its data directory, port and log."""

    data: Path
    port: int
    bindir: Path

    @property
    def url(self) -> str:
        return f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/{DATABASE}"

    def start(self) -> None:
        _run(
            str(self.bindir / "pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.data.parent / f"{self.data.name}.log"),
            "-o",
            f"-p {self.port} -k {self.data.parent}",
            "-w",
            "-t",
            "60",
            "start",
        )

    def stop(self, mode: str = "fast") -> None:
        _run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def query(self, sql: str) -> object:
        engine = create_engine(self.url, isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as connection:
                result = connection.execute(text(sql))
                return result.scalar() if result.returns_rows else None
        finally:
            engine.dispose()


@dataclass
class StreamingPair:
    primary: Server
    standby: Server

    def pause_replay(self) -> None:
        self.standby.query("SELECT pg_wal_replay_pause()")

    def resume_replay(self) -> None:
        self.standby.query("SELECT pg_wal_replay_resume()")

    def wait_caught_up(self, timeout: float = 30.0) -> None:
        """Until the standby has replayed everything the primary has written so far."""
        target = self.primary.query("SELECT pg_current_wal_lsn()")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if self.standby.query(f"SELECT pg_last_wal_replay_lsn() >= '{target}'::pg_lsn"):
                    return
            except Exception:  # the standby may still be starting
                pass
            time.sleep(0.05)
        raise TimeoutError(f"standby did not replay up to {target} within {timeout}s")


_CONFIG = """
listen_addresses = '127.0.0.1'
wal_level = replica
max_wal_senders = 4
wal_keep_size = '128MB'
hot_standby = on
hot_standby_feedback = on
wal_receiver_status_interval = '1s'
wal_retrieve_retry_interval = '1s'
fsync = off
full_page_writes = off
shared_buffers = '32MB'
max_connections = 60
"""


@contextmanager
def streaming_pair() -> Iterator[StreamingPair]:
    """Start a migrated primary and a standby streaming from it; remove both afterwards."""
    bindir = _bindir()
    root = Path(tempfile.mkdtemp(prefix="trellis-pg-"))
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    primary = Server(root / "primary", free_port(), bindir)
    standby = Server(root / "standby", free_port(), bindir)
    started: list[Server] = []
    try:
        _run(
            str(bindir / "initdb"),
            "-D",
            str(primary.data),
            "-A",
            "trust",
            "-U",
            "postgres",
            "--no-sync",
        )
        with open(primary.data / "postgresql.conf", "a") as conf:
            conf.write(_CONFIG)
        primary.start()
        started.append(primary)
        _run(
            str(bindir / "createdb"),
            "-h",
            "127.0.0.1",
            "-p",
            str(primary.port),
            "-U",
            "postgres",
            DATABASE,
        )
        migrate_to_head(primary.url)
        _run(
            str(bindir / "pg_basebackup"),
            "-h",
            "127.0.0.1",
            "-p",
            str(primary.port),
            "-U",
            "postgres",
            "-D",
            str(standby.data),
            "-R",
            "-X",
            "stream",
            "-c",
            "fast",
            "--no-sync",
        )
        standby.start()
        started.append(standby)
        pair = StreamingPair(primary, standby)
        pair.wait_caught_up()
        yield pair
    finally:
        for server in reversed(started):
            with contextlib.suppress(RuntimeError):  # already stopped by a test
                server.stop("immediate")
        shutil.rmtree(root, ignore_errors=True)
