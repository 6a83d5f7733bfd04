"""gunicorn settings, each overridable from the environment. Defaults suit a 2-vCPU instance.

gthread with 2 workers x 4 threads measured best on 2 cores under wrk (beating 4 x 2 and
3 x 2: more processes than cores always lost; gevent gained nothing and had a 300-500 ms
p99). BENCHMARKS.md's notes hold the runs.
"""

import gc
import os


def _int(name: str, default: int) -> int:
    raw = os.environ.get(name, "")
    try:
        return int(raw) if raw else default
    except ValueError:
        raise SystemExit(f"{name} must be an integer, got {raw!r}") from None


bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")
worker_class = "gthread"
# Each worker listens on a socket of its own (SO_REUSEPORT) and the kernel spreads new
# connections over them. On one shared socket the worker that wakes first accepts whatever
# is queued, so nginx's or a client's burst of keep-alive connections could all land on one
# worker while the other idled (32/0 splits measured under wrk: BENCHMARKS.md).
reuse_port = True
workers = _int("WEB_CONCURRENCY", 2)
threads = _int("GUNICORN_THREADS", 4)
timeout = _int("GUNICORN_TIMEOUT", 30)
graceful_timeout = _int("GUNICORN_GRACEFUL_TIMEOUT", 30)
# Longer than nginx's upstream keep-alive so gunicorn never closes a connection nginx reuses.
keepalive = _int("GUNICORN_KEEPALIVE", 75)
max_requests = _int("GUNICORN_MAX_REQUESTS", 0)
max_requests_jitter = _int("GUNICORN_MAX_REQUESTS_JITTER", 0)
# Trellis writes its own JSON access line per request; gunicorn's would duplicate it.
accesslog = None
errorlog = "-"
loglevel = os.environ.get("GUNICORN_LOG_LEVEL", "info")
# gunicorn can refuse a request only with an HTML page, so its limits lie above nginx's and
# nginx, which answers in problem+json (.platform/nginx), is always the one that refuses.
# nginx passes request lines up to 8190 bytes, header lines up to 16 KiB and no more header
# lines than its 4 + 64 KiB of buffers hold (about 17,000); gunicorn takes request lines of
# 8190 bytes (its maximum), header lines (name and value) of 32 KiB and 32768 fields (its
# maximum). A token of Trellis's 8 KiB maximum (MAX_TOKEN_BYTES) thus reaches Trellis.
limit_request_line = _int("GUNICORN_LIMIT_REQUEST_LINE", 8190)
limit_request_field_size = _int("GUNICORN_LIMIT_REQUEST_FIELD_SIZE", 32768)
limit_request_fields = _int("GUNICORN_LIMIT_REQUEST_FIELDS", 32768)
# Headers from nginx on the same host only.
forwarded_allow_ips = "127.0.0.1"
# No control socket: nothing here uses gunicornc, and several instances on one host would collide.
control_socket_disable = True


def post_worker_init(worker: object) -> None:
    """The worker has imported the application: move what the import made (modules, models,
    schemas, the AWS SDK's data, some 130,000 objects) out of the cyclic collector's reach.
    A full collection walked all of them, about 20 ms with every thread of the worker
    stopped, which is where (f)'s p99 went (BENCHMARKS.md, issue 17); now it walks only
    what requests made since. The realtime process does the same (realtime/__main__.py)."""
    gc.collect()
    gc.freeze()
