"""/v1/me on PostgreSQL: the users row, its sync with the token, and profile edits."""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from models import User
from tests.conftest import Tokens


def user_row(session: Session, sub: str) -> User | None:
    session.expire_all()
    return session.scalar(select(User).where(User.cognito_sub == sub))


def test_first_call_creates_the_user_row(
    client: FlaskClient, tokens: Tokens, session: Session
) -> None:
    assert user_row(session, "sub-new") is None
    response = client.get("/v1/me", headers=tokens.header("sub-new", groups=["consumers"]))
    assert response.status_code == 200
    row = user_row(session, "sub-new")
    assert row is not None and row.roles == ["consumer"]
    body = response.get_json()
    assert body["id"] == str(row.id)
    assert body["roles"] == ["consumer"]
    assert body["email"] is None and body["display_name"] is None
    assert body["created_at"].endswith("Z")


def test_repeat_calls_reuse_the_row(client: FlaskClient, tokens: Tokens, session: Session) -> None:
    ids = {client.get("/v1/me", headers=tokens.header("sub-2")).get_json()["id"] for _ in range(3)}
    assert len(ids) == 1
    count = session.scalar(
        select(func.count()).select_from(User).where(User.cognito_sub == "sub-2")
    )
    assert count == 1


def test_roles_and_email_follow_the_token(
    client: FlaskClient, tokens: Tokens, session: Session
) -> None:
    client.get(
        "/v1/me",
        headers=tokens.header("sub-3", token_use="id", email="a@x.io", groups=["consumers"]),
    )
    response = client.get(
        "/v1/me",
        headers=tokens.header(
            "sub-3", token_use="id", email="b@x.io", groups=["providers", "consumers"]
        ),
    )
    assert response.get_json()["roles"] == ["consumer", "provider"]
    row = user_row(session, "sub-3")
    assert row is not None and (row.email, row.roles) == ("b@x.io", ["consumer", "provider"])
    # An access token carries no email: the stored one stays.
    client.get("/v1/me", headers=tokens.header("sub-3", groups=[]))
    row = user_row(session, "sub-3")
    assert row is not None and (row.email, row.roles) == ("b@x.io", [])


def test_patch_updates_and_clears_fields(
    client: FlaskClient, tokens: Tokens, session: Session
) -> None:
    headers = tokens.header("sub-4")
    response = client.patch(
        "/v1/me", json={"display_name": "  Ada L.  ", "phone": "+14155550123"}, headers=headers
    )
    assert response.status_code == 200
    assert response.get_json()["display_name"] == "Ada L."
    row = user_row(session, "sub-4")
    assert row is not None and (row.display_name, row.phone) == ("Ada L.", "+14155550123")

    response = client.patch("/v1/me", json={"phone": None}, headers=headers)
    assert response.get_json()["phone"] is None
    assert response.get_json()["display_name"] == "Ada L."  # untouched when left out
    row = user_row(session, "sub-4")
    assert row is not None and row.phone is None and row.display_name == "Ada L."


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({"display_name": ""}, ["display_name"]),
        ({"display_name": "x" * 101}, ["display_name"]),
        ({"display_name": "line\nbreak"}, ["display_name"]),
        ({"display_name": 7}, ["display_name"]),
        ({"phone": "555-1234"}, ["phone"]),
        ({"phone": "+0123456789"}, ["phone"]),
        ({"display_name": "", "phone": "x"}, ["display_name", "phone"]),
        ({"email": "me@x.io"}, ["email"]),
        ([], ["body"]),
        ("just a string", ["body"]),
    ],
)
def test_patch_rejects_invalid_fields_with_422(
    client: FlaskClient, tokens: Tokens, session: Session, body: object, fields: list[str]
) -> None:
    response = client.patch("/v1/me", json=body, headers=tokens.header("sub-5"))
    assert response.status_code == 422
    assert response.content_type == "application/problem+json"
    problem = response.get_json()
    assert problem["type"] == "/problems/validation-failed"
    assert [e["field"] for e in problem["errors"]] == fields
    assert all(e["message"] and e["code"] for e in problem["errors"])
    row = user_row(session, "sub-5")
    assert row is not None and row.display_name is None and row.phone is None


def test_patch_with_malformed_json_is_400(client: FlaskClient, tokens: Tokens) -> None:
    for raw in ('{"display_name": ', "{bad}", "", "\xff"):
        response = client.patch(
            "/v1/me", data=raw, content_type="application/json", headers=tokens.header()
        )
        assert response.status_code == 400, raw
        assert response.content_type == "application/problem+json"
        assert "not valid JSON" in response.get_json()["detail"]


def test_patch_with_another_media_type_is_415(client: FlaskClient, tokens: Tokens) -> None:
    response = client.patch(
        "/v1/me",
        data="display_name=x",
        content_type="application/x-www-form-urlencoded",
        headers=tokens.header(),
    )
    assert response.status_code == 415
    assert response.content_type == "application/problem+json"


def test_patch_without_a_token_is_401_and_writes_nothing(
    client: FlaskClient, session: Session
) -> None:
    before = session.scalar(select(func.count()).select_from(User))
    assert client.patch("/v1/me", json={"display_name": "x"}).status_code == 401
    assert session.scalar(select(func.count()).select_from(User)) == before
