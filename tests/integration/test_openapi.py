"""The OpenAPI contract: a valid 3.1 document that covers every route, errors and auth included,
offline Swagger UI, and a client generated from it that imports."""

from __future__ import annotations

import inspect
import json
import os
import re
import subprocess
import sys
import uuid
from datetime import UTC, date, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx
import pytest
from flask import Flask
from flask.testing import FlaskClient
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate
from openapi_spec_validator.validation import OpenAPIV31SpecValidator

from api.endpoint import endpoint
from api.errors import _TYPES, PROBLEM_SCHEMAS, problem_for, problem_schema, problem_type
from api.openapi import build
from api.schemas.marketplace import BookingCreate
from api.schemas.scheduling import AvailabilityIn
from services.base.errors import (
    AccountClosed,
    AccountHasActiveBookings,
    ExportInProgress,
    FieldError,
    ReauthenticationRequired,
    TrellisError,
    ValidationFailed,
)
from services.sync import RecordView, SyncConflict
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
    served = client.get("/openapi.json").get_json()
    # Built for the hour it was served in (its examples of times are computed from it).
    hour, _ = app.extensions["trellis.openapi"]
    assert served == json.loads(json.dumps(build(app, now=hour - timedelta(minutes=30))))


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


def _problem_refs(schema: dict[str, Any]) -> list[str]:
    """The problem schemas an error response names: one $ref, or anyOf several."""
    return [option["$ref"] for option in schema.get("anyOf", [schema])]


def test_every_error_response_is_a_documented_problem(spec: dict[str, Any]) -> None:
    schemas = spec["components"]["schemas"]
    assert schemas["Problem"]["required"] == ["type", "title", "status", "detail"]
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
            refs = _problem_refs(content[PROBLEM_JSON]["schema"])
            # Specific types first, the plain Problem (when it can be) last.
            assert PROBLEM_REF not in refs[:-1], (path, method, code)
            for ref in refs:
                problem = schemas[ref.rsplit("/", 1)[-1]]
                assert {"type", "title", "status", "detail"} <= set(problem["required"]), ref
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
    app: Flask, tmp_path: Path, spec: dict[str, Any], tokens: Tokens
) -> None:
    """openapi-python-client generates with no warning (`--fail-on-warning`, and none
    printed), the package imports, and it reads a real sync conflict as a typed
    SyncConflictProblem (`conflicts` as SyncRecord objects), a replay as well."""
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
    _drive_generated_client(app, tmp_path, tokens)


def _drive_generated_client(app: Flask, where: Path, tokens: Tokens) -> None:
    sys.path.insert(0, str(where))
    try:
        from trellis_api_client import AuthenticatedClient  # type: ignore[import-not-found]
        from trellis_api_client.api.sync import post_dataset  # type: ignore[import-not-found]
        from trellis_api_client.models import (  # type: ignore[import-not-found]
            DatasetChanges,
            SyncBatch,
            SyncConflictProblem,
            ValidationProblem,
        )

        api = AuthenticatedClient(
            base_url="http://localhost",
            token=tokens.token("generated-client", groups=["consumers"]),
            httpx_args={"transport": httpx.WSGITransport(app=app)},
        )
        record = {"op": "replace", "key": "theme", "value": "dark", "sync_count": 0}
        first = post_dataset.sync(
            "settings", client=api, body=SyncBatch.from_dict({"records": [record]})
        )
        assert isinstance(first, DatasetChanges) and first.sync_count == 1
        stale = SyncBatch.from_dict({"records": [{**record, "value": "light"}]})
        key = str(uuid.uuid4())
        for _ in range(2):  # the answer, then its replay
            answer = post_dataset.sync_detailed(
                "settings", client=api, body=stale, idempotency_key=key
            )
            conflict = answer.parsed
            assert isinstance(conflict, SyncConflictProblem), conflict
            assert [(c.key, c.value, c.sync_count) for c in conflict.conflicts] == [
                ("theme", "dark", 1)
            ]
        assert answer.headers["Idempotent-Replayed"] == "true"
        empty = post_dataset.sync("settings", client=api, body=SyncBatch.from_dict({"records": []}))
        assert isinstance(empty, ValidationProblem) and empty.errors[0].field == "records"
    finally:
        sys.path.remove(str(where))
        for name in [m for m in sys.modules if m.split(".")[0] == "trellis_api_client"]:
            del sys.modules[name]


