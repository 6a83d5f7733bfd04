"""The apps' SDKs, generated from the OpenAPI document (`make sdk`), and their compilers.

    .venv/bin/python -m devstack.sdk                 # sdk/typescript, sdk/kotlin, sdk/swift
    .venv/bin/python -m devstack.sdk --spec URL      # from a running service's /openapi.json

openapi-generator-cli (PyPI, requirements-dev.txt) bundles the Java generator: typescript-fetch
for React Native and the web, kotlin (okhttp, gson) for Android, swift6 for iOS (swift5 is
deprecated and pulls a dependency from GitHub). Generation fails on any warning but the
generator's own "OpenAPI 3.1 support is still in beta". The output is git-ignored: it is made
from the document in seconds, so a committed copy would only go stale (docs/clients.md).

The compilers the tests use come from npm, pinned in sdk/package.json and sdk/package-lock.json
and installed into sdk/node_modules (git-ignored) with `npm ci`: `typescript` (tsc --strict)
and `kotlin-compiler` (kotlinc, run on the JDK); the Kotlin client's okhttp, okio and gson
jars come from the local Maven repository (~/.m2).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SDK = ROOT / "sdk"
BETA_NOTICE = "OpenAPI 3.1 support is still in beta"

# name -> (generator, its options): what `make sdk` writes to sdk/<name>.
CLIENTS: dict[str, tuple[str, dict[str, str]]] = {
    "typescript": ("typescript-fetch", {"supportsES6": "true"}),
    "kotlin": (
        "kotlin",
        {"serializationLibrary": "gson", "packageName": "app.trellis.client"},
    ),
    "swift": ("swift6", {"projectName": "TrellisClient"}),
}

# The Kotlin client's runtime, as these machines' ~/.m2 holds it: (group path, artifact, version).
KOTLIN_JARS = (
    ("com/squareup/okhttp3", "okhttp", "4.12.0"),
    ("com/squareup/okio", "okio-jvm", "3.6.0"),
    ("com/google/code/gson", "gson", None),  # the newest 2.x there
)


class ToolMissing(RuntimeError):
    """A tool the SDKs need is not installed; the message says how to install it."""


class GeneratorWarned(RuntimeError):
    """openapi-generator warned about something other than its 3.1 beta notice."""


def require(tool: str, install: str) -> str:
    found = shutil.which(tool)
    if not found:
        raise ToolMissing(f"{tool} is not installed: {install}")
    return found


def spec_document() -> dict[str, Any]:
    """The OpenAPI document exactly as /openapi.json serves it, built in process (no server,
    no AWS: a throwaway in-memory database and a placeholder user pool)."""
    from api import create_app, openapi
    from services.base.settings import Settings

    settings = Settings.model_validate(
        {
            "APP_ENV": "test",
            "DATABASE_URL": "sqlite://",
            "COGNITO_USER_POOL_ID": "us-east-1_SdkBuild0",
            "COGNITO_APP_CLIENT_IDS": "sdk-build",
            "OUTBOX_RELAY_IN_WEB": "false",
            "DATA_EXPORTS_IN_WEB": "false",
            "RATE_LIMIT_ENABLED": "false",
        }
    )
    return openapi.build(create_app(settings))


def fetch_document(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=30) as response:  # noqa: S310 - the operator's URL
        return json.loads(response.read())


def generator_cli() -> str:
    beside_python = Path(sys.executable).with_name("openapi-generator-cli")
    if beside_python.exists():
        return str(beside_python)
    return require("openapi-generator-cli", "pip install -r requirements-dev.txt")


def generate_one(spec: Path, name: str, out: Path) -> list[str]:
    """Generate client `name` into `out` (replaced); the generator's warnings."""
    require("java", "apt-get install default-jre-headless (openapi-generator runs on Java 11+)")
    generator, options = CLIENTS[name]
    shutil.rmtree(out, ignore_errors=True)
    command = [generator_cli(), "generate", "-i", str(spec), "-g", generator, "-o", str(out)]
    command += ["--additional-properties=" + ",".join(f"{k}={v}" for k, v in options.items())]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    output = done.stdout + done.stderr
    if done.returncode != 0:
        raise RuntimeError(f"openapi-generator {generator} failed:\n{output[-4000:]}")
    return [line for line in output.splitlines() if " WARN " in line]


