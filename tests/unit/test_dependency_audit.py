"""Dependency audit: the pinned runtime requirements have no known vulnerability.

Runs `pip-audit -r requirements.txt --strict` against PyPI's vulnerability data (the JSON
API, per pinned version). `--strict` makes a dependency that could not be audited a failure
too, so an unreachable or incomplete vulnerability service fails this test loudly: it never
skips and never passes without having looked. Advisories that cannot apply are ignored only
by id, each with its reason beside it, in `.pip-audit-ignore`.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from jose.backends import ECKey, RSAKey

ROOT = Path(__file__).resolve().parents[2]
IGNORE_FILE = ROOT / ".pip-audit-ignore"
TIMEOUT_SECONDS = 600


def ignored() -> dict[str, str]:
    """id -> reason, from `.pip-audit-ignore` (`ID  # reason` per line)."""
    entries: dict[str, str] = {}
    for number, line in enumerate(IGNORE_FILE.read_text().splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        vuln_id, _, reason = line.partition("#")
        assert vuln_id.split() == [vuln_id.strip()], f"line {number}: one id per line"
        assert reason.strip(), f"line {number}: {vuln_id.strip()} is ignored without a reason"
        entries[vuln_id.strip()] = reason.strip()
    return entries


def test_every_ignored_advisory_has_its_reason() -> None:
    entries = ignored()
    assert entries, "the file documents at least the ecdsa advisory"
    assert all(len(reason) >= 20 for reason in entries.values()), entries


def test_the_ecdsa_ignore_still_holds() -> None:
    """python-jose uses its cryptography backend, so the ecdsa package is never called."""
    assert ECKey.__module__ == "jose.backends.cryptography_backend"
    assert RSAKey.__module__ == "jose.backends.cryptography_backend"


def test_pinned_requirements_have_no_known_vulnerabilities() -> None:
    command = [
        sys.executable,
        "-m",
        "pip_audit",
        "--requirement",
        "requirements.txt",
        "--strict",
        "--vulnerability-service",
        "pypi",
        "--progress-spinner",
        "off",
        "--desc",
        "on",
    ]
    for vuln_id in ignored():
        command += ["--ignore-vuln", vuln_id]
    result = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=TIMEOUT_SECONDS, check=False
    )
    output = f"{result.stdout}\n{result.stderr}".strip()
    unaudited = [line for line in output.splitlines() if "could not be audited" in line]
    assert not unaudited, (
        "pip-audit could not check the pins against the vulnerability service (unreachable, "
        "or it does not know these versions; --strict stops at the first), so no audit "
        "happened:\n" + "\n".join(unaudited[:50])
    )
    assert result.returncode == 0, f"pip-audit found vulnerabilities (or failed):\n{output}"
