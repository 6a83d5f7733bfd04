"""Build the Elastic Beanstalk source bundle the way the EB CLI does (`git archive` of HEAD).

`--tier worker` leaves out the web-only .ebextensions (files named *-web-*): they refer to
the load balancer, which a worker environment does not have.

    python -m deploy.bundle --tier web --out trellis-web.zip
"""

from __future__ import annotations

import argparse
import fnmatch
import io
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WEB_ONLY = ".ebextensions/*-web-*"


def build(out: Path, *, tier: str = "web", ref: str = "HEAD", root: Path = ROOT) -> list[str]:
    """Write the bundle to `out`; returns the names it contains."""
    archive = subprocess.run(
        ["git", "archive", "--format=zip", ref], cwd=root, check=True, capture_output=True
    ).stdout
    names = []
    with (
        zipfile.ZipFile(io.BytesIO(archive)) as source,
        zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as bundle,
    ):
        for info in source.infolist():
            if tier == "worker" and fnmatch.fnmatch(info.filename, WEB_ONLY):
                continue
            if not info.external_attr >> 16:  # git gives plain files no mode: make them 0644
                info.external_attr = (0o100644 if not info.is_dir() else 0o40755) << 16
            bundle.writestr(info, source.read(info))  # keeps modes: hooks stay executable
            names.append(info.filename)
    return names


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tier", choices=["web", "worker"], default="web")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--ref", default="HEAD")
    args = parser.parse_args(argv)
    names = build(args.out, tier=args.tier, ref=args.ref)
    print(f"{args.out}: {len(names)} entries ({args.tier} tier)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
