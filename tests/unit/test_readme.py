"""The README and docs/ keep their promises: every setting the service and gunicorn read has
a row in docs/settings.md, and every relative link leads to a file that exists."""

from __future__ import annotations

import re
from pathlib import Path

from services.base.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
SETTINGS_DOC = ROOT / "docs" / "settings.md"
# Markdown links that are not URLs or in-page anchors: [text](path) or [text](path#anchor).
_RELATIVE_LINK = re.compile(r"\]\((?!https?://|mailto:|#)([^)#\s]+)(?:#[^)]*)?\)")
_COMMENT = re.compile(r"<!--.*?-->", re.DOTALL)


def links(path: Path) -> list[str]:
    """Relative link targets, leaving out HTML comments (the README keeps a commented row
    for a docs file still to come)."""
    return _RELATIVE_LINK.findall(_COMMENT.sub("", path.read_text()))


def read_settings() -> set[str]:
    names = {field.alias for field in Settings.model_fields.values() if field.alias}
    names |= set(re.findall(r'"([A-Z][A-Z_]{3,})"', (ROOT / "gunicorn.conf.py").read_text()))
    return names


def documented_settings(text: str) -> set[str]:
    """The names in the first cell of each row of the settings table (a row may name a few:
    `GUNICORN_MAX_REQUESTS` / `GUNICORN_MAX_REQUESTS_JITTER`)."""
    names: set[str] = set()
    for line in text.splitlines():
        if line.startswith("| `"):
            first_cell = line.split("|")[1]
            names |= set(re.findall(r"`([A-Z][A-Z0-9_]+)`", first_cell))
    return names


def test_every_setting_has_a_row_in_docs_settings() -> None:
    missing = sorted(read_settings() - documented_settings(SETTINGS_DOC.read_text()))
    assert not missing, f"document these in docs/settings.md: {missing}"


def test_a_setting_named_only_in_passing_does_not_count() -> None:
    # The check reads the table's first column: a mention in a sentence or in another row's
    # meaning is not a row of its own.
    text = "| `APP_ENV` | `production` | unlike `LOG_LEVEL` |\n`DATABASE_URL` is required\n"
    assert documented_settings(text) == {"APP_ENV"}


def test_the_readme_links_to_every_docs_file_and_every_link_resolves() -> None:
    linked = set(links(ROOT / "README.md"))
    for doc in sorted((ROOT / "docs").glob("*.md")):
        assert f"docs/{doc.name}" in linked, f"the README's Documentation table lacks {doc.name}"
    for source in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for target in links(source):
            assert (source.parent / target).exists(), f"{source.name} links to missing {target}"
