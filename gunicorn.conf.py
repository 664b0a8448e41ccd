"""gunicorn settings: `gunicorn app:app` (this file is read from the working directory).

Workers: gthread keeps a worker responsive while one thread waits up to TOSS_READ_TIMEOUT on
Toss; override with WEB_CONCURRENCY / GUNICORN_THREADS / GUNICORN_BIND.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Any

bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
worker_class = os.environ.get("GUNICORN_WORKER_CLASS", "gthread")
threads = int(os.environ.get("GUNICORN_THREADS", "4"))
# A confirmation may wait on Toss for the read timeout and its retries; never cut it off.
timeout = 120
graceful_timeout = 30
keepalive = 5
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


def child_exit(server: Any, worker: Any) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]
