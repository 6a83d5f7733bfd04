"""Simulated app users: consumers and providers booking, messaging, reading and syncing.

Each user is a coroutine that acts like a phone: a think pause, then one action over HTTP
with its real Cognito token. Writes carry an Idempotency-Key and are retried with the same
key and body after a 503 (after its Retry-After), a dropped connection or a 409 saying the
first attempt is still in progress, as the README tells app developers to.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.soak.ledger import Ledger, problem_type
from tests.support.actors import booking_body, profile_body

IN_USE_PAUSE_SECONDS = 2.0  # the first attempt holds the key; ask again shortly
MAX_RETRY_AFTER_SECONDS = 10.0
DATASET = "soak"


@dataclass
class World:
    """What every simulated user shares."""

    http: httpx.AsyncClient
    ledger: Ledger
    rng: random.Random
    think: tuple[float, float]  # seconds between one user's actions
    stop_at: float = 0.0  # time.monotonic() after which no new action starts
    give_up_at: float = 0.0  # after this, a failed write is not retried
    provider_ids: list[str] = field(default_factory=list)


class App:
    """One user's phone: a token, what it has seen, and the actions it takes."""

    role = "user"

    def __init__(self, world: World, token: str, index: int) -> None:
        self.world = world
        self.index = index
        self.headers = {"Authorization": f"Bearer {token}"}
        self.user_id = ""
        self.bookings: list[str] = []
        self.synced: dict[str, int] = {}  # record key -> sync_count this device knows
        self.sync_seen = 0
        self.notes_written = 0

    # ------------------------------------------------------------ plumbing

    async def call(
        self, kind: str, method: str, path: str, *, json: Any = None, key: str | None = None
    ) -> httpx.Response | None:
        """One request; the answer (or its absence) goes into the ledger."""
        headers = dict(self.headers)
        if key is not None:
            headers["Idempotency-Key"] = key
        started = time.monotonic()
        try:
            response = await self.world.http.request(method, path, json=json, headers=headers)
        except httpx.HTTPError as error:
            self.world.ledger.transport_error(kind, error, time.monotonic() - started)
            return None
        self.world.ledger.record(kind, response, time.monotonic() - started)
        return response

    async def write(
        self, kind: str, method: str, path: str, body: Callable[[str], Any] | Any
    ) -> tuple[str, httpx.Response | None]:
        """A write with an Idempotency-Key, retried with the same key until it is decided.

        Returns the key and the final answer, or None if the user gave up retrying.
        """
        key = f"soak-{uuid.uuid4()}"
        payload = body(key) if callable(body) else body
        self.world.ledger.tried_keys[kind].add(key)
        while True:
            response = await self.call(kind, method, path, json=payload, key=key)
            pause = retry_pause(response, self.world.rng)
            if pause is None:
                return key, response
            if time.monotonic() + pause > self.world.give_up_at:
                self.world.ledger.abandoned[kind] += 1
                return key, None
            self.world.ledger.retries[kind] += 1
            await asyncio.sleep(pause)

    async def run(self) -> None:
        """Act until the load phase ends; the last action may still be retrying after it."""
        rng = self.world.rng
        while time.monotonic() < self.world.stop_at:
            await asyncio.sleep(rng.uniform(*self.world.think))
            if time.monotonic() >= self.world.stop_at:
                return
            await self.step()

    async def step(self) -> None:
        raise NotImplementedError

    async def choose(self, actions: list[tuple[Callable[[], Awaitable[None]], int]]) -> None:
        action = self.world.rng.choices([a for a, _ in actions], [w for _, w in actions])[0]
        await action()

    # ------------------------------------------------------------ set-up

    async def sign_up(self) -> None:
        """First launch: who am I."""
        me = await self.call("setup", "GET", "/v1/me")
        if me is None or me.status_code != 200:
            raise RuntimeError(f"GET /v1/me failed in set-up: {me and me.text}")
        self.user_id = str(me.json()["id"])

    async def register_phone(self, platform: str) -> None:
        """Register this phone for push."""
        token = uuid.uuid4().hex * 2 if platform == "ios" else f"fcm:{uuid.uuid4().hex}"
        device = await self.call(
            "setup", "POST", "/v1/devices", json={"platform": platform, "token": token}
        )
        if device is None or device.status_code != 200:
            raise RuntimeError(f"POST /v1/devices failed in set-up: {device and device.text}")

    # ------------------------------------------------------------ shared actions

    async def message(self) -> None:
        if not self.bookings:
            return await self.read()
        booking_id = self.world.rng.choice(self.bookings)
        key, response = await self.write(
            "message",
            "POST",
            f"/v1/bookings/{booking_id}/messages",
            lambda key: {"body": f"soak {key}"},
        )
        if response is not None and response.status_code == 201:
            self.world.ledger.messages[key] = (booking_id, str(response.json()["id"]))
        return None

    async def sync(self) -> None:
        """Write a new note and bump the shared profile record, as a phone syncing does."""
        self.notes_written += 1
        note = f"note-{self.index}-{self.notes_written}"
        records = [
            {"op": "replace", "key": note, "value": {"n": self.notes_written}, "sync_count": 0},
            {
                "op": "replace",
                "key": "profile",
                "value": {"version": self.notes_written, "user": self.index},
                "sync_count": self.synced.get("profile", 0),
            },
        ]
        body = {"device_id": "soak-phone", "records": records}
        _, response = await self.write("sync", "POST", f"/v1/sync/datasets/{DATASET}", body)
        if response is None:
            return
        if response.status_code == 200:
            self._acknowledged(response.json())
        elif response.status_code == 409 and problem_type(response) == "/problems/sync-conflict":
            for record in response.json()["conflicts"]:  # merge: take the server's counts
                self.synced[record["key"]] = record["sync_count"]

    def _acknowledged(self, changes: dict[str, Any]) -> None:
        log = self.world.ledger.sync[self.user_id]
        log.batches += 1
        for record in changes["records"]:
            self.synced[record["key"]] = record["sync_count"]
            entry = (record["value"], record["sync_count"])
            if record["key"] == "profile":
                log.profile = entry
            else:
                log.notes[record["key"]] = entry
        self.sync_seen = max(self.sync_seen, changes["sync_count"])

    async def pull(self) -> None:
        """Another launch: ask for what changed since the last pull."""
        if not self.sync_seen:
            return await self.sync()
        since = max(0, self.sync_seen - 3)
        await self.call("sync-pull", "GET", f"/v1/sync/datasets/{DATASET}?since={since}")
        return None

    async def read(self) -> None:
        await self.call("read", "GET", self.world.rng.choice(self.reads()))

    def reads(self) -> list[str]:
        paths = ["/v1/notifications?limit=20", "/v1/sync/datasets", "/v1/me"]
        if self.bookings:
            booking_id = self.world.rng.choice(self.bookings)
            paths += [f"/v1/bookings/{booking_id}", f"/v1/bookings/{booking_id}/messages?limit=20"]
        return paths


