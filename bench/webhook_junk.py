"""A real deposit during a flood of junk webhooks: how long until it is applied.

Starts, on loopback: a fake Toss whose every payment lookup takes 200 ms, the product under
gunicorn (gunicorn.conf.py's defaults) on a fresh PostgreSQL database, and
`flask payments worker` processes. A virtual-account order is confirmed through the shop
(AWAITING_DEPOSIT). Then unsigned PAYMENT_STATUS_CHANGED webhooks naming orders the shop never
had are posted from one address at --rate per second for --seconds; after --real-at seconds the
real status change (the account's deposit: Toss answers DONE) is posted among them. Reports the
seconds from posting the real event until the order is PAID, with the junk rate reached and the
Toss lookups made.

    .venv/bin/python bench/webhook_junk.py [--rate 1000] [--seconds 15] [--real-at 5]

The webhook rate limit (1200/min per address) would answer the flood 429 after its first
seconds; it is raised to 1000000/min here so that every junk event reaches the inbox.
`--root DIR` runs the same load against another checkout of the project (e.g. an older commit
exported with `git archive`). Needs PostgreSQL on 127.0.0.1:5432 (trust auth); writes
bench/results/webhook-junk-<date>.json.
"""

from __future__ import annotations

import argparse
import copy
import getpass
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import psycopg

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
PG = os.environ.get("BENCH_PG") or f"postgresql://{getpass.getuser()}@127.0.0.1:5432/postgres"
NO_LIMIT = "1000000 per minute"
REAL_PK = "tviva20261122130102Bench1"
VA_SECRET = "ps_BenchSecretWd46qopOB89gRbal"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class FakeToss(BaseHTTPRequestHandler):
    """Confirm answers at once (a virtual account, waiting for its deposit); every lookup takes
    `delay` seconds: the real payment is DONE once deposited, anything else is unknown."""

    delay = 0.2
    order: dict[str, Any] = {}
    deposited = threading.Event()
    lookups: dict[str, int] = {"real": 0, "other": 0}
    lock = threading.Lock()

    def payment(self, status: str) -> dict[str, Any]:
        body: dict[str, Any] = copy.deepcopy(
            json.loads(
                (
                    ROOT / "tests" / "fixtures" / "toss" / "payment_waiting_for_deposit.json"
                ).read_text(encoding="utf-8")
            )
        )
        amount = self.order["amount"]
        body.update(
            paymentKey=REAL_PK,
            orderId=self.order["order_id"],
            status=status,
            totalAmount=amount,
            balanceAmount=amount,
            suppliedAmount=amount - round(amount / 11),
            vat=round(amount / 11),
            secret=VA_SECRET,
            approvedAt="2026-11-22T13:05:00+09:00" if status == "DONE" else None,
        )
        return body

    def answer(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body, ensure_ascii=False).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path == "/v1/payments/confirm":
            self.answer(200, self.payment("WAITING_FOR_DEPOSIT"))
        else:
            self.answer(404, {"code": "NOT_FOUND", "message": "bench: not faked"})

    def do_GET(self) -> None:  # noqa: N802
        real = self.path == f"/v1/payments/{REAL_PK}"
        with self.lock:
            self.lookups["real" if real else "other"] += 1
        time.sleep(self.delay)
        if real:
            status = "DONE" if self.deposited.is_set() else "WAITING_FOR_DEPOSIT"
            self.answer(200, self.payment(status))
        else:
            self.answer(
                404, {"code": "NOT_FOUND_PAYMENT", "message": "존재하지 않는 결제 정보 입니다."}
            )

    def log_message(self, *args: Any) -> None:
        pass


def wait_http(port: int, path: str = "/healthz", timeout: float = 60) -> None:
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


def status_changed(order_id: str, payment_key: str, status: str) -> bytes:
    return json.dumps(
        {
            "eventType": "PAYMENT_STATUS_CHANGED",
            "createdAt": "2026-11-22T13:05:00.000000",
            "data": {
                "paymentKey": payment_key,
                "orderId": order_id,
                "status": status,
                "totalAmount": 1000,
            },
        }
    ).encode()


def post_webhook(conn: http.client.HTTPConnection, body: bytes) -> int:
    conn.request(
        "POST",
        "/api/payment/webhook",
        body=body,
        headers={
            "Content-Type": "application/json",
            "tosspayments-webhook-transmission-id": f"whtrans_{uuid.uuid4().hex}",
            "tosspayments-webhook-transmission-time": datetime.now(UTC).isoformat(),
        },
    )
    resp = conn.getresponse()
    resp.read()
    return resp.status


