"""The dependency audit's ignore list stays honest (the audit itself is `make audit`, which
needs PyPI's vulnerability data; see deploy/audit.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from jose.backends import ECKey, RSAKey

from deploy.audit import ignored


def test_every_ignored_advisory_has_its_reason() -> None:
    entries = ignored()
    assert entries, "the file documents at least the ecdsa advisory"
    assert all(len(reason) >= 20 for reason in entries.values()), entries


def test_an_ignore_without_a_reason_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "ignore"
    bad.write_text("GHSA-xxxx-yyyy-zzzz\n")
    with pytest.raises(ValueError, match="no reason"):
        ignored(bad)


def test_the_ecdsa_ignore_still_holds() -> None:
    """python-jose uses its cryptography backend, so the ecdsa package is never called."""
    assert ECKey.__module__ == "jose.backends.cryptography_backend"
    assert RSAKey.__module__ == "jose.backends.cryptography_backend"
