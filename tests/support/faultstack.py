"""Trellis under gunicorn with each dependency behind a FaultyProxy, for fault injection.

PostgreSQL, Redis (the rate limiter's REDIS_URL), the Cognito JWKS URL and SNS each go
through their own proxy, so a test can refuse, blackhole or cut one link while the rest of
the stack keeps running. Everything is a real process or server on 127.0.0.1: moto_server,
PostgreSQL (a fresh database), Redis and gunicorn serving application.py.
"""

from __future__ import annotations

import contextlib
import json
import socket
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import redis
from sqlalchemy.engine import make_url

from devstack.aws import push_applications
from devstack.cognito import LocalPool, add_user, provision, sign_in
from devstack.processes import base_env, free_port, migrate, start_gunicorn, start_moto, stop
from services.base.settings import Settings, load_settings
from tests.support.database import fresh_database
from tests.support.log_scan import leaks_in
from tests.support.proxy import FaultyProxy

REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379
T = TypeVar("T")


class TripwireProxy(FaultyProxy):
    """A FaultyProxy that can also cut every connection the moment a client sends a given
    statement, for a fault that must land between two particular round trips of a request
    (a time-based cut cannot aim that precisely)."""

    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self._tripwire: bytes | None = None
        self.tripped = threading.Event()
        super().__init__(target_port, target_host)

    def arm(self, statement: bytes) -> None:
        """Cut everything when a client next sends bytes containing `statement`."""
        self.tripped.clear()
        self._tripwire = statement

    def disarm(self) -> None:
        self._tripwire = None

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        # FaultyProxy's pump, plus the tripwire on the client-to-server direction.
        from_client = source.getsockname()[1] == self.port
        try:
            while data := source.recv(65536):
                if self.mode != "pass":
                    break
                wire = self._tripwire
                if from_client and wire is not None and wire in data:
                    self._tripwire = None
                    self.tripped.set()
                    self.cut()
                    break
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()


@dataclass(frozen=True)
class FaultStack:
    """A running Trellis and the four links a test can break."""

    base_url: str
    pool: LocalPool
    database_url: str  # straight to PostgreSQL: checks must not depend on the proxy
    logs: Path
    settings: Settings  # exactly what the service runs with (timeouts to time against)
    rate_limit_prefix: str
    workers: int  # gunicorn worker processes: each keeps its own pool, keys and limits
    db: TripwireProxy
    redis: FaultyProxy
    jwks: FaultyProxy
    sns: FaultyProxy

    @property
    def proxies(self) -> dict[str, FaultyProxy]:
        return {"postgres": self.db, "redis": self.redis, "jwks": self.jwks, "sns": self.sns}

    def heal(self) -> None:
        """Every link back to normal."""
        self.db.disarm()
        for proxy in self.proxies.values():
            proxy.set("pass")

    def jwks_fetches(self) -> int:
        """How many times any worker fetched the JWKS (moto logs each GET)."""
        text = (self.logs / "moto.log").read_text(errors="replace")
        return text.count(f"GET /{self.pool.pool_id}/.well-known/jwks.json")

    def sns_messages(self) -> dict[str, list[dict[str, Any]]]:
        """Every push the emulated SNS received, per platform endpoint ARN."""
        url = f"{self.pool.endpoint_url}/moto-api/data.json"
        with urllib.request.urlopen(url, timeout=30) as response:
            data = json.load(response)
        return {
            endpoint["arn"]: [json.loads(m) for m in endpoint.get("messages", {}).values()]
            for endpoint in data.get("sns", {}).get("PlatformEndpoint", [])
        }

    def redis_keys(self) -> list[str]:
        """The rate limiter's keys in the real Redis (behind no proxy)."""
        client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, socket_timeout=2)
        try:
            return [k.decode() for k in client.scan_iter(f"*{self.rate_limit_prefix}*")]
        finally:
            client.close()


def warm_every_worker(stack: FaultStack, token: str, timeout: float = 30.0) -> int:
    """Send a token on new connections until every worker has fetched the JWKS once (each
    worker keeps its own keys); returns how many fetches moto saw."""
    base = stack.base_url
    headers = {"Authorization": f"Bearer {token}"}

    def each_worker_fetched() -> int:
        request = urllib.request.Request(f"{base}/v1/me", headers=headers)
        with urllib.request.urlopen(request, timeout=30) as response:  # a new connection
            assert response.status == 200
        fetches = stack.jwks_fetches()
        return fetches if fetches >= stack.workers else 0

    return wait_until(each_worker_fetched, timeout=timeout, interval=0.05, what="a JWKS per worker")


