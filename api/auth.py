"""Bearer authentication and role checks for routes."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import ParamSpec, TypeVar

from flask import g, request

from api.context import components, db_session
from api.errors import MissingToken
from services.errors import Forbidden, InvalidToken
from services.users import UserView, sync_user

P = ParamSpec("P")
R = TypeVar("R")


def _bearer_token() -> str:
    header = request.headers.get("Authorization")
    if not header:
        raise MissingToken()
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise InvalidToken("authorization header is not 'Bearer <token>'")
    return token.strip()


def current_user() -> UserView:
    """The signed-in caller; only valid inside a route guarded by @authenticated."""
    return g.user


def authenticated(*roles: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Require a valid Cognito token (401 otherwise) and, if given, one of `roles` (403)."""

    def decorate(view: Callable[P, R]) -> Callable[P, R]:
        @wraps(view)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            identity = components().verifier.verify(_bearer_token())
            g.user = sync_user(db_session(), identity=identity)
            if roles and not identity.roles.intersection(roles):
                raise Forbidden(f"This needs one of the roles: {', '.join(sorted(roles))}.")
            return view(*args, **kwargs)

        return wrapper

    return decorate
