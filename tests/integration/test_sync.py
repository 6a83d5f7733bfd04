"""Cross-device sync: conflicts, tombstones, limits, concurrency and convergence."""

from __future__ import annotations

import json
import threading
import uuid
from typing import Any

import pytest
from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from models import OutboxMessage, SyncRecord
from services import sync
from services.base.errors import NotFound
from services.messaging import outbox
from tests.conftest import make_app
from tests.support.actors import make_actor
from tests.support.fakes import FakePush

PATH = "/v1/sync/datasets/settings"


def replace(key: str, value: Any, seen: int) -> dict[str, Any]:
    return {"op": "replace", "key": key, "value": value, "sync_count": seen}


def remove(key: str, seen: int) -> dict[str, Any]:
    return {"op": "remove", "key": key, "sync_count": seen}


def test_changes_since_and_tombstones(actors) -> None:  # type: ignore[no-untyped-def]
    user = actors("consumer")
    first = user.post(PATH, json={"records": [replace("a", 1, 0), replace("b", {"x": [1]}, 0)]})
    assert first.status_code == 200 and first.get_json()["sync_count"] == 1
    second = user.post(PATH, json={"records": [remove("a", 1), replace("c", "z", 0)]})
    assert second.get_json()["sync_count"] == 2
    everything = user.get(f"{PATH}?since=0").get_json()
    state = {r["key"]: (r["value"], r["deleted"], r["sync_count"]) for r in everything["records"]}
    assert state == {"a": (None, True, 2), "b": ({"x": [1]}, False, 1), "c": ("z", False, 2)}
    delta = user.get(f"{PATH}?since=1").get_json()
    assert sorted(r["key"] for r in delta["records"]) == ["a", "c"]
    assert user.get(f"{PATH}?since=2").get_json()["records"] == []
    listed = user.get("/v1/sync/datasets").get_json()["items"]
    assert [(d["name"], d["sync_count"], d["record_count"]) for d in listed] == [("settings", 2, 2)]


def test_a_stale_device_gets_409_with_the_servers_version_and_nothing_applies(actors) -> None:  # type: ignore[no-untyped-def]
    user = actors("consumer")
    user.post(PATH, json={"device_id": "phone", "records": [replace("theme", "dark", 0)]})
    stale = user.post(
        PATH,
        json={
            "device_id": "tablet",
            "records": [replace("theme", "light", 0), replace("new", 1, 0)],
        },
    )
    assert stale.status_code == 409
    problem = stale.get_json()
    assert problem["type"] == "/problems/sync-conflict"
    assert [(c["key"], c["value"], c["sync_count"]) for c in problem["conflicts"]] == [
        ("theme", "dark", 1)
    ]
    after = user.get(f"{PATH}?since=0").get_json()
    assert after["sync_count"] == 1 and [r["key"] for r in after["records"]] == ["theme"]
    merged = user.post(PATH, json={"records": [replace("theme", "light", 1), replace("new", 1, 0)]})
    assert merged.status_code == 200 and merged.get_json()["sync_count"] == 2


def test_datasets_are_private(actors) -> None:  # type: ignore[no-untyped-def]
    alice, bob = actors("consumer"), actors("consumer")
    alice.post(PATH, json={"records": [replace("secret", 1, 0)]})
    assert bob.get(f"{PATH}?since=0").status_code == 404
    assert bob.delete(PATH).status_code == 404
    assert bob.get("/v1/sync/datasets").get_json()["items"] == []


def test_delete_dataset(actors) -> None:  # type: ignore[no-untyped-def]
    user = actors("consumer")
    user.post(PATH, json={"records": [replace("k", 1, 0)]})
    assert user.delete(PATH).status_code == 204
    assert user.get(f"{PATH}?since=0").status_code == 404
    again = user.post(PATH, json={"records": [replace("k", 2, 0)]})
    assert again.status_code == 200 and again.get_json()["sync_count"] == 1


@pytest.mark.parametrize(
    ("setting", "value", "batch", "code"),
    [
        (
            "SYNC_MAX_RECORDS",
            2,
            [replace("a", 1, 0), replace("b", 1, 0), replace("c", 1, 0)],
            "limit_records",
        ),
        ("SYNC_MAX_DATASET_BYTES", 1024, [replace("a", "x" * 1100, 0)], "limit_dataset_bytes"),
        ("SYNC_MAX_VALUE_BYTES", 16, [replace("a", "x" * 20, 0)], "limit_value_bytes"),
    ],
)
def test_limits_are_422_naming_the_limit(
    build, settings, actors, setting, value, batch, code
) -> None:  # type: ignore[no-untyped-def]
    user = actors("consumer")
    limited = settings.model_copy(update={setting.lower(): value})
    user.client = make_app(build(limited)).test_client()
    response = user.post(PATH, json={"records": batch})
    assert response.status_code == 422
    assert response.get_json()["errors"][0]["code"] == code
    assert user.get(f"{PATH}?since=0").status_code == 404  # nothing was created either