# --- Problem types: every extension member documented, referenced where it can occur -------


def _sample(error: type[TrellisError]) -> TrellisError:
    """An instance of each error api/errors.py renders, with data for its members."""
    when = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    record = RecordView("theme", {"dark": True}, 3, False, when, "phone")
    special: dict[type[TrellisError], tuple[Any, ...]] = {
        SyncConflict: ([record],),
        AccountHasActiveBookings: ([uuid.uuid4(), uuid.uuid4()],),
        ExportInProgress: (uuid.uuid4(),),
        ValidationFailed: ("Fix it.", [FieldError("a.b", "too long", "string_too_long")]),
        AccountClosed: (),
        ReauthenticationRequired: (300,),
    }
    return error(*special.get(error, ("Something about it.",)))


def _validator(spec: dict[str, Any], schema: dict[str, Any]) -> Draft202012Validator:
    """A JSON Schema validator for a schema of the document ($refs into its components)."""
    return Draft202012Validator({**schema, "components": spec["components"]})


def test_every_problem_member_is_in_its_schema(app: Flask, spec: dict[str, Any]) -> None:
    """Each problem as api/errors.py renders it matches its schema, and has no member the
    schema does not name: a new extension member cannot go undocumented."""
    schemas = spec["components"]["schemas"]
    assert set(PROBLEM_SCHEMAS) <= set(_TYPES) | {ValidationFailed}
    for error in _TYPES:
        with app.test_request_context("/v1/somewhere"):
            response = problem_for(_sample(error))
        body = json.loads(response.get_data())
        name = problem_schema(error).__name__
        _validator(spec, {"$ref": f"#/components/schemas/{name}"}).validate(body)
        assert set(body) <= set(schemas[name]["properties"]), (error, sorted(body))
        assert (response.status_code, body["type"]) == problem_type(error)[:2]
    # ...and the specific schemas refuse a plain problem: a client can tell them apart.
    for name in ("SyncConflictProblem", "ActiveBookingsProblem", "ValidationProblem"):
        plain = {"type": "/problems/conflict", "title": "x", "status": 409, "detail": "x"}
        assert not _validator(spec, {"$ref": f"#/components/schemas/{name}"}).is_valid(plain)


def test_declared_errors_reference_their_problem_schema(app: Flask, spec: dict[str, Any]) -> None:
    named = 0
    for path, method, rule in api_rules(app):
        declared = app.view_functions[rule.endpoint].__trellis_endpoint__
        responses = spec["paths"][path][method]["responses"]
        wanted: dict[str, set[str]] = {}
        for error in declared.errors:
            if not isinstance(error, int) and problem_schema(error).__name__ != "Problem":
                wanted.setdefault(str(problem_type(error)[0]), set()).add(
                    problem_schema(error).__name__
                )
        if "422" in responses:
            wanted.setdefault("422", set()).add("ValidationProblem")
        for status, names in wanted.items():
            refs = _problem_refs(responses[status]["content"][PROBLEM_JSON]["schema"])
            found = {ref.rsplit("/", 1)[-1] for ref in refs} - {"Problem"}
            assert found == names, (path, method, status, found)
            named += status != "422"
    # The three routes whose 409 carries members of its own.
    assert named == 3
    sync_409 = spec["paths"]["/v1/sync/datasets/{name}"]["post"]["responses"]["409"]
    assert _problem_refs(sync_409["content"][PROBLEM_JSON]["schema"]) == [
        "#/components/schemas/SyncConflictProblem",
        PROBLEM_REF,  # the same Idempotency-Key still in use
    ]


