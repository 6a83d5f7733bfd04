"""The source bundle boots the way Elastic Beanstalk boots it: built like the EB CLI builds it
(`git archive` of HEAD), installed into a fresh virtualenv from requirements.txt alone,
migrated by the container command, served by the Procfile's web process behind nginx with
the bundle's own .platform/nginx configuration. Only the port is changed (8000 may be busy
here); tokens come from the emulated Cognito, so the app runs with APP_ENV=test."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple
from urllib.parse import urlsplit

import pytest
import requests
import yaml
from websockets.sync.client import connect

from deploy.bundle import build
from devstack.cognito import LocalPool, provision, sign_in
from devstack.processes import base_env, free_port, start_moto, wait_for_http
from services.accounts.auth import MAX_TOKEN_BYTES
from tests.support.database import fresh_database

pytestmark = pytest.mark.e2e
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


def unpack(bundle: Path, into: Path) -> None:
    with zipfile.ZipFile(bundle) as archive:
        for info in archive.infolist():
            path = Path(archive.extract(info, into))
            mode = (info.external_attr >> 16) & 0o777
            if mode:
                path.chmod(mode)


def nginx_config(app: Path, work: Path, listen: int, upstream: int, realtime: int) -> Path:
    """nginx.conf shaped like the platform's: conf.d at http level, elasticbeanstalk/ in the
    server. The bundle's files are used as they are, with only the upstream ports changed."""
    conf = work / "conf.d"
    (conf / "elasticbeanstalk").mkdir(parents=True)
    for source in (app / ".platform/nginx/conf.d").rglob("*.conf"):
        target = conf / source.relative_to(app / ".platform/nginx/conf.d")
        text = source.read_text().replace("127.0.0.1:8000", f"127.0.0.1:{upstream}")
        target.write_text(text.replace("127.0.0.1:8001", f"127.0.0.1:{realtime}"))
    work.chmod(0o755)
    for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (work / name).mkdir()
        (work / name).chmod(0o777)  # nginx's workers drop root's rights
    main = work / "nginx.conf"
    main.write_text(
        f"""
worker_processes 1;
pid {work}/nginx.pid;
error_log {work}/error.log;
events {{ worker_connections 256; }}
http {{
    include /etc/nginx/mime.types;
    access_log {work}/access.log;
    client_body_temp_path {work}/client_body;
    proxy_temp_path {work}/proxy;
    fastcgi_temp_path {work}/fastcgi;
    uwsgi_temp_path {work}/uwsgi;
    scgi_temp_path {work}/scgi;
    include {conf}/*.conf;
    server {{
        listen 127.0.0.1:{listen};
        include {conf}/elasticbeanstalk/*.conf;
    }}
}}
"""
    )
    return main


class Deployed(NamedTuple):
    base: str  # nginx, as the load balancer reaches it
    pool: LocalPool
    app: str  # gunicorn itself, behind nginx
    logs: Path  # nginx's access and error logs


def start_procfile_process(
    app: Path, env: dict[str, str], name: str, own: str, moved: str
) -> subprocess.Popen[bytes]:
    """Run the bundle's Procfile line `name` as EB would, its address `own` made `moved`."""
    line = re.search(rf"^{name}:\s*(.+)$", (app / "Procfile").read_text(), re.M)
    assert line, f"Procfile has no {name} process"
    command = line.group(1).replace(own, moved)
    return subprocess.Popen(
        ["bash", "-c", f"exec {command}"], cwd=app, env=env, start_new_session=True
    )


