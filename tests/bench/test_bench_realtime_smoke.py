"""The realtime benchmark (bench/realtime.py) in a short form: it runs and every change
arrives once, in order. Timings and memory are never asserted here (shared, noisy CI
machines); BENCHMARKS.md holds the figures of a full run."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from devstack.processes import ROOT

pytestmark = pytest.mark.e2e


def test_a_short_realtime_run_delivers_every_change_once() -> None:
    options = ["--sockets", "100", "--seconds", "2", "--rate", "50", "--no-write"]
    completed = subprocess.run(
        [sys.executable, "-m", "bench.realtime", *options],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    report = json.loads(completed.stdout)
    assert report["sockets"] == 100
    assert report["deliveries"] == report["expected_deliveries"] > 0
    assert report["gaps"] == report["duplicates"] == report["lost"] == 0
