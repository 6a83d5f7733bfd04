"""Bearer authentication and role checks."""

from __future__ import annotations

from flask import g, request

from api.context import components, db_session, primary_session
from api.errors import MissingToken
from services.accounts.auth import Identity
from services.accounts.users import UserView, sync_user
from services.base.errors import Forbidden, InvalidToken, TrellisError


def _bearer_token() -> str:
    header = request.headers.get("Authorization")
    if not header:
        raise MissingToken()
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise InvalidToken("authorization header is not 'Bearer <token>'")
    return token.strip()


def verified_identity() -> Identity:
    """The request's verified token, checked once per request (the rate limiter asks first)."""
    cached = g.get("identity")
    if isinstance(cached, Exception):
        raise cached
    if cached is not None:
        return cached
    try:
        identity = components().verifier.verify(_bearer_token())
    except TrellisError as exc:
        g.identity = exc
        raise
    g.identity = identity
    return identity


def authenticate(roles: tuple[str, ...] = ()) -> UserView:
    """Verify the bearer token (401), sync the user row, require one of `roles` (403)."""
    identity = verified_identity()
    user = g.user = sync_user(db_session(), identity=identity, primary=primary_session)
    if roles and not set(user.roles).intersection(roles):
        raise Forbidden(f"This needs one of the roles: {', '.join(sorted(roles))}.")
    return user


def current_user() -> UserView:
    """The signed-in caller; set by authenticate()."""
    return g.user