def require_redis() -> None:
    """Fail loudly (never skip) when Redis is not where the suite expects it."""
    client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        raise RuntimeError(
            f"Redis is needed at {REDIS_HOST}:{REDIS_PORT} for the fault and soak tests ({exc})"
        ) from exc
    finally:
        client.close()


def wait_until(
    probe: Callable[[], T], *, timeout: float, interval: float = 0.2, what: str = "condition"
) -> T:
    """Poll `probe` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what} not reached within {timeout:.0f}s (last: {value!r})")
        time.sleep(interval)


def _through(url: str, proxy: FaultyProxy) -> str:
    """`url` with its host and port replaced by the proxy's."""
    return make_url(url).set(host="127.0.0.1", port=proxy.port).render_as_string(False)


def _service_env(
    pool: LocalPool, database_url: str, proxies: dict[str, FaultyProxy], prefix: str
) -> dict[str, str]:
    jwks_path = pool.jwks_url.removeprefix(pool.endpoint_url)
    cognito = pool.trellis_env() | {
        "COGNITO_JWKS_URL": f"http://127.0.0.1:{proxies['jwks'].port}{jwks_path}"
    }
    return base_env(
        APP_ENV="test",
        DATABASE_URL=_through(database_url, proxies["postgres"]),
        REDIS_URL=f"redis://127.0.0.1:{proxies['redis'].port}/0",
        RATE_LIMIT_KEY_PREFIX=prefix,
        OUTBOX_MAX_BACKOFF_SECONDS="1",  # recovery is seen within seconds, not minutes
        **cognito,
        AWS_ENDPOINT_URL_SNS=f"http://127.0.0.1:{proxies['sns'].port}",
        **push_applications(pool.endpoint_url),
    )


@contextmanager
def fault_stack(name: str = "trellis_faults", **env: str) -> Iterator[FaultStack]:
    """Start moto_server, a fresh database and gunicorn with all four links proxied.

    `env` overrides the service's environment (rate limits, for example). At the end every
    process's log is scanned for bearer tokens, as the e2e stack does.
    """
    require_redis()
    logs = Path(tempfile.mkdtemp(prefix=f"{name}-"))
    moto = gunicorn = None
    proxies: dict[str, FaultyProxy] = {}
    try:
        moto_port = free_port()
        moto = start_moto(moto_port, log=logs / "moto.log")
        pool = provision(f"http://127.0.0.1:{moto_port}")
        with fresh_database(name, migrate=False) as database_url:
            db_proxy = TripwireProxy(make_url(database_url).port or 5432)
            proxies = {
                "postgres": db_proxy,
                "redis": FaultyProxy(REDIS_PORT),
                "jwks": FaultyProxy(moto_port),
                "sns": FaultyProxy(moto_port),
            }
            prefix = f"{name}-{uuid.uuid4().hex[:10]}"
            service_env = _service_env(pool, database_url, proxies, prefix) | env
            migrate(service_env)  # through the proxy and alembic's CLI, as a deployment does
            port = free_port()
            gunicorn = start_gunicorn(port, service_env, log=logs / "gunicorn.log")
            yield FaultStack(
                base_url=f"http://127.0.0.1:{port}",
                pool=pool,
                database_url=database_url,
                logs=logs,
                settings=load_settings(service_env),
                rate_limit_prefix=prefix,
                workers=int(service_env.get("WEB_CONCURRENCY") or 2),  # gunicorn.conf.py's default
                db=db_proxy,
                redis=proxies["redis"],
                jwks=proxies["jwks"],
                sns=proxies["sns"],
            )
            stop(gunicorn)
            for log in logs.glob("*.log"):
                leaked = leaks_in(log.read_text(errors="replace"))
                assert not leaked, f"tokens in {log.name}: {leaked[:3]}"
    finally:
        stop(gunicorn)
        stop(moto)
        for proxy in proxies.values():
            proxy.close()


def new_user(stack: FaultStack, role: str, *, name: str | None = None) -> str:
    """A brand-new Cognito user in `role`'s group, signed in; returns its access token."""
    username = name or f"{role}-{uuid.uuid4().hex[:10]}"
    add_user(stack.pool, username, email=f"{username}@faults.trellis.local", groups=[f"{role}s"])
    return sign_in(stack.pool, username)["access"]
