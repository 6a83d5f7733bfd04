"""The realtime WebSocket server: GET /v1/realtime (RFC 6455), one asyncio process.

Protocol (docs/realtime.md): the client authenticates (the token in its first frame
`{"type": "auth", "token": ...}` or as a `bearer.<token>` entry of Sec-WebSocket-Protocol,
never in the URL) within AUTH_TIMEOUT_SECONDS, then sends `{"type": "subscribe", "after":
N}`. The server replays the user's feed after N, then goes live: `{"type": "change", "seq",
"kind", "created_at", "data"}` frames with seq strictly increasing, no gap, no duplicate.

How the no-gap, no-duplicate rule holds: each socket remembers the last seq it sent. A live
notification (PostgreSQL NOTIFY, sent by the writing transaction at commit) is sent at once
when it is exactly the next number; anything else (a gap, a notification without its entry,
a subscribe, a lost listening connection) makes the socket read the feed after its last seq
from the primary, and every number at or below the last one sent is dropped. Notifications
that arrive while a read runs wait in the socket's buffer, keyed by seq.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
import uuid
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from http import HTTPStatus
from typing import Any, TypeVar

import orjson
import psycopg2
import psycopg2.extensions
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from realtime import access
from services.accounts.auth import Identity
from services.base.db import DEAD_PEER_ARGS
from services.base.errors import AccountSuspended, Forbidden, InvalidToken, TrellisError
from services.components import Components
from services.realtime import feed

log = logging.getLogger("trellis.realtime")

PATH = "/v1/realtime"
SUBPROTOCOL = "trellis.v1"
BEARER_PREFIX = "bearer."
AUTH_TIMEOUT_SECONDS = 5.0
MAX_FRAME_BYTES = 16 * 1024  # a larger client frame closes the socket with 1009
MAX_BAD_FRAMES = 5  # then 1008
READ_BATCH = 500
SQLITE_POLL_SECONDS = 1.0
LISTEN_RETRY_SECONDS = (0.1, 0.5, 1.0, 2.0, 5.0)
# The garbage collector: every GC_FREEZE_SECONDS what is alive moves out of its scans (the
# sockets' objects live for minutes to hours), every GC_FULL_SECONDS one full collection
# frees what died meanwhile (see Hub.collect_garbage).
GC_FREEZE_SECONDS = 5.0
GC_FULL_SECONDS = 3600.0

# Close codes of our own (4000-4999 are the application's, RFC 6455 7.4.2).
CLOSE_UNAUTHENTICATED = 4401  # no (valid) token in time, the token expired, account closed
CLOSE_FORBIDDEN = 4403  # the account was suspended or a role the socket held was revoked
CLOSE_EXPIRED_CURSOR = 4410  # `after` is older than CHANGES_RETENTION_DAYS: resync
CLOSE_TOO_MANY = 4429  # the user opened more than REALTIME_MAX_SOCKETS_PER_USER sockets
CLOSE_UNAVAILABLE = 1013  # the database or the signing keys are down: try again later

T = TypeVar("T")


def frame(**members: Any) -> str:
    return orjson.dumps(members).decode()


def change_frame(change: feed.ChangeView) -> str:
    return frame(
        type="change",
        seq=change.seq,
        kind=change.type,
        created_at=change.created_at,
        data=change.data,
    )


@dataclass(eq=False)
class Client:
    """One authenticated socket."""

    ws: ServerConnection
    hub: Hub
    identity: Identity
    user_id: uuid.UUID
    roles: frozenset[str]
    opened: float = field(default_factory=time.monotonic)
    subscribed: bool = False
    last_seq: int = 0  # the last seq sent on this socket
    pending: dict[int, feed.ChangeView] = field(default_factory=dict)
    must_read: bool = False
    warned: bool = False  # auth_expiring sent for the current token
    closing: bool = False
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    pump: asyncio.Task[None] | None = None

    def offer(self, seq: int, change: feed.ChangeView | None) -> None:
        """A committed change of this user (from NOTIFY or the poll)."""
        if not self.subscribed or seq <= self.last_seq:
            return
        if change is None:
            self.must_read = True
        else:
            self.pending[seq] = change
        self.wake.set()

    def catch_up(self) -> None:
        """Read the feed after the last seq sent (a subscribe, a lost listener)."""
        if self.subscribed:
            self.must_read = True
            self.wake.set()

    async def run_pump(self) -> None:
        with contextlib.suppress(ConnectionClosed):  # the socket's own task ends the story
            while not self.closing:
                await self.wake.wait()
                self.wake.clear()
                await self._deliver()

    async def _deliver(self) -> None:
        while not self.closing:
            await self._send_contiguous()
            if not self.must_read and not self.pending:
                return
            # Asked to read, or a gap: the next number's notification was lost or carried
            # no entry.
            self.must_read = False
            try:
                page = await self.hub.db(
                    access.read_changes, self.user_id, self.last_seq, READ_BATCH
                )
            except feed.ChangesExpired:
                await self.close(CLOSE_EXPIRED_CURSOR, "changes after this seq were purged")
                return
            except Exception:
                log.exception("feed read failed", extra={"user_id": str(self.user_id)})
                await self.close(CLOSE_UNAVAILABLE, "the feed cannot be read; reconnect")
                return
            for change in page.items:
                if change.seq > self.last_seq:
                    self.pending.setdefault(change.seq, change)
            await self._send_contiguous()
            if page.next_cursor is not None:
                self.must_read = True
            elif self.pending:
                # Buffered numbers beyond what the primary had: committed after our read;
                # their notifications are on their way (or we read again next time).
                stale = [seq for seq in self.pending if seq <= self.last_seq]
                for seq in stale:
                    del self.pending[seq]
                return

    async def _send_contiguous(self) -> None:
        for seq in sorted(s for s in self.pending if s <= self.last_seq):
            del self.pending[seq]
        while (change := self.pending.pop(self.last_seq + 1, None)) is not None:
            await self.ws.send(change_frame(change))
            self.last_seq = change.seq

    async def close(self, code: int, reason: str) -> None:
        """Close in the background: the closing handshake may wait up to close_timeout for
        the client, and the sweeps that close sockets must not wait with it."""
        if self.closing:
            return
        self.closing = True
        self.wake.set()
        self.hub.background(self.ws.close(code, reason))

    def notify(self, text: str) -> None:
        """A server frame outside the change stream (auth_expiring), sent in the
        background so that a slow client holds up no one but itself."""
        self.hub.background(self.ws.send(text))


class Hub:
    """Every open socket of this process, the one listening connection, the sweeps."""

    def __init__(self, components: Components) -> None:
        self.components = components
        self.settings = components.settings
        self.clients: dict[uuid.UUID, list[Client]] = {}
        self.executor = ThreadPoolExecutor(
            max_workers=max(2, min(8, self.settings.db_pool_size)),
            thread_name_prefix="realtime-db",
        )
        self.listener: psycopg2.extensions.connection | None = None
        self.listening = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._recheck_users: set[uuid.UUID] = set()
        self._background: set[asyncio.Task[Any]] = set()
        self._recheck_now = asyncio.Event()

    async def db(self, function: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, function, self.components, *args)

    def background(self, work: Coroutine[Any, Any, Any]) -> None:
        """Run `work` on its own; a failure (the socket closed meanwhile) is nobody's."""
        task = asyncio.ensure_future(work)
        self._background.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[Any]) -> None:
        self._background.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved: a closed socket's send is no error to report

    # --- sockets --------------------------------------------------------------------

    async def add(self, client: Client) -> None:
        sockets = self.clients.setdefault(client.user_id, [])
        sockets.append(client)
        limit = self.settings.realtime_max_sockets_per_user
        while len(sockets) > limit:
            oldest = sockets.pop(0)
            await oldest.close(CLOSE_TOO_MANY, "too many sockets; oldest closed")

    def remove(self, client: Client) -> None:
        sockets = self.clients.get(client.user_id)
        if sockets is not None and client in sockets:
            sockets.remove(client)
            if not sockets:
                del self.clients[client.user_id]
        client.closing = True
        client.wake.set()

    def sockets(self) -> int:
        return sum(len(sockets) for sockets in self.clients.values())

    # --- fan-out --------------------------------------------------------------------

    def dispatch(self, payload: str) -> None:
        """One NOTIFY payload: {"u": user, "s": seq, "t": type, "c": created_at, "d": data}."""
        try:
            note = orjson.loads(payload)
            user_id = uuid.UUID(note["u"])
            seq = int(note["s"])
        except (ValueError, KeyError, TypeError):
            log.warning("unreadable change notification dropped")
            return
        sockets = self.clients.get(user_id)
        if not sockets:
            return
        change = None
        if "d" in note:
            created = datetime.fromisoformat(note["c"])
            change = feed.ChangeView(seq, note["t"], created, note["d"])
        for client in sockets:
            client.offer(seq, change)
        if note.get("t") in ("role", "account"):
            self._recheck_users.add(user_id)
            self._recheck_now.set()

    async def listen(self) -> None:
        """Hold the LISTEN connection; after losing it, every socket reads from its seq."""
        attempt = 0
        loop = asyncio.get_running_loop()
        while True:
            try:
                connection = await loop.run_in_executor(self.executor, self._connect_listener)
            except Exception as exc:
                delay = LISTEN_RETRY_SECONDS[min(attempt, len(LISTEN_RETRY_SECONDS) - 1)]
                attempt += 1
                log.warning("LISTEN connection failed, retrying", extra={"error": str(exc)})
                await asyncio.sleep(delay)
                continue
            attempt = 0
            lost = asyncio.Event()
            self.listener = connection
            fd = connection.fileno()

            def readable(connection: Any = connection, lost: asyncio.Event = lost) -> None:
                try:
                    connection.poll()
                except Exception:
                    lost.set()
                    return
                while connection.notifies:
                    self.dispatch(connection.notifies.pop(0).payload)

            loop.add_reader(fd, readable)
            # Anything committed before LISTEN took effect: every socket reads its feed.
            for sockets in list(self.clients.values()):
                for client in sockets:
                    client.catch_up()
            self.listening.set()
            log.info("listening for changes")
            try:
                await lost.wait()
            finally:
                loop.remove_reader(fd)
                self.listening.clear()
                with contextlib.suppress(Exception):
                    connection.close()
                self.listener = None
            log.warning("LISTEN connection lost; reconnecting")

    def _connect_listener(self) -> psycopg2.extensions.connection:
        url = self.components.engine.url
        connection = psycopg2.connect(
            host=url.host,
            port=url.port,
            user=url.username,
            password=url.password,
            dbname=url.database,
            connect_timeout=self.settings.db_connect_timeout_seconds,
            **DEAD_PEER_ARGS,
            application_name="trellis-realtime-listen",
            **dict(url.query),
        )
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute(f"LISTEN {feed.CHANNEL}")
        return connection

    async def poll(self) -> None:
        """SQLite has no NOTIFY: look at every connected user's newest number instead."""
        self.listening.set()
        while True:
            await asyncio.sleep(SQLITE_POLL_SECONDS)
            users = list(self.clients)
            if not users:
                continue
            try:
                newest = await self.db(access.newest_numbers, users)
            except Exception:
                log.exception("feed poll failed")
                continue
            for user_id, seq in newest.items():
                for client in self.clients.get(user_id, ()):
                    if seq > client.last_seq:
                        client.catch_up()

    # --- sweeps ---------------------------------------------------------------------

    async def expiry_sweep(self) -> None:
        """auth_expiring ahead of a token's expiry; 4401 at expiry unless re-authenticated."""
        while True:
            await asyncio.sleep(1.0)
            now = time.time()
            for sockets in list(self.clients.values()):
                for client in list(sockets):
                    expires = client.identity.expires_at
                    if now >= expires:
                        await client.close(CLOSE_UNAUTHENTICATED, "token expired")
                    elif not client.warned and now >= expires - warning_seconds(client.identity):
                        client.warned = True
                        client.notify(frame(type="auth_expiring", expires_at=expires))

    async def recheck(self) -> None:
        """Suspension, closure and revoked roles reach open sockets: every
        REALTIME_RECHECK_SECONDS for all, at once for a user whose role or account changed."""
        interval = self.settings.realtime_recheck_seconds
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._recheck_now.wait(), timeout=interval)
            if self._recheck_now.is_set():
                self._recheck_now.clear()
                users, self._recheck_users = self._recheck_users, set()
            else:
                users = set(self.clients)
            users &= set(self.clients)
            if not users:
                continue
            try:
                found = await self.db(access.standings, users)
            except Exception:
                log.exception("account re-check failed")
                continue
            for user_id in users:
                await self._apply(user_id, found.get(user_id))

    async def _apply(self, user_id: uuid.UUID, standing: access.Standing | None) -> None:
        for client in list(self.clients.get(user_id, ())):
            if standing is None:
                await client.close(CLOSE_UNAUTHENTICATED, "account closed")
            elif standing.refusal is not None:
                await client.close(close_code(standing.refusal), standing.refusal.detail[:120])
            elif not client.roles <= access.roles_now(client.identity, standing):
                await client.close(CLOSE_FORBIDDEN, "a role of this socket was revoked")

    async def collect_garbage(self) -> None:
        """Keep the collector's pauses short: a full collection walks every tracked object,
        and with thousands of sockets that stalls every socket for a second (measured: 1 s
        at 5,000). Objects that survived a few seconds are frozen (gc.freeze: out of every
        scan, still freed by reference counting when they die); once an hour they are thawed
        and one full collection frees the cycles among them, so nothing leaks for long."""
        last_full = time.monotonic()
        while True:
            await asyncio.sleep(GC_FREEZE_SECONDS)
            if time.monotonic() - last_full >= GC_FULL_SECONDS:
                gc.unfreeze()
                gc.collect()
                last_full = time.monotonic()
            gc.freeze()

    async def start(self) -> None:
        background = (
            self.listen if self.components.engine.dialect.name == "postgresql" else self.poll
        )
        for job in (background, self.expiry_sweep, self.recheck, self.collect_garbage):
            self._tasks.append(asyncio.create_task(job()))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self.executor.shutdown(wait=False, cancel_futures=True)


