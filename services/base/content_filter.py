"""The objectionable-content filter: a term list compiled once into one regex, and the
"system" report a hit opens.

Text people send (messages, reviews, display names, bios) is checked against the operator's
terms (CONTENT_FILTER_TERMS_FILE, else the short list shipped beside this module). A hit
does not refuse the text: it is stored as sent, and the same transaction opens a report
(reason `inappropriate`, reporter `system`: reporter_id NULL) for an admin to look at; at
most one such report is open per target (a partial unique index, ON CONFLICT DO NOTHING).

Matching is case-insensitive on NFKC-casefolded text and by whole words or phrases ("class"
does not hit "ass"). The message post is a benchmarked hot path, so the work per text is one
regex search: ASCII text (the common case) is searched as it is, under re.IGNORECASE, since
NFKC leaves ASCII unchanged and casefolding ASCII is lowercasing; only other text is
normalised first.

This module sits in `base` so that both the marketplace and the accounts domains can use it
without importing each other: it imports models, never a domain package.
"""

from __future__ import annotations

import re
import unicodedata
import uuid
from collections.abc import Iterable
from pathlib import Path

from sqlalchemy.orm import Session

from models import Report
from models.base import utcnow
from services.base.db import insert_ignoring_conflict

DEFAULT_TERMS_FILE = Path(__file__).with_name("content_filter_terms.txt")


class TermsFileError(ValueError):
    """The terms file cannot be read (start-up stops with this message)."""


def fold(text: str) -> str:
    """NFKC, then casefold: fullwidth, styled and capital letters become the plain ones."""
    return unicodedata.normalize("NFKC", text).casefold()


class ContentFilter:
    """Whole-word, case-insensitive matching of a fixed term list; built once per process."""

    __slots__ = ("_pattern",)

    def __init__(self, terms: Iterable[str]) -> None:
        folded = {" ".join(fold(term).split()) for term in terms}
        folded.discard("")
        if not folded:
            self._pattern: re.Pattern[str] | None = None
            return
        # Longest first, so a phrase wins over a word it starts with; spaces inside a phrase
        # match any run of whitespace. (?<!\w)...(?!\w) bounds each term at word edges.
        alternatives = "|".join(
            r"\s+".join(re.escape(word) for word in term.split())
            for term in sorted(folded, key=len, reverse=True)
        )
        self._pattern = re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)", re.IGNORECASE)

    @classmethod
    def from_file(cls, path: str | Path | None) -> ContentFilter:
        """The terms of `path` (one a line, `#` starts a comment), or the shipped default."""
        source = Path(path) if path else DEFAULT_TERMS_FILE
        try:
            lines = source.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise TermsFileError(f"cannot read {source}: {reason}") from None
        return cls(line.split("#", 1)[0].strip() for line in lines)

    def hits(self, text: str | None) -> bool:
        """Whether `text` holds one of the terms (one regex search)."""
        if self._pattern is None or not text:
            return False
        return self._pattern.search(text if text.isascii() else fold(text)) is not None


def insert_report(
    session: Session,
    *,
    reporter_id: uuid.UUID | None,
    target_type: str,
    target_id: uuid.UUID,
    reason: str,
    details: str | None,
) -> bool:
    """Open a report of the target (reporter None: `system`); False, adding nothing, while
    the same reporter's (or the system's) report of it is open (the partial unique indexes
    of models/moderation.py)."""
    values = {
        "id": uuid.uuid4(),
        "reporter_id": reporter_id,
        "target_type": target_type,
        "target_id": target_id,
        "reason": reason,
        "details": details,
        "status": "open",
        "created_at": utcnow(),
    }
    return bool(insert_ignoring_conflict(session, Report, values, None).rowcount)


def flag(
    session: Session,
    content: ContentFilter,
    *,
    target_type: str,
    target_id: uuid.UUID,
    texts: Iterable[str | None],
) -> bool:
    """Open a system report of the target if any of `texts` hits; whether one did."""
    if any(content.hits(text) for text in texts):
        insert_report(
            session,
            reporter_id=None,
            target_type=target_type,
            target_id=target_id,
            reason="inappropriate",
            details="The content filter matched a listed term.",
        )
        return True
    return False
