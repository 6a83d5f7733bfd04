"""Per-request access to the process's components and the request's unit of work.

The `g` keys Trellis keeps are few and listed in docs/architecture.md: `unit` (here),
`identity`, `identity_refusal` and `user` (api/auth.py), `request_id` and `started`
(api/request_log.py).
"""

from __future__ import annotations

from flask import Flask, current_app, g, request

from services.base.unit_of_work import UnitOfWork
from services.components import Components

EXTENSION = "trellis"


def components() -> Components:
    return current_app.extensions[EXTENSION]


def unit() -> UnitOfWork:
    """The request's unit of work, opened by the @endpoint wrapper."""
    return g.unit


def public_base_url() -> str:
    """The API's public base URL, without a trailing /: API_PUBLIC_URL, else the URL this
    request came in on (what the app reached)."""
    return (components().settings.api_public_url or request.host_url).rstrip("/")


def open_unit(*, writes: bool, subject: str | None) -> UnitOfWork:
    """The unit of work of this request: reads or writes, as the endpoint declared."""
    built = components()
    g.unit = UnitOfWork(
        writes=writes,
        sessions=built.sessions,
        read_sessions=built.read_sessions,
        reads=built.reads,
        subject=subject,
    )
    return g.unit


def database_route() -> str | None:
    """Where the request's database work went ("primary", "replica:<name>"), for the log."""
    opened: UnitOfWork | None = g.get("unit")
    return opened.route if opened is not None else None


def register_context(app: Flask, built: Components) -> None:
    app.extensions[EXTENSION] = built
