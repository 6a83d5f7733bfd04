"""The soak in its short form, inside the suite: 60 real Cognito users book, accept, message
and sync for 30 s while PostgreSQL is cut (twice) and refused, and Redis, the JWKS and SNS
go down; then every acknowledged write is found by SQL and every push at SNS.

The long form is `make soak` (python -m tests.soak.run): 300 users for four minutes.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.soak.faults import KINDS
from tests.soak.run import SHORT, failures, render, run_soak

pytestmark = pytest.mark.e2e


def test_the_short_soak_loses_no_write_and_answers_only_documented_errors(
    tmp_path: Path,
) -> None:
    summary = run_soak(SHORT, json_path=tmp_path / "soak.json")
    print("\n" + render(summary))
    assert summary["violations"] == []  # no 5xx but 503 with Retry-After, no lost answer
    assert summary["problems"] == []  # no lost, changed or duplicated write; no lost push
    assert set(summary["server_log"].values()) == {0}
    assert failures(summary) == []
    assert all(summary["faults"][kind] >= 1 for kind in KINDS), summary["faults"]
    assert int(summary["responses"].get("503", 0)) > 0  # the database faults were felt

    writes = summary["writes"]["acknowledged"]
    for kind in ("bookings", "messages", "accepts", "sync_records"):
        assert writes[kind] > 0, writes  # every kind of write was made, and checked
    checked = writes["bookings"] + writes["messages"] + writes["accepts"] + writes["sync_records"]
    assert summary["writes"]["checked"] == checked
    notes = summary["notifications"]
    assert notes["outbox_rows"] > 0
    assert notes["delivered"] == notes["outbox_rows"] == notes["pushes_expected"]
    assert notes["pushes_received_by_sns"] >= notes["pushes_expected"]  # at least once
    assert json.loads((tmp_path / "soak.json").read_text())["requests"] == summary["requests"]