def test_dataset_count_limit(build, settings, actors) -> None:  # type: ignore[no-untyped-def]
    user = actors("consumer")
    limited = settings.model_copy(update={"sync_max_datasets": 2})
    user.client = make_app(build(limited)).test_client()
    for name in ("one", "two"):
        assert (
            user.post(
                f"/v1/sync/datasets/{name}", json={"records": [replace("k", 1, 0)]}
            ).status_code
            == 200
        )
    third = user.post("/v1/sync/datasets/three", json={"records": [replace("k", 1, 0)]})
    assert third.status_code == 422 and third.get_json()["errors"][0]["code"] == "limit_datasets"


def test_removing_frees_room(build, settings, actors) -> None:  # type: ignore[no-untyped-def]
    user = actors("consumer")
    limited = settings.model_copy(update={"sync_max_records": 1})
    user.client = make_app(build(limited)).test_client()
    user.post(PATH, json={"records": [replace("a", 1, 0)]})
    assert user.post(PATH, json={"records": [replace("b", 1, 0)]}).status_code == 422
    assert (
        user.post(PATH, json={"records": [remove("a", 1), replace("b", 1, 0)]}).status_code == 200
    )


@pytest.mark.parametrize(
    "body",
    [
        {"records": []},
        {"records": [replace("a", 1, 0), replace("a", 2, 0)]},
        {"records": [{"op": "upsert", "key": "a", "sync_count": 0}]},
        {"records": [replace("", 1, 0)]},
        {"records": [replace("é" * 513, 1, 0)]},  # 1026 bytes
        {"records": [replace("a", 1, -1)]},
        {"records": [replace("a\u0000b", 1, 0)]},
        {"device_id": "has space", "records": [replace("a", 1, 0)]},
    ],
)
def test_bad_batches_are_422(actors, body) -> None:  # type: ignore[no-untyped-def]
    assert actors("consumer").post(PATH, json=body).status_code == 422


def test_bad_dataset_names_are_422(actors) -> None:  # type: ignore[no-untyped-def]
    user = actors("consumer")
    for name in ("has%20space", "x" * 129, "semi;colon"):
        assert user.get(f"/v1/sync/datasets/{name}").status_code == 422


def test_other_devices_get_a_silent_push(
    actors, push: FakePush, session: Session, components
) -> None:  # type: ignore[no-untyped-def]
    user = actors("consumer")
    phone = user.post("/v1/devices", json={"platform": "ios", "token": "a" * 64}).get_json()["id"]
    user.post("/v1/devices", json={"platform": "android", "token": "fcm:" + "b" * 40})
    user.post(PATH, json={"device_id": phone, "records": [replace("k", 1, 0)]})
    outbox.drain_all(components.sessions, components.push)
    assert len(push.published) == 1  # the tablet only, not the phone that made the change
    document = json.loads(push.published[0][1])
    fcm = json.loads(document["GCM"])["fcmV1Message"]["message"]
    assert "notification" not in fcm
    assert fcm["data"]["dataset"] == "settings" and fcm["data"]["sync_count"] == "1"
    assert session.scalars(select(OutboxMessage)).one().delivered_at is not None


def test_two_devices_racing_on_one_record(app: Flask, signing_key, engine: Engine) -> None:  # type: ignore[no-untyped-def]
    sub = f"sync-{uuid.uuid4().hex[:8]}"
    make_actor(app.test_client(), signing_key, "consumer", sub=sub).post(
        PATH, json={"records": [replace("shared", "v0", 0)]}
    )
    for round_ in range(5):
        seen = round_ + 1
        barrier = threading.Barrier(2)
        results: list[tuple[int, dict]] = []

        def write(
            value: str,
            seen: int = seen,
            barrier: threading.Barrier = barrier,
            results: list[tuple[int, dict]] = results,
        ) -> None:
            device = make_actor(app.test_client(), signing_key, "consumer", sub=sub)
            barrier.wait()
            response = device.post(PATH, json={"records": [replace("shared", value, seen)]})
            results.append((response.status_code, response.get_json()))

        threads = [threading.Thread(target=write, args=(f"{d}{round_}",)) for d in ("a", "b")]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        statuses = sorted(status for status, _ in results)
        assert statuses == [200, 409]
        winner = next(body for status, body in results if status == 200)
        loser = next(body for status, body in results if status == 409)
        assert loser["conflicts"][0]["value"] == winner["records"][0]["value"]


