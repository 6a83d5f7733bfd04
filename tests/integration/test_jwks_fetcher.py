"""The HTTP JWKS adapter against a real local HTTP server."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from services.aws.jwks import MAX_JWKS_BYTES, HttpJwksFetcher, JwksUnavailable


class Handler(BaseHTTPRequestHandler):
    routes: dict[str, tuple[int, bytes, float]] = {}

    def do_GET(self) -> None:
        status, body, delay = self.routes[self.path]
        time.sleep(delay)
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


class QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        pass  # the timeout test hangs up on purpose


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = QuietServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def serve(path: str, status: int, body: bytes, delay: float = 0.0) -> None:
    Handler.routes[path] = (status, body, delay)


def test_fetches_the_keys_array(server: str) -> None:
    serve("/ok", 200, b'{"keys": [{"kid": "a", "kty": "RSA"}, "junk"]}')
    assert HttpJwksFetcher(f"{server}/ok", timeout_seconds=2).fetch() == [
        {"kid": "a", "kty": "RSA"}
    ]


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (500, b'{"keys": []}'),
        (404, b"not here"),
        (200, b"<html>"),
        (200, b'{"nokeys": 1}'),
        (200, b'["keys"]'),
        (200, b'{"keys": "' + b"x" * MAX_JWKS_BYTES + b'"}'),
    ],
)
def test_bad_answers_are_unavailable(server: str, status: int, body: bytes) -> None:
    serve("/bad", status, body)
    with pytest.raises(JwksUnavailable):
        HttpJwksFetcher(f"{server}/bad", timeout_seconds=2).fetch()


def test_slow_server_times_out(server: str) -> None:
    serve("/slow", 200, b'{"keys": []}', delay=1.0)
    started = time.monotonic()
    with pytest.raises(JwksUnavailable):
        HttpJwksFetcher(f"{server}/slow", timeout_seconds=0.2).fetch()
    assert time.monotonic() - started < 0.9  # one retry at most, each bounded


def test_closed_port_is_unavailable() -> None:
    with pytest.raises(JwksUnavailable):
        HttpJwksFetcher("http://127.0.0.1:9/jwks", timeout_seconds=0.5).fetch()