# --- Response headers: declared from the declarations, and every one the app sends ----------

# Set on every response by api/security.py for browsers and proxies, and the transport's own:
# not part of what a client reads, so not repeated in every response of the document.
_TRANSPORT_HEADERS = {
    "content-type",
    "content-length",
    "date",
    "cache-control",
    "content-security-policy",
    "referrer-policy",
    "strict-transport-security",
    "x-content-type-options",
    "x-frame-options",
    "vary",
}


def assert_headers_declared(
    spec: dict[str, Any], path: str, method: str, response: Any
) -> dict[str, Any]:
    """Every header `response` carries is declared for its status, and every declared header
    that is always sent is there. Returns the declared headers."""
    responses = spec["paths"][path][method]["responses"]
    documented = responses.get(str(response.status_code), responses["default"])
    declared = {name.lower(): value for name, value in documented.get("headers", {}).items()}
    sent = {name.lower() for name, _ in response.headers.items()} - _TRANSPORT_HEADERS
    assert sent <= set(declared), (path, method, response.status_code, sent - set(declared))
    assert "x-request-id" in sent, (path, method)
    for name, ref in declared.items():
        assert ref["$ref"] in {f"#/components/headers/{h}" for h in spec["components"]["headers"]}
        if name in ("www-authenticate", "retry-after"):
            assert name in sent, (path, method, response.status_code, name)
    return declared


def test_headers_come_from_the_declarations(app: Flask, spec: dict[str, Any]) -> None:
    for path, method, rule in api_rules(app):
        declared = app.view_functions[rule.endpoint].__trellis_endpoint__
        for status, response in spec["paths"][path][method]["responses"].items():
            headers = set(response["headers"])
            assert "X-Request-Id" in headers, (path, method, status)
            assert ("Location" in headers) == (declared.location and status[0] == "2")
            assert ("WWW-Authenticate" in headers) == (status == "401")
            assert ("Retry-After" in headers) == (status in ("429", "503"))
            replayable = declared.idempotent and status not in ("401", "429", "default")
            assert ("Idempotent-Replayed" in headers) == replayable, (path, method, status)


def test_location_is_declared_exactly_where_a_view_sets_it(app: Flask) -> None:
    """`location=True` documents the header; the view sets it. Read both from the source."""
    setters = set()
    for name, view in app.view_functions.items():
        declared = getattr(view, "__trellis_endpoint__", None)
        if declared is None:
            continue
        sets_it = '.headers["Location"]' in inspect.getsource(inspect.unwrap(view))
        assert sets_it == declared.location, name
        setters.add(name) if sets_it else None
    assert setters >= {
        "bookings.create_booking",
        "media.create_upload",
        "data_exports.create_export",
    }


def test_accept_language_is_declared_exactly_where_a_view_reads_it(
    app: Flask, spec: dict[str, Any]
) -> None:
    """`localized=True` documents Accept-Language, so generated clients can send it."""
    readers = set()
    for path, method, rule in api_rules(app):
        view = app.view_functions[rule.endpoint]
        declared = view.__trellis_endpoint__
        reads_it = "_reader()" in inspect.getsource(inspect.unwrap(view))
        assert reads_it == declared.localized, rule.endpoint
        names = {p["name"] for p in spec["paths"][path][method].get("parameters", [])}
        assert ("Accept-Language" in names) == reads_it, (path, method)
        readers.add(rule.endpoint) if reads_it else None
    assert readers >= {"media.list_notifications", "media.read_notification"}