@pytest.fixture(scope="module")
def deployed() -> Iterator[Deployed]:
    assert os.path.exists(NGINX), "nginx is not installed: apt-get install nginx-light"
    work = Path(tempfile.mkdtemp(prefix="trellis-bundle-"))
    work.chmod(0o755)  # nginx workers (not root) must reach their temp directories
    processes: list[subprocess.Popen[bytes]] = []
    try:
        bundle = work / "bundle.zip"
        build(bundle, tier="web")
        app = work / "app"
        unpack(bundle, app)
        venv = work / "venv"
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run(
            [
                str(venv / "bin/pip"),
                "install",
                "-q",
                "--disable-pip-version-check",
                "-r",
                "requirements.txt",
            ],
            cwd=app,
            check=True,
        )
        moto_port = free_port()
        moto = start_moto(moto_port)
        processes.append(moto)
        pool = provision(f"http://127.0.0.1:{moto_port}")
        with fresh_database("trellis_bundle", migrate=False) as database_url:
            env = base_env(APP_ENV="test", DATABASE_URL=database_url, **pool.trellis_env())
            env["PATH"] = f"{venv}/bin:{env.get('PATH', '')}"
            env["PYTHONPATH"] = f"{venv}/bin"  # what EB sets for container commands
            migrations = yaml.safe_load((app / ".ebextensions/07-migrations.config").read_text())
            for command in migrations["container_commands"].values():
                subprocess.run(["bash", "-c", command["command"]], cwd=app, env=env, check=True)
            app_port, realtime_port, nginx_port = free_port(), free_port(), free_port()
            for name, port, own, moved in (
                ("web", app_port, "127.0.0.1:8000", f"127.0.0.1:{app_port}"),
                ("realtime", realtime_port, "--port 8001", f"--port {realtime_port}"),
            ):
                started = start_procfile_process(app, env, name, own, moved)
                processes.append(started)
                wait_for_http(f"http://127.0.0.1:{port}/healthz", started)
            config = nginx_config(app, work / "nginx", nginx_port, app_port, realtime_port)
            subprocess.run([NGINX, "-t", "-c", str(config)], check=True, capture_output=True)
            nginx = subprocess.Popen(
                [NGINX, "-c", str(config), "-g", "daemon off;"], start_new_session=True
            )
            processes.append(nginx)
            wait_for_http(f"http://127.0.0.1:{nginx_port}/healthz", nginx)
            yield Deployed(
                f"http://127.0.0.1:{nginx_port}",
                pool,
                f"http://127.0.0.1:{app_port}",
                work / "nginx",
            )
    finally:
        for process in reversed(processes):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(10)
        shutil.rmtree(work, ignore_errors=True)


def test_healthz_through_nginx_keeps_the_request_id(deployed: Deployed) -> None:
    base = deployed.base
    response = requests.get(f"{base}/healthz", headers={"X-Request-Id": "bundle-1"}, timeout=10)
    assert response.status_code == 200 and response.json() == {"status": "ok"}
    assert response.headers["X-Request-Id"] == "bundle-1"
    generated = requests.get(f"{base}/healthz", timeout=10).headers["X-Request-Id"]
    assert re.fullmatch(r"[0-9a-f]{32}", generated)  # nginx's $request_id, passed to the app
    assert "nginx/" not in response.headers.get("Server", "")


def test_authenticated_call_through_nginx(deployed: Deployed) -> None:
    base, pool = deployed.base, deployed.pool
    token = sign_in(pool, "consumer")["access"]
    response = requests.get(
        f"{base}/v1/me", headers={"Authorization": f"Bearer {token}"}, timeout=10
    )
    assert response.status_code == 200, response.text
    assert response.json()["roles"] == ["consumer"]
    assert requests.get(f"{base}/v1/me", timeout=10).status_code == 401


def test_json_is_gzipped_and_big_bodies_get_the_apps_413(deployed: Deployed) -> None:
    base, pool = deployed.base, deployed.pool
    spec = requests.get(f"{base}/openapi.json", headers={"Accept-Encoding": "gzip"}, timeout=10)
    assert spec.headers.get("Content-Encoding") == "gzip" and spec.json()["openapi"] == "3.1.0"
    token = sign_in(pool, "consumer")["access"]
    big = b'{"display_name": "' + b"x" * 1_500_000 + b'"}'
    response = requests.patch(
        f"{base}/v1/me",
        data=big,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        timeout=10,
    )
    assert response.status_code == 413
    assert response.headers["Content-Type"] == "application/problem+json"