class Consumer(App):
    role = "consumer"

    async def step(self) -> None:
        await self.choose(
            [
                (self.book, 3),
                (self.message, 3),
                (self.read, 3),
                (self.browse, 1),
                (self.sync, 2),
                (self.pull, 1),
            ]
        )

    async def book(self) -> None:
        provider_id = self.world.rng.choice(self.world.provider_ids)
        key, response = await self.write(
            "booking", "POST", "/v1/bookings", lambda key: booking_body(provider_id, notes=key)
        )
        if response is not None and response.status_code == 201:
            booking_id = str(response.json()["id"])
            self.world.ledger.bookings[key] = booking_id
            self.bookings.append(booking_id)

    async def browse(self) -> None:
        await self.call(
            "read", "GET", "/v1/providers?category=cleaning&lat=52.52&lng=13.405&radius_km=50"
        )

    def reads(self) -> list[str]:
        return [*super().reads(), "/v1/bookings?role=consumer&limit=20"]


class Provider(App):
    role = "provider"

    async def open_shop(self) -> str:
        """Set up the provider profile consumers book."""
        body = profile_body(display_name=f"Soak provider {self.index}")
        response = await self.call("setup", "PUT", "/v1/me/provider-profile", json=body)
        if response is None or response.status_code != 200:
            raise RuntimeError(f"provider profile failed in set-up: {response and response.text}")
        return str(response.json()["id"])

    async def step(self) -> None:
        await self.choose(
            [(self.accept, 3), (self.message, 2), (self.read, 3), (self.sync, 2), (self.pull, 1)]
        )

    async def accept(self) -> None:
        listing = await self.call(
            "read", "GET", "/v1/bookings?role=provider&status=requested&limit=10"
        )
        if listing is None or listing.status_code != 200 or not listing.json()["items"]:
            return
        booking_id = str(self.world.rng.choice(listing.json()["items"])["id"])
        _, response = await self.write("accept", "POST", f"/v1/bookings/{booking_id}/accept", None)
        if response is not None and response.status_code == 200:
            self.world.ledger.accepts.add(booking_id)
            self.bookings.append(booking_id)

    def reads(self) -> list[str]:
        return [*super().reads(), "/v1/bookings?role=provider&limit=20", "/v1/me/provider-profile"]


def retry_pause(response: httpx.Response | None, rng: random.Random) -> float | None:
    """Seconds to wait before retrying the same request, or None if its answer is final."""
    if response is None:  # no answer at all: the outcome is unknown, the key makes it safe
        return rng.uniform(0.5, 1.5)
    status = response.status_code
    if status in (429, 503):
        after = response.headers.get("retry-after", "")
        seconds = float(after) if after.isdigit() else 1.0
        return min(seconds, MAX_RETRY_AFTER_SECONDS) * rng.uniform(0.5, 1.0)  # spread retries
    if status == 409 and problem_type(response) == "/problems/idempotency-key-in-use":
        return IN_USE_PAUSE_SECONDS * rng.uniform(0.75, 1.25)
    return None