def make_order(root: Path, env: dict[str, str]) -> dict[str, Any]:
    """A PENDING order, made by the shop's own service in a child process of that checkout."""
    script = (
        "import json\n"
        "from sqlalchemy import select\n"
        "from payments import create_app\n"
        "from payments.core.models import Product\n"
        "from payments.extensions import db\n"
        "from payments.shop.catalog import Buyer, create_order\n"
        "app = create_app()\n"
        "with app.app_context():\n"
        "    pid = db.session.scalars(select(Product.id).order_by(Product.id)).first()\n"
        "    buyer = Buyer('김벤치', 'bench@example.com', '01012345678', '06236', '서울 강남구')\n"
        "    order = create_order({str(pid): 1}, 'cust_bench_webhook_junk', buyer)\n"
        "    import payments\n"
        "    print(json.dumps({'order_id': order.order_id, 'amount': order.amount,"
        " 'code': payments.__file__}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=root, env=env, check=True, capture_output=True
    )
    return dict(json.loads(out.stdout.decode().strip().splitlines()[-1]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=1000.0, help="junk webhooks per second")
    parser.add_argument("--seconds", type=float, default=15.0, help="how long the flood lasts")
    parser.add_argument("--real-at", type=float, default=5.0, help="when the real event is sent")
    parser.add_argument("--senders", type=int, default=16, help="connections sending junk")
    parser.add_argument("--workers", type=int, default=1, help="`flask payments worker`s")
    parser.add_argument("--toss-delay", type=float, default=0.2)
    parser.add_argument("--give-up", type=float, default=120.0)
    parser.add_argument("--root", type=Path, default=ROOT, help="the checkout to run")
    parser.add_argument(
        "--out", type=Path, help="JSON path (default bench/results/webhook-junk-<date>.json)"
    )
    args = parser.parse_args()
    root = args.root.resolve()
    FakeToss.delay = args.toss_delay

    db_name = f"bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{db_name}"')
    db_url = PG.rsplit("/", 1)[0] + f"/{db_name}"

    toss = ThreadingHTTPServer(("127.0.0.1", 0), FakeToss)
    threading.Thread(target=toss.serve_forever, daemon=True).start()
    port = free_port()
    env = {
        **os.environ,
        "APP_ENV": "development",
        "SECRET_KEY": "bench-secret-key-not-for-production",
        "DATABASE_URL": db_url,
        "TOSS_CLIENT_KEY": "test_gck_bench",
        "TOSS_SECRET_KEY": "test_gsk_bench",
        "TOSS_SANDBOX": "0",
        "TOSS_API_BASE": f"http://127.0.0.1:{toss.server_port}",
        "WEBHOOK_WORKER_EMBEDDED": "0",
        "GUNICORN_BIND": f"127.0.0.1:{port}",
        "RATELIMIT_WEBHOOK": NO_LIMIT,
        "RATELIMIT_CONFIRM": NO_LIMIT,
    }
    flask = [str(BIN / "flask"), "--app", "app"]
    subprocess.run([*flask, "db", "upgrade"], cwd=root, env=env, check=True, capture_output=True)
    subprocess.run([*flask, "seed"], cwd=root, env=env, check=True, capture_output=True)
    FakeToss.order = make_order(root, env)
    order_id = FakeToss.order["order_id"]

    # The app logs a line per webhook: to a file, not the terminal.
    log = tempfile.NamedTemporaryFile(  # noqa: SIM115 — closed after the processes stop
        prefix="webhook-junk-", suffix=".log", delete=False
    )
    procs = [
        subprocess.Popen(
            [str(BIN / "gunicorn"), "-c", "gunicorn.conf.py", "--log-level", "warning", "app:app"],
            cwd=root,
            env=env,
            stdout=log,
            stderr=log,
        )
    ]
    procs += [
        subprocess.Popen(
            [*flask, "payments", "worker", "--poll", "0.2"],
            cwd=root,
            env=env,
            stdout=log,
            stderr=log,
        )
        for _ in range(args.workers)
    ]
    result: dict[str, Any] = {}
    try:
        wait_http(port)
        # The shopper comes back from the virtual-account window: the shop confirms with Toss.
        query = urlencode(
            {
                "paymentType": "NORMAL",
                "orderId": order_id,
                "paymentKey": REAL_PK,
                "amount": FakeToss.order["amount"],
            }
        )
        shopper = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        shopper.request("GET", f"/checkout/success?{query}")
        shopper.getresponse().read()
        with psycopg.connect(db_url) as pg:
            status = pg.execute("SELECT status FROM orders WHERE order_id = %s", (order_id,))
            row = status.fetchone()
        if not row or row[0] != "AWAITING_DEPOSIT":
            raise RuntimeError(f"the order is {row}, not AWAITING_DEPOSIT")

        statuses: dict[int, int] = {}
        finished: list[float] = []
        lock = threading.Lock()
        start = time.monotonic()
        stop_at = start + args.seconds

        def sender(n: int) -> None:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            i = 0
            while True:
                due = start + (n + i * args.senders) / args.rate
                if due >= stop_at:
                    with lock:
                        finished.append(time.monotonic())
                    return
                if (wait := due - time.monotonic()) > 0:
                    time.sleep(wait)
                body = status_changed(f"junk-{n}-{i:07d}", f"tjunk{n}x{i}", "DONE")
                try:
                    code = post_webhook(conn, body)
                except OSError:
                    conn.close()
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                    code = 0
                with lock:
                    statuses[code] = statuses.get(code, 0) + 1
                i += 1

        threads = [threading.Thread(target=sender, args=(n,)) for n in range(args.senders)]
        for t in threads:
            t.start()

        time.sleep(max(0.0, start + args.real_at - time.monotonic()))
        FakeToss.deposited.set()
        real_conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        with lock:
            junk_before = sum(statuses.values())
        sent = time.monotonic()
        real_code = post_webhook(real_conn, status_changed(order_id, REAL_PK, "DONE"))
        acked = time.monotonic()
        applied: float | None = None
        backlog = None
        with psycopg.connect(db_url, autocommit=True) as pg:
            while time.monotonic() - sent < args.give_up:
                row = pg.execute(
                    "SELECT status FROM orders WHERE order_id = %s", (order_id,)
                ).fetchone()
                if row and row[0] == "PAID":
                    applied = time.monotonic()
                    backlog = pg.execute(
                        "SELECT count(*) FROM webhook_events WHERE status = 'PENDING'"
                    ).fetchone()
                    break
                time.sleep(0.02)
        for t in threads:
            t.join()
        flood = max(finished) - start
        sent_junk = sum(statuses.values())
        with psycopg.connect(db_url) as pg:
            counts: dict[str, int] = dict(
                pg.execute("SELECT status, count(*) FROM webhook_events GROUP BY status").fetchall()
            )
        result = {
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "root": str(root),
            "commit": subprocess.run(
                ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
            ).stdout.strip()
            if root == ROOT
            else "(other checkout)",
            "code_from": FakeToss.order["code"],
            "gunicorn": "gunicorn.conf.py defaults",
            "webhook_workers": args.workers,
            "toss_lookup_delay_s": args.toss_delay,
            "rate_limit": f"RATELIMIT_WEBHOOK={NO_LIMIT}",
            "junk_rate_asked_per_s": args.rate,
            "junk_sent": sent_junk,
            "junk_rate_reached_per_s": round(sent_junk / flood, 1),
            "junk_answers": statuses,
            "flood_lasted_s": round(flood, 1),
            "real_event_sent_at_s": round(sent - start, 2),
            "junk_answered_before_real_event": junk_before,
            "real_event_ack_ms": round((acked - sent) * 1000, 1),
            "real_event_http_status": real_code,
            "real_event_applied_after_s": round(applied - sent, 3) if applied else None,
            "pending_when_applied": backlog[0] if backlog else None,
            "toss_lookups": dict(FakeToss.lookups),
            "events_by_status_at_end": counts,
            "target": "real event applied within 5 s",
            "met": bool(applied and applied - sent < 5),
        }
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
        toss.shutdown()
        log.close()
        print(f"app and worker log: {log.name}", file=sys.stderr)
        with psycopg.connect(PG, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')

    out = args.out or ROOT / "bench" / "results" / f"webhook-junk-{datetime.now(UTC):%Y-%m-%d}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    print(json.dumps(result, indent=2, ensure_ascii=False))
    return 0 if result["met"] else 1


if __name__ == "__main__":
    sys.exit(main())