def warning_seconds(identity: Identity) -> float:
    """How long before expiry auth_expiring goes out: a minute, less for short tokens."""
    lifetime = identity.expires_at - identity.issued_at
    return max(1.0, min(60.0, lifetime / 4))


def close_code(refusal: TrellisError) -> int:
    if isinstance(refusal, (AccountSuspended, Forbidden)):
        return CLOSE_FORBIDDEN
    if isinstance(refusal, InvalidToken):
        return CLOSE_UNAUTHENTICATED
    return CLOSE_UNAVAILABLE


# --- one socket ----------------------------------------------------------------------


class BadFrame(Exception):
    """A client frame that is not one of the protocol's; answered with an error frame."""


def parse(message: str | bytes) -> dict[str, Any]:
    if isinstance(message, bytes):
        raise BadFrame("frames are JSON text, not binary")
    try:
        value = orjson.loads(message)
    except orjson.JSONDecodeError:
        raise BadFrame("not JSON") from None
    if not isinstance(value, dict) or not isinstance(value.get("type"), str):
        raise BadFrame('a frame is a JSON object with a "type"')
    return value


def token_of(value: dict[str, Any]) -> str:
    token = value.get("token")
    if value.get("type") != "auth" or not isinstance(token, str) or not token:
        raise BadFrame('authenticate first: {"type": "auth", "token": "<access or id token>"}')
    return token


