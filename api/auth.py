"""Bearer authentication and role checks."""

from __future__ import annotations

import time

from flask import g, request

from api.context import components, unit
from api.errors import MissingToken
from services.accounts.auth import Identity
from services.accounts.users import UserView, sync_user
from services.base.errors import (
    Forbidden,
    InvalidToken,
    ReauthenticationRequired,
    TrellisError,
)


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


def require_recent_sign_in(max_age_seconds: int) -> None:
    """401 (reauthentication required) unless the caller signed in at most `max_age_seconds`
    ago: the token's `auth_time`, which refreshing the token does not move. A token without
    one cannot show a recent sign-in."""
    auth_time = verified_identity().auth_time
    if auth_time is None or time.time() - auth_time > max_age_seconds:
        raise ReauthenticationRequired(max_age_seconds)


def current_user() -> UserView:
    """The signed-in caller; set by authenticate()."""
    return g.user