def test_real_answers_carry_only_declared_headers(
    actors: Any, client: FlaskClient, spec: dict[str, Any]
) -> None:
    """A sync conflict, its replay, a 422, a created upload and a refused token, over HTTP:
    each body matches the schema its status documents, each header is declared."""
    path = "/v1/sync/datasets/{name}"
    user = actors("consumer")
    record = {"op": "replace", "key": "theme", "value": "dark", "sync_count": 0}
    assert user.post("/v1/sync/datasets/settings", json={"records": [record]}).status_code == 200
    key = {"Idempotency-Key": str(uuid.uuid4())}
    stale = {"records": [{**record, "value": "light"}]}
    conflict = user.post("/v1/sync/datasets/settings", json=stale, headers=key)
    replay = user.post("/v1/sync/datasets/settings", json=stale, headers=key)
    invalid = user.post("/v1/sync/datasets/settings", json={"records": []})
    for response, status in ((conflict, 409), (replay, 409), (invalid, 422)):
        assert response.status_code == status
        documented = spec["paths"][path]["post"]["responses"][str(status)]
        schema = documented["content"][PROBLEM_JSON]["schema"]
        _validator(spec, schema).validate(response.get_json())
        # The first (specific) schema of the anyOf, not just the plain Problem.
        _validator(spec, schema["anyOf"][0]).validate(response.get_json())
        assert_headers_declared(spec, path, "post", response)
    assert conflict.get_json()["conflicts"][0]["value"] == "dark"
    assert "Idempotent-Replayed" not in conflict.headers
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert replay.get_json()["conflicts"] == conflict.get_json()["conflicts"]

    upload = user.post(
        "/v1/uploads",
        json={"purpose": "avatar", "content_type": "image/jpeg", "size_bytes": 1000},
    )
    assert upload.status_code == 201, upload.get_json()
    assert "location" in assert_headers_declared(spec, "/v1/uploads", "post", upload)
    assert upload.headers["Location"] == f"/v1/uploads/{upload.get_json()['id']}"

    refused = client.get("/v1/me", headers={"Authorization": "Bearer nope"})
    assert refused.status_code == 401
    assert_headers_declared(spec, "/v1/me", "get", refused)


# --- Examples: computed from now, never a fixed date ------------------------------------------

_DATE = re.compile(
    r"\b(\d{4}-\d{2}-\d{2})(T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:\d{2}))?"
)


def _dates_in(document: Any) -> list[str]:
    return [m.group(0) for m in _DATE.finditer(json.dumps(document))]


def test_no_date_in_the_document_is_in_the_past(spec: dict[str, Any]) -> None:
    """Anywhere in the document (examples, descriptions): a time not after now, or a date
    before today, fails. Examples of bookings and events are computed when it is built."""
    now = datetime.now(UTC)
    found = _dates_in(spec)
    assert found, "the document has no example of a date or time"
    for text in found:
        if "T" in text:
            assert datetime.fromisoformat(text.replace("Z", "+00:00")) > now, text
        else:
            assert date.fromisoformat(text) >= now.date(), text


def test_examples_follow_the_clock(app: Flask) -> None:
    """Built as if a year from now, every date in the document is later than that: none is
    written down. The examples of request bodies are valid requests."""
    later = datetime.now(UTC) + timedelta(days=400)
    document = build(app, now=later)
    assert all(text[:10] >= later.date().isoformat() for text in _dates_in(document))
    schemas = document["components"]["schemas"]
    booking = schemas["BookingCreate"]["examples"][0]
    assert (
        booking["scheduled_at"]
        == schemas["BookingCreate"]["properties"]["scheduled_at"]["examples"][0]
    )
    assert datetime.fromisoformat(booking["scheduled_at"]) > later + timedelta(days=6)
    BookingCreate.model_validate_json(json.dumps(booking))
    AvailabilityIn.model_validate_json(json.dumps(schemas["AvailabilityIn"]["examples"][0]))
    assert build(app, now=later) == document  # the same hour, the same document


# --- Shape: no orphans, one tag each, stable operationIds -------------------------------------


