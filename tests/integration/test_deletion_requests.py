"""The public account-deletion page (/account/delete) and the operators' deletion requests
(/v1/admin/deletion-requests), over HTTP on PostgreSQL.

The page is HTML with a strict CSP; its form stores a request and answers byte for byte the
same whatever the address; bad input is a 422 page naming the field, with what was typed;
a client address past RATE_LIMIT_DELETION_REQUESTS gets a 429 page with Retry-After. Admins
list requests with the accounts that use each address and close them; closed requests are
deleted DELETION_REQUESTS_RETENTION_DAYS later by the CLI and the worker task.
"""

from __future__ import annotations

import html
import uuid
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from api.account_pages import CONTENT_SECURITY_POLICY
from models import DeletionRequest, User
from models.base import utcnow
from services.base.settings import Settings
from tests.conftest import BuildComponents, Tokens, make_app, make_settings

PAGE = "/account/delete"
LIST = "/v1/admin/deletion-requests"
SENT = "Your request has been received"
SQSD = {"User-Agent": "aws-sqsd/3.0.4"}


@pytest.fixture
def settings(database_url: str) -> Settings:
    # A brand with markup in it: the page must escape it. The form's own limit stays high
    # here; the rate-limit test builds its own app.
    return make_settings(
        database_url,
        APP_NAME="Tidy <Homes> & Co",
        ACCOUNT_DELETION_GRACE_HOURS="48",
        RATE_LIMIT_DELETION_REQUESTS="1000/hour",
        WORKER_TASKS_ENABLED="true",
    )


def _send(client: FlaskClient, ip: str = "198.51.100.7", **form: str) -> Any:
    return client.post(PAGE, data=form, environ_base={"REMOTE_ADDR": ip})


def _rows(session: Session) -> list[DeletionRequest]:
    return list(session.scalars(select(DeletionRequest).order_by(DeletionRequest.created_at)))


def _user(client: FlaskClient, tokens: Tokens, email: str, *groups: str) -> tuple[str, dict]:
    """A signed-in user with `email` (from an ID token); their id and headers."""
    sub = f"sub-{uuid.uuid4().hex[:10]}"
    headers = tokens.header(sub, token_use="id", email=email, groups=list(groups))
    me = client.get("/v1/me", headers=headers)
    assert me.status_code == 200, me.get_data(as_text=True)
    return me.get_json()["id"], headers


def _ok(response: Any, status: int = 200) -> Any:
    assert response.status_code == status, response.get_data(as_text=True)
    return response.get_json()


# ---------------------------------------------------------------------------------------------
# The page
# ---------------------------------------------------------------------------------------------


def test_the_page_explains_in_app_deletion_under_a_strict_csp(client: FlaskClient) -> None:
    page = client.get(PAGE)
    assert page.status_code == 200 and page.mimetype == "text/html"
    assert page.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    assert "script-src" not in CONTENT_SECURITY_POLICY  # default-src 'none': no script at all
    assert "form-action 'self'" in CONTENT_SECURITY_POLICY
    assert page.headers["X-Frame-Options"] == "DENY"
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    assert page.headers["Cache-Control"] == "no-store"
    text = page.get_data(as_text=True)
    # The operator's brand, escaped.
    assert "Delete your Tidy &lt;Homes&gt; &amp; Co account" in text
    assert "<Homes>" not in text
    # The steps, the grace period, what goes and what is kept.
    assert "choose <strong>Delete account</strong>" in text
    assert "deleted for good\n        2 days (48 hours) later" in text
    assert "cancel the deletion" in text
    assert "with you shown as a deleted\n        account" in text
    assert "star\n        ratings you gave stay" in text
    assert '<form method="post" action="/account/delete"' in text
    assert "<script" not in text and "style=" not in text  # nothing the CSP would block
    assert SENT not in text
    # Its own style sheet and icon, from this origin.
    css = client.get("/account/static/page.css")
    assert css.status_code == 200 and css.mimetype == "text/css"
    assert client.get("/account/static/favicon.svg").status_code == 200
    assert client.get("/account/static/../account_pages.py").status_code == 404


def test_the_page_is_not_an_operation_of_the_json_api(client: FlaskClient) -> None:
    paths = _ok(client.get("/openapi.json"))["paths"]
    assert not [path for path in paths if path.startswith("/account")]
    assert {"/v1/admin/deletion-requests", "/v1/admin/deletion-requests/{request_id}/close"} <= (
        paths.keys()
    )


def test_without_a_grace_period_the_page_says_at_once(
    build: BuildComponents, database_url: str
) -> None:
    app = make_app(build(make_settings(database_url, ACCOUNT_DELETION_GRACE_HOURS="0")))
    text = app.test_client().get(PAGE).get_data(as_text=True)
    assert "deleted for good\n        at once." in text
    assert "cancel the deletion" not in text
    assert "Delete your Trellis account" in text  # APP_NAME's default


