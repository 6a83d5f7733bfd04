"""The floor under scenario (a): the least work its answer needs, step by step, on this stack.

    gunicorn --config gunicorn.conf.py --bind 127.0.0.1:PORT bench.floor:app

Served next to Trellis by bench/run.py, with Trellis's own environment, and measured against
the same hello in the same rounds. Each step adds one piece of work to the one before and
keeps nothing else of Trellis (no SQLAlchemy, pydantic, Flask-Limiter, access log or
headers), so its ratio to hello is the best any Flask application on this stack can do with
that much work:

- `/floor/token`: verify the bearer token with Trellis's own verifier (cached per token, as
  in Trellis) and answer an empty list;
- `/floor/limit`: and count the request against a fixed-window limit in Redis (`limits`, the
  library under Flask-Limiter: one EVALSHA);
- `/floor/query`: and read the caller's row and the 21 newest bookings with the very SQL
  Trellis sends (compiled from services/), through psycopg2 on an autocommit connection per
  thread, and answer them with orjson;
- `/floor/prepared`: the same with the two statements prepared on the server once per
  connection (PREPARE / EXECUTE), so PostgreSQL no longer parses and plans them per request.

Not an API: no authorisation beyond the token, no validation, no errors worth the name.
"""

from __future__ import annotations

import threading
from typing import Any

import orjson
import psycopg2
from flask import Flask, Response, abort, request
from limits import parse
from limits.storage import storage_from_string
from limits.strategies import FixedWindowRateLimiter
from sqlalchemy.dialects import postgresql

from services.accounts.auth import JwksCache, TokenVerifier
from services.accounts.users import _CALLER
from services.aws.jwks import HttpJwksFetcher
from services.base.settings import load_settings
from services.marketplace.bookings import _list_query

STEPS = ("token", "limit", "query", "prepared")
_DIALECT = postgresql.psycopg2.dialect()
CALLER_SQL = str(_CALLER.compile(dialect=_DIALECT))
LIST_QUERY = _list_query(None, False, False)
LIST_SQL = str(LIST_QUERY.compile(dialect=_DIALECT))
PREPARES = (
    "PREPARE floor_caller(text) AS " + CALLER_SQL.replace("%(sub)s", "$1"),
    "PREPARE floor_list(uuid, integer) AS "
    + LIST_SQL.replace("%(viewer)s", "$1").replace("%(n)s", "$2"),
)
LIST_COLUMNS = [str(c.name) for c in LIST_QUERY.selected_columns]  # orjson: plain str keys

settings = load_settings()
verifier = TokenVerifier(
    keys=JwksCache(HttpJwksFetcher(settings.jwks_url, timeout_seconds=3)),
    issuer=settings.issuer,
    client_ids=settings.cognito_app_client_ids,
    token_use=settings.cognito_token_use,
)
limiter = FixedWindowRateLimiter(storage_from_string(settings.redis_url or "memory://"))
LIMIT = parse(settings.rate_limit_default)
DSN = settings.db_url.replace("postgresql+psycopg2://", "postgresql://")
_local = threading.local()
app = Flask(__name__)


def _connection(prepared: bool) -> Any:
    name = "prepared" if prepared else "plain"
    connection = getattr(_local, name, None)
    if connection is None:
        connection = psycopg2.connect(DSN)
        connection.autocommit = True
        if prepared:
            with connection.cursor() as cursor:
                for statement in PREPARES:
                    cursor.execute(statement)
        setattr(_local, name, connection)
    return connection


def _bookings(sub: str, limit: int, prepared: bool) -> list[dict[str, Any]]:
    with _connection(prepared).cursor() as cursor:
        if prepared:
            cursor.execute("EXECUTE floor_caller(%s)", (sub,))
        else:
            cursor.execute(CALLER_SQL, {"sub": sub})
        caller = cursor.fetchone()
        if caller is None:
            abort(404)
        if prepared:
            cursor.execute("EXECUTE floor_list(%s, %s)", (caller[0], limit + 1))
        else:
            cursor.execute(LIST_SQL, {"viewer": caller[0], "n": limit + 1})
        rows = cursor.fetchall()
    return [dict(zip(LIST_COLUMNS, row, strict=True)) for row in rows[:limit]]


@app.get("/")
def ready() -> Response:
    return Response(orjson.dumps({"steps": STEPS}), mimetype="application/json")


@app.get("/floor/<step>")
def floor(step: str) -> Response:
    if step not in STEPS:
        abort(404)
    identity = verifier.verify(request.headers.get("Authorization", "")[len("Bearer ") :])
    if step != "token" and not limiter.hit(LIMIT, "floor", identity.sub):
        abort(429)
    items: list[dict[str, Any]] = []
    if step in ("query", "prepared"):
        items = _bookings(identity.sub, int(request.args.get("limit", 20)), step == "prepared")
    body = {"items": items, "next_cursor": None}
    return Response(orjson.dumps(body), mimetype="application/json")
