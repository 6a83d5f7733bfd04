"""Per-request access to the process's components and the request's database session."""

from __future__ import annotations

from flask import Flask, current_app, g
from sqlalchemy.orm import Session

from services.components import Components

EXTENSION = "trellis"


def components() -> Components:
    return current_app.extensions[EXTENSION]


def db_session() -> Session:
    """The request's one session, opened on first use and closed at teardown."""
    session = g.get("db_session")
    if session is None:
        session = g.db_session = components().sessions()
    return session


def _close_session(_exc: BaseException | None) -> None:
    session = g.pop("db_session", None)
    if session is not None:
        session.close()  # rolls back whatever a service left uncommitted


def register_context(app: Flask, built: Components) -> None:
    app.extensions[EXTENSION] = built
    app.teardown_appcontext(_close_session)