# ---------------------------------------------------------------------------------------------
# The form
# ---------------------------------------------------------------------------------------------


def test_a_request_is_stored_and_answered_the_same_for_any_address(
    client: FlaskClient, session: Session, tokens: Tokens
) -> None:
    _user(client, tokens, "ada@example.com")
    registered = _send(client, email="Ada@Example.com", note="Lost my phone")
    unknown = _send(client, email="nobody@example.org", note="Lost my phone")
    again = _send(client, email="Ada@Example.com", note="Lost my phone")
    for response in (registered, unknown, again):
        assert response.status_code == 200
        assert response.mimetype == "text/html"
        assert response.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
        assert response.headers["Cache-Control"] == "no-store"
    # Byte for byte: nothing tells whether the address has an account or asked before.
    assert registered.get_data() == unknown.get_data() == again.get_data()
    text = registered.get_data(as_text=True)
    assert SENT in text and "example" not in text
    rows = _rows(session)
    assert [(r.email, r.note, r.status) for r in rows] == [
        ("Ada@Example.com", "Lost my phone", "open"),
        ("nobody@example.org", "Lost my phone", "open"),
        ("Ada@Example.com", "Lost my phone", "open"),
    ]
    assert all(r.created_at > utcnow() - timedelta(minutes=1) for r in rows)
    assert all(r.closed_at is None and r.closed_by_id is None for r in rows)


def test_the_note_is_optional_and_text_is_trimmed(client: FlaskClient, session: Session) -> None:
    assert _send(client, email="  sam@example.com ").status_code == 200
    assert _send(client, email="kim@example.com", note="Line one\nLine two\t!").status_code == 200
    assert [(r.email, r.note) for r in _rows(session)] == [
        ("sam@example.com", ""),
        ("kim@example.com", "Line one\nLine two\t!"),
    ]


@pytest.mark.parametrize(
    ("form", "field", "message"),
    [
        ({"email": "not-an-email", "note": "x"}, "email", "must be an email address"),
        ({"email": "a@b@example.com"}, "email", "must be an email address"),
        ({"note": "No address"}, "email", "enter your email address"),
        ({"email": "   "}, "email", "enter your email address"),
        ({"email": "x" * 250 + "@example.com"}, "email", "at most 254 characters"),
        ({"email": "ada@exa\u202emple.com"}, "email", "U+202E"),
        ({"email": "ada@example.com", "note": "n" * 2001}, "note", "at most 2000 characters"),
        ({"email": "ada@example.com", "note": "red \x1b[31m text"}, "note", "U+001B (ESCAPE)"),
        ({"email": "ada@example.com", "note": "hidden\u200bspace"}, "note", "U+200B"),
    ],
)
def test_invalid_input_is_a_422_page_naming_the_field(
    client: FlaskClient, session: Session, form: dict[str, str], field: str, message: str
) -> None:
    response = _send(client, **form)
    assert response.status_code == 422
    assert response.mimetype == "text/html"
    assert response.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    text = response.get_data(as_text=True)
    assert 'role="alert"' in text and SENT not in text
    label = {"email": "Email address", "note": "Note"}[field]
    error = next(line for line in text.splitlines() if f'id="{field}-error"' in line)
    assert label in error and html.escape(message) in error, error
    assert f'id="{field}" name="{field}"' in text
    assert 'aria-invalid="true"' in text and f'aria-describedby="{field}-error"' in text
    assert _rows(session) == []


def test_what_was_typed_comes_back_escaped(client: FlaskClient, session: Session) -> None:
    typed = {"email": '"><script>alert(1)</script>', "note": "</textarea><b>hi</b> & bye"}
    response = _send(client, **typed)
    assert response.status_code == 422
    text = response.get_data(as_text=True)
    assert "<script>" not in text and "<b>hi</b>" not in text
    assert 'value="&#34;&gt;&lt;script&gt;alert(1)&lt;/script&gt;"' in text
    assert "&lt;/textarea&gt;&lt;b&gt;hi&lt;/b&gt; &amp; bye</textarea>" in text
    assert _rows(session) == []


def test_a_body_over_the_limit_is_a_413_page(client: FlaskClient, session: Session) -> None:
    response = _send(client, email="ada@example.com", note="n" * 2_000_000)
    assert response.status_code == 413 and response.mimetype == "text/html"
    assert "too long" in response.get_data(as_text=True)
    assert response.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    assert _rows(session) == []


