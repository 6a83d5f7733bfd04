"""Fixtures shared by every suite: a migrated PostgreSQL database, the app, tokens."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import Connection, Engine, create_engine
from sqlalchemy.orm import Session, sessionmaker

from api import create_app
from models import Base
from services.base.settings import Settings
from services.components import Components, build_components
from tests.support.database import fresh_database
from tests.support.fakes import FakePush, FakeStore
from tests.support.tokens import CLIENT_ID, POOL_ID, FakeJwksFetcher, SigningKey, token_for


@pytest.fixture(scope="session", autouse=True)
def no_token_in_any_log() -> Iterator[None]:
    """Across the whole run, no log record may carry a bearer token (checked at the end)."""
    import logging

    from tests.support.log_scan import TokenScanner

    scanner = TokenScanner()
    root = logging.getLogger()
    root.addHandler(scanner)
    yield
    root.removeHandler(scanner)
    assert not scanner.leaks, f"tokens in the logs: {scanner.leaks[:5]}"


@pytest.fixture(scope="session")
def signing_key() -> SigningKey:
    return SigningKey()


@pytest.fixture
def jwks(signing_key: SigningKey) -> FakeJwksFetcher:
    return FakeJwksFetcher(signing_key)


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    """One freshly migrated PostgreSQL database for the whole run."""
    with fresh_database() as url:
        yield url


@pytest.fixture(scope="session")
def engine(database_url: str) -> Iterator[Engine]:
    engine = create_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def connection(engine: Engine) -> Iterator[Connection]:
    """A connection inside a transaction that is rolled back after the test."""
    with engine.connect() as connection:
        transaction = connection.begin()
        yield connection
        transaction.rollback()


@pytest.fixture
def sessions(connection: Connection) -> sessionmaker[Session]:
    # Commits inside the code under test release a SAVEPOINT; the outer rollback undoes all.
    return sessionmaker(
        bind=connection, join_transaction_mode="create_savepoint", expire_on_commit=False
    )


@pytest.fixture
def session(sessions: sessionmaker[Session]) -> Iterator[Session]:
    with sessions() as session:
        yield session


def make_settings(database_url: str, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "APP_ENV": "test",
        "DATABASE_URL": database_url,
        "COGNITO_USER_POOL_ID": POOL_ID,
        "COGNITO_APP_CLIENT_IDS": CLIENT_ID,
        "LOG_LEVEL": "INFO",
        "OUTBOX_RELAY_IN_WEB": "false",
        "RATE_LIMIT_DEFAULT": "100000/minute",
        "RATE_LIMIT_ANONYMOUS": "100000/minute",
        "RATE_LIMIT_UPLOADS": "100000/minute",
        "RATE_LIMIT_NOTIFICATIONS": "100000/minute",
    }
    values.update(overrides)
    return Settings.model_validate(values)


@pytest.fixture
def settings(database_url: str) -> Settings:
    return make_settings(database_url)


@pytest.fixture
def store() -> FakeStore:
    return FakeStore()


@pytest.fixture
def push() -> FakePush:
    return FakePush()


@pytest.fixture
def components(
    settings: Settings,
    jwks: FakeJwksFetcher,
    sessions: sessionmaker[Session],
    store: FakeStore,
    push: FakePush,
) -> Components:
    built = build_components(settings, jwks_fetcher=jwks, store=store, push=push)
    built.sessions = sessions
    return built


@pytest.fixture
def app(components: Components) -> Flask:
    app = create_app(components=components)
    app.config["TESTING"] = True
    return app


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


class Tokens:
    """Mints valid tokens for test users: `tokens.header("alice", groups=["consumers"])`."""

    def __init__(self, key: SigningKey) -> None:
        self.key = key

    def token(self, sub: str = "user-sub-1", **kwargs: object) -> str:
        return token_for(self.key, sub, **kwargs)  # type: ignore[arg-type]

    def header(self, sub: str = "user-sub-1", **kwargs: object) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(sub, **kwargs)}"}


@pytest.fixture
def tokens(signing_key: SigningKey) -> Tokens:
    return Tokens(signing_key)


@pytest.fixture
def actors(client: FlaskClient, signing_key: SigningKey):  # type: ignore[no-untyped-def]
    """Factory of signed-in test users: `actors("consumer")`, `actors("provider", "consumer")`."""
    from tests.support.actors import make_actor

    return lambda *roles, sub=None: make_actor(client, signing_key, *roles, sub=sub)


@pytest.fixture
def committed_app(settings: Settings, jwks: FakeJwksFetcher, engine: Engine) -> Iterator[Flask]:
    """An app whose requests really commit, for tests of concurrent requests.

    Everything it wrote is truncated afterwards (other tests only see rolled-back data).
    """
    from sqlalchemy import text

    built = build_components(settings, jwks_fetcher=jwks, store=FakeStore(), push=FakePush())
    app = create_app(components=built)
    app.config["TESTING"] = True
    yield app
    built.engine.dispose()
    with engine.begin() as connection:
        tables = ", ".join(t.name for t in reversed(Base.metadata.sorted_tables))
        connection.execute(text(f"TRUNCATE {tables} CASCADE"))
