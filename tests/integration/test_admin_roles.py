"""Admins grant and revoke roles: Cognito groups (moto) change, Trellis records and enforces."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from moto import mock_aws
from sqlalchemy import select
from sqlalchemy.orm import Session

from models import ProviderProfile, RoleChange, User
from services.aws.cognito import CognitoGroups, DirectoryUnavailable, GroupDirectory
from tests.conftest import make_app
from tests.support.actors import Actor, make_actor
from tests.support.bookings import ensure_profile
from tests.support.fakes import FakeGroups
from tests.support.tokens import token_for


@pytest.fixture
def cognito(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        client = boto3.client("cognito-idp", region_name="us-east-1")
        pool = client.create_user_pool(PoolName="trellis-test")["UserPool"]["Id"]
        for group in ("consumers", "providers", "admins"):
            client.create_group(UserPoolId=pool, GroupName=group)
        client.pool_id = pool  # type: ignore[attr-defined]
        yield client


@pytest.fixture
def groups(request: pytest.FixtureRequest) -> GroupDirectory:
    """With `cognito` among a test's fixtures, roles change in moto's user pool."""
    if "cognito" not in request.fixturenames:
        return FakeGroups()
    pool = request.getfixturevalue("cognito").pool_id
    return CognitoGroups(user_pool_id=pool, region="us-east-1")


@dataclass
class CognitoActor(Actor):
    """An actor as Cognito signs them in: the token's sub is the one Cognito gave the user,
    its username the Cognito username (unlike plain actors, whose username is their sub)."""

    username: str = ""

    def headers(self, **extra: str) -> dict[str, str]:
        token = token_for(self.key, self.sub, groups=self.groups, username=self.username)
        return {"Authorization": f"Bearer {token}", **extra}


def in_cognito(cognito: Any, actor: Actor, username: str | None = None) -> CognitoActor:
    """Creates the actor's Cognito user (named after their sub unless `username` is given) in
    their groups; the actor returned signs in as that user, with the sub Cognito gave it."""
    username = username or actor.sub
    cognito.admin_create_user(
        UserPoolId=cognito.pool_id, Username=username, MessageAction="SUPPRESS"
    )
    for group in actor.groups:
        cognito.admin_add_user_to_group(
            UserPoolId=cognito.pool_id, Username=username, GroupName=group
        )
    user = cognito.admin_get_user(UserPoolId=cognito.pool_id, Username=username)
    sub = next(a["Value"] for a in user["UserAttributes"] if a["Name"] == "sub")
    return CognitoActor(actor.client, actor.key, sub, list(actor.groups), username=username)


def groups_of(cognito: Any, actor: CognitoActor) -> set[str]:
    listed = cognito.admin_list_groups_for_user(UserPoolId=cognito.pool_id, Username=actor.username)
    return {g["GroupName"] for g in listed["Groups"]}


def test_grant_adds_the_cognito_group_and_records_it(actors, cognito, session: Session) -> None:  # type: ignore[no-untyped-def]
    admin, user = actors("admin"), in_cognito(cognito, actors("consumer"))
    response = admin.post(f"/v1/admin/users/{user.id}/roles", json={"role": "provider"})
    assert response.status_code == 200, response.get_data(as_text=True)
    body = response.get_json()
    assert (body["action"], body["role"], body["actor_id"]) == ("grant", "provider", admin.id)
    assert groups_of(cognito, user) == {"consumers", "providers"}
    change = session.scalars(select(RoleChange).where(RoleChange.user_id == body["user_id"])).one()
    assert (change.action, change.role, str(change.actor_id)) == ("grant", "provider", admin.id)


def test_revoke_takes_effect_before_the_token_expires(actors, cognito, session: Session) -> None:  # type: ignore[no-untyped-def]
    admin, provider = actors("admin"), in_cognito(cognito, actors("provider"))
    ensure_profile(provider)
    consumer = actors("consumer")
    assert consumer.get(f"/v1/providers/{provider.id}").status_code == 200
    stale_headers = provider.headers()  # a token issued before the revocation
    response = admin.delete(f"/v1/admin/users/{provider.id}/roles/provider")
    assert response.status_code == 200 and response.get_json()["action"] == "revoke"
    assert groups_of(cognito, provider) == set()
    # The old token still carries the providers group, but Trellis no longer honours it.
    refused = provider.client.get("/v1/me/provider-profile", headers=stale_headers)
    assert refused.status_code == 403
    assert provider.client.get("/v1/me", headers=stale_headers).get_json()["roles"] == []
    # Hidden from consumers at once.
    assert consumer.get(f"/v1/providers/{provider.id}").status_code == 404
    profile = session.get(ProviderProfile, provider.id)
    session.refresh(profile)
    assert profile is not None and profile.active is False


def test_regrant_reactivates_with_a_fresh_token(actors, cognito) -> None:  # type: ignore[no-untyped-def]
    admin, provider = actors("admin"), in_cognito(cognito, actors("provider"))
    ensure_profile(provider)
    admin.delete(f"/v1/admin/users/{provider.id}/roles/provider")
    assert (
        admin.post(f"/v1/admin/users/{provider.id}/roles", json={"role": "provider"}).status_code
        == 200
    )
    # The app refreshes its tokens and gets the group back.
    assert provider.get("/v1/me/provider-profile").get_json()["active"] is True
    assert actors("consumer").get(f"/v1/providers/{provider.id}").status_code == 200


def test_only_admins_change_roles(actors, cognito) -> None:  # type: ignore[no-untyped-def]
    provider, user = actors("provider", "consumer"), in_cognito(cognito, actors("consumer"))
    assert (
        provider.post(f"/v1/admin/users/{user.id}/roles", json={"role": "admin"}).status_code == 403
    )
    assert provider.delete(f"/v1/admin/users/{user.id}/roles/consumer").status_code == 403
    assert groups_of(cognito, user) == {"consumers"}


def test_unknown_users_and_roles(actors, cognito) -> None:  # type: ignore[no-untyped-def]
    admin = actors("admin")
    missing = "00000000-0000-0000-0000-000000000001"
    assert (
        admin.post(f"/v1/admin/users/{missing}/roles", json={"role": "provider"}).status_code == 404
    )
    user = actors("consumer")  # signed in to Trellis, but not in this Cognito pool
    assert (
        admin.post(f"/v1/admin/users/{user.id}/roles", json={"role": "provider"}).status_code == 404
    )
    assert admin.post(f"/v1/admin/users/{user.id}/roles", json={"role": "owner"}).status_code == 422
    assert admin.delete(f"/v1/admin/users/{user.id}/roles/owner").status_code == 422


def test_admin_cannot_remove_their_own_admin_role(actors, cognito) -> None:  # type: ignore[no-untyped-def]
    admin = in_cognito(cognito, actors("admin"))
    assert admin.delete(f"/v1/admin/users/{admin.id}/roles/admin").status_code == 409
    assert groups_of(cognito, admin) == {"admins"}


def test_cognito_outage_is_503_and_records_nothing(build, signing_key, session: Session) -> None:  # type: ignore[no-untyped-def]
    class Down:
        def add_to_group(self, username: str, group: str, *, sub: str) -> None:
            raise DirectoryUnavailable("simulated")

        remove_from_group = add_to_group

    client = make_app(build(groups=Down())).test_client()
    admin = make_actor(client, signing_key, "admin")
    user = make_actor(client, signing_key, "consumer")
    response = admin.post(f"/v1/admin/users/{user.id}/roles", json={"role": "provider"})
    assert response.status_code == 503 and "Retry-After" in response.headers
    assert session.scalars(select(RoleChange)).all() == []


# --- a deleted Cognito user's username taken by someone else ----------------------------


def test_a_role_change_never_lands_on_whoever_took_a_deleted_users_username(  # type: ignore[no-untyped-def]
    actors, cognito, session: Session
) -> None:
    admin = actors("admin")
    alice = in_cognito(cognito, actors("consumer"), username="alice")
    alice_id = alice.id  # signed in: Trellis records her sub and username
    cognito.admin_delete_user(UserPoolId=cognito.pool_id, Username="alice")
    gone = admin.post(f"/v1/admin/users/{alice_id}/roles", json={"role": "admin"})
    assert gone.status_code == 404, gone.get_data(as_text=True)
    # A new Cognito user takes the username: same name, another sub.
    newcomer = in_cognito(cognito, actors("consumer"), username="alice")
    assert newcomer.sub != alice.sub
    granted = admin.post(f"/v1/admin/users/{alice_id}/roles", json={"role": "admin"})
    assert granted.status_code == 404, granted.get_data(as_text=True)
    assert granted.mimetype == "application/problem+json"
    assert "no longer exists in Cognito" in granted.get_json()["detail"]
    revoked = admin.delete(f"/v1/admin/users/{alice_id}/roles/consumer")
    assert revoked.status_code == 404, revoked.get_data(as_text=True)
    assert "no longer exists in Cognito" in revoked.get_json()["detail"]
    # The newcomer was neither made an admin nor lost the consumers group; nothing recorded.
    assert groups_of(cognito, newcomer) == {"consumers"}
    assert session.scalars(select(RoleChange)).all() == []
    row = session.get(User, alice_id)
    assert row is not None and row.role_revocations == {} and row.roles == ["consumer"]


def test_the_fake_directory_tells_a_replaced_user_apart(actors, groups: FakeGroups) -> None:  # type: ignore[no-untyped-def]
    admin, user = actors("admin"), actors("consumer")
    assert (
        admin.post(f"/v1/admin/users/{user.id}/roles", json={"role": "provider"}).status_code == 200
    )
    assert (user.sub, "providers") in groups.members
    groups.replace_user(user.sub)  # the actors' username is their sub
    assert admin.post(f"/v1/admin/users/{user.id}/roles", json={"role": "admin"}).status_code == 404
    assert admin.delete(f"/v1/admin/users/{user.id}/roles/provider").status_code == 404
    assert groups.members == set()