class Session:
    """The conversation on one socket, from the handshake to the close."""

    def __init__(self, hub: Hub, ws: ServerConnection) -> None:
        self.hub = hub
        self.ws = ws
        self.bad_frames = 0
        self.client: Client | None = None

    async def run(self) -> None:
        try:
            signed_in = await self._authenticate()
            if signed_in is None:
                return
            client = self.client = Client(
                self.ws, self.hub, signed_in.identity, signed_in.user_id, signed_in.roles
            )
            await self.hub.add(client)
            client.pump = asyncio.create_task(client.run_pump())
            await self.ws.send(authenticated(signed_in))
            async for message in self.ws:
                await self._handle(client, message)
        except ConnectionClosed:
            pass
        finally:
            if self.client is not None:
                self.hub.remove(self.client)
                if self.client.pump is not None:
                    self.client.pump.cancel()

    async def _authenticate(self) -> access.SignedIn | None:
        token = protocol_token(self.ws.request)
        deadline = time.monotonic() + AUTH_TIMEOUT_SECONDS
        while token is None:
            remaining = deadline - time.monotonic()
            try:
                message = await asyncio.wait_for(self.ws.recv(), timeout=max(remaining, 0.001))
            except TimeoutError:
                await self.ws.close(CLOSE_UNAUTHENTICATED, "no authentication within 5 s")
                return None
            try:
                token = token_of(parse(message))
            except BadFrame as exc:
                if not await self._refuse(exc):
                    return None
        return await self._sign_in(token)

    async def _sign_in(self, token: str) -> access.SignedIn | None:
        try:
            return await self.hub.db(access.sign_in, token)
        except TrellisError as exc:
            await self.ws.close(close_code(exc), f"refused: {exc.detail}"[:120])
        except Exception:
            log.exception("sign-in failed")
            await self.ws.close(CLOSE_UNAVAILABLE, "try again later")
        return None

    async def _refuse(self, problem: BadFrame) -> bool:
        """An error frame; False (and closed 1008) once a client keeps sending garbage."""
        self.bad_frames += 1
        if self.bad_frames >= MAX_BAD_FRAMES:
            await self.ws.close(1008, "too many malformed frames")
            return False
        await self.ws.send(frame(type="error", code="bad_frame", detail=str(problem)))
        return True

    async def _handle(self, client: Client, message: str | bytes) -> None:
        try:
            value = parse(message)
            kind = value["type"]
            if kind == "subscribe":
                await self._subscribe(client, value)
            elif kind == "auth":
                await self._reauthenticate(client, token_of(value))
            elif kind == "ping":
                await self.ws.send(frame(type="pong"))
            else:
                raise BadFrame(f"unknown frame type {kind[:32]!r}")
        except BadFrame as exc:
            await self._refuse(exc)

    async def _subscribe(self, client: Client, value: dict[str, Any]) -> None:
        after = value.get("after")
        if client.subscribed:
            raise BadFrame("already subscribed; reconnect to start from another seq")
        if after is not None and (
            isinstance(after, bool) or not isinstance(after, int) or not 0 <= after < 2**63
        ):
            raise BadFrame('"after" is the last seq you have: an integer >= 0')
        if after is None:  # from now on
            after = await self.hub.db(access.current_seq, client.user_id)
        client.last_seq = after
        client.subscribed = True
        await self.ws.send(frame(type="subscribed", after=after))
        client.catch_up()

    async def _reauthenticate(self, client: Client, token: str) -> None:
        try:
            signed_in = await self.hub.db(access.sign_in, token)
        except TrellisError as exc:
            await client.close(close_code(exc), f"refused: {exc.detail}"[:120])
            return
        if signed_in.user_id != client.user_id:
            await client.close(CLOSE_UNAUTHENTICATED, "a token of another user")
            return
        client.identity, client.roles, client.warned = (
            signed_in.identity,
            signed_in.roles,
            False,
        )
        await self.ws.send(authenticated(signed_in))


