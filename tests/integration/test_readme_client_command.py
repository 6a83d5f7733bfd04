"""The README's openapi-python-client command, run exactly as written from a checkout whose
venv is not on PATH: it generates the client without a single warning."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

from flask.testing import FlaskClient

ROOT = Path(__file__).resolve().parents[2]


def readme_command() -> str:
    (line,) = [
        line
        for line in (ROOT / "README.md").read_text().splitlines()
        if "openapi-python-client generate" in line and not line.startswith("(")
    ]
    return re.sub(r"\s+#.*$", "", line)  # without the trailing comment


def test_the_readmes_python_client_command_does_not_warn(
    client: FlaskClient, tmp_path: Path
) -> None:
    (tmp_path / "trellis.json").write_text(json.dumps(client.get("/openapi.json").get_json()))
    (tmp_path / ".venv").symlink_to(ROOT / ".venv")  # the command runs from the checkout
    generated = subprocess.run(
        ["bash", "-c", readme_command()],
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},  # no venv on PATH
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = generated.stdout + generated.stderr
    assert generated.returncode == 0, output
    assert "Warning" not in output and "not in PATH" not in output, output
    assert (tmp_path / "trellis-api-client" / "pyproject.toml").exists()
