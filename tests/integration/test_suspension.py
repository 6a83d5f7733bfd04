"""Suspension (a report resolved with suspend_user) and lifting it (/v1/admin/users/.../unsuspend).

A suspended account's tokens are refused at once (403 /problems/account-suspended), its
provider profile is hidden (404, out of search), its Cognito user is disabled; it is listed
under GET /v1/admin/users?status=suspended. Unsuspending undoes all of it. A Cognito outage
is 503 with nothing changed, and the retry works.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from models import ProviderProfile, Report, User
from services.accounts import deletion
from tests.support.actors import Actor
from tests.support.bookings import booking_in, ensure_profile
from tests.support.fakes import FakeGroups

SUSPENDED = "/problems/account-suspended"
SEARCH = "/v1/providers?category=cleaning"


def _ok(response: Any, status: int = 200) -> Any:
    assert response.status_code == status, response.get_data(as_text=True)
    return response.get_json()


def _problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    return response.get_json()  # type: ignore[no-any-return]


@pytest.fixture
def reported(actors) -> tuple[Actor, Actor, Actor, str]:  # type: ignore[no-untyped-def]
    """A consumer's open report of a provider's message; the admin; the report id."""
    consumer, provider, admin = actors("consumer"), actors("provider"), actors("admin")
    ensure_profile(provider)
    booking = booking_in("accepted", consumer, provider)
    message = _ok(provider.post(f"/v1/bookings/{booking}/messages", json={"body": "Hi"}), 201)
    body = {"target_type": "message", "target_id": message["id"], "reason": "harassment"}
    report = _ok(consumer.post("/v1/reports", json=body), 201)
    return consumer, provider, admin, report["id"]


def suspend(admin: Actor, report_id: str) -> Any:
    path = f"/v1/admin/reports/{report_id}/resolve"
    return admin.post(path, json={"action": "suspend_user", "note": "Abuse"})


def _search_ids(viewer: Actor) -> set[str]:
    return {p["id"] for p in _ok(viewer.get(SEARCH))["items"]}


def test_suspending_refuses_tokens_hides_the_profile_and_disables_cognito(  # type: ignore[no-untyped-def]
    reported, groups: FakeGroups, session: Session
) -> None:
    consumer, provider, admin, report_id = reported
    assert provider.id in _search_ids(consumer)
    resolved = _ok(suspend(admin, report_id))
    assert (resolved["status"], resolved["action"]) == ("resolved", "suspend_user")

    problem = _problem(provider.get("/v1/me"), 403)
    assert problem["type"] == SUSPENDED
    assert consumer.get(f"/v1/providers/{provider.id}").status_code == 404
    assert provider.id not in _search_ids(consumer)
    assert groups.switches == [("disable", provider.sub)] and provider.sub in groups.disabled
    listed = _ok(admin.get("/v1/admin/users?status=suspended"))["items"]
    assert [u["id"] for u in listed] == [provider.id] and listed[0]["suspended_at"]
    notes = _ok(consumer.get("/v1/notifications"))["items"]
    assert [n["kind"] for n in notes if n["kind"] == "report_resolved"] == ["report_resolved"]

    lifted = _ok(admin.post(f"/v1/admin/users/{provider.id}/unsuspend"))
    assert (lifted["id"], lifted["suspended_at"]) == (provider.id, None)
    assert groups.switches[-1] == ("enable", provider.sub) and not groups.disabled
    _ok(provider.get("/v1/me"))
    assert _ok(consumer.get(f"/v1/providers/{provider.id}"))["id"] == provider.id
    assert _ok(admin.get("/v1/admin/users?status=suspended"))["items"] == []
    assert _problem(admin.post(f"/v1/admin/users/{provider.id}/unsuspend"), 409)
    assert _problem(admin.post(f"/v1/admin/users/{uuid.uuid4()}/unsuspend"), 404)
    row = session.get(User, uuid.UUID(provider.id))
    assert row is not None and row.suspended_at is None


def test_a_cognito_outage_is_503_with_nothing_changed_and_the_retry_works(  # type: ignore[no-untyped-def]
    reported, groups: FakeGroups, session: Session
) -> None:
    _, provider, admin, report_id = reported
    groups.down = True
    problem = _problem(suspend(admin, report_id), 503)
    assert problem["type"] == "/problems/unavailable" and "Cognito" in problem["detail"]
    assert session.get(Report, uuid.UUID(report_id)).status == "open"  # type: ignore[union-attr]
    _ok(provider.get("/v1/me"))
    groups.down = False
    _ok(suspend(admin, report_id))
    assert _problem(provider.get("/v1/me"), 403)["type"] == SUSPENDED

    groups.down = True
    assert _problem(admin.post(f"/v1/admin/users/{provider.id}/unsuspend"), 503)
    assert _problem(provider.get("/v1/me"), 403)["type"] == SUSPENDED
    groups.down = False
    _ok(admin.post(f"/v1/admin/users/{provider.id}/unsuspend"))


def test_an_admin_cannot_suspend_themselves_and_listing_needs_the_status(actors) -> None:  # type: ignore[no-untyped-def]
    admin, provider = actors("admin", "provider"), actors("consumer")
    ensure_profile(admin)
    booking_in("accepted", provider, admin)
    body = {"target_type": "user", "target_id": admin.id, "reason": "spam"}
    report = _ok(provider.post("/v1/reports", json=body), 201)
    assert _problem(suspend(admin, report["id"]), 409)["type"] == "/problems/conflict"
    problem = _problem(admin.get("/v1/admin/users"), 422)
    assert problem["errors"][0]["field"] == "status"


def test_unsuspending_leaves_hidden_a_profile_whose_deletion_is_scheduled(  # type: ignore[no-untyped-def]
    reported, sessions, session: Session
) -> None:
    _, provider, admin, report_id = reported
    user_id = uuid.UUID(provider.id)
    _ok(suspend(admin, report_id))
    with sessions.begin() as writer:  # scheduled before the suspension, in effect
        user = writer.get(User, user_id)
        user.deletion_requested_at = user.suspended_at
        user.purge_at = user.suspended_at.replace(year=user.suspended_at.year + 1)
    _ok(admin.post(f"/v1/admin/users/{provider.id}/unsuspend"))
    assert (
        session.scalar(select(ProviderProfile.active).where(ProviderProfile.user_id == user_id))
        is False
    )


def test_cancelling_a_deletion_does_not_show_a_suspended_profile(  # type: ignore[no-untyped-def]
    reported, sessions, session: Session
) -> None:
    _, provider, admin, report_id = reported
    user_id = uuid.UUID(provider.id)
    with sessions.begin() as writer:  # a deletion scheduled (as DELETE /v1/me does), hidden
        user = writer.get(User, user_id)
        user.deletion_requested_at = user.created_at
        user.purge_at = user.created_at.replace(year=user.created_at.year + 1)
    _ok(suspend(admin, report_id))
    with sessions.begin() as writer:
        deletion.cancel(writer, user_id=user_id)
    assert (
        session.scalar(select(ProviderProfile.active).where(ProviderProfile.user_id == user_id))
        is False
    )
