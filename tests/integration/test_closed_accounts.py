"""A purged account's tokens are refused (401), never revived as a new user; a suspended
account's are refused (403) from the next request on, and accepted again once lifted."""

from __future__ import annotations

import uuid

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from models import User
from models.base import utcnow

CLOSED = "/problems/account-closed"
SUSPENDED = "/problems/account-suspended"


def _set(session: Session, user_id: str, **values: object) -> None:
    session.execute(update(User).where(User.id == uuid.UUID(user_id)).values(**values))
    session.commit()


def test_a_token_of_a_purged_account_is_401_and_brings_nothing_back(actors, session) -> None:  # type: ignore[no-untyped-def]
    consumer = actors("consumer")
    _set(session, consumer.id, purged_at=utcnow(), email=None, display_name=None)
    for _ in range(2):  # the refusal writes nothing that would let a second try through
        response = consumer.get("/v1/me")
        assert response.status_code == 401, response.get_data(as_text=True)
        problem = response.get_json()
        assert problem["type"] == CLOSED
        assert "deleted" in problem["detail"]
        assert response.headers["WWW-Authenticate"].startswith('Bearer realm="trellis"')
    # Still the one tombstone: no new, empty user for the same sub.
    assert session.scalar(select(func.count()).select_from(User)) == 1
    assert session.scalar(select(User.purged_at)) is not None


def test_a_purged_account_is_refused_even_when_its_token_would_update_the_row(  # type: ignore[no-untyped-def]
    actors, session
) -> None:
    # New roles in the token take the write path (bookkeeping): it refuses too.
    consumer = actors("consumer")
    _set(session, consumer.id, purged_at=utcnow(), roles=[])
    response = consumer.get("/v1/me")
    assert response.status_code == 401
    assert response.get_json()["type"] == CLOSED
    assert session.scalar(select(User.roles)) == []


def test_a_suspended_account_is_403_on_every_route_until_lifted(actors, session) -> None:  # type: ignore[no-untyped-def]
    consumer = actors("consumer")
    assert consumer.get("/v1/me").status_code == 200
    _set(session, consumer.id, suspended_at=utcnow())
    for method, path in (("GET", "/v1/me"), ("GET", "/v1/bookings"), ("PATCH", "/v1/me")):
        response = consumer.client.open(
            path, method=method, headers=consumer.headers(), json={"display_name": "X"}
        )
        assert response.status_code == 403, (path, response.get_data(as_text=True))
        assert response.get_json()["type"] == SUSPENDED
    assert session.scalar(select(User.display_name)) is None
    _set(session, consumer.id, suspended_at=None)
    assert consumer.get("/v1/me").status_code == 200
