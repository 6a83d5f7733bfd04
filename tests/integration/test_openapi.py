"""The OpenAPI contract: a valid 3.1 document that covers every route, errors and auth included,
offline Swagger UI, and a client generated from it that imports."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient
from openapi_spec_validator import validate
from openapi_spec_validator.validation import OpenAPIV31SpecValidator

from tests.conftest import Tokens

METHODS = {"get", "put", "post", "delete", "patch"}
PROBLEM_JSON = "application/problem+json"
PROBLEM_REF = "#/components/schemas/Problem"
_RULE_ARGUMENT = re.compile(r"<(?:(?P<converter>\w+)(?:\([^)]*\))?:)?(?P<name>\w+)>")
# Hosts that serve front-end assets; the docs page must not depend on any of them.
_CDN_HOST = re.compile(r"cdn|unpkg|jsdelivr|googleapis|gstatic|cloudflare|bootstrapcdn|jquery")
_ABSOLUTE_URL = re.compile(r"https?://[A-Za-z0-9.-]+(?::\d+)?[^\s\"'`<>()]*")


@pytest.fixture
def spec(client: FlaskClient) -> dict[str, Any]:
    response = client.get("/openapi.json")
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    return response.get_json()


def operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path, method, operation)
        for path, item in spec["paths"].items()
        for method, operation in item.items()
        if method in METHODS
    ]


def api_rules(app: Flask) -> list[tuple[str, str, Any]]:
    """(OpenAPI path, lower-case method, rule) of every public route the spec must document."""
    found = []
    for rule in app.url_map.iter_rules():
        if not (rule.rule.startswith("/v1/") or rule.rule in ("/healthz", "/readyz")):
            continue
        path = _RULE_ARGUMENT.sub(lambda m: "{" + m["name"] + "}", rule.rule)
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            found.append((path, method.lower(), rule))
    return found


def test_document_is_valid_openapi_3_1(spec: dict[str, Any]) -> None:
    assert spec["openapi"].startswith("3.1.")
    validate(spec, cls=OpenAPIV31SpecValidator)


def test_document_is_deterministic(client: FlaskClient, app: Flask) -> None:
    from api.openapi import build

    assert client.get("/openapi.json").get_json() == json.loads(json.dumps(build(app)))


def test_every_api_route_is_documented(app: Flask, spec: dict[str, Any]) -> None:
    rules = api_rules(app)
    assert rules, "no API routes found"
    documented = {(path, method) for path, method, _ in operations(spec)}
    missing = sorted({(p, m) for p, m, _ in rules} - documented)
    assert not missing, f"routes missing from /openapi.json: {missing}"
    # ...and nothing is documented that the app does not serve.
    assert documented == {(p, m) for p, m, _ in rules}


def test_documentation_routes_are_not_operations(spec: dict[str, Any]) -> None:
    assert not any(
        path == "/openapi.json" or path.startswith(("/docs", "/static")) for path in spec["paths"]
    )


def test_path_parameters_match_the_routes(app: Flask, spec: dict[str, Any]) -> None:
    for path, method, rule in api_rules(app):
        operation = spec["paths"][path][method]
        declared = {p["name"]: p for p in operation.get("parameters", []) if p["in"] == "path"}
        assert set(declared) == set(rule.arguments), (path, method)
        for match in _RULE_ARGUMENT.finditer(rule.rule):
            parameter = declared[match["name"]]
            assert parameter["required"] is True
            if match["converter"] == "uuid":
                assert parameter["schema"] == {"type": "string", "format": "uuid"}


def test_operation_ids_are_unique_identifiers(spec: dict[str, Any]) -> None:
    ids = [operation.get("operationId") for _, _, operation in operations(spec)]
    assert all(isinstance(i, str) and re.fullmatch(r"[a-z][a-z0-9_]*", i) for i in ids), ids
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    assert not duplicates, f"duplicate operationIds: {duplicates}"


def test_every_error_response_is_a_documented_problem(spec: dict[str, Any]) -> None:
    assert spec["components"]["schemas"]["Problem"]["required"] == [
        "type",
        "title",
        "status",
        "detail",
    ]
    for path, method, operation in operations(spec):
        responses = operation["responses"]
        successes = [code for code in responses if code[0] == "2"]
        # One success, or several answering the same schema (`also=`: POST /v1/reports is
        # 201 for a new report, 200 for the caller's report of the same thing still open).
        contents = [responses[code].get("content") for code in successes]
        assert successes and all(c == contents[0] for c in contents), (path, method, successes)
        errors = [code for code in responses if code[0] in "45" or code == "default"]
        assert "default" in errors, (path, method)
        for code in errors:
            content = responses[code].get("content", {})
            assert set(content) == {PROBLEM_JSON}, (path, method, code)
            assert content[PROBLEM_JSON]["schema"] == {"$ref": PROBLEM_REF}, (path, method, code)
            assert responses[code]["description"], (path, method, code)
        if "requestBody" in operation:
            assert {"400", "413", "415", "422"} <= set(responses), (path, method)
        if any(p["in"] == "path" for p in operation.get("parameters", [])):
            assert "404" in responses, (path, method)
        if any(p["in"] == "query" for p in operation.get("parameters", [])):
            assert "422" in responses, (path, method)


def _probe_url(path: str, operation: dict[str, Any]) -> str:
    for parameter in operation.get("parameters", []):
        if parameter["in"] == "path":
            schema = parameter["schema"]
            value = schema["enum"][0] if "enum" in schema else str(uuid.uuid4())
            path = path.replace("{" + parameter["name"] + "}", value)
    return path


def test_security_is_documented_where_the_route_needs_a_token(
    client: FlaskClient, spec: dict[str, Any], tokens: Tokens
) -> None:
    """Asked without a token, a route that answers 401 must say it needs the bearer scheme."""
    assert spec["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "A Cognito user pool ID or access token.",
    }
    assert "security" not in spec, "security is declared per operation"
    no_roles = tokens.header("openapi-probe-no-roles", groups=[])
    for path, method, operation in operations(spec):
        url = _probe_url(path, operation)
        body = {"json": {}} if "requestBody" in operation else {}
        anonymous = client.open(url, method=method.upper(), **body)
        responses = operation["responses"]
        if anonymous.status_code == 401:
            assert operation["security"] == [{"bearerAuth": []}], (path, method)
            assert anonymous.mimetype == PROBLEM_JSON
            assert "401" in responses, (path, method)
            assert "503" in responses, (path, method)  # the signing keys may be unreachable
        else:
            assert anonymous.status_code < 400, (path, method, anonymous.status_code)
            assert operation.get("security") == [], (path, method)
        # A signed-in caller without roles is refused where a role is needed: documented 403.
        signed_in = client.open(url, method=method.upper(), headers=no_roles, **body)
        if signed_in.status_code == 403:
            assert "403" in responses, (path, method)


def _assets(html: str) -> list[str]:
    class Collector(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.refs: list[str] = []

        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            for name, value in attrs:
                if name in ("src", "href") and value:
                    self.refs.append(value)

    collector = Collector()
    collector.feed(html)
    return collector.refs


def test_swagger_ui_works_offline(client: FlaskClient) -> None:
    page = client.get("/docs/")
    assert page.status_code == 200 and page.mimetype == "text/html"
    html = page.get_data(as_text=True)
    assert "/openapi.json" in html
    own_host = "localhost"
    for url in _ABSOLUTE_URL.findall(html):
        assert urlsplit(url).hostname == own_host, f"/docs/ refers to another host: {url}"
    # Swagger UI asks validator.swagger.io about the spec unless validatorUrl is null.
    config = json.loads(re.search(r"var user_config = (\{.*?\});", html)[1])  # type: ignore[index]
    assert "validatorUrl" in config and config["validatorUrl"] is None

    refs = _assets(html)
    scripts = [ref for ref in refs if ref.endswith(".js")]
    assert any("swagger-ui-bundle" in ref for ref in scripts), refs
    for ref in refs:
        url = urljoin("http://localhost/docs/", ref)
        assert urlsplit(url).hostname == own_host, f"asset from another host: {ref}"
        asset = client.get(urlsplit(url).path)
        assert asset.status_code == 200, ref
        if ref.endswith((".js", ".css")):
            text = asset.get_data(as_text=True)
            asset.close()
            hosts = {urlsplit(found).hostname or "" for found in _ABSOLUTE_URL.findall(text)}
            cdns = sorted(host for host in hosts if _CDN_HOST.search(host))
            assert not cdns, f"{ref} refers to CDN hosts {cdns}"
            if ref.endswith(".css"):
                assert not re.search(r"@import|url\(\s*['\"]?https?:", text), ref
        else:
            asset.close()


def test_generated_python_client_imports(
    client: FlaskClient, tmp_path: Path, spec: dict[str, Any]
) -> None:
    spec_file = tmp_path / "openapi.json"
    spec_file.write_text(json.dumps(spec))
    bin_dir = Path(sys.executable).parent
    package = tmp_path / "trellis_api_client"
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    generated = subprocess.run(
        [
            str(bin_dir / "openapi-python-client"),
            "generate",
            "--path",
            str(spec_file),
            "--meta",
            "none",
            "--output-path",
            str(package),
            "--fail-on-warning",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert generated.returncode == 0, generated.stdout + generated.stderr
    assert "Warning" not in generated.stdout + generated.stderr

    ids = sorted(operation["operationId"] for _, _, operation in operations(spec))
    check = f"""
import importlib, pkgutil, sys
import trellis_api_client
from trellis_api_client import AuthenticatedClient
from trellis_api_client.models import Problem
for module in pkgutil.walk_packages(trellis_api_client.__path__, "trellis_api_client."):
    importlib.import_module(module.name)
names = {{m.name.rsplit(".", 1)[-1] for m in pkgutil.walk_packages(
    trellis_api_client.__path__, "trellis_api_client.")}}
missing = [i for i in {ids!r} if i not in names]
assert not missing, missing
AuthenticatedClient(base_url="http://127.0.0.1:1", token="t")
"""
    imported = subprocess.run(
        [sys.executable, "-c", check],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert imported.returncode == 0, imported.stdout + imported.stderr
