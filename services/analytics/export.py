"""Scheduled export (what AWS Data Pipeline did): changed rows to S3 as gzip JSON Lines.

Each exported table has a watermark in export_watermarks: the (changed_at, primary key) of
the last row exported, where changed_at is `updated_at`, or `created_at` / `received_at`
for append-only tables. A run reads the rows after the watermark, in that order, through a
server-side cursor, and writes them in parts of at most EXPORT_PART_ROWS rows to

    exports/<table>/dt=<YYYY-MM-DD of changed_at, UTC>/<run id>-<part>.jsonl.gz

each part streamed to S3 as it fills, so memory stays bounded however many rows there are.
Then it writes exports/_manifests/<run id>.json and, in the same transaction that marks the
run succeeded, moves the watermarks. A failure anywhere leaves the watermarks where they
were (the run is recorded as failed and its files are deleted), so the next run exports the
same rows again: every change is exported at least once. A run that finds nothing new writes
nothing to S3 (it is still recorded in export_runs).

A run stops starting new parts after EXPORT_MAX_SECONDS (the worker tier runs it inside an
HTTP request that gunicorn would kill) and commits what it exported; the result says it is
not complete, and the next run carries on from the watermarks.

Only rows older than EXPORT_SAFETY_SECONDS are taken, so a row committed a little late with
an earlier timestamp is still ahead of the watermark when the next run looks.
"""

from __future__ import annotations

import base64
import logging
import time
import uuid
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import orjson
from sqlalchemy import Column, Table, func, literal, select, text, tuple_, update
from sqlalchemy.orm import Session, sessionmaker

from models import Base, ExportRun, ExportWatermark
from models.base import utcnow
from services.aws.exports import ExportObject, ExportSink
from services.base.errors import Unavailable
from services.base.replicas import ReadRouter, Replica
from services.base.unit_of_work import transaction

if TYPE_CHECKING:
    from services.base.settings import Settings

log = logging.getLogger("trellis.export")

# Never exported, whatever EXPORT_TABLES says: secrets, push tokens, stored responses.
DENIED_TABLES = frozenset(
    {"idempotency_keys", "outbox_messages", "export_watermarks", "export_runs"}
)
DENIED_COLUMNS = frozenset({("devices", "token"), ("devices", "endpoint_arn")})

# What a table's changes are ordered by: the first of these it has.
CHANGE_COLUMNS = ("updated_at", "created_at", "received_at")

# Analytics tables without contact details or free text people wrote to each other:
# no e-mail, phone, names or Cognito identifiers of users; no booking address, notes or
# coordinates (a consumer's home); no message bodies. EXPORT_TABLES replaces this whole.
DEFAULT_TABLES: dict[str, list[str] | str] = {
    "users": ["id", "roles", "created_at", "updated_at"],
    "provider_profiles": "*",
    "bookings": [
        "id",
        "consumer_id",
        "provider_id",
        "category",
        "scheduled_at",
        "status",
        "last_message_seq",
        "created_at",
        "updated_at",
    ],
    "booking_events": "*",
    "messages": ["id", "booking_id", "seq", "sender_id", "created_at"],
    "reviews": "*",
    "events": "*",
}

# Every run also exports the ids of accounts purged since the last run (whatever
# EXPORT_TABLES says), so that copies of their rows downstream can be deleted too.
# users.purged_at is NULL for everyone else, and NULL never passes the watermark filter.
DELETED_USERS_TABLE = "deleted_users"

EXPORT_PREFIX = "exports/"
MANIFEST_PREFIX = "exports/_manifests/"
PART_CONTENT_TYPE = "application/gzip"
FETCH_ROWS = 1000  # rows per round trip of the server-side cursor
# One export at a time (pg_try_advisory_xact_lock); the number is arbitrary but fixed.
LOCK_KEY = 0x7472_656C_6C69_7301
TIMESTAMP_FORMAT = "%Y-%m-%d %H:%M:%S.%f"  # java.sql.Timestamp's, which Athena's SerDe reads


class ExportFailed(Unavailable):
    """The run failed and moved nothing; running it again is safe (and is what sqsd does)."""


class ExportBusy(Unavailable):
    """Another export is running; this one did nothing."""


@dataclass(frozen=True)
class ExportTable:
    """One table as exported: which columns, its primary key and its change column."""

    name: str
    columns: tuple[Column[Any], ...]
    key: Column[Any]
    changed: Column[Any]

    @property
    def column_names(self) -> list[str]:
        return [str(column.name) for column in self.columns]


