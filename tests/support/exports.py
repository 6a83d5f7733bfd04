"""Stand-ins and wrappers at the export sink boundary, and readers of what an export wrote."""

from __future__ import annotations

import gzip
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from services.aws.exports import ExportObject, ExportSink
from services.aws.s3 import StorageUnavailable


@dataclass
class _MemoryObject:
    sink: FakeExportSink
    key: str
    data: bytearray = field(default_factory=bytearray)

    def write(self, data: bytes) -> None:
        self.sink.check()
        self.data += data

    def commit(self) -> int:
        self.sink.check()
        self.sink.objects[self.key] = bytes(self.data)
        return len(self.data)

    def abort(self) -> None:
        self.sink.aborted.append(self.key)


@dataclass
class FakeExportSink:
    """An in-memory bucket; `down` makes every call fail like an S3 outage."""

    bucket: str = "fake-exports"
    objects: dict[str, bytes] = field(default_factory=dict)
    aborted: list[str] = field(default_factory=list)
    down: bool = False

    def check(self) -> None:
        if self.down:
            raise StorageUnavailable("simulated outage")

    def open(self, key: str, *, content_type: str) -> ExportObject:
        self.check()
        return _MemoryObject(self, key)

    def put(self, key: str, body: bytes, *, content_type: str) -> None:
        self.check()
        self.objects[key] = body

    def delete(self, keys: Sequence[str]) -> None:
        self.check()
        for key in keys:
            self.objects.pop(key, None)

    def ensure_bucket(self) -> list[str]:
        return ["fake export bucket"]


@dataclass
class _FailingObject:
    inner: ExportObject
    fail_after_bytes: int
    written: int = 0

    def write(self, data: bytes) -> None:
        if self.written + len(data) > self.fail_after_bytes:
            raise StorageUnavailable("simulated failure in the middle of an upload")
        self.inner.write(data)
        self.written += len(data)

    def commit(self) -> int:
        return self.inner.commit()

    def abort(self) -> None:
        self.inner.abort()


@dataclass
class FailingSink:
    """Wraps a real sink; the `fail_on_part`-th object opened fails once `fail_after_bytes`
    of it have gone up (0: on its first write)."""

    inner: ExportSink
    fail_on_part: int
    fail_after_bytes: int = 0
    opened: int = 0

    @property
    def bucket(self) -> str:
        return self.inner.bucket

    def open(self, key: str, *, content_type: str) -> ExportObject:
        self.opened += 1
        opened = self.inner.open(key, content_type=content_type)
        if self.opened == self.fail_on_part:
            return _FailingObject(opened, self.fail_after_bytes)
        return opened

    def put(self, key: str, body: bytes, *, content_type: str) -> None:
        self.inner.put(key, body, content_type=content_type)

    def delete(self, keys: Sequence[str]) -> None:
        self.inner.delete(keys)

    def ensure_bucket(self) -> list[str]:
        return self.inner.ensure_bucket()


def jsonl_rows(data: bytes) -> list[dict[str, Any]]:
    """The rows of one gzip JSON Lines part."""
    return [orjson.loads(line) for line in gzip.decompress(data).splitlines()]
