"""Two devices of one user syncing a dataset through the running service."""

from __future__ import annotations

import pytest
import requests

from devstack.cognito import sign_in
from tests.e2e.conftest import Stack

pytestmark = pytest.mark.e2e


def test_two_devices_sync_merge_and_see_deletions(stack: Stack) -> None:
    phone, tablet = requests.Session(), requests.Session()
    for device in (phone, tablet):  # each device signs in on its own
        device.headers["Authorization"] = f"Bearer {sign_in(stack.pool, 'consumer')['access']}"
    url = f"{stack.base_url}/v1/sync/datasets/e2e-prefs"

    first = phone.post(
        url,
        json={
            "device_id": "phone",
            "records": [
                {"op": "replace", "key": "theme", "value": "dark", "sync_count": 0},
                {"op": "replace", "key": "units", "value": "metric", "sync_count": 0},
            ],
        },
        timeout=10,
    )
    assert first.status_code == 200 and first.json()["sync_count"] == 1

    stale = tablet.post(
        url,
        json={
            "device_id": "tablet",
            "records": [
                {"op": "replace", "key": "theme", "value": "light", "sync_count": 0},
            ],
        },
        timeout=10,
    )
    assert stale.status_code == 409
    assert stale.json()["conflicts"][0]["value"] == "dark"

    pulled = tablet.get(url, params={"since": 0}, timeout=10).json()
    seen = {r["key"]: r["sync_count"] for r in pulled["records"]}
    merged = tablet.post(
        url,
        json={
            "device_id": "tablet",
            "records": [
                {"op": "replace", "key": "theme", "value": "light", "sync_count": seen["theme"]},
                {"op": "remove", "key": "units", "sync_count": seen["units"]},
            ],
        },
        timeout=10,
    )
    assert merged.status_code == 200 and merged.json()["sync_count"] == 2

    delta = phone.get(url, params={"since": 1}, timeout=10).json()
    assert {(r["key"], r["value"], r["deleted"]) for r in delta["records"]} == {
        ("theme", "light", False),
        ("units", None, True),
    }
    listed = phone.get(f"{stack.base_url}/v1/sync/datasets", timeout=10).json()["items"]
    assert {"name": "e2e-prefs", "sync_count": 2, "record_count": 1}.items() <= next(
        d for d in listed if d["name"] == "e2e-prefs"
    ).items()
