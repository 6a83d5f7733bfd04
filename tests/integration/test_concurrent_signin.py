"""Two first requests from one new user at once must both succeed with one row between them."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, delete, func, select
from sqlalchemy.orm import sessionmaker

from models import User
from services.accounts.auth import Identity
from services.accounts.users import UserView, sync_user
from services.base.unit_of_work import UnitOfWork


@pytest.fixture
def committed(engine: Engine) -> Iterator[sessionmaker]:
    """Real commits on separate connections (the rolled-back fixture cannot show a race)."""
    sessions = sessionmaker(bind=engine, expire_on_commit=False)
    yield sessions
    with sessions.begin() as session:
        session.execute(delete(User).where(User.cognito_sub.like("race-%")))


def test_racing_first_sign_ins_make_one_row(committed: sessionmaker) -> None:
    identity = Identity(
        sub="race-1", roles=frozenset({"consumer"}), email=None, token_use="access", expires_at=0
    )
    barrier = threading.Barrier(8)
    results: list[UserView] = []
    errors: list[BaseException] = []

    def sign_in() -> None:
        try:
            unit = UnitOfWork(writes=False, sessions=committed, read_sessions=committed)
            barrier.wait()
            try:
                results.append(sync_user(unit, identity=identity))
            finally:
                unit.close()
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=sign_in) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len({view.id for view in results}) == 1
    with committed() as session:
        assert (
            session.scalar(
                select(func.count()).select_from(User).where(User.cognito_sub == "race-1")
            )
            == 1
        )
