"""Run one export in a fresh process against moto's in-process S3 and report its peak memory.

    python -m tests.support.export_probe <database url> <EXPORT_TABLES json> <part rows>

Prints one JSON object: rows and files exported, the process's resident set size before the
export (after imports and a warm-up) and its peak during the export, sampled every 2 ms
from /proc/self/statm (getrusage's ru_maxrss cannot be used: start-up peaks above what an
export adds, so its high-water mark would not move). A fresh process keeps
the test runner's own heap out of the figure; RSS (not tracemalloc) also counts what libpq
buffers in C, which is where rows would pile up without a server-side cursor.
"""

from __future__ import annotations

import gzip
import json
import os
import sys
import threading
import time
from datetime import timedelta

PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * PAGE


class PeakSampler:
    def __init__(self) -> None:
        self.peak = rss_bytes()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.002):
            self.peak = max(self.peak, rss_bytes())

    def __enter__(self) -> PeakSampler:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_bytes())


def main(url: str, tables: str, part_rows: int) -> dict[str, object]:
    import boto3
    from moto import mock_aws
    from sqlalchemy import create_engine
    from sqlalchemy.orm import sessionmaker

    from models.base import utcnow
    from services.analytics.export import run_export
    from services.aws.exports import S3ExportStore
    from tests.conftest import make_settings

    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        store = S3ExportStore(bucket="trellis-exports-probe", region="us-east-1", kms_key_id=None)
        store.ensure_bucket()
        engine = create_engine(url)
        sessions = sessionmaker(bind=engine, expire_on_commit=False)
        later = utcnow() + timedelta(minutes=5)
        # Warm-up: connections, boto3's S3 client and the run bookkeeping, on no rows.
        warm = make_settings(url, EXPORT_TABLES='{"users": "*"}')
        run_export(sessions, store, warm, now=later)
        store.put("warm-up", b"x", content_type="text/plain")

        settings = make_settings(url, EXPORT_TABLES=tables, EXPORT_PART_ROWS=str(part_rows))
        before = rss_bytes()
        started = time.perf_counter()
        with PeakSampler() as sampler:
            result = run_export(sessions, store, settings, now=later)
        seconds = time.perf_counter() - started
        # Read it all back: every row there, once.
        s3 = boto3.client("s3", region_name="us-east-1")
        size, ids, rows_read = 0, set(), 0
        for key in result.files:
            data = s3.get_object(Bucket=store.bucket, Key=key)["Body"].read()
            size += len(data)
            for line in gzip.decompress(data).splitlines():
                ids.add(json.loads(line)["id"])
                rows_read += 1
        engine.dispose()
    return {
        "rows": result.rows,
        "files": len(result.files),
        "bytes": size,
        "rows_read": rows_read,
        "distinct_ids": len(ids),
        "seconds": round(seconds, 2),
        "rss_before": before,
        "rss_peak": sampler.peak,
        "peak_delta": sampler.peak - before,
    }


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], sys.argv[2], int(sys.argv[3]))))