def test_parallel_batches_keep_counts_strictly_increasing(
    app: Flask, signing_key, engine: Engine
) -> None:  # type: ignore[no-untyped-def]
    sub = f"sync-{uuid.uuid4().hex[:8]}"
    counts: list[int] = []
    lock = threading.Lock()

    def device(number: int) -> None:
        actor = make_actor(app.test_client(), signing_key, "consumer", sub=sub)
        for i in range(10):
            response = actor.post(PATH, json={"records": [replace(f"d{number}-{i}", i, 0)]})
            assert response.status_code == 200, response.get_data(as_text=True)
            with lock:
                counts.append(response.get_json()["sync_count"])

    threads = [threading.Thread(target=device, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(counts) == list(range(1, 61))  # every batch got its own count: no lost update
    with Session(engine) as check:
        keys = check.scalars(select(SyncRecord.key)).all()
    assert len(keys) == 60


# --- convergence: any interleaving, each device merging and retrying, loses nothing -------


class Device:
    """A phone's local copy: what it knows of each record and the last count it pulled."""

    def __init__(self, name: str, dataset: str) -> None:
        self.name = name
        self.dataset = dataset
        self.values: dict[str, int] = {}
        self.counts: dict[str, int] = {}
        self.pulled = 0

    def pull(self, session: Session, user_id: uuid.UUID) -> None:
        try:
            changes = sync.changes_since(
                session, user_id=user_id, name=self.dataset, since=self.pulled
            )
        except NotFound:  # nobody has written yet
            return
        for record in changes.records:
            self.counts[record.key] = record.sync_count
            self.values[record.key] = record.value
        self.pulled = changes.sync_count

    def increment(self, session: Session, user_id: uuid.UUID, key: str) -> None:
        """Read-modify-write on the local copy; on conflict pull (the server's version wins)
        and apply the increment again to it: the merge an app would do."""
        for _ in range(20):
            value = self.values.get(key, 0) + 1
            op = sync.Operation(
                op="replace", key=key, sync_count=self.counts.get(key, 0), value=value
            )
            try:
                changes = sync.apply_batch(
                    session,
                    user_id=user_id,
                    name=self.dataset,
                    device_id=self.name,
                    operations=[op],
                    limits=sync.SyncLimits(),
                )
            except sync.SyncConflict:
                self.pull(session, user_id)
                continue
            self.counts[key] = changes.records[0].sync_count
            self.values[key] = value
            return
        raise AssertionError("an increment never got through")


steps = st.lists(
    st.tuples(
        st.integers(0, 2),  # which device
        st.sampled_from(["pull", "increment"]),
        st.sampled_from(["k1", "k2"]),
    ),
    min_size=1,
    max_size=30,
)


@settings(
    max_examples=40,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(steps=steps)
def test_any_interleaving_converges_without_losing_an_update(sessions, actors, steps) -> None:  # type: ignore[no-untyped-def]
    user_id = uuid.UUID(actors("consumer").id)
    dataset = f"ds-{uuid.uuid4().hex[:12]}"  # every example starts from no dataset
    devices = [Device(f"device-{i}", dataset) for i in range(3)]
    with sessions() as session:
        for index, action, key in steps:
            if action == "pull":
                devices[index].pull(session, user_id)
            else:
                devices[index].increment(session, user_id, key)
        for device in devices:
            device.pull(session, user_id)
        increments = {}
        for _, action, key in steps:
            if action == "increment":
                increments[key] = increments.get(key, 0) + 1
        try:
            records = sync.changes_since(session, user_id=user_id, name=dataset, since=0).records
        except NotFound:
            records = []
        server = {r.key: r.value for r in records}
        assert server == increments  # no increment lost, however the devices interleaved
        assert all(device.values == server for device in devices)  # and all agree


def test_a_device_that_saw_a_record_the_server_never_had_gets_409(actors) -> None:  # type: ignore[no-untyped-def]
    user = actors("consumer")
    user.post(PATH, json={"records": [replace("a", 1, 0)]})
    response = user.post(PATH, json={"records": [remove("ghost", 3)]})
    assert response.status_code == 409
    assert response.get_json()["conflicts"] == [
        {**response.get_json()["conflicts"][0], "key": "ghost", "sync_count": 0, "deleted": True}
    ]
