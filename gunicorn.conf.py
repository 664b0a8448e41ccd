"""gunicorn settings: `gunicorn app:app` (this file is read from the working directory).

Workers: gevent, one process per core (WEB_CONCURRENCY, 2 by default): a confirmation waits on
Toss for hundreds of milliseconds to seconds, and under gevent that wait costs a greenlet, not a
thread, so each process keeps serving up to GUNICORN_WORKER_CONNECTIONS requests at once.
Override with GUNICORN_WORKER_CLASS (gthread with GUNICORN_THREADS threads per worker) and
GUNICORN_BIND.

Before any worker starts, the master loads the app's configuration (payments/config.py, the one
place that refuses unsafe settings) told the real worker count: a refusal, e.g. several workers
in production without shared rate-limit storage, or no SECRET_KEY, prints one line and gunicorn
exits 1.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from types import ModuleType
from typing import Any

ROOT = os.path.dirname(os.path.abspath(__file__))

bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")
# gevent: the worker monkey-patches the standard library before it imports the app, so requests
# (the Toss client), psycopg, redis-py and the app's own threads yield while they wait. A fixed
# thread count would cap the confirmations in flight at the number of threads, however idle
# the CPU; under gevent the CPU is the limit, so one process per core. docs/benchmarks.md
# ("Serving model") compares the models.
workers = int(os.environ.get("WEB_CONCURRENCY") or "2")
worker_class = os.environ.get("GUNICORN_WORKER_CLASS", "gevent")
# Only for GUNICORN_WORKER_CLASS=gthread.
threads = int(os.environ.get("GUNICORN_THREADS", "4"))
# A confirmation may wait on Toss for the read timeout and its retries; never cut it off.
timeout = 120
# On SIGTERM a worker stops accepting and lets the requests in hand (a confirmation waiting on
# Toss) finish for this long.
graceful_timeout = 30
keepalive = int(os.environ.get("GUNICORN_KEEPALIVE", "5"))
# gevent: requests one process serves at once (each waiting on Toss or the database costs a
# greenlet); beyond it, connections wait in the listen backlog. A request takes a database
# connection only between its commits, never while Toss answers, so the SQLAlchemy pool
# serves them all in turn.
worker_connections = int(os.environ.get("GUNICORN_WORKER_CONNECTIONS", "1000"))
accesslog = os.environ.get("GUNICORN_ACCESS_LOG") or None

# Prometheus multiprocess mode: each worker writes samples here and /metrics merges them. Set
# before any worker imports the app (workers fork after this file is read).
_metrics_dir = os.environ.setdefault(
    "PROMETHEUS_MULTIPROC_DIR", os.path.join(tempfile.gettempdir(), f"shop-metrics-{os.getpid()}")
)


def on_starting(server: Any) -> None:
    # Stale files from an earlier run would be summed into this one's counters.
    shutil.rmtree(_metrics_dir, ignore_errors=True)
    os.makedirs(_metrics_dir, exist_ok=True)
    # The workers inherit this: their config sees how many processes count rate limits
    # (`-w` on the command line beats WEB_CONCURRENCY).
    os.environ["WEB_CONCURRENCY"] = str(server.cfg.workers)
    # A ConfigError is a RuntimeError: gunicorn prints "Error: <message>" and exits 1.
    _shop_config().load_config(instance_path=os.path.join(ROOT, "instance"), server="gunicorn")


def _shop_config() -> ModuleType:
    """payments/config.py alone: importing the package would load the whole app into the
    master, before it forks the workers (the app is imported in each worker)."""
    spec = importlib.util.spec_from_file_location(
        "shop_config", os.path.join(ROOT, "payments", "config.py")
    )
    if spec is None or spec.loader is None:
        raise RuntimeError("payments/config.py is missing beside gunicorn.conf.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def child_exit(server: Any, worker: Any) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]
