"""The README documents every setting the service and gunicorn read."""

from __future__ import annotations

import re
from pathlib import Path

from services.base.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def test_every_setting_is_in_the_readme() -> None:
    readme = (ROOT / "README.md").read_text()
    names = {field.alias for field in Settings.model_fields.values() if field.alias}
    names |= set(re.findall(r'"([A-Z][A-Z_]{3,})"', (ROOT / "gunicorn.conf.py").read_text()))
    missing = sorted(name for name in names if f"`{name}`" not in readme)
    assert not missing, f"document these in the README's Settings table: {missing}"
