"""avatar_url wherever a person is shown, with real uploads to the emulated S3: /v1/me, the
provider's own profile, their public profile, search hits and a booking's parties. The URL
fetches the picture; a replaced avatar's URL is gone from every place, a deleted one is null."""

from __future__ import annotations

import uuid

import pytest
import requests

from devstack.cognito import add_user
from tests.e2e.conftest import Stack
from tests.e2e.test_media_push_e2e import post_file, session_for, start_upload
from tests.support.actors import booking_body, profile_body

pytestmark = pytest.mark.e2e

PNG = b"\x89PNG\r\n\x1a\n" + b"\x01" * 2040
OTHER_PNG = b"\x89PNG\r\n\x1a\n" + b"\x02" * 3000


def new_user(stack: Stack, role: str) -> requests.Session:
    """A user of this test alone (the demo users are shared by the whole e2e run)."""
    name = f"avatar-{role}-{uuid.uuid4().hex[:8]}"
    add_user(stack.pool, name, email=f"{name}@example.com", groups=[f"{role}s"])
    return session_for(stack, name)


def get(stack: Stack, http: requests.Session, path: str) -> dict:
    response = http.get(f"{stack.base_url}{path}", timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def set_avatar(stack: Stack, http: requests.Session, content: bytes) -> dict:
    upload = start_upload(stack, http, size_bytes=len(content))
    post_file(upload, content, "image/png")
    done = http.post(f"{stack.base_url}/v1/uploads/{upload['id']}/complete", timeout=10)
    assert done.status_code == 200 and done.json()["status"] == "ready", done.text
    return upload


def provider_urls(
    stack: Stack, provider: requests.Session, consumer: requests.Session, booking: dict
) -> dict[str, str | None]:
    """The provider's avatar_url in each place it is shown."""
    provider_id, name = booking["provider_id"], booking["provider"]["display_name"]
    hits = get(stack, consumer, f"/v1/providers?q={name}")["items"]
    path = f"/v1/bookings/{booking['id']}"
    assert [hit["id"] for hit in hits] == [provider_id]
    return {
        "me": get(stack, provider, "/v1/me")["avatar_url"],
        "own profile": get(stack, provider, "/v1/me/provider-profile")["avatar_url"],
        "profile": get(stack, consumer, f"/v1/providers/{provider_id}")["avatar_url"],
        "search hit": hits[0]["avatar_url"],
        "booking, as consumer": get(stack, consumer, path)["provider"]["avatar_url"],
        "booking, as provider": get(stack, provider, path)["provider"]["avatar_url"],
    }


def test_avatars_show_everywhere_and_go_when_replaced_or_deleted(stack: Stack) -> None:
    provider, consumer = new_user(stack, "provider"), new_user(stack, "consumer")
    name = f"Avatar Ada {uuid.uuid4().hex[:8]}"
    put = provider.put(
        f"{stack.base_url}/v1/me/provider-profile", json=profile_body(display_name=name), timeout=10
    )
    assert put.status_code == 200, put.text
    provider_id = put.json()["id"]
    created = consumer.post(
        f"{stack.base_url}/v1/bookings", json=booking_body(provider_id), timeout=10
    )
    assert created.status_code == 201, created.text
    booking = created.json()
    assert booking["provider"]["avatar_url"] is None and booking["consumer"]["avatar_url"] is None
    assert set(provider_urls(stack, provider, consumer, booking).values()) == {None}

    first = set_avatar(stack, provider, PNG)
    first_key = first["upload"]["fields"]["key"]
    urls = provider_urls(stack, provider, consumer, booking)
    for place, url in urls.items():
        assert url is not None and first_key in url, place
        assert requests.get(url, timeout=10).content == PNG, place

    # The consumer's own face, as the provider sees it on the booking.
    own = set_avatar(stack, consumer, OTHER_PNG)
    seen = get(stack, provider, f"/v1/bookings/{booking['id']}")["consumer"]["avatar_url"]
    assert seen is not None and own["upload"]["fields"]["key"] in seen
    assert requests.get(seen, timeout=10).content == OTHER_PNG
    assert get(stack, consumer, "/v1/me")["avatar_url"] == seen

    # Replaced: the new picture everywhere, the old key nowhere.
    second = set_avatar(stack, provider, OTHER_PNG)
    second_key = second["upload"]["fields"]["key"]
    for place, url in provider_urls(stack, provider, consumer, booking).items():
        assert url is not None and second_key in url and first_key not in url, place
        assert requests.get(url, timeout=10).content == OTHER_PNG, place

    # Deleted: null everywhere, and the URL handed out before fetches nothing any more.
    before = get(stack, consumer, f"/v1/providers/{provider_id}")["avatar_url"]
    deleted = provider.delete(f"{stack.base_url}/v1/uploads/{second['id']}", timeout=10)
    assert deleted.status_code == 204, deleted.text
    assert set(provider_urls(stack, provider, consumer, booking).values()) == {None}
    assert requests.get(before, timeout=10).status_code == 404
