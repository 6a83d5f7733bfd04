"""The request lifecycle's rules, held against routes written to break them."""

from __future__ import annotations

import uuid

import pytest
from flask import Blueprint, Flask
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from api.context import unit
from api.endpoint import check_declarations, declared, endpoint
from api.limits import register_rate_limits
from models import User
from models.base import utcnow
from services.base.unit_of_work import UnitOfWork, UnitOfWorkError
from services.components import Components
from tests.conftest import make_app
from tests.support.actors import make_actor


def _user(sub: str) -> User:
    now = utcnow()
    return User(
        id=uuid.uuid4(), cognito_sub=sub, roles=[], role_revocations={}, created_at=now,
        updated_at=now,
    )  # fmt: skip


def _count(session: Session, sub: str) -> int:
    return session.scalar(select(func.count()).select_from(User).where(User.cognito_sub == sub))


@pytest.fixture
def app_with_probes(components: Components) -> Flask:
    """The app plus two GET routes that write: one without asking, one through writer()."""
    probes = Blueprint("probes", __name__)

    @probes.get("/v1/probes/write-unasked")
    @endpoint(summary="A read that writes without asking", tags=("probes",))
    def write_unasked() -> None:
        unit().session.add(_user("written-unasked"))
        unit().session.flush()

    @probes.get("/v1/probes/write-asked")
    @endpoint(summary="A read that asks the unit for a writer", tags=("probes",))
    def write_asked() -> None:
        unit().writer().add(_user("written-asked"))

    app = make_app(components)
    app.register_blueprint(probes)
    return app


def test_a_get_that_writes_without_asking_fails_as_in_production(
    app_with_probes: Flask, signing_key, session: Session
) -> None:  # type: ignore[no-untyped-def]
    """The suite reads through the same autocommit read sessions as production: the
    mistake is a 500 here, not a surprise after the deploy."""
    user = make_actor(app_with_probes.test_client(), signing_key, "consumer")
    response = user.get("/v1/probes/write-unasked")
    assert response.status_code == 500
    assert response.mimetype == "application/problem+json"
    assert _count(session, "written-unasked") == 0


def test_a_get_that_asks_for_the_writer_commits_once(
    app_with_probes: Flask, signing_key, session: Session
) -> None:  # type: ignore[no-untyped-def]
    user = make_actor(app_with_probes.test_client(), signing_key, "consumer")
    assert user.get("/v1/probes/write-asked").status_code == 204
    assert _count(session, "written-asked") == 1


def test_a_route_that_changes_state_must_declare_it() -> None:
    app = Flask(__name__)
    routes = Blueprint("undeclared", __name__)

    @routes.post("/things")
    @endpoint(summary="Make a thing", tags=("things",))
    def make_thing() -> None:
        return None

    app.register_blueprint(routes)
    with pytest.raises(ValueError, match="declare writes=True"):
        check_declarations(app)


def test_an_idempotent_route_that_does_not_write_is_refused_at_once() -> None:
    with pytest.raises(ValueError, match="declare writes=True"):
        endpoint(summary="Retry me", tags=("x",), idempotent=True)


def test_a_limit_naming_no_setting_stops_the_app_factory(components: Components) -> None:
    app = make_app(components)
    routes = Blueprint("misnamed", __name__)

    @routes.post("/v1/misnamed")
    @endpoint(summary="Misnamed limit", tags=("x",), writes=True, limit="rate_limit_upload")
    def misnamed() -> None:
        return None

    app.register_blueprint(routes)
    with pytest.raises(ValueError, match="rate_limit_upload"):
        register_rate_limits(app)


def test_the_tighter_limits_are_declared_on_their_routes(app: Flask) -> None:
    limits = {
        name: spec.limit
        for name, view in app.view_functions.items()
        if (spec := declared(view)) is not None and spec.limit
    }
    assert limits == {
        "media.create_upload": "rate_limit_uploads",
        "media.complete_upload": "rate_limit_uploads",
        "media.register_device": "rate_limit_notifications",
        "media.send_notification": "rate_limit_notifications",
        "account_pages.request_deletion": "rate_limit_deletion_requests",
        "reports.create_report": "rate_limit_reports",
    }


def test_components_are_frozen(components: Components) -> None:
    with pytest.raises(AttributeError):
        components.store = None  # type: ignore[misc]


def test_a_unit_commits_once_and_keeps_nothing_it_did_not_commit(
    sessions: sessionmaker[Session], session: Session
) -> None:
    kept = UnitOfWork(writes=True, sessions=sessions, read_sessions=sessions)
    kept.session.add(_user("kept"))
    kept.commit()
    with pytest.raises(UnitOfWorkError):
        kept.commit()
    kept.close()
    dropped = UnitOfWork(writes=True, sessions=sessions, read_sessions=sessions)
    dropped.session.add(_user("dropped"))
    dropped.session.flush()
    dropped.close()  # never committed: rolled back
    assert (_count(session, "kept"), _count(session, "dropped")) == (1, 0)


def test_bookkeeping_is_refused_once_the_work_began(
    sessions: sessionmaker[Session], session: Session
) -> None:
    """Bookkeeping commits its own transaction: mid-work it would commit the work too."""
    unit_ = UnitOfWork(writes=True, sessions=sessions, read_sessions=sessions)
    try:
        with unit_.bookkeeping() as writer:
            writer.add(_user("bookkept"))
        unit_.begin_work()
        unit_.session.add(_user("half-done"))
        with pytest.raises(UnitOfWorkError), unit_.bookkeeping():
            pass
        unit_.rollback()
        with unit_.bookkeeping():  # after a rollback the unit holds no work again
            pass
    finally:
        unit_.close()
    assert (_count(session, "bookkept"), _count(session, "half-done")) == (1, 0)