def authenticated(signed_in: access.SignedIn) -> str:
    return frame(
        type="authenticated",
        user_id=signed_in.user_id,
        expires_at=signed_in.identity.expires_at,
        last_seq=signed_in.last_seq,
    )


def protocol_token(request: Request | None) -> str | None:
    """A `bearer.<token>` entry of Sec-WebSocket-Protocol, if the client sent one."""
    if request is None:
        return None
    for header in request.headers.get_all("Sec-WebSocket-Protocol"):
        for entry in header.split(","):
            entry = entry.strip()
            if entry.startswith(BEARER_PREFIX) and len(entry) > len(BEARER_PREFIX):
                return entry[len(BEARER_PREFIX) :]
    return None


def select_subprotocol(connection: ServerConnection, offered: Any) -> str | None:
    """Answer `trellis.v1` when offered (never echo the bearer entry: it holds the token)."""
    return SUBPROTOCOL if SUBPROTOCOL in offered else None


def process_request(connection: ServerConnection, request: Request) -> Response | None:
    path, _, query = request.path.partition("?")
    if path == "/healthz":
        return connection.respond(HTTPStatus.OK, "ok\n")
    if path != PATH:
        return connection.respond(HTTPStatus.NOT_FOUND, "not found\n")
    if "token" in query.lower():  # it would reach access logs: refuse it outright
        return connection.respond(
            HTTPStatus.BAD_REQUEST,
            "never put a token in the URL: send it in the first frame or Sec-WebSocket-Protocol\n",
        )
    return None


async def start_server(hub: Hub, host: str, port: int) -> Server:
    settings = hub.settings
    await hub.start()

    async def handler(ws: ServerConnection) -> None:
        await Session(hub, ws).run()

    return await serve(
        handler,
        host,
        port,
        process_request=process_request,
        select_subprotocol=select_subprotocol,
        max_size=MAX_FRAME_BYTES,
        max_queue=4,
        # No permessage-deflate: frames are small JSON, and each socket's zlib contexts
        # would cost tens of KiB (most of an idle socket's memory).
        compression=None,
        ping_interval=settings.realtime_ping_seconds,
        ping_timeout=settings.realtime_ping_seconds,
        close_timeout=5,
        server_header=None,
    )