def test_requests_past_the_limit_get_a_429_page_per_address(
    build: BuildComponents, database_url: str, session: Session
) -> None:
    custom = make_settings(database_url, RATE_LIMIT_DELETION_REQUESTS="2/hour")
    client = make_app(build(custom)).test_client()
    for n in range(2):
        assert _send(client, ip="203.0.113.5", email=f"u{n}@example.com").status_code == 200
    refused = _send(client, ip="203.0.113.5", email="u9@example.com")
    assert refused.status_code == 429
    assert refused.mimetype == "text/html"
    retry_after = int(refused.headers["Retry-After"])
    assert 0 < retry_after <= 3601  # the hour's window, rounded up to whole seconds
    text = refused.get_data(as_text=True)
    assert "Too Many Requests (429)" in text and f"in {retry_after} seconds" in text
    assert refused.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    # Another address still may, and the page itself is still served to the first.
    assert _send(client, ip="203.0.113.6", email="u3@example.com").status_code == 200
    assert client.get(PAGE, environ_base={"REMOTE_ADDR": "203.0.113.5"}).status_code == 200
    assert sorted(r.email for r in _rows(session)) == [
        "u0@example.com",
        "u1@example.com",
        "u3@example.com",
    ]


def test_a_database_outage_is_a_503_page(
    client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sqlalchemy.exc import OperationalError

    from services.accounts import deletion_requests

    def down(*_args: object, **_kwargs: object) -> None:
        raise OperationalError("INSERT", {}, Exception("connection refused"))

    monkeypatch.setattr(deletion_requests, "record", down)
    response = _send(client, email="ada@example.com")
    assert response.status_code == 503 and response.mimetype == "text/html"
    assert response.headers["Retry-After"]
    assert "connection refused" not in response.get_data(as_text=True)


# ---------------------------------------------------------------------------------------------
# Operators
# ---------------------------------------------------------------------------------------------


def test_admins_list_requests_with_the_accounts_using_each_address(
    client: FlaskClient, session: Session, tokens: Tokens
) -> None:
    ada, _ = _user(client, tokens, "ada@example.com")
    bo, _ = _user(client, tokens, "bo@example.com")
    _, admin = _user(client, tokens, "root@example.com", "admins")
    purge_at = utcnow() + timedelta(hours=72)
    session.execute(
        update(User)
        .where(User.id == uuid.UUID(bo))
        .values(deletion_requested_at=utcnow(), purge_at=purge_at)
    )
    session.commit()
    for email in ("ADA@example.com", "nobody@example.org", "bo@example.com"):
        assert _send(client, email=email, note=f"from {email}").status_code == 200

    page = _ok(client.get(LIST, headers=admin))
    assert page["next_cursor"] is None
    items = page["items"]
    assert [i["email"] for i in items] == [
        "bo@example.com",
        "nobody@example.org",
        "ADA@example.com",
    ]
    bo_item, nobody_item, ada_item = items
    assert ada_item["accounts"] == [{"user_id": ada, "deletion_scheduled": False, "purge_at": None}]
    assert nobody_item["accounts"] == []
    [bo_account] = bo_item["accounts"]
    assert bo_account["user_id"] == bo and bo_account["deletion_scheduled"] is True
    assert bo_account["purge_at"].startswith(purge_at.isoformat()[:19])
    assert ada_item["note"] == "from ADA@example.com"
    assert {i["status"] for i in items} == {"open"}
    assert all(i["closed_at"] is None and i["closed_by"] is None for i in items)

    # Keyset pages, newest first, and the cursor belongs to its query.
    first = _ok(client.get(f"{LIST}?limit=2", headers=admin))
    assert [i["id"] for i in first["items"]] == [bo_item["id"], nobody_item["id"]]
    second = _ok(client.get(f"{LIST}?limit=2&cursor={first['next_cursor']}", headers=admin))
    assert [i["id"] for i in second["items"]] == [ada_item["id"]]
    assert second["next_cursor"] is None
    foreign = client.get(f"{LIST}?status=open&cursor={first['next_cursor']}", headers=admin)
    assert foreign.status_code == 422
    assert client.get(f"{LIST}?status=pending", headers=admin).status_code == 422


def test_closing_a_request_records_who_and_why_once(
    client: FlaskClient, session: Session, tokens: Tokens
) -> None:
    admin_id, admin = _user(client, tokens, "root@example.com", "admins")
    for email in ("ada@example.com", "bo@example.com"):
        _send(client, email=email)
    ada_request = next(
        i for i in _ok(client.get(LIST, headers=admin))["items"] if "ada" in i["email"]
    )
    close = f"{LIST}/{ada_request['id']}/close"

    closed = _ok(
        client.post(close, json={"note": "Deleted after the owner confirmed"}, headers=admin)
    )
    assert closed["status"] == "closed" and closed["closed_by"] == admin_id
    assert closed["close_note"] == "Deleted after the owner confirmed" and closed["closed_at"]
    row = session.get(DeletionRequest, uuid.UUID(ada_request["id"]))
    assert row is not None and row.status == "closed" and row.closed_by_id == uuid.UUID(admin_id)

    again = client.post(close, json={"note": "Twice"}, headers=admin)
    assert again.status_code == 409 and again.get_json()["type"] == "/problems/conflict"
    assert session.get(DeletionRequest, row.id).close_note == "Deleted after the owner confirmed"  # type: ignore[union-attr]
    unknown = client.post(f"{LIST}/{uuid.uuid4()}/close", json={"note": "x"}, headers=admin)
    assert unknown.status_code == 404 and unknown.get_json()["type"] == "/problems/not-found"
    empty = client.post(f"{LIST}/{uuid.uuid4()}/close", json={"note": " "}, headers=admin)
    assert empty.status_code == 422 and empty.get_json()["errors"][0]["field"] == "note"

    # The status filter.
    closed_only = _ok(client.get(f"{LIST}?status=closed", headers=admin))["items"]
    open_only = _ok(client.get(f"{LIST}?status=open", headers=admin))["items"]
    assert [i["id"] for i in closed_only] == [ada_request["id"]]
    assert [i["email"] for i in open_only] == ["bo@example.com"]


def test_only_admins_see_or_close_requests(
    client: FlaskClient, session: Session, tokens: Tokens
) -> None:
    _send(client, email="ada@example.com")
    [row] = _rows(session)
    close = f"{LIST}/{row.id}/close"
    _, consumer = _user(client, tokens, "c@example.com", "consumers", "providers")
    for headers, status in ((consumer, 403), ({}, 401)):
        listed = client.get(LIST, headers=headers)
        closing = client.post(close, json={"note": "no"}, headers=headers)
        for response in (listed, closing):
            assert response.status_code == status, response.get_data(as_text=True)
            assert response.mimetype == "application/problem+json"
    assert session.get(DeletionRequest, row.id).status == "open"  # type: ignore[union-attr]


# ---------------------------------------------------------------------------------------------
# Retention
# ---------------------------------------------------------------------------------------------


def _aged(session: Session) -> dict[str, uuid.UUID]:
    """Requests: closed 91 days ago, closed 89 days ago, and open for a year."""
    now = utcnow()
    rows = {
        "closed long ago": DeletionRequest(
            email="old@example.com", status="closed", closed_at=now - timedelta(days=91)
        ),
        "closed lately": DeletionRequest(
            email="new@example.com", status="closed", closed_at=now - timedelta(days=89)
        ),
        "open for a year": DeletionRequest(
            email="wait@example.com", status="open", created_at=now - timedelta(days=365)
        ),
    }
    session.add_all(rows.values())
    session.commit()
    return {name: row.id for name, row in rows.items()}


def _left(session: Session) -> set[str]:
    return {row.email for row in _rows(session)}


def test_the_cli_deletes_requests_closed_past_the_retention(app: Flask, session: Session) -> None:
    _aged(session)
    result = app.test_cli_runner().invoke(args=["accounts", "purge-deletion-requests"])
    assert result.exit_code == 0, result.output
    assert "removed 1 closed deletion requests" in result.output
    assert _left(session) == {"new@example.com", "wait@example.com"}
    again = app.test_cli_runner().invoke(args=["accounts", "purge-deletion-requests"])
    assert "removed 0" in again.output


def test_the_retention_is_a_setting(
    build: BuildComponents, database_url: str, session: Session
) -> None:
    _aged(session)
    custom = make_settings(database_url, DELETION_REQUESTS_RETENTION_DAYS="30")
    app = make_app(build(custom))
    result = app.test_cli_runner().invoke(args=["accounts", "purge-deletion-requests"])
    assert "removed 2 closed deletion requests" in result.output
    assert _left(session) == {"wait@example.com"}


def test_the_worker_task_deletes_them_for_sqsd_only(client: FlaskClient, session: Session) -> None:
    _aged(session)
    task = "/internal/tasks/purge-deletion-requests"
    refused = client.post(task, headers=SQSD, environ_base={"REMOTE_ADDR": "10.0.0.7"})
    assert refused.status_code == 403
    assert len(_left(session)) == 3
    done = client.post(task, headers=SQSD, environ_base={"REMOTE_ADDR": "127.0.0.1"})
    assert done.status_code == 200
    assert done.get_json() == {"task": "purge-deletion-requests", "removed": 1}
    assert _left(session) == {"new@example.com", "wait@example.com"}
