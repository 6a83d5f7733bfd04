"""Every log line the suite produces is scanned for bearer tokens (JWTs): none may appear."""

from __future__ import annotations

import logging
import re

# Three base64url segments, the first two JSON objects ("eyJ" is base64 for '{"').
JWT = re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*")


class TokenScanner(logging.Handler):
    """Formats every record (message, extras, traceback) and remembers any that hold a JWT."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.leaks: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = " ".join(
            str(part)
            for part in (
                record.getMessage(),
                record.__dict__,
                self.formatException(record.exc_info) if record.exc_info else "",
            )
        )
        if JWT.search(text):
            self.leaks.append(f"{record.name}: {record.getMessage()[:200]}")

    @staticmethod
    def formatException(exc_info: object) -> str:
        return logging.Formatter().formatException(exc_info)  # type: ignore[arg-type]


def leaks_in(text: str) -> list[str]:
    return [match.group(0)[:40] + "…" for match in JWT.finditer(text)]