def plan_tables(spec: Mapping[str, Sequence[str] | str] | None = None) -> list[ExportTable]:
    """Resolve an EXPORT_TABLES value (None: DEFAULT_TABLES) against the schema and the
    deny-lists; ValueError names every unknown or refused table and column."""
    spec = DEFAULT_TABLES if spec is None else spec
    problems: list[str] = []
    planned: list[ExportTable] = []
    for name, wanted in spec.items():
        table = Base.metadata.tables.get(name)
        if table is None:
            problems.append(f"unknown table {name!r}")
            continue
        if name in DENIED_TABLES:
            problems.append(f"table {name!r} may never be exported")
            continue
        planned_table = _plan_table(table, wanted, problems)
        if planned_table is not None:
            planned.append(planned_table)
    if problems:
        raise ValueError("; ".join(problems))
    return planned


def _plan_table(
    table: Table, wanted: Sequence[str] | str, problems: list[str]
) -> ExportTable | None:
    name = str(table.name)  # a plain str: orjson refuses str subclasses as keys
    before = len(problems)
    keys = list(table.primary_key.columns)
    changed = next((table.c[c] for c in CHANGE_COLUMNS if c in table.c), None)
    if len(keys) != 1 or keys[0].type.python_type not in (uuid.UUID, int):
        problems.append(f"table {name!r} has no single UUID or integer primary key")
    if changed is None:
        problems.append(f"table {name!r} has none of the columns {', '.join(CHANGE_COLUMNS)}")
    if wanted == "*":
        names = [c.name for c in table.columns if (name, c.name) not in DENIED_COLUMNS]
    elif isinstance(wanted, str):
        problems.append(f'table {name!r}: give a list of columns or "*"')
        names = []
    else:
        names = list(dict.fromkeys(wanted))
        for column in names:
            if column not in table.c:
                problems.append(f"unknown column {name}.{column}")
            elif (name, column) in DENIED_COLUMNS:
                problems.append(f"column {name}.{column} may never be exported")
    if len(problems) > before or changed is None:
        return None
    # The key and the change column always go along: readers deduplicate on them.
    if keys[0].name not in names:
        names.insert(0, keys[0].name)
    if changed.name not in names:
        names.append(changed.name)
    columns = tuple(table.c[column] for column in names)
    return ExportTable(name=name, columns=columns, key=keys[0], changed=changed)


def _deleted_users() -> ExportTable:
    users = Base.metadata.tables["users"]
    purged_at = users.c.purged_at
    return ExportTable(
        name=DELETED_USERS_TABLE, columns=(users.c.id, purged_at), key=users.c.id, changed=purged_at
    )


@dataclass(frozen=True)
class Watermark:
    changed_at: datetime
    key: str

    def as_json(self) -> dict[str, str]:
        return {"changed_at": _iso(self.changed_at), "key": self.key}


@dataclass(frozen=True)
class ExportedFile:
    key: str
    dt: str
    rows: int
    bytes: int


@dataclass
class TableExport:
    table: ExportTable
    since: Watermark | None
    until: Watermark | None = None
    rows: int = 0
    files: list[ExportedFile] = field(default_factory=list)
    complete: bool = True  # False: stopped at the time limit, more rows may be waiting


@dataclass(frozen=True)
class ExportResult:
    run_id: uuid.UUID
    rows: int
    files: list[str]
    manifest: str | None
    tables: dict[str, int]
    complete: bool  # False: the time limit stopped it; run again to continue
    source: str = "primary"  # where the rows were read: "primary" or "replica:<name>"


