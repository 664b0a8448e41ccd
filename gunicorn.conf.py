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
# Worker model, measured by bench/run.py (2 cores, PostgreSQL on loopback, wrk at 32 connections;
# 2026-11-22, product req/s):
#                        catalog  webhook ack  confirm  confirm, Toss answering in 300 ms
#   gthread 2 x 4 threads   2757      859          78      22 (p99 1.6 s)
#   sync, 4 workers         1787      770          94      12 (p99 2.7 s)
# On loopback the models are close (the sandbox answers in milliseconds); once Toss takes real
# time, each sync worker is stuck for the whole call, so gthread confirms ~2x as many and keeps
# serving the catalog while Toss is slow. Kept: gthread, 2 workers x 4 threads (~91 MB RSS each).
# gthread pins a keep-alive connection to the worker that accepted it; wrk's 32 connections
# often land 26/6 or 32/0, and that busy worker sets the p99 (bench/results/*.json records the
# spread).
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
worker_class = os.environ.get("GUNICORN_WORKER_CLASS", "gthread")
threads = int(os.environ.get("GUNICORN_THREADS", "4"))
# A confirmation may wait on Toss for the read timeout and its retries; never cut it off.
timeout = 120
graceful_timeout = 30
keepalive = int(os.environ.get("GUNICORN_KEEPALIVE", "5"))
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


def child_exit(server: Any, worker: Any) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]
