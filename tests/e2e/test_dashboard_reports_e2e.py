"""The dashboard's Reports view in a real browser (Debian's chromium driven by Playwright)
against the live stack (gunicorn, moto_server's Cognito, PostgreSQL), with real tokens.

A consumer reports a provider's message; the admin opens /admin/, presses Reports, reads the
message in the report's card, removes it with a note, and the API then shows the message
removed to both parties. A report an admin resolved elsewhere meanwhile answers 409, shown
readably in its card.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from playwright.sync_api import Page

from tests.e2e import test_dashboard_e2e as dashboard
from tests.e2e.conftest import Stack
from tests.e2e.test_dashboard_e2e import Api

# The dashboard test's fixtures: one chromium per module, a fresh page per test.
browser = dashboard.browser
page = dashboard.page

pytestmark = pytest.mark.e2e


def a_reported_message(consumer: Api, provider: Api, body: str) -> tuple[str, str, str]:
    """A booking, the provider's message in it and the consumer's report of the message."""
    provider_id = provider.call(
        "PUT",
        "/v1/me/provider-profile",
        200,
        json={
            "display_name": "Reported Rita",
            "bio": "Gardens",
            "categories": ["gardening"],
            "location": {"lat": 52.52, "lng": 13.405},
            "service_radius_km": 15,
            "hourly_rate_cents": 2500,
            "currency": "EUR",
        },
    )["id"]
    booking = consumer.call(
        "POST",
        "/v1/bookings",
        201,
        json={
            "provider_id": provider_id,
            "category": "gardening",
            "scheduled_at": (datetime.now(UTC) + timedelta(days=3)).isoformat(),
            "location": {"lat": 52.5, "lng": 13.4, "address": "Alexanderplatz 1"},
        },
    )["id"]
    message = provider.call("POST", f"/v1/bookings/{booking}/messages", 201, json={"body": body})
    report = consumer.call(
        "POST",
        "/v1/reports",
        201,
        json={"target_type": "message", "target_id": message["id"], "reason": "harassment"},
    )
    return booking, message["id"], report["id"]


def open_reports(stack: Stack, page: Page, token: str) -> None:
    response = page.goto(f"{stack.base_url}/admin/")
    assert response is not None and response.status == 200
    page.fill("#token", token)
    page.click("#load-reports")
    page.wait_for_selector("body[data-reports='ready']")


def test_an_admin_reads_and_resolves_reports_in_the_dashboard(stack: Stack, page: Page) -> None:
    admin, consumer, provider = Api(stack, "admin"), Api(stack, "consumer"), Api(stack, "provider")
    booking, message_id, report_id = a_reported_message(consumer, provider, "Pay me in cash, now")
    _, _, other_id = a_reported_message(consumer, provider, "Second message")

    open_reports(stack, page, admin.token)
    card = page.locator(f"li.report[data-report-id='{report_id}']")
    assert card.locator("blockquote.text").text_content() == "Pay me in cash, now"
    assert "harassment" in (card.locator("p.meta").first.text_content() or "")
    card.locator("select.action").select_option("remove_content")
    card.locator("textarea.note").fill("Asking for cash off the app")
    card.locator("button.resolve-button").click()
    page.wait_for_selector(f"li.report[data-report-id='{report_id}'][data-status='resolved']")
    assert card.get_attribute("data-action") == "remove_content"

    for party in (consumer, provider):
        items = party.call("GET", f"/v1/bookings/{booking}/messages", 200)["items"]
        removed = next(m for m in items if m["id"] == message_id)
        assert (removed["body"], removed["removed"]) == (None, True)
    resolved = admin.call("GET", "/v1/admin/reports?status=resolved&limit=100", 200)["items"]
    mine = next(r for r in resolved if r["id"] == report_id)
    assert (mine["action"], mine["note"]) == ("remove_content", "Asking for cash off the app")
    kinds = [n["kind"] for n in consumer.call("GET", "/v1/notifications", 200)["items"]]
    assert "report_resolved" in kinds

    # Resolved by someone else meanwhile: the card says so, readably.
    admin.call("POST", f"/v1/admin/reports/{other_id}/resolve", 200, json={"action": "dismiss"})
    other = page.locator(f"li.report[data-report-id='{other_id}']")
    other.locator("button.resolve-button").click()
    problem = other.locator("p.problem")
    problem.wait_for(state="visible")
    assert (problem.text_content() or "").startswith("Conflict (409): This report is resolved")
    assert other.get_attribute("data-status") == "open"
    statuses = [p for p in page.problems if "409" not in p]  # type: ignore[attr-defined]
    assert statuses == [], page.problems  # type: ignore[attr-defined]


def test_the_reports_view_refuses_a_non_admin_readably(stack: Stack, page: Page) -> None:
    consumer = Api(stack, "consumer")
    response = page.goto(f"{stack.base_url}/admin/")
    assert response is not None and response.status == 200
    page.fill("#token", consumer.token)
    page.click("#load-reports")
    page.wait_for_selector("body[data-reports='error'] #error h2:has-text('Forbidden (403)')")
    assert page.locator("#reports").is_hidden()
    assert page.evaluate("sessionStorage.getItem('trellis.admin.token')") is None