def test_an_overlong_request_line_is_a_problem_not_an_html_page(deployed: Deployed) -> None:
    base, pool = deployed.base, deployed.pool
    token = sign_in(pool, "consumer")["access"]
    headers = {"Authorization": f"Bearer {token}"}
    for length, status in ((7_900, 422), (12_000, 414), (20_000, 414)):
        response = requests.get(
            f"{base}/v1/providers?category=cleaning&q={'a' * length}", headers=headers, timeout=10
        )
        assert response.status_code == status, (length, response.headers, response.text[:300])
        assert response.headers["Content-Type"].startswith("application/problem+json"), (
            length,
            response.text[:300],
        )
        assert response.json()["status"] == status


# Header limits, from the outside in: nginx passes header lines of up to 16 KiB and request
# lines of up to gunicorn's 8190 bytes; gunicorn's limits lie above nginx's, so it never
# refuses what nginx passed; Trellis refuses tokens over MAX_TOKEN_BYTES (8 KiB) itself.
def padded_token(pool: LocalPool, length: int) -> str:
    """A Cognito token whose signature segment is stretched to `length` characters: well
    formed, from the pool, with a known kid, so only Trellis's own rules can refuse it."""
    header, payload, _ = sign_in(pool, "consumer")["access"].split(".")
    token = f"{header}.{payload}."
    return token + "A" * (length - len(token))


def assert_trellis_refused_the_token(response: requests.Response, request_id: str) -> None:
    assert response.status_code == 401, (response.status_code, response.text[:300])
    assert response.headers["Content-Type"] == "application/problem+json", response.text[:300]
    assert response.json()["type"] == "/problems/invalid-token"  # Trellis's, not nginx's
    assert response.headers["X-Request-Id"] == request_id


@pytest.mark.parametrize(
    "token_length",
    [
        8191 - len("Bearer "),  # the attack suite's Authorization value of 8,191 bytes
        MAX_TOKEN_BYTES,  # the longest token Trellis accepts
        MAX_TOKEN_BYTES + 1,  # refused by Trellis's rule, not by the transport
        12_000,
    ],
)
def test_a_long_token_reaches_trellis_through_nginx(deployed: Deployed, token_length: int) -> None:
    request_id = f"long-token-{token_length}"
    response = requests.get(
        f"{deployed.base}/v1/me",
        headers={
            "Authorization": f"Bearer {padded_token(deployed.pool, token_length)}",
            "X-Request-Id": request_id,
        },
        timeout=10,
    )
    assert_trellis_refused_the_token(response, request_id)


def test_gunicorn_itself_takes_a_header_line_nginx_passes(deployed: Deployed) -> None:
    # The defect: gunicorn's 8190-byte default refused an 8,191-byte Authorization value with
    # an HTML 431. Straight to gunicorn, the longest line nginx passes is Trellis's to answer.
    for value_length in (8191, 16_300):
        token = padded_token(deployed.pool, value_length - len("Bearer "))
        request_id = f"direct-{value_length}"
        response = requests.get(
            f"{deployed.app}/v1/me",
            headers={"Authorization": f"Bearer {token}", "X-Request-Id": request_id},
            timeout=10,
        )
        assert_trellis_refused_the_token(response, request_id)


