"""`make audit`: pip-audit of the pinned runtime requirements against PyPI's vulnerability data.

`--strict` makes a dependency that could not be audited a failure, so an unreachable or
incomplete vulnerability service fails the audit loudly instead of passing unlooked.
Advisories that cannot apply are ignored only by id, each with its reason, in
`.pip-audit-ignore`. It needs the internet (PyPI's per-version JSON API); the CodeBuild stage
runs it after `make test`.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
IGNORE_FILE = ROOT / ".pip-audit-ignore"


def ignored(path: Path = IGNORE_FILE) -> dict[str, str]:
    """id -> reason, from `.pip-audit-ignore` (`ID  # reason` per line)."""
    entries: dict[str, str] = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        vuln_id, _, reason = line.partition("#")
        if vuln_id.split() != [vuln_id.strip()]:
            raise ValueError(f"{path.name} line {number}: one id per line")
        if not reason.strip():
            raise ValueError(f"{path.name} line {number}: {vuln_id.strip()} has no reason")
        entries[vuln_id.strip()] = reason.strip()
    return entries


def main() -> int:
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
    return subprocess.run(command, cwd=ROOT, check=False).returncode


if __name__ == "__main__":
    sys.exit(main())
