"""gunicorn settings: `gunicorn app:app` (this file is read from the working directory).

Workers: gthread keeps a worker responsive while one thread waits up to TOSS_READ_TIMEOUT on
Toss; override with WEB_CONCURRENCY / GUNICORN_THREADS / GUNICORN_BIND (4 x 4 suits 2 cores:
scale WEB_CONCURRENCY with the cores).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Any

bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")
# Worker model, measured by bench/run.py (2 cores, PostgreSQL on loopback, wrk at 32 connections,
# 2026-12-01, several runs; product req/s, and its ratio to the bare stack in the same run):
#                         catalog     webhook ack (p99)     confirm     confirm, Toss taking 300 ms
#   gthread 4 x 4 threads 2692–3030  1097–1166 (73–96 ms)  163–196     30–39/s (p99 1.4–2.4 s)
#                         48–55 %    141–161 %             23–28 %
#   gthread 2 x 4 threads 2083–2777  918–1104 (64–130)     162–174     24/s (p99 1.4–2.1 s)
#                         46–68 %    136–155 %             24–28 %
#   gthread 4 x 2 threads 2322       1112 (86)             178         18/s (p99 3.3 s)
#   sync, 4 workers       2255–2773  1102–1154 (41–48)     175–193     12/s (p99 2.6 s)
#                         51–55 %    141–146 %             25–26 %
# On loopback the models are within the noise of each other (the sandbox answers in
# milliseconds). Once Toss takes real time, a sync worker is stuck for the whole call: 4 sync
# workers confirm 12 a second and serve nothing else meanwhile. Kept: gthread, 4 workers x 4
# threads (~90 MB RSS each): the most confirmations while Toss is slow, and with 4 processes the
# keep-alive connections (each stays with the worker that accepted it) spread wider than over
# 2, which kept the webhook p99 under 100 ms in every run (2 x 4 crossed it in two of five).
workers = int(os.environ.get("WEB_CONCURRENCY", "4"))
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
