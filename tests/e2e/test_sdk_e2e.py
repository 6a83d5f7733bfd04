"""The apps' SDKs (`make sdk`, devstack/sdk.py) from the live service's /openapi.json: all
three generate with no warning but the generator's 3.1 beta notice; the TypeScript client
compiles with `tsc --strict` and drives the journey against the live service; the Kotlin
client compiles and makes authenticated calls; the Swift client (no Swift toolchain here) is
checked as text. Generated and compiled once per session; the npm compilers are cached in
sdk/node_modules (git-ignored)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from devstack import sdk
from devstack.cognito import add_user, sign_in
from tests.e2e.conftest import Stack

pytestmark = pytest.mark.e2e

HERE = Path(__file__).parent / "sdk"


def run(command: list[str], *, timeout: float = 900, **kwargs: object) -> str:
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, **kwargs)  # type: ignore[call-overload]
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"{command[:3]} exited {done.returncode}:\n{output[-6000:]}"
    return done.stdout


def tool(call):  # type: ignore[no-untyped-def]
    """A missing tool fails the test at once with the command that installs it."""
    try:
        return call()
    except sdk.ToolMissing as exc:
        pytest.fail(str(exc))


@pytest.fixture(scope="module")
def spec(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sdk") / "openapi.json"
    path.write_text(json.dumps(sdk.fetch_document(f"{stack.base_url}/openapi.json")))
    return path


@pytest.fixture(scope="module")
def clients(spec: Path) -> dict[str, Path]:
    """The three clients, as `make sdk` makes them; GeneratorWarned fails every test here."""
    return tool(lambda: sdk.generate(spec, spec.parent))


def operation_ids(spec: Path) -> list[str]:
    paths = json.loads(spec.read_text())["paths"]
    return sorted(op["operationId"] for item in paths.values() for op in item.values())


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


def new_user(stack: Stack, role: str) -> str:
    name = f"sdk-{role}-{uuid.uuid4().hex[:8]}"
    add_user(stack.pool, name, email=f"{name}@example.com", groups=[f"{role}s"])
    return sign_in(stack.pool, name)["access"]


def test_make_sdk_writes_the_three_clients_with_no_warning(clients: dict[str, Path]) -> None:
    assert sorted(clients) == ["kotlin", "swift", "typescript"]
    assert (clients["typescript"] / "apis" / "index.ts").exists()
    assert list((clients["kotlin"] / "src" / "main" / "kotlin").rglob("MeApi.kt"))
    assert (clients["swift"] / "Package.swift").exists()


def test_the_typescript_client_drives_the_journey_against_the_service(
    stack: Stack, clients: dict[str, Path], tmp_path: Path
) -> None:
    build = tmp_path / "ts"
    shutil.copytree(clients["typescript"], build / "client")
    shutil.copy(HERE / "journey.ts", build / "journey.ts")
    tsc = tool(sdk.tsc)
    options = ["--strict", "--target", "es2022", "--module", "commonjs", "--lib", "es2022,dom"]
    run(
        [*tsc, *options, "--outDir", str(build / "out"), "journey.ts", "client/index.ts"], cwd=build
    )
    env = {
        **os.environ,
        "TRELLIS_BASE_URL": stack.base_url,
        "CONSUMER_TOKEN": new_user(stack, "consumer"),
        "PROVIDER_TOKEN": new_user(stack, "provider"),
        "RUN_ID": uuid.uuid4().hex[:8],
    }
    out = run(["node", str(build / "out" / "journey.js")], env=env, timeout=120)
    result = json.loads(out.strip().splitlines()[-1])
    assert result["status"] == "accepted"
    assert result["conflict"] == "/problems/sync-conflict"


def test_the_kotlin_client_compiles_and_calls_the_service(
    stack: Stack, clients: dict[str, Path], tmp_path: Path
) -> None:
    jars = tool(sdk.maven_jars)
    kotlinc = tool(sdk.kotlinc)
    sources = sorted(str(p) for p in (clients["kotlin"] / "src" / "main").rglob("*.kt"))
    classes = tmp_path / "classes"
    classpath = ":".join(map(str, jars))
    run(
        [*kotlinc, "-nowarn", "-cp", classpath, "-d", str(classes), *sources, str(HERE / "Main.kt")]
    )
    runtime = ":".join([str(classes), classpath, str(sdk.kotlin_stdlib())])
    token = new_user(stack, "consumer")
    out = run(["java", "-cp", runtime, "MainKt", stack.base_url, token], timeout=120)
    assert json.loads(out.strip().splitlines()[-1])["refused"] == 401


def test_the_swift_client_has_every_operation_and_no_outside_dependency(
    spec: Path, clients: dict[str, Path]
) -> None:
    sources = clients["swift"] / "Sources" / "TrellisClient"
    text = "\n".join(p.read_text() for p in sources.rglob("*.swift"))
    missing = [op for op in operation_ids(spec) if f"class func {camel(op)}(" not in text]
    assert not missing, missing
    assert not re.search(r"\b(TODO|FIXME)\b", text)
    package = (clients["swift"] / "Package.swift").read_text()
    assert "swift-tools-version:6" in package and ".package(url:" not in package
    # Every schema became a model.
    schemas = json.loads(spec.read_text())["components"]["schemas"]
    models = {p.stem for p in (sources / "Models").glob("*.swift")}
    assert not set(schemas) - models, sorted(set(schemas) - models)
