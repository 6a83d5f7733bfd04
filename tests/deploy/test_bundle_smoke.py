"""The source bundle boots the way Elastic Beanstalk boots it: built like the EB CLI builds it
(`git archive` of HEAD), installed into a fresh virtualenv from requirements.txt alone,
migrated by the container command, served by the Procfile's web process behind nginx with
the bundle's own .platform/nginx configuration. Only the port is changed (8000 may be busy
here); tokens come from the emulated Cognito, so the app runs with APP_ENV=test."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import yaml

from deploy.bundle import build
from devstack.cognito import provision, sign_in
from devstack.processes import base_env, free_port, start_moto, wait_for_http
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


def nginx_config(app: Path, work: Path, listen: int, upstream: int) -> Path:
    """nginx.conf shaped like the platform's: conf.d at http level, elasticbeanstalk/ in the
    server. The bundle's files are used as they are, with only the upstream port changed."""
    conf = work / "conf.d"
    (conf / "elasticbeanstalk").mkdir(parents=True)
    for source in (app / ".platform/nginx/conf.d").rglob("*.conf"):
        target = conf / source.relative_to(app / ".platform/nginx/conf.d")
        target.write_text(source.read_text().replace("127.0.0.1:8000", f"127.0.0.1:{upstream}"))
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


@pytest.fixture(scope="module")
def deployed() -> Iterator[tuple[str, object]]:
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
            app_port, nginx_port = free_port(), free_port()
            procfile = (app / "Procfile").read_text()
            web = re.search(r"^web:\s*(.+)$", procfile, re.M)
            assert web, "Procfile has no web process"
            command = web.group(1).replace("127.0.0.1:8000", f"127.0.0.1:{app_port}")
            gunicorn = subprocess.Popen(
                ["bash", "-c", f"exec {command}"], cwd=app, env=env, start_new_session=True
            )
            processes.append(gunicorn)
            wait_for_http(f"http://127.0.0.1:{app_port}/healthz", gunicorn)
            config = nginx_config(app, work / "nginx", nginx_port, app_port)
            subprocess.run([NGINX, "-t", "-c", str(config)], check=True, capture_output=True)
            nginx = subprocess.Popen(
                [NGINX, "-c", str(config), "-g", "daemon off;"], start_new_session=True
            )
            processes.append(nginx)
            wait_for_http(f"http://127.0.0.1:{nginx_port}/healthz", nginx)
            yield f"http://127.0.0.1:{nginx_port}", pool
    finally:
        for process in reversed(processes):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(10)
        shutil.rmtree(work, ignore_errors=True)


def test_healthz_through_nginx_keeps_the_request_id(deployed) -> None:  # type: ignore[no-untyped-def]
    base, _ = deployed
    response = requests.get(f"{base}/healthz", headers={"X-Request-Id": "bundle-1"}, timeout=10)
    assert response.status_code == 200 and response.json() == {"status": "ok"}
    assert response.headers["X-Request-Id"] == "bundle-1"
    generated = requests.get(f"{base}/healthz", timeout=10).headers["X-Request-Id"]
    assert re.fullmatch(r"[0-9a-f]{32}", generated)  # nginx's $request_id, passed to the app
    assert "nginx/" not in response.headers.get("Server", "")


def test_authenticated_call_through_nginx(deployed) -> None:  # type: ignore[no-untyped-def]
    base, pool = deployed
    token = sign_in(pool, "consumer")["access"]
    response = requests.get(
        f"{base}/v1/me", headers={"Authorization": f"Bearer {token}"}, timeout=10
    )
    assert response.status_code == 200, response.text
    assert response.json()["roles"] == ["consumer"]
    assert requests.get(f"{base}/v1/me", timeout=10).status_code == 401


def test_json_is_gzipped_and_big_bodies_get_the_apps_413(deployed) -> None:  # type: ignore[no-untyped-def]
    base, pool = deployed
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


def test_an_overlong_request_line_is_a_problem_not_an_html_page(deployed) -> None:  # type: ignore[no-untyped-def]
    base, pool = deployed
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