def test_every_schema_is_used(spec: dict[str, Any]) -> None:
    """Query and path models are parameters, not components; nothing else is left over."""
    schemas = spec["components"]["schemas"]
    reached: set[str] = set()
    pending = re.findall(r'"#/components/schemas/([^"]+)"', json.dumps(spec["paths"]))
    while pending:
        name = pending.pop()
        if name not in reached:
            reached.add(name)
            pending += re.findall(r'"#/components/schemas/([^"]+)"', json.dumps(schemas[name]))
    assert set(schemas) == reached, sorted(set(schemas) - reached)
    assert not {"PageQuery", "ProviderSearch", "SyncSince", "DatasetPath"} & set(schemas)
    search = spec["paths"]["/v1/providers"]["get"]
    assert {p["name"] for p in search["parameters"]} >= {"q", "lat", "lng", "cursor", "limit"}


def test_one_tag_per_operation(spec: dict[str, Any]) -> None:
    for path, method, operation in operations(spec):
        assert len(operation["tags"]) == 1, (path, method, operation["tags"])
    with pytest.raises(ValueError, match="exactly one tag"):
        endpoint(summary="Two shelves", tags=("admin", "analytics"))


# The operationIds clients were generated with: a generated SDK's method names. Renaming one
# breaks every app that calls it, so this list only grows.
PUBLISHED_OPERATION_IDS = frozenset(
    [
        "accept_booking",
        "analytics_summary",
        "cancel_booking",
        "cancel_deletion",
        "close_deletion_request",
        "complete_booking",
        "complete_upload",
        "create_block",
        "create_booking",
        "create_export",
        "create_report",
        "create_upload",
        "decline_booking",
        "delete_block",
        "delete_dataset",
        "delete_device",
        "delete_me",
        "delete_upload",
        "get_availability",
        "get_booking",
        "get_dataset",
        "get_export",
        "get_me",
        "get_provider",
        "get_provider_profile",
        "get_slots",
        "get_upload",
        "grant_role",
        "healthz",
        "list_blocks",
        "list_bookings",
        "list_datasets",
        "list_deletion_requests",
        "list_devices",
        "list_messages",
        "list_notifications",
        "list_reports",
        "list_suspended_users",
        "patch_me",
        "post_dataset",
        "post_message",
        "post_review",
        "put_availability",
        "put_provider_profile",
        "read_all_notifications",
        "read_notification",
        "readyz",
        "record_events",
        "register_device",
        "resolve_report",
        "revoke_role",
        "search_providers",
        "send_notification",
        "start_booking",
        "unsuspend_user",
    ]
)


def test_published_operation_ids_stay(spec: dict[str, Any]) -> None:
    ids = {operation["operationId"] for _, _, operation in operations(spec)}
    assert not set(PUBLISHED_OPERATION_IDS) - ids, sorted(set(PUBLISHED_OPERATION_IDS) - ids)


def test_openapi_generator_validates_the_document(tmp_path: Path, spec: dict[str, Any]) -> None:
    """openapi-generator (the Java generator behind the TypeScript, Kotlin and Swift SDKs)
    finds no issue and makes no recommendation (unused models were 13 of them), and each
    SDK generates (a dry run) with no warning but its own "3.1 support is still in beta"
    (a `default: null` in a request body was one)."""
    spec_file = tmp_path / "openapi.json"
    spec_file.write_text(json.dumps(spec))
    cli = str(Path(sys.executable).parent / "openapi-generator-cli")
    checked = _run([cli, "validate", "--recommend", "-i", str(spec_file)])
    assert "No validation issues detected." in checked, checked
    assert "recommendation" not in checked.lower() and "Warnings" not in checked, checked
    for generator in ("typescript-fetch", "kotlin", "swift6"):
        out = tmp_path / generator
        generated = _run(
            [cli, "generate", "--dry-run", "-i", str(spec_file), "-g", generator, "-o", str(out)]
        )
        warnings = [line for line in generated.splitlines() if " WARN " in line]
        assert all("3.1 support is still in beta" in line for line in warnings), (
            generator,
            warnings,
        )


def _run(command: list[str]) -> str:
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    return output
