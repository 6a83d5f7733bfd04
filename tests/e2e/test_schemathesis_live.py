"""Schemathesis against the live service: gunicorn, PostgreSQL, moto's Cognito, over HTTP.

The spec is loaded from the running service's /openapi.json, and every operation is called
with generated requests (the spec's examples, then fuzzing; the spec has no links, so there
is no stateful phase) authenticated with real Cognito-issued access tokens of each role:
consumer, provider, admin. Bounded: MAX_EXAMPLES per operation and role.

Checks: no 5xx, status codes and content types as documented, bodies that match their
schemas.

The callers are fresh Cognito users in the demo roles' groups, not the demo users
themselves: the stack is shared with the other end-to-end tests, whose demo users must not
be renamed, lose roles or fill their rate-limit budget here. Each caller is used for at
most REQUESTS_PER_CALLER requests (below the tightest per-user limit, 30 uploads a minute),
so fuzzing explores the operations instead of collecting 429s; limits are tested elsewhere.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core import NotSet
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from devstack.cognito import add_user, sign_in
from tests.e2e.conftest import Stack

pytestmark = pytest.mark.e2e

# Per operation: its documented examples, then valid and invalid generated requests.
MAX_EXAMPLES = {"examples": 5, "positive": 10, "negative": 5}
# Below the per-user limits (RATE_LIMIT_DEFAULT 300/minute; uploads, devices and
# notifications 30/minute), however fast the run goes.
REQUESTS_PER_CALLER = {False: 250, True: 25}
TIGHT_PREFIXES = ("/v1/uploads", "/v1/devices", "/v1/notifications")
ROLES = {"consumer": ["consumers"], "provider": ["providers"], "admin": ["admins"]}
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@dataclass
class Callers:
    """Fresh signed-in users per role, each retired before it could reach a rate limit."""

    stack: Stack
    session: requests.Session
    numbers: Iterator[int] = field(default_factory=itertools.count)
    current: dict[tuple[str, bool], tuple[dict[str, str], int]] = field(default_factory=dict)
    provider_id: str | None = None
    statuses: Counter[int] = field(default_factory=Counter)

    def new(self, role: str) -> dict[str, str]:
        username = f"fuzz-{role}-{next(self.numbers)}"
        add_user(self.stack.pool, username, email=f"{username}@fuzz.local", groups=ROLES[role])
        token = sign_in(self.stack.pool, username)["access"]
        return {"Authorization": f"Bearer {token}"}

    def headers(self, role: str, path: str) -> dict[str, str]:
        tight = path.startswith(TIGHT_PREFIXES)
        limit = REQUESTS_PER_CALLER[tight]
        headers, used = self.current.get((role, tight), ({}, limit))
        if used >= limit:
            headers, used = self.new(role), 0
        self.current[(role, tight)] = (headers, used + 1)
        return headers


@pytest.fixture(scope="module")
def callers(stack: Stack) -> Iterator[Callers]:
    with requests.Session() as session:
        found = Callers(stack, session)
        # A provider with a profile, so bookings and the directory can answer 2xx.
        provider = found.new("provider")
        profile = {
            "display_name": "Fuzz Cleaning",
            "bio": "Fuzzed",
            "categories": ["cleaning"],
            "location": {"lat": 52.52, "lng": 13.405},
            "service_radius_km": 50,
            "hourly_rate_cents": 2000,
            "currency": "EUR",
        }
        url = f"{stack.base_url}/v1/me/provider-profile"
        response = session.put(url, json=profile, headers=provider, timeout=10)
        assert response.status_code == 200, response.text
        found.provider_id = response.json()["id"]
        yield found


@pytest.fixture(scope="module")
def live_schema(stack: Stack) -> Any:
    return schemathesis.openapi.from_url(f"{stack.base_url}/openapi.json", wait_for_schema=10)


def aim(case: schemathesis.Case, callers: Callers) -> None:
    """In two of three cases, point a provider id (path or body) at the seeded provider."""
    headers = {k: v for k, v in (case.headers or {}).items() if k.lower() != "authorization"}
    body = "<none>" if isinstance(case.body, NotSet) else case.body
    seed = json.dumps(
        [case.operation.label, case.path_parameters, case.query, headers, body],
        default=repr,
        sort_keys=True,
    )
    digest = hashlib.blake2s(seed.encode("utf-8", "surrogatepass"), digest_size=4).digest()
    if not digest[0] % 3 or (case.meta and case.meta.generation.mode.is_negative):
        return
    if case.path_parameters and "provider_id" in case.path_parameters:
        case.path_parameters["provider_id"] = callers.provider_id
    if isinstance(case.body, dict) and {"provider_id", "scheduled_at"} <= case.body.keys():
        case.body["provider_id"] = callers.provider_id
        case.body["category"] = "cleaning"
        case.body["scheduled_at"] = (datetime.now(UTC) + timedelta(days=3)).isoformat()


def phases(operation: Any) -> dict[str, Any]:
    examples = list(operation.get_strategies_from_examples())
    found = {
        "positive": operation.as_strategy(GenerationMode.POSITIVE),
        "negative": operation.as_strategy(GenerationMode.NEGATIVE),
    }
    if examples:
        found = {"examples": st.one_of(examples), **found}
    return found


def fuzz(operation: Any, phase: str, strategy: Any, stack: Stack, callers: Callers) -> list[str]:
    """Run one phase of one operation; each failure is recorded, the run goes on."""
    failures: list[str] = []

    @given(case=strategy)
    @settings(
        max_examples=MAX_EXAMPLES[phase],
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def run(case: schemathesis.Case) -> None:
        aim(case, callers)
        others = {k: v for k, v in (case.headers or {}).items() if k.lower() != "authorization"}
        for role in ROLES:
            case.headers = {**others, **callers.headers(role, operation.path)}
            try:
                response = case.call(base_url=stack.base_url, session=callers.session, timeout=30)
                callers.statuses[response.status_code] += 1
                case.validate_response(response, checks=CHECKS)
            except (Exception, BaseExceptionGroup) as exc:  # a check failed: report them all
                failures.append(f"{operation.label} [{phase}, as {role}]: {exc}"[:3000])

    try:
        run()
    except Unsatisfiable:
        # An operation with no inputs (GET /healthz, GET /v1/me...) has no invalid request.
        assert phase == "negative", f"{operation.label} [{phase}]: nothing could be generated"
    return failures


def test_live_service_keeps_its_contract(live_schema: Any, stack: Stack, callers: Callers) -> None:
    """Every operation, every phase, as a consumer, a provider and an admin."""
    operations = [result.ok() for result in live_schema.get_all_operations()]
    assert len(operations) >= 38
    failures: list[str] = []
    for operation in operations:
        for phase, strategy in phases(operation).items():
            failures += fuzz(operation, phase, strategy, stack, callers)
    print(f"live schemathesis: {callers.statuses.total()} requests, {dict(callers.statuses)}")
    assert callers.statuses.total() >= 1000
    assert not failures, f"{len(failures)} failures:\n\n" + "\n\n".join(failures[:20])


@pytest.mark.parametrize("length", [5000, 8000])
def test_a_long_request_line_gets_a_problem_not_an_html_page(
    stack: Stack, callers: Callers, length: int
) -> None:
    """Found by the fuzzing: gunicorn's 4094-byte request-line limit answered an HTML 414."""
    after = "x" * (length - 100)
    url = f"{stack.base_url}/v1/bookings/{callers.provider_id}/messages?after={after}"
    headers = callers.headers("consumer", "/v1/bookings")
    response = callers.session.get(url, headers=headers, timeout=10)
    assert response.status_code == 422, response.text[:300]
    assert response.headers["Content-Type"] == "application/problem+json"
