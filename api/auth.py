"""Bearer authentication and role checks."""

from __future__ import annotations

from flask import g, request

from api.context import components, unit
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
    """The request's verified token, checked once per request (the rate limiter asks first):
    `g.identity` holds the verified token, `g.identity_refusal` why it was refused."""
    refusal: TrellisError | None = g.get("identity_refusal")
    if refusal is not None:
        raise refusal
    identity: Identity | None = g.get("identity")
    if identity is not None:
        return identity
    try:
        identity = components().verifier.verify(_bearer_token())
    except TrellisError as exc:
        g.identity_refusal = exc
        raise
    g.identity = identity
    return identity


def authenticate(roles: tuple[str, ...] = ()) -> UserView:
    """Verify the bearer token (401), sync the user row, require one of `roles` (403)."""
    user = g.user = sync_user(unit(), identity=verified_identity())
    if roles and not set(user.roles).intersection(roles):
        raise Forbidden(f"This needs one of the roles: {', '.join(sorted(roles))}.")
    return user


def current_user() -> UserView:
    """The signed-in caller; set by authenticate()."""
    return g.user
