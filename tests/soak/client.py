"""The load generator: every simulated user, in a process of its own.

The proxies under test are Python threads in the runner's process; sharing one GIL with a
busy event loop delayed every proxied database round trip (by up to the 5 ms switch
interval), so the harness, not Trellis, set the pace. Here the users run in a spawned
process and report back over a pipe: ("started", monotonic time) when the load begins,
then ("done", ledger, seconds) or ("failed", traceback).
"""

from __future__ import annotations

import asyncio
import random
import time
import traceback
from multiprocessing.connection import Connection
from typing import Any

import httpx

from tests.soak.ledger import Ledger
from tests.soak.users import App, Consumer, Provider, World


def client_process(
    pipe: Connection, base_url: str, tokens: list[tuple[str, str]], settings: dict[str, Any]
) -> None:
    """Entry point of the spawned process (CLOCK_MONOTONIC is shared across processes)."""
    try:
        ledger, seconds = asyncio.run(drive(pipe, base_url, tokens, settings))
        pipe.send(("done", ledger, seconds))
    except BaseException:
        pipe.send(("failed", traceback.format_exc()))
    finally:
        pipe.close()


async def drive(
    pipe: Connection, base_url: str, tokens: list[tuple[str, str]], settings: dict[str, Any]
) -> tuple[Ledger, float]:
    """Set every user up, announce the start, then run them all until they are done."""
    ledger = Ledger()
    limits = httpx.Limits(max_connections=len(tokens), max_keepalive_connections=len(tokens))
    # Longer than gunicorn's 30 s worker timeout: a hung request shows up, as a violation.
    async with httpx.AsyncClient(base_url=base_url, timeout=60, limits=limits) as http:
        world = World(http, ledger, random.Random(settings["seed"]), tuple(settings["think"]))
        users: list[App] = [
            (Consumer if role == "consumer" else Provider)(world, token, index)
            for index, (role, token) in enumerate(tokens)
        ]
        await set_up(world, users)
        started = time.monotonic()
        world.stop_at = started + settings["duration"]
        world.give_up_at = world.stop_at + settings["grace"]
        pipe.send(("started", started))
        await asyncio.gather(*(user.run() for user in users))
        return ledger, time.monotonic() - started


async def set_up(world: World, users: list[App]) -> None:
    """Each user's first launch (a few at a time), the providers' profiles, the phones."""
    gate = asyncio.Semaphore(16)

    async def first_launch(user: App) -> None:
        async with gate:
            await user.sign_up()
            if isinstance(user, Provider):
                world.provider_ids.append(await user.open_shop())

    await asyncio.gather(*(first_launch(user) for user in users))
    # One phone at a time: moto's SNS iterates its endpoints unguarded, so concurrent
    # CreatePlatformEndpoint calls can crash it ("dictionary changed size during iteration").
    for user in users:
        await user.register_phone("ios" if user.index % 2 else "android")