def raw_request(base: str, head: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send `head` as it is (requests cannot send a malformed one); status, headers, body."""
    address = urlsplit(base)
    with socket.create_connection((address.hostname, address.port), timeout=10) as sock:
        sock.sendall(head)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    status_and_headers, _, body = received.partition(b"\r\n\r\n")
    status_line, *lines = status_and_headers.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(status_line.split()[1]), headers, body


def assert_nginx_problem(status: int, headers: dict[str, str], body: bytes, expected: int) -> None:
    assert status == expected, (status, headers, body[:300])
    assert headers["content-type"] == "application/problem+json", (headers, body[:300])
    problem = json.loads(body)
    assert problem["status"] == expected and problem["type"] and problem["title"]


@pytest.mark.parametrize("name", ["Authorization", "X-Padding"])
def test_a_header_past_the_transport_limit_is_nginxs_431_problem(
    deployed: Deployed, name: str
) -> None:
    value = ("Bearer " if name == "Authorization" else "") + "A" * 20_000
    response = requests.get(f"{deployed.base}/v1/me", headers={name: value}, timeout=10)
    assert response.status_code == 431, (response.headers, response.text[:300])
    assert response.headers["Content-Type"] == "application/problem+json", response.text[:300]
    problem = response.json()
    assert problem["status"] == 431 and problem["type"] == "/problems/header-too-large"


def test_a_malformed_header_is_nginxs_400_problem(deployed: Deployed) -> None:
    head = b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\nno colon\r\n\r\n"
    assert_nginx_problem(*raw_request(deployed.base, head), expected=400)


def test_many_headers_are_never_refused_by_gunicorn(deployed: Deployed) -> None:
    # gunicorn's default of 100 fields refused 150 small headers with an HTML 431 although
    # nginx had passed them. Past what nginx takes, nginx answers, in problem+json.
    for count in (150, 5_000):
        head = b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
        head += b"".join(b"X-Pad-%d: v\r\n" % n for n in range(count)) + b"\r\n"
        status, headers, body = raw_request(deployed.base, head)
        if count == 150 or status == 200:  # an nginx without a cap on header lines passes 5,000
            assert status == 200 and headers["content-type"] == "application/json", body[:300]
        else:
            assert_nginx_problem(status, headers, body, expected=431)


def test_request_lines_stop_at_gunicorns_8190_bytes_in_nginx(deployed: Deployed) -> None:
    headers = {"Authorization": f"Bearer {sign_in(deployed.pool, 'consumer')['access']}"}
    prefix = "/v1/providers?category=cleaning&q="
    for line_length, status in ((8190, 422), (8191, 414), (16_000, 414)):
        query = "a" * (line_length - len(f"GET {prefix} HTTP/1.1"))
        response = requests.get(f"{deployed.base}{prefix}{query}", headers=headers, timeout=10)
        assert response.status_code == status, (line_length, response.text[:300])
        assert response.headers["Content-Type"].startswith("application/problem+json")


def test_a_websocket_through_nginx_reaches_the_realtime_process(deployed: Deployed) -> None:
    """The bundle's nginx routes /v1/realtime to the Procfile's realtime process with the
    Upgrade headers; the token (in Sec-WebSocket-Protocol) reaches no log."""
    access = sign_in(deployed.pool, "consumer")["access"]
    url = deployed.base.replace("http://", "ws://") + "/v1/realtime"
    with connect(url, subprotocols=["trellis.v1", f"bearer.{access}"], open_timeout=10) as ws:  # type: ignore[list-item]
        assert ws.subprotocol == "trellis.v1"
        hello = json.loads(ws.recv(timeout=10))
        assert hello["type"] == "authenticated"
        ws.send(json.dumps({"type": "subscribe"}))
        assert json.loads(ws.recv(timeout=10))["type"] == "subscribed"
        ws.send(json.dumps({"type": "ping"}))
        assert json.loads(ws.recv(timeout=10)) == {"type": "pong"}
    logged = (deployed.logs / "access.log").read_text()
    assert "/v1/realtime" in logged and access not in logged
    # Anything else under /v1 still goes to gunicorn, and a plain GET is no upgrade.
    assert requests.get(deployed.base + "/v1/realtime", timeout=10).status_code in (400, 426)
