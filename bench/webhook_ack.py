"""Webhook acknowledgement latency while processing is slow.

Starts, on loopback: a fake Toss whose every payment lookup takes 2 s, the product under
gunicorn on a fresh PostgreSQL database, and two `flask payments worker` processes. Then posts
unique PAYMENT_STATUS_CHANGED webhooks from concurrent clients for a fixed time and reports
the acknowledgement latency (p50/p99) next to how far the slow workers got.

    .venv/bin/python bench/webhook_ack.py [--seconds 15] [--clients 16]

Needs PostgreSQL on 127.0.0.1:5432 (trust auth). Writes bench/results/webhook-ack-<date>.json.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psycopg

ROOT = Path(__file__).resolve().parents[1]
PG = os.environ.get("BENCH_PG", "postgresql://root@127.0.0.1:5432/postgres")
TOSS_DELAY = 2.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class SlowToss(BaseHTTPRequestHandler):
    """Every lookup takes TOSS_DELAY seconds and names a payment the shop does not know."""

    def do_GET(self) -> None:  # noqa: N802
        time.sleep(TOSS_DELAY)
        body = json.dumps(
            {"code": "NOT_FOUND_PAYMENT", "message": "존재하지 않는 결제 정보 입니다."}
        )
        data = body.encode()
        self.send_response(404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


def wait_http(port: int, path: str = "/", timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", path)
            conn.getresponse().read()
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"nothing answered on port {port}")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--gunicorn-workers", type=int, default=2)
    args = parser.parse_args()

    db_name = f"bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{db_name}"')
    db_url = PG.rsplit("/", 1)[0] + f"/{db_name}"

    toss = ThreadingHTTPServer(("127.0.0.1", 0), SlowToss)
    threading.Thread(target=toss.serve_forever, daemon=True).start()
    port = free_port()
    env = {
        **os.environ,
        "APP_ENV": "development",
        "SECRET_KEY": "bench-secret-key-not-for-production",
        "DATABASE_URL": db_url,
        "TOSS_CLIENT_KEY": "test_gck_sandbox",
        "TOSS_SECRET_KEY": "test_gsk_sandbox",
        "TOSS_SANDBOX": "0",
        "TOSS_API_BASE": f"http://127.0.0.1:{toss.server_port}",
        "TOSS_MAX_RETRIES": "0",
        "WEBHOOK_WORKER_EMBEDDED": "0",
        # The load is one client address; the webhook limit (1200/min per IP) would answer 429.
        "RATELIMIT_WEBHOOK": "1000000 per minute",
    }
    bin_dir = Path(sys.executable).parent
    subprocess.run(
        [str(bin_dir / "flask"), "--app", "app", "db", "upgrade"],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
    )
    procs = [
        subprocess.Popen(
            [
                str(bin_dir / "gunicorn"),
                "app:app",
                "-b",
                f"127.0.0.1:{port}",
                "-w",
                str(args.gunicorn_workers),
                "-k",
                "gthread",
                "--threads",
                "4",
                "--log-level",
                "warning",
            ],
            cwd=ROOT,
            env=env,
        )
    ]
    procs += [
        subprocess.Popen(
            [str(bin_dir / "flask"), "--app", "app", "payments", "worker", "--poll", "0.2"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(2)
    ]
    try:
        wait_http(port)
        latencies: list[float] = []
        statuses: dict[int, int] = {}
        lock = threading.Lock()
        stop_at = time.monotonic() + args.seconds

        def client(n: int) -> None:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            i = 0
            while time.monotonic() < stop_at:
                i += 1
                body = json.dumps(
                    {
                        "eventType": "PAYMENT_STATUS_CHANGED",
                        "createdAt": "2026-11-22T10:00:00.000000",
                        "data": {
                            "paymentKey": f"tbench{n}x{i}",
                            "orderId": f"bench-{n}-{i:06d}",
                            "status": "DONE",
                            "totalAmount": 1000,
                        },
                    }
                )
                tid = f"whtrans_{n}_{i}_{uuid.uuid4().hex[:6]}"
                headers = {
                    "Content-Type": "application/json",
                    "tosspayments-webhook-transmission-id": tid,
                    "tosspayments-webhook-transmission-time": "2026-11-22T10:00:00+09:00",
                }
                t0 = time.perf_counter()
                try:
                    conn.request("POST", "/api/payment/webhook", body=body, headers=headers)
                    resp = conn.getresponse()
                    resp.read()
                    status = resp.status
                except OSError:
                    conn.close()
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                    status = 0
                elapsed = time.perf_counter() - t0
                with lock:
                    latencies.append(elapsed)
                    statuses[status] = statuses.get(status, 0) + 1

        threads = [threading.Thread(target=client, args=(n,)) for n in range(args.clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        with psycopg.connect(db_url) as conn:
            stored = conn.execute("SELECT count(*) FROM webhook_events").fetchone()[0]
            handled = conn.execute(
                "SELECT count(*) FROM webhook_events WHERE status <> 'PENDING'"
            ).fetchone()[0]
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
        toss.shutdown()
        with psycopg.connect(PG, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')

    ms = [v * 1000 for v in latencies]
    result = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "seconds": args.seconds,
        "clients": args.clients,
        "gunicorn": f"{args.gunicorn_workers} gthread workers x 4 threads",
        "toss_lookup_delay_s": TOSS_DELAY,
        "requests": len(ms),
        "statuses": statuses,
        "requests_per_s": round(len(ms) / args.seconds, 1),
        "p50_ms": round(statistics.median(ms), 2),
        "p99_ms": round(percentile(ms, 99), 2),
        "max_ms": round(max(ms), 2),
        "events_stored": stored,
        "events_processed_meanwhile": handled,
        "target": "p99 < 200 ms",
        "met": percentile(ms, 99) < 200 and set(statuses) == {200},
    }
    out = ROOT / "bench" / "results" / f"webhook-ack-{datetime.now(UTC):%Y-%m-%d}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    print("| requests | req/s | p50 ms | p99 ms | max ms | stored | processed (2 s each) | met |")
    print("|---|---|---|---|---|---|---|---|")
    print(
        f"| {result['requests']} | {result['requests_per_s']} | {result['p50_ms']} | "
        f"{result['p99_ms']} | {result['max_ms']} | {stored} | {handled} | "
        f"{'yes' if result['met'] else 'NO'} |"
    )
    print(f"written to {out.relative_to(ROOT)}")
    return 0 if result["met"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
