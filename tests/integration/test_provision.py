"""devstack/provision.sh, which `make test` and `.ci/run` call before any test: it passes in
seconds when everything is there, and refuses in seconds, with the exact command to run,
when a tool is missing and it may not install it."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "devstack" / "provision.sh"
SEARCH = f"{os.environ.get('PATH', '')}:/usr/sbin:/sbin"
# What the script itself runs, and the tools it finds present on this machine.
SCRIPT_TOOLS = ("bash", "env", "id", "sed", "ls", "sort", "tail", "seq", "sleep")
SUITE_TOOLS = ("chromium", "pg_isready", "psql", "redis-cli", "redis-server", "java", "node", "npm")


def provision(*args: str, **env: str) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    result = subprocess.run(
        ["bash", str(SCRIPT), *args],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    return result, time.monotonic() - started


def path_without(tmp_path: Path, *missing: str) -> str:
    """A directory holding links to every tool the script looks for, except `missing`."""
    for name in SCRIPT_TOOLS + SUITE_TOOLS + ("nginx", "wrk"):
        found = shutil.which(name, path=SEARCH)
        assert found, f"{name} is needed on this machine for the test itself"
        if name not in missing:
            (tmp_path / name).symlink_to(found)
    return str(tmp_path)


def test_passes_in_seconds_when_everything_is_there() -> None:
    result, seconds = provision("--check")
    assert result.returncode == 0, result.stderr
    assert "are ready" in result.stderr
    assert seconds < 5


def test_a_missing_tool_stops_it_in_seconds_with_the_command_to_run(tmp_path: Path) -> None:
    directory = path_without(tmp_path, "nginx", "wrk")
    result, seconds = provision("--check", PATH=directory, PROVISION_PATH=directory)
    assert result.returncode == 1
    hint = "" if os.getuid() == 0 else "sudo "
    assert f"  run: {hint}apt-get install -y nginx-light wrk\n" in result.stderr
    assert "chromium" not in result.stderr.split("run:")[1]
    assert seconds < 5


def test_check_never_installs_even_when_it_could(tmp_path: Path) -> None:
    # PROVISION=check is the environment form of --check; as root the script could install.
    directory = path_without(tmp_path, "chromium")
    result, _ = provision(PATH=directory, PROVISION_PATH=directory, PROVISION="check")
    assert result.returncode == 1
    assert "installing" not in result.stderr
    assert "apt-get install -y chromium\n" in result.stderr


def test_the_kotlin_sdks_jars_missing_stop_it_with_the_maven_commands(tmp_path: Path) -> None:
    result, seconds = provision("--check", M2_REPOSITORY=str(tmp_path))
    assert result.returncode == 1
    for coordinate in (
        "com.squareup.okhttp3:okhttp:4.12.0",
        "com.squareup.okio:okio-jvm:3.6.0",
        "com.google.code.gson:gson:2.13.2",
    ):
        command = f"mvn -q dependency:get -Dartifact={coordinate} -Dmaven.repo.local={tmp_path}"
        assert f"  run: {command}\n" in result.stderr, result.stderr
    assert seconds < 5


@pytest.mark.parametrize(
    ("url", "command"),
    [
        ("postgresql://postgres@127.0.0.1:5432/trellis_absent", "createdb trellis_absent"),
        ("postgresql://postgres@127.0.0.1:1/test", "main start"),
    ],
)
def test_an_unusable_database_stops_it_with_the_command_to_run(url: str, command: str) -> None:
    result, seconds = provision("--check", TEST_DATABASE_URL=url)
    assert result.returncode == 1
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("  run: ")]
    assert line.endswith(command)
    assert seconds < 5


def test_make_test_and_ci_call_it_first() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert "test: provision " in makefile and "\t@devstack/provision.sh" in makefile
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert ci[-2:] == ["devstack/provision.sh", "make test"]
