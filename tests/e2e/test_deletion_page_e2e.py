"""The public account-deletion page in a real browser: Debian's chromium, driven by Playwright
(the dashboard test's fixtures), against the live stack (gunicorn, PostgreSQL).

The page loads under its Content-Security-Policy without a single violation or error in the
console; a bad address comes back as the 422 page with the field marked and what was typed;
a good one shows the confirmation, and the request is in the database.
"""

from __future__ import annotations

import re
import uuid

import pytest
from playwright.sync_api import Page
from sqlalchemy import create_engine, text

from tests.e2e.conftest import Stack
from tests.e2e.test_dashboard_e2e import browser, page  # noqa: F401  (the shared fixtures)

pytestmark = pytest.mark.e2e


def stored(stack: Stack, email: str) -> list[tuple[str, str, str]]:
    engine = create_engine(stack.database_url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                text("SELECT email, note, status FROM deletion_requests WHERE email = :email"),
                {"email": email},
            )
            return [tuple(row) for row in rows]  # type: ignore[misc]
    finally:
        engine.dispose()


def test_the_deletion_page_takes_a_request_in_chromium(stack: Stack, page: Page) -> None:  # noqa: F811
    response = page.goto(f"{stack.base_url}/account/delete")
    assert response is not None and response.status == 200
    csp = response.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "form-action 'self'" in csp
    assert page.title() == "Delete your account \u2013 Trellis"
    assert page.locator("h1").text_content() == "Delete your Trellis account"
    # The style sheet applied (loaded from this origin under the CSP).
    color = page.eval_on_selector("#send", "button => getComputedStyle(button).backgroundColor")
    assert color == "rgb(31, 95, 207)"

    # The browser's own check is off (novalidate): the server's 422 page answers.
    page.fill("#email", "not an address")
    page.fill("#note", "Please <b>remove</b> everything")
    with page.expect_navigation() as navigation:
        page.click("#send")
    assert navigation.value is not None and navigation.value.status == 422
    assert "must be an email address" in (page.text_content("#email-error") or "")
    assert page.get_attribute("#email", "aria-invalid") == "true"
    assert page.input_value("#email") == "not an address"
    assert page.input_value("#note") == "Please <b>remove</b> everything"
    assert page.locator("#sent").count() == 0

    email = f"e2e-{uuid.uuid4().hex[:8]}@example.com"
    page.fill("#email", email)
    page.fill("#note", "I no longer have the phone")
    with page.expect_navigation() as navigation:
        page.click("#send")
    assert navigation.value is not None and navigation.value.status == 200
    assert "Your request has been received" in (page.text_content("#sent") or "")
    assert email not in page.content()  # the answer is the same for every address
    assert stored(stack, email) == [(email, "I no longer have the phone", "open")]

    # No CSP violation, no script error, no failed load, on any of the three pages: the
    # console's only error is chromium noting the expected 422 of the second.
    problems = page.problems  # type: ignore[attr-defined]
    assert not [p for p in problems if "Content Security Policy" in p], problems
    assert [re.search(r"status of (\d+)", p)[1] for p in problems] == ["422"], problems  # type: ignore[index]