def generate(spec: Path, out: Path, names: tuple[str, ...] = tuple(CLIENTS)) -> dict[str, Path]:
    """Every client into out/<name>, side by side; GeneratorWarned on any warning but the
    3.1 beta notice."""
    with ThreadPoolExecutor(len(names)) as pool:
        warned = dict(
            zip(names, pool.map(lambda n: generate_one(spec, n, out / n), names), strict=True)
        )
    unexpected = {n: [w for w in ws if BETA_NOTICE not in w] for n, ws in warned.items()}
    unexpected = {n: ws for n, ws in unexpected.items() if ws}
    if unexpected:
        raise GeneratorWarned(json.dumps(unexpected, indent=2))
    return {name: out / name for name in names}


# ---------------------------------------------------------------- compilers


def node_tools() -> Path:
    """sdk/node_modules with the pinned compilers, installed with `npm ci` when missing or
    older than the lock file."""
    require("node", "apt-get install nodejs npm (Node.js 18 or newer)")
    npm = require("npm", "apt-get install npm")
    stamp = SDK / "node_modules" / ".package-lock.json"
    lock = SDK / "package-lock.json"
    if not stamp.exists() or stamp.stat().st_mtime < lock.stat().st_mtime:
        done = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=SDK,
            capture_output=True,
            text=True,
            timeout=900,
        )
        if done.returncode != 0:
            raise ToolMissing(
                f"npm ci in {SDK} failed (the npm registry must be reachable):\n"
                + done.stdout
                + done.stderr
            )
    return SDK / "node_modules"


def tsc() -> list[str]:
    return ["node", str(node_tools() / "typescript" / "bin" / "tsc")]


def kotlinc() -> list[str]:
    require("java", "apt-get install openjdk-17-jdk-headless")
    home = node_tools() / "kotlin-compiler"
    # npm keeps the package's bin/ scripts without their executable bit: run them with bash.
    return ["bash", str(home / "bin" / "kotlinc")]


def kotlin_stdlib() -> Path:
    """The stdlib the compiler brings (lib/kotlin-stdlib.jar), for running what it built."""
    return node_tools() / "kotlin-compiler" / "lib" / "kotlin-stdlib.jar"


def maven_jars(repository: Path | None = None) -> list[Path]:
    """okhttp, okio and gson for the Kotlin client, from the local Maven repository."""
    repository = repository or Path(os.environ.get("M2_REPOSITORY", Path.home() / ".m2/repository"))
    jars = []
    for group, artifact, version in KOTLIN_JARS:
        base = repository / group / artifact
        if version is None:
            versions = sorted(
                (p.name for p in base.glob("2.*") if (p / f"{artifact}-{p.name}.jar").exists()),
                key=lambda v: tuple(int(x) if x.isdigit() else 0 for x in v.split(".")),
            )
            version = versions[-1] if versions else "2.x"
        jar = base / version / f"{artifact}-{version}.jar"
        if not jar.exists():
            raise ToolMissing(
                f"{jar} is missing: the Kotlin client needs {artifact} {version} in the local "
                "Maven repository (mvn dependency:get -Dartifact="
                f"{group.replace('/', '.')}:{artifact}:{version})"
            )
        jars.append(jar)
    return jars


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spec", help="URL of /openapi.json (default: built in process)")
    parser.add_argument("--out", type=Path, default=SDK, help="where sdk/<client> go")
    args = parser.parse_args(argv)
    document = fetch_document(args.spec) if args.spec else spec_document()
    args.out.mkdir(parents=True, exist_ok=True)
    spec = args.out / "openapi.json"
    spec.write_text(json.dumps(document, indent=1))
    try:
        made = generate(spec, args.out)
    except (ToolMissing, GeneratorWarned) as exc:
        print(f"make sdk: {exc}", file=sys.stderr)
        return 1
    for name, path in made.items():
        print(f"{name:<10} {CLIENTS[name][0]:<16} {os.path.relpath(path)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
