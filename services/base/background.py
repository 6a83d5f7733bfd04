"""A web worker's background loop: a daemon thread that runs one job when woken after a
commit, and every `interval` seconds in case another process left work behind."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger("trellis.background")


class WakeableLoop:
    """Started on the first wake (never at import or start-up: a worker that is never asked
    runs no thread); one pass at a time, so the job's memory stays bounded."""

    def __init__(self, name: str, job: Callable[[], object], *, interval: float) -> None:
        self._name = name
        self._job = job
        self._interval = interval
        self._wake = threading.Event()
        self._started = False
        self._lock = threading.Lock()

    def wake(self) -> None:
        """Cheap and non-blocking: safe to call from a request thread after its commit."""
        if not self._started:
            with self._lock:
                if not self._started:
                    threading.Thread(target=self._run, name=self._name, daemon=True).start()
                    self._started = True
        self._wake.set()

    def _run(self) -> None:
        while True:
            self._wake.wait(self._interval)
            self._wake.clear()
            try:
                self._job()
            except Exception:  # the thread must outlive any one failure; the rows wait
                log.exception("%s pass failed", self._name)
