"""Fixtures shared by every suite: a migrated PostgreSQL database, the app, tokens."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.orm import ORMExecuteState, Session, sessionmaker

from api import create_app
from models import Base
from services.base.settings import Settings
from services.components import Components, build_components
from tests.support.database import fresh_database
from tests.support.fakes import FakeGroups, FakePush, FakeStore
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
def clean_database(engine: Engine) -> Iterator[None]:
    """The test writes for real (its GETs read through autocommit sessions, as in
    production); every table is emptied afterwards, children first."""
    yield
    empty_database(engine)


def empty_database(engine: Engine) -> None:
    # DELETE, not TRUNCATE: on tables this small it costs ~1 ms against ~45 ms. A lock
    # timeout turns a session the test left open into a clear failure instead of a hang.
    with engine.begin() as connection:
        connection.exec_driver_sql("SET LOCAL lock_timeout = '5s'")
        for table in reversed(Base.metadata.sorted_tables):
            connection.execute(table.delete())


@pytest.fixture
def connection(engine: Engine, clean_database: None) -> Iterator[Connection]:
    with engine.connect() as connection:
        yield connection


@pytest.fixture
def sessions(engine: Engine, clean_database: None) -> sessionmaker[Session]:
    """Sessions on the test database; what they commit is seen by the app under test."""
    return sessionmaker(bind=engine, expire_on_commit=False)


@pytest.fixture
def session(sessions: sessionmaker[Session]) -> Iterator[Session]:
    """The test's own view of the database: every query reloads what it returns, so what
    the app committed since shows (the identity map would keep older copies)."""
    with sessions() as session:
        event.listen(session, "do_orm_execute", _always_fresh)
        yield session


def _always_fresh(state: ORMExecuteState) -> None:
    if state.is_select:
        state.update_execution_options(populate_existing=True)


def make_settings(database_url: str, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "APP_ENV": "test",
        "DATABASE_URL": database_url,
        "COGNITO_USER_POOL_ID": POOL_ID,
        "COGNITO_APP_CLIENT_IDS": CLIENT_ID,
        "LOG_LEVEL": "INFO",
        "RESPONSE_CHECKS": "true",
        "OUTBOX_RELAY_IN_WEB": "false",
        "DATA_EXPORTS_IN_WEB": "false",
        "RATE_LIMIT_DEFAULT": "100000/minute",
        "RATE_LIMIT_ANONYMOUS": "100000/minute",
        "RATE_LIMIT_UPLOADS": "100000/minute",
        "RATE_LIMIT_NOTIFICATIONS": "100000/minute",
        "RATE_LIMIT_REPORTS": "100000/minute",
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
def groups() -> FakeGroups:
    return FakeGroups()


BuildComponents = Callable[..., Components]


@pytest.fixture
def build(
    settings: Settings,
    jwks: FakeJwksFetcher,
    store: FakeStore,
    push: FakePush,
    groups: FakeGroups,
    clean_database: None,
) -> Iterator[BuildComponents]:
    """Builds Components as production does, with the test's fakes at the AWS boundary;
    `build(settings, store=..., groups=...)` overrides any of them. Engines are disposed
    after the test."""
    built: list[Components] = []

    def build(custom: Settings | None = None, **overrides: Any) -> Components:
        parts: dict[str, Any] = {"jwks_fetcher": jwks, "store": store, "push": push}
        parts["groups"] = groups
        components = build_components(custom or settings, **{**parts, **overrides})
        built.append(components)
        return components

    yield build
    for components in built:
        dispose(components)


def dispose(components: Components) -> None:
    components.engine.dispose()
    components.read_sessions.kw["bind"].dispose()
    for replica in components.reads.replicas if components.reads else ():
        replica.engine.dispose()
        replica.read_sessions.kw["bind"].dispose()


@pytest.fixture
def components(build: BuildComponents) -> Components:
    return build()


@pytest.fixture
def app(components: Components) -> Flask:
    return make_app(components)


def make_app(components: Components) -> Flask:
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