def run_export(
    sessions: sessionmaker[Session],
    sink: ExportSink,
    settings: Settings,
    *,
    now: datetime | None = None,
    clock: Callable[[], float] = time.monotonic,
    reads: ReadRouter | None = None,
) -> ExportResult:
    """Export every configured table's rows changed since its watermark; see the module doc.

    Raises ExportBusy if another export is running, ExportFailed if anything went wrong
    (the run is then recorded as failed with the error, and no watermark moved).
    """
    tables = [*plan_tables(settings.export_tables), _deleted_users()]
    started = now or utcnow()
    cutoff = started - timedelta(seconds=settings.export_safety_seconds)
    run_id = uuid.uuid4()
    deadline = clock() + settings.export_max_seconds
    with transaction(sessions) as session:
        session.add(ExportRun(id=run_id, started_at=started, status="running"))
    written: list[str] = []
    try:
        replica = reads.caught_up() if reads is not None else None
        source = f"replica:{replica.name}" if replica is not None else "primary"
        with (
            transaction(sessions) as session,
            _reader(replica, session) as reader,
        ):
            _hold_export_lock(session)
            _unbounded_statements(reader)
            exported = [
                _export_table(
                    session,
                    reader,
                    sink,
                    table,
                    run_id=run_id,
                    cutoff=cutoff,
                    part_rows=settings.export_part_rows,
                    written=written,
                    out_of_time=lambda: bool(written) and clock() >= deadline,
                )
                for table in tables
            ]
            rows = sum(t.rows for t in exported)
            files = [f.key for t in exported for f in t.files]
            complete = all(t.complete for t in exported)
            manifest = None
            if rows:
                manifest = f"{MANIFEST_PREFIX}{run_id}.json"
                body = _manifest(run_id, started, cutoff, exported, complete=complete)
                sink.put(manifest, body, content_type="application/json")
                written.append(manifest)
            for table_export in exported:
                _move_watermark(session, table_export, run_id)
            session.execute(
                update(ExportRun)
                .where(ExportRun.id == run_id)
                .values(status="succeeded", finished_at=utcnow(), rows=rows, files=files)
            )
    except Exception as exc:
        _discard(sink, written)
        _record_failure(sessions, run_id, exc)
        log.error("export failed", extra={"run_id": str(run_id)}, exc_info=exc)
        if isinstance(exc, ExportBusy):
            raise
        raise ExportFailed(f"The export run {run_id} failed; it can be run again.") from exc
    counts = {t.table.name: t.rows for t in exported}
    log.info(
        "export finished",
        extra={
            "run_id": str(run_id),
            "rows": rows,
            "tables": counts,
            "complete": complete,
            "source": source,
        },
    )
    return ExportResult(
        run_id=run_id,
        rows=rows,
        files=files,
        manifest=manifest,
        tables=counts,
        complete=complete,
        source=source,
    )


@contextmanager
def _reader(replica: Replica | None, primary: Session) -> Iterator[Session]:
    """Where the rows are read: a caught-up replica (off the primary's back) or the primary.

    The replica had replayed everything committed before the run started, so it holds every
    row older than the cutoff; the watermarks and the run's record stay on the primary.
    """
    if replica is None:
        yield primary
        return
    with replica.sessions() as session:
        yield session


def _unbounded_statements(session: Session) -> None:
    # A full scan of a large table may take longer than the web's statement timeout.
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SET LOCAL statement_timeout = 0"))


def _hold_export_lock(session: Session) -> None:
    """One run at a time, held until this transaction ends (PostgreSQL; SQLite is local)."""
    if session.get_bind().dialect.name != "postgresql":
        return
    if not session.execute(select(func.pg_try_advisory_xact_lock(LOCK_KEY))).scalar_one():
        raise ExportBusy("Another export is running; retry when it has finished.", retry_after=60)


def _export_table(
    session: Session,
    reader: Session,
    sink: ExportSink,
    table: ExportTable,
    *,
    run_id: uuid.UUID,
    cutoff: datetime,
    part_rows: int,
    written: list[str],
    out_of_time: Callable[[], bool],
) -> TableExport:
    """Stream the table's rows after its watermark into parts. Once `out_of_time()`, no
    new part is started (the run has made progress; the next one continues)."""
    mark = session.get(ExportWatermark, table.name)
    since = Watermark(mark.last_changed_at, mark.last_key) if mark else None
    if out_of_time():
        return TableExport(table=table, since=since, complete=False)
    query = select(*table.columns).where(table.changed < cutoff)
    if since is not None:
        after = tuple_(
            literal(since.changed_at, table.changed.type),
            literal(table.key.type.python_type(since.key), table.key.type),
        )
        query = query.where(tuple_(table.changed, table.key) > after)
    query = query.order_by(table.changed, table.key)

    result = TableExport(table=table, since=since)
    names = table.column_names
    changed_index, key_index = names.index(table.changed.name), names.index(table.key.name)
    part: _Part | None = None
    last: Any = None
    # yield_per implies stream_results: a server-side cursor, FETCH_ROWS at a time.
    rows = reader.execute(query, execution_options={"yield_per": FETCH_ROWS})
    try:
        for row in rows:
            day = row[changed_index].astimezone(UTC).date()
            if part is None or part.rows >= part_rows or part.day != day:
                if part is not None:
                    result.files.append(part.finish())
                    written.append(part.key)
                    part = None
                if out_of_time():
                    result.complete = False
                    break
                number = len(result.files) + 1
                key = f"{EXPORT_PREFIX}{table.name}/dt={day.isoformat()}/{run_id}-{number:05d}"
                part = _Part(sink, f"{key}.jsonl.gz", day)
            part.add(_line(names, row))
            last = row
        if part is not None:
            result.files.append(part.finish())
            written.append(part.key)
    except BaseException:
        if part is not None:
            part.abort()
        raise
    finally:
        rows.close()  # the server-side cursor, when the loop stopped early
    if last is not None:
        result.until = Watermark(last[changed_index], str(last[key_index]))
        result.rows = sum(f.rows for f in result.files)
    return result


