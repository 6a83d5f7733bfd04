"""The benchmark harness (bench/run.py) in its short form: it works and nothing errors.

Timings are never asserted here: CI machines are shared and noisy. BENCHMARKS.md holds the
figures of a full run.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.run import ensure_wrk
from devstack.processes import ROOT

pytestmark = pytest.mark.e2e


def test_the_smoke_run_drives_every_scenario_without_an_error(tmp_path: Path) -> None:
    try:
        ensure_wrk()  # installs Debian's wrk if it is missing; never skips
    except SystemExit as exc:
        pytest.fail(f"wrk is needed: {exc} (apt-get install wrk)")
    report_path, table_path = tmp_path / "report.json", tmp_path / "BENCHMARKS.md"
    command = [sys.executable, "-m", "bench.run", "--smoke", "--json", str(report_path)]
    completed = subprocess.run(
        [*command, "--output", str(table_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=150,
    )
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    report = json.loads(report_path.read_text())
    results = {row["key"]: row for row in report["results"]}
    assert sorted(results) == list("abcdefg")
    for key, row in results.items():
        assert row["requests"] > 0, key
        assert row["non2xx"] == 0, (key, row)
        assert row["socket_errors"] == 0, (key, row)
        assert row["hello_errors"] == 0, (key, row)
        assert row["rps"] > 0 and row["hello_rps"] > 0, key
    floor = {row["key"]: row for row in report["floor"]}
    steps = ["floor-token", "floor-limit", "floor-query", "floor-prepared"]
    assert sorted(floor) == sorted(steps)
    for key, row in floor.items():
        assert row["requests"] > 0, key
        assert row["non2xx"] + row["socket_errors"] == 0, (key, row)
    assert report["tracebacks"] == 0
    assert all(rss > 0 for rss in report["rss_mb"]["trellis"])
    assert len(report["rss_mb"]["trellis"]) == 2  # gunicorn.conf.py's two workers
    table = table_path.read_text()
    assert "| (a) GET /v1/bookings?limit=20 |" in table
    assert "## Connection split" in table
    assert "## The floor under (a)" in table
