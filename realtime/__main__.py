"""`python -m realtime [--host H] [--port P]`: serve GET /v1/realtime until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import logging
import resource
import signal
import time

from api.request_log import configure_logging
from realtime.server import Hub, start_server
from services.base.settings import Settings, load_settings
from services.components import build_components

log = logging.getLogger("trellis.realtime")


def raise_open_file_limit() -> int:
    """Each socket is a file descriptor: lift the soft limit to the hard one (the hard
    limit itself is the system's; docs/realtime.md says how to raise it on Beanstalk)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1_048_576)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def watch_gc_pauses(threshold_seconds: float = 0.1) -> None:
    """Log the garbage collector's long pauses: with thousands of sockets a full collection
    walks every object, and the event loop (every socket) waits meanwhile."""
    started: list[float] = []

    def callback(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started[:] = [time.perf_counter()]
        elif started and (paused := time.perf_counter() - started[0]) >= threshold_seconds:
            log.warning(
                "gc pause",
                extra={"generation": info["generation"], "ms": round(paused * 1000), **info},
            )

    gc.callbacks.append(callback)


def realtime_settings(settings: Settings) -> Settings:
    """The web workers' background threads (outbox relay, export builder) stay off here."""
    return settings.model_copy(update={"outbox_relay_in_web": False, "data_exports_in_web": False})


async def serve_until_stopped(settings: Settings, host: str, port: int) -> None:
    hub = Hub(build_components(realtime_settings(settings)))
    # What was built so far (the modules, the settings, the engine) lives as long as the
    # process: out of the collector's full scans, which then walk the sockets' objects only.
    gc.collect()
    gc.freeze()
    watch_gc_pauses()
    server = await start_server(hub, host, port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    log.info(
        "realtime listening",
        extra={"host": host, "port": port, "open_files": raise_open_file_limit()},
    )
    await stop.wait()
    server.close(close_connections=True)  # 1001 going away: clients reconnect elsewhere
    await server.wait_closed()
    await hub.stop()
    hub.components.engine.dispose()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m realtime", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="behind nginx: loopback")
    parser.add_argument("--port", type=int, help="default: REALTIME_PORT (8001)")
    args = parser.parse_args(argv)
    settings = load_settings()
    configure_logging(settings.log_level)  # the web tier's JSON lines
    # websockets logs every handshake at INFO; failures still show.
    logging.getLogger("websockets").setLevel(logging.WARNING)
    if settings.worker_tasks_enabled:
        # The worker tier runs the same Procfile: no sockets reach it, so no LISTEN either.
        log.info("worker tier: the realtime process stays idle")
        stopping = {signal.SIGTERM, signal.SIGINT}
        signal.pthread_sigmask(signal.SIG_BLOCK, stopping)
        signal.sigwait(stopping)
        return
    asyncio.run(serve_until_stopped(settings, args.host, args.port or settings.realtime_port))


if __name__ == "__main__":
    main()