class _Part:
    """One gzip JSON Lines object, compressed and sent as rows arrive."""

    def __init__(self, sink: ExportSink, key: str, day: date) -> None:
        self.key = key
        self.day = day
        self.rows = 0
        self._object: ExportObject = sink.open(key, content_type=PART_CONTENT_TYPE)
        self._gzip = zlib.compressobj(6, zlib.DEFLATED, 31)  # wbits 31: gzip framing
        self._done = False

    def add(self, line: bytes) -> None:
        compressed = self._gzip.compress(line)
        if compressed:
            self._object.write(compressed)
        self.rows += 1

    def finish(self) -> ExportedFile:
        self._object.write(self._gzip.flush())
        size = self._object.commit()
        self._done = True
        return ExportedFile(key=self.key, dt=self.day.isoformat(), rows=self.rows, bytes=size)

    def abort(self) -> None:
        if not self._done:
            self._object.abort()


def _line(names: list[str], row: Sequence[Any]) -> bytes:
    return orjson.dumps(
        dict(zip(names, row, strict=True)),
        default=_json_value,
        option=orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_APPEND_NEWLINE,
    )


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime(TIMESTAMP_FORMAT)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode()
    raise TypeError(f"cannot export a {type(value).__name__}")


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _manifest(
    run_id: uuid.UUID,
    started: datetime,
    cutoff: datetime,
    exported: list[TableExport],
    *,
    complete: bool,
) -> bytes:
    return orjson.dumps(
        {
            "run_id": str(run_id),
            "started_at": _iso(started),
            "cutoff": _iso(cutoff),
            "complete": complete,
            "format": "gzip JSON Lines; timestamps UTC as 'YYYY-MM-DD HH:MM:SS.ffffff'",
            "rows": sum(t.rows for t in exported),
            "tables": {
                t.table.name: {
                    "changed_column": t.table.changed.name,
                    "key_column": t.table.key.name,
                    "columns": t.table.column_names,
                    "rows": t.rows,
                    "complete": t.complete,
                    "since": _mark_json(t.since),
                    "until": _mark_json(t.until or t.since),
                    "files": [f.__dict__ for f in t.files],
                }
                for t in exported
            },
        },
        option=orjson.OPT_INDENT_2,
    )


def _mark_json(mark: Watermark | None) -> dict[str, str] | None:
    return mark.as_json() if mark else None


def _move_watermark(session: Session, exported: TableExport, run_id: uuid.UUID) -> None:
    if exported.until is None:
        return
    mark = session.get(ExportWatermark, exported.table.name)
    if mark is None:
        mark = ExportWatermark(table_name=exported.table.name)
        session.add(mark)
    mark.last_changed_at = exported.until.changed_at
    mark.last_key = exported.until.key
    mark.last_run_id = run_id
    mark.updated_at = utcnow()


def _discard(sink: ExportSink, keys: list[str]) -> None:
    """Delete a failed run's files (best effort: what remains is exported again anyway)."""
    if not keys:
        return
    try:
        sink.delete(keys)
    except Exception:
        log.warning("could not delete the files of a failed export", exc_info=True)


def _record_failure(sessions: sessionmaker[Session], run_id: uuid.UUID, exc: Exception) -> None:
    error = f"{type(exc).__name__}: {exc}"
    if exc.__cause__ is not None:
        error += f" (caused by {type(exc.__cause__).__name__}: {exc.__cause__})"
    try:
        with transaction(sessions) as session:
            session.execute(
                update(ExportRun)
                .where(ExportRun.id == run_id)
                .values(status="failed", finished_at=utcnow(), error=error[:2000], files=[])
            )
    except Exception:
        log.warning("could not record the failed export run", exc_info=True)
