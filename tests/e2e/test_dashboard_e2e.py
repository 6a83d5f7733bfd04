"""The admin dashboard in a real browser: Debian's chromium, driven by Playwright, against the
live stack (gunicorn, moto_server's Cognito, PostgreSQL) with real Cognito tokens.

The demo consumer and provider send events through POST /v1/events and make bookings; the
admin opens /admin/, pastes their token and the test reads the drawn SVG: the event names
sent, the daily-active-users points and the funnel must say what the API says. A screenshot
is saved in the stack's log folder and copied to /tmp/trellis-dashboard.png.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from playwright.sync_api import Browser, ConsoleMessage, Page, sync_playwright

from devstack.cognito import sign_in
from tests.e2e.conftest import Stack

pytestmark = pytest.mark.e2e

CHROMIUM = Path("/usr/bin/chromium")
LAUNCH_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--no-first-run",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOT_COPY = Path("/tmp/trellis-dashboard.png")
SUMMARY = "/v1/admin/analytics/summary"


class Api:
    def __init__(self, stack: Stack, username: str) -> None:
        self.base = stack.base_url
        self.token = sign_in(stack.pool, username)["access"]
        self.http = requests.Session()
        self.http.headers["Authorization"] = f"Bearer {self.token}"

    def call(self, method: str, path: str, expect: int, **kwargs: Any) -> Any:
        response = self.http.request(method, self.base + path, timeout=10, **kwargs)
        assert response.status_code == expect, (method, path, response.text)
        return response.json() if response.content else None


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(
            f"chromium is not installed ({CHROMIUM} is missing): the dashboard is tested in a "
            "real browser. Install it with `apt-get install -y chromium` (.ci/run does).",
            pytrace=False,
        )
    with sync_playwright() as playwright:
        # Playwright drives Debian's chromium; its own browser download is never used.
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=LAUNCH_ARGS
        )
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1100, "height": 900})
    page = context.new_page()
    page.set_default_timeout(15_000)
    page.problems = []  # type: ignore[attr-defined]

    def console(message: ConsoleMessage) -> None:
        if message.type == "error":
            page.problems.append(message.text)  # type: ignore[attr-defined]

    page.on("console", console)
    page.on("pageerror", lambda error: page.problems.append(str(error)))  # type: ignore[attr-defined]
    yield page
    context.close()


def open_dashboard(stack: Stack, page: Page, token: str, **dates: str) -> None:
    response = page.goto(f"{stack.base_url}/admin/")
    assert response is not None and response.status == 200
    assert "default-src 'self'" in response.headers["content-security-policy"]
    page.fill("#token", token)
    for name, value in dates.items():
        page.fill(f"#{name}", value)
    page.click("#load")


def make_bookings(consumer: Api, provider: Api) -> None:
    """Three bookings: one completed, one only accepted, one left requested."""
    provider_id = provider.call(
        "PUT",
        "/v1/me/provider-profile",
        200,
        json={
            "display_name": "Dashboard Dana",
            "bio": "Windows",
            "categories": ["cleaning"],
            "location": {"lat": 52.52, "lng": 13.405},
            "service_radius_km": 15,
            "hourly_rate_cents": 2500,
            "currency": "EUR",
        },
    )["id"]
    ids = []
    for _ in range(3):
        booking = {
            "provider_id": provider_id,
            "category": "cleaning",
            "scheduled_at": (datetime.now(UTC) + timedelta(days=2)).isoformat(),
            "location": {"lat": 52.5, "lng": 13.4, "address": "Alexanderplatz 1"},
        }
        ids.append(consumer.call("POST", "/v1/bookings", 201, json=booking)["id"])
    for action in ("accept", "start", "complete"):
        provider.call("POST", f"/v1/bookings/{ids[0]}/{action}", 200)
    provider.call("POST", f"/v1/bookings/{ids[1]}/accept", 200)


def send_events(api: Api, counts: dict[str, int], session_id: str) -> None:
    now = datetime.now(UTC).isoformat()
    events: list[Any] = [
        {
            "name": name,
            "timestamp": now,
            "session_id": session_id,
            "attributes": {"screen": "home"},
            "metrics": {"duration_ms": 120 + i},
            "app_version": "2.4.1",
            "platform": "ios",
        }
        for name, count in counts.items()
        for i in range(count)
    ]
    events.append({"name": "not a valid name", "timestamp": now})
    result = api.call("POST", "/v1/events", 202, json={"events": events})
    assert result["accepted"] == len(events) - 1
    assert [r["index"] for r in result["rejected"]] == [len(events) - 1]


def total(summary: dict[str, Any], name: str) -> int:
    return next((n["total"] for n in summary["events_by_name"] if n["name"] == name), 0)


def test_the_dashboard_draws_the_summary(
    stack: Stack, page: Page, capsys: pytest.CaptureFixture[str]
) -> None:
    admin, consumer, provider = Api(stack, "admin"), Api(stack, "consumer"), Api(stack, "provider")
    before = admin.call("GET", SUMMARY, 200)

    make_bookings(consumer, provider)
    consumer_events = {"e2e.app.open": 3, "e2e.search.performed": 2, "e2e.booking.viewed": 1}
    provider_events = {"e2e.app.open": 2, "e2e.job.accepted": 1}
    send_events(consumer, consumer_events, "consumer-session-1")
    send_events(provider, provider_events, "provider-session-1")

    after = admin.call("GET", SUMMARY, 200)
    funnel = {k: after["funnel"][k] - before["funnel"][k] for k in ("requested", "accepted")}
    assert funnel == {"requested": 3, "accepted": 2}
    assert after["funnel"]["completed"] - before["funnel"]["completed"] == 1
    sent = {"e2e.app.open": 5, "e2e.search.performed": 2, "e2e.booking.viewed": 1}
    sent["e2e.job.accepted"] = 1
    for name, count in sent.items():
        assert total(after, name) - total(before, name) == count, name
    today = after["days"][-1]
    assert today["date"] == datetime.now(UTC).date().isoformat()
    assert today["active_users"] >= 2 and today["sessions"] >= 2

    open_dashboard(stack, page, admin.token)
    page.wait_for_selector("body[data-state='ready']")

    # Events by name: a bar for each name sent, as long as the API's count.
    for name in sent:
        bar = page.locator(f"#events-chart g.bar[data-name='{name}']")
        assert bar.get_attribute("data-count") == str(total(after, name)), name
        assert bar.locator("rect").count() == 1
        assert name in bar.inner_html()
    # Daily active users: one point a day, today's as the API says.
    points = page.locator("#dau-chart circle.point")
    assert points.count() == len(after["days"]) == 30
    point = page.locator(f"#dau-chart circle[data-date='{today['date']}']")
    assert point.get_attribute("data-value") == str(today["active_users"])
    assert page.locator("#dau-chart polyline").count() == 1
    # The funnel: each stage's number, and the rates in the text.
    for stage in ("requested", "accepted", "completed"):
        shown = page.locator(f"#funnel-chart g.stage[data-stage='{stage}']")
        assert shown.get_attribute("data-count") == str(after["funnel"][stage]), stage
    accepted_text = page.locator("#funnel-chart g.stage[data-stage='accepted']").text_content()
    rate = round(after["funnel"]["accept_rate"] * 100, 1)
    assert f"{rate:g}% of requested" in (accepted_text or "")
    assert page.text_content("#tile-mau") == f"{after['monthly_active_users']:,}"
    assert page.text_content("#tile-providers") == f"{after['providers']['active']:,}"
    assert page.text_content("#range") == f"{after['from']} to {after['to']} (UTC)"

    # The token stays in this tab's sessionStorage, nowhere else; the input is emptied.
    assert page.evaluate("sessionStorage.getItem('trellis.admin.token')") == admin.token
    assert page.evaluate("localStorage.length") == 0
    assert page.input_value("#token") == ""
    assert page.problems == []  # type: ignore[attr-defined]

    screenshot = stack.logs / "dashboard.png"
    page.screenshot(path=str(screenshot), full_page=True)
    shutil.copyfile(screenshot, SCREENSHOT_COPY)
    with capsys.disabled():
        print(f"\ndashboard screenshot: {screenshot} (copied to {SCREENSHOT_COPY})")


def test_the_dashboard_shows_api_errors_readably(stack: Stack, page: Page) -> None:
    open_dashboard(stack, page, "not-a-token")
    page.wait_for_selector("body[data-state='error']")
    error = page.locator("#error")
    assert "Unauthorized (401)" in error.text_content()  # type: ignore[operator]
    assert "Enter a fresh admin token" in error.text_content()  # type: ignore[operator]
    assert page.evaluate("sessionStorage.getItem('trellis.admin.token')") is None

    consumer = sign_in(stack.pool, "consumer")["id"]  # an ID token works the same way
    open_dashboard(stack, page, consumer)
    page.wait_for_selector("body[data-state='error'] #error h2:has-text('Forbidden (403)')")
    assert "not an admin" in error.text_content()  # type: ignore[operator]
    assert "Request id:" in error.text_content()  # type: ignore[operator]

    admin = sign_in(stack.pool, "admin")["access"]
    open_dashboard(stack, page, admin, **{"from": "2024-01-01", "to": "2025-06-30"})
    page.wait_for_selector("body[data-state='error'] #error h2:has-text('(422)')")
    items = page.locator("#error li").all_text_contents()
    assert "from: at most 366 days before `to`" in items
    assert page.locator("#dashboard").is_hidden()

    page.fill("#from", "")
    page.fill("#to", "")
    page.click("#load")  # the stored token is used again
    page.wait_for_selector("body[data-state='ready']")
    assert page.locator("#error").is_hidden()
    # Only the expected refusals were logged by the browser: no CSP or script errors.
    statuses = [re.search(r"status of (\d+)", p) for p in page.problems]  # type: ignore[attr-defined]
    assert [m[1] if m else None for m in statuses] == ["401", "403", "422"], page.problems  # type: ignore[attr-defined]
