"""GET and HEAD read through autocommit sessions of their own pool; a write there raises."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, insert, select
from sqlalchemy.orm import Session

from models import User
from models.base import utcnow
from services.db import WriteOnReadSession, build_engine, read_session_factory
from tests.conftest import make_settings


@pytest.fixture
def read_engine(database_url: str) -> Iterator[Engine]:
    engine = build_engine(make_settings(database_url), autocommit=True)
    yield engine
    engine.dispose()


def _user() -> User:
    now = utcnow()
    sub = f"sub-{uuid.uuid4().hex[:8]}"
    return User(
        id=uuid.uuid4(),
        cognito_sub=sub,
        roles=[],
        role_revocations={},
        created_at=now,
        updated_at=now,
    )


def test_reads_work_and_every_kind_of_write_is_refused(read_engine: Engine) -> None:
    sessions = read_session_factory(read_engine)
    with sessions() as session:
        assert session.execute(select(User.id).limit(1)).all() is not None
        with pytest.raises(WriteOnReadSession):
            session.execute(insert(User).values(cognito_sub="x", roles=[], role_revocations={}))
        session.add(_user())
        with pytest.raises(WriteOnReadSession):
            session.flush()


def test_the_connection_is_in_autocommit_mode(read_engine: Engine) -> None:
    with read_session_factory(read_engine)() as session:
        connection = session.connection().connection.dbapi_connection
        assert connection is not None and connection.autocommit is True


def test_a_get_that_must_create_the_user_writes_on_a_transactional_session(
    committed_app: object, tokens: object, engine: Engine
) -> None:
    """The first request of a new user is a GET: the user row is created on the primary."""
    client = committed_app.test_client()  # type: ignore[attr-defined]
    response = client.get("/v1/me", headers=tokens.header("brand-new"))  # type: ignore[attr-defined]
    assert response.status_code == 200
    with Session(engine) as session:
        assert session.scalar(select(User.id).where(User.cognito_sub == "brand-new")) is not None
