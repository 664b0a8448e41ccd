"""Production-shape benchmark: the checkout while Toss takes its time, on this machine's cores.

    make bench        (or: .venv/bin/python bench/run.py [--quick] [--models default,gevent])

Everything runs on loopback, each piece as its own process, PostgreSQL on 127.0.0.1:5432 (trust
auth) and Redis on 127.0.0.1:6379:

- the Toss stand-in, `toss-sandbox serve --worker-class gevent --workers 2 --latency-ms N` on a
  PostgreSQL database of its own (bench/standin.py), restarted on the same port for each latency;
- the product as production runs it: `gunicorn app:app -c gunicorn.conf.py` (each --models entry
  one server; `default` is gunicorn.conf.py as it is) on a fresh PostgreSQL database, migrated
  and seeded, with rate-limit counters in Redis, and `flask payments worker` beside it. It runs
  APP_ENV=development with TOSS_SANDBOX=0, test keys and TOSS_API_BASE pointing at the stand-in:
  production mode refuses test keys and a plain-http Toss, so it cannot point at a local
  stand-in. The rate limits are raised out of the way (RATELIMIT_* = 1000000 per minute), the
  limiter still counts every request in Redis;
- the peers, confirming on the same stand-in: the bare Flask confirmation
  (bench/baseline_app.py, one `requests` POST and one insert, under each model's worker
  settings) and the Express one (bench/peers/express: one `fetch`, one insert through `pg`, one
  Node process like Toss's sample server).

Measures, with wrk (2 threads) on the same 2 cores:
  (a) confirmations/s, p50, p99 at Toss latency 0, 300 and 1000 ms with 256 shoppers (each
      `GET /checkout/success?…` consumes an order and a window prepared just before, confirmed
      once), and at 300 ms with 32; the stand-in alone first at each latency;
  (b) the webhook acknowledgement's p99 while 32 shoppers confirm at 300 ms (a paced sender of
      PAYMENT_STATUS_CHANGED events about the orders being paid);
  (c) the catalog `GET /` against the bare Jinja page, in alternating rounds;
  (d) the RSS of every process, at its largest after the product's measures; the total is the
      product's master and workers and the webhook worker (the stand-in and peers apart);
  (e) the peers at each latency with 256 shoppers;
  (f) the junk-webhook flood (bench/webhook_junk.py): how long a real event waits while 1,000
      junk events a second arrive.
Writes bench/results/<date>.json and prints a Markdown table with the targets; exits 1 when the
default model misses one.
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import standin  # noqa: E402
from harness import (  # noqa: E402
    BENCH,
    BIN,
    PG,
    ROOT,
    Proc,
    Run,
    create_db,
    drop_db,
    ensure_wrk,
    free_port,
    log,
    lua,
    sqlalchemy_url,
    start,
    wrk,
)
from standin import Order  # noqa: E402

NO_LIMIT = "1000000 per minute"
LATENCIES_MS = (0, 300, 1000)
SHOPPERS = 256
FEW_SHOPPERS = 32
WARM_SECONDS = 2.0

# Alternatives to gunicorn.conf.py's own settings (`default`), as the environment it reads.
MODELS: dict[str, dict[str, str]] = {
    "default": {},
    "gevent": {"GUNICORN_WORKER_CLASS": "gevent"},
    "gthread": {
        "GUNICORN_WORKER_CLASS": "gthread",
        "WEB_CONCURRENCY": "4",
        "GUNICORN_THREADS": "4",
    },
    "gthread4x32": {
        "GUNICORN_WORKER_CLASS": "gthread",
        "WEB_CONCURRENCY": "4",
        "GUNICORN_THREADS": "32",
    },
}

TARGETS = {
    "confirm_toss_300ms": "≥ 150/s and ≥ 50 % of the bare Flask confirm's best model",
    "confirm_toss_300ms_32": "p99 < 500 ms",
    "confirm_toss_1000ms": "≥ 100/s",
    "webhook_ack_under_load": "p99 < 100 ms",
    "catalog": "≥ 50 % of the bare page",
    "rss_mb_total": "≤ 600 MB",
    "junk_flood": "real event applied < 5 s",
}


def gunicorn_settings(extra: dict[str, str]) -> dict[str, str]:
    """What gunicorn.conf.py resolves to under `extra` (worker class, workers, threads…)."""
    env = {**os.environ, "SECRET_KEY": "print-config", **extra}
    out = subprocess.run(
        [str(BIN / "gunicorn"), "--print-config", "-c", "gunicorn.conf.py", "app:app"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    wanted = ("worker_class", "workers", "threads", "worker_connections")
    settings = {}
    for line in out.splitlines():
        name, _, value = line.partition("=")
        if name.strip() in wanted:
            settings[name.strip()] = value.strip()
    return settings


def label(settings: dict[str, str]) -> str:
    kind = settings["worker_class"].rsplit(".", 1)[-1].removesuffix("Worker").lower()
    kind = {"threadworker": "gthread", "syncworker": "sync", "gevent": "gevent"}.get(kind, kind)
    if kind == "gthread":
        return f"gthread {settings['workers']} x {settings['threads']} threads"
    if kind == "gevent":
        return f"gevent {settings['workers']} x {settings['worker_connections']} connections"
    return f"{kind} {settings['workers']} workers"


# -- the servers --------------------------------------------------------------------------------


@dataclass
class Bench:
    args: argparse.Namespace
    wrk_bin: str
    tmp: Path
    run_id: str
    product_db: str = ""
    toss_db: str = ""
    peers_db: str = ""
    toss_port: int = 0
    standin: Proc | None = None
    products: dict[str, Proc] = field(default_factory=dict)
    flasks: dict[str, Proc] = field(default_factory=dict)
    express: Proc | None = None
    worker: Proc | None = None
    rss_peak: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def toss(self) -> Proc:
        assert self.standin is not None
        return self.standin

    def product_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("TOSS_", "SANDBOX_"))}
        env.update(
            APP_ENV="development",
            SECRET_KEY="bench-secret-key-not-for-production-0123456789",
            DATABASE_URL=self.product_db,
            TOSS_SANDBOX="0",
            TOSS_CLIENT_KEY=standin.CLIENT_KEY,
            TOSS_SECRET_KEY=standin.SECRET_KEY,
            TOSS_API_BASE=f"http://127.0.0.1:{self.toss_port}{standin.API_BASE_PATH}",
            REDIS_URL="redis://127.0.0.1:6379/0",
            RATELIMIT_KEY_PREFIX=f"bench{self.run_id}",
            # Empty values beat a stray .env (python-dotenv never overrides what is set).
            PUBLIC_BASE_URL="",
            WEBHOOK_WORKER_EMBEDDED="0",
            RATELIMIT_CONFIRM=NO_LIMIT,
            RATELIMIT_WEBHOOK=NO_LIMIT,
            RATELIMIT_SHOP=NO_LIMIT,
            RATELIMIT_FAIL=NO_LIMIT,
        )
        env.pop("GUNICORN_ACCESS_LOG", None)
        return env

    def gunicorn(self, name: str, wsgi: str, env: dict[str, str], model: str) -> Proc:
        port = free_port()
        env = {
            **env,
            **MODELS[model],
            "GUNICORN_BIND": f"127.0.0.1:{port}",
            "PROMETHEUS_MULTIPROC_DIR": str(self.tmp / f"{name}-metrics"),
        }
        workers = int(gunicorn_settings(MODELS[model])["workers"])
        cmd = [str(BIN / "gunicorn"), wsgi, "-c", "gunicorn.conf.py", "--log-level", "warning"]
        return start(
            name, cmd, env, self.tmp, port=port, ready_path="/healthz", min_children=workers
        )

    def start_standin(self, latency_ms: int) -> None:
        if self.standin:
            self.standin.stop()
        self.standin = standin.serve(
            self.toss_db, latency_ms, self.args.standin_workers, self.tmp, port=self.toss_port
        )

    def start_product(self, model: str) -> Proc:
        """The product under `model` and the webhook worker beside it."""
        env = self.product_env()
        self.products[model] = self.gunicorn(f"product-{model}", "app:app", env, model)
        self.worker = start(
            "webhook-worker",
            [str(BIN / "flask"), "--app", "app", "payments", "worker", "--poll", "0.2"],
            env,
            self.tmp,
        )
        return self.products[model]

    def start_flask(self, model: str) -> Proc:
        env = {
            **os.environ,
            "BASELINE_DATABASE_URL": sqlalchemy_url(self.peers_db),
            "BASELINE_TOSS_API_BASE": self.product_env()["TOSS_API_BASE"],
            "BASELINE_TOSS_SECRET_KEY": standin.SECRET_KEY,
            "SECRET_KEY": "bench-secret-key-not-for-production-0123456789",
        }
        self.flasks[model] = self.gunicorn(
            f"peer-flask-{model}", "bench.baseline_app:app", env, model
        )
        return self.flasks[model]

    def start_express(self) -> Proc:
        self.express = start_express(self.tmp, self.peers_db, self.product_env()["TOSS_API_BASE"])
        return self.express

    def stop_all(self) -> None:
        for proc in [
            *self.products.values(),
            *self.flasks.values(),
            self.express,
            self.worker,
            self.standin,
        ]:
            if proc:
                proc.stop()

    def note_rss(self) -> None:
        """Keep, for each server, the snapshot of its processes with the largest total RSS."""
        groups: dict[str, Proc | None] = {
            "standin": self.standin,
            "webhook_worker": self.worker,
            "peer_express": self.express,
            **{f"product_{m}": p for m, p in self.products.items()},
            **{f"peer_flask_{m}": p for m, p in self.flasks.items()},
        }
        for name, proc in groups.items():
            if proc is None:
                continue
            now = proc.rss_mb()
            total = round(sum(now.values()), 1)
            if total > self.rss_peak.get(name, {}).get("total", 0.0):
                self.rss_peak[name] = {"total": total, "processes": list(now.values())}


def start_express(tmp: Path, database_url: str, toss_api_base: str) -> Proc:
    here = BENCH / "peers" / "express"
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        raise SystemExit("node and npm are needed for the Express peer (Node 20)")
    if not (here / "node_modules").is_dir():
        log("installing the Express peer's packages (npm ci)")
        subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund"],
            cwd=here,
            check=True,
            stdout=sys.stderr,
            timeout=300,
        )
    port = free_port()
    env = {
        **os.environ,
        "PORT": str(port),
        "DATABASE_URL": database_url,
        "TOSS_API_BASE": toss_api_base,
        "TOSS_SECRET_KEY": standin.SECRET_KEY,
    }
    return start(
        "peer-express", [node, str(here / "server.js")], env, tmp, port=port, ready_path="/healthz"
    )


# -- preparing what the load consumes -----------------------------------------------------------


def prepare_product(b: Bench, shop: Proc, count: int, key: str) -> Path:
    """`count` orders and windows, made by two processes at once."""
    started = time.monotonic()
    halves = [b.tmp / f"{key}-{i}.txt" for i in range(2)]
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                str(BENCH / "prepare_orders.py"),
                "--count",
                str(n),
                "--shop",
                shop.base,
                "--standin",
                b.toss.base,
                "--out",
                str(out),
            ],
            cwd=ROOT,
            env=b.product_env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for n, out in zip((count // 2, count - count // 2), halves, strict=True)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=600)
        if proc.returncode != 0:
            raise SystemExit(f"prepare_orders failed:\n{err.decode()[-3000:]}")
    out = b.tmp / f"{key}.txt"
    out.write_text("".join(half.read_text() for half in halves))
    log(f"  prepared {count} orders and windows in {time.monotonic() - started:.1f} s")
    return out


def prepare_peer(b: Bench, peer: Proc, count: int, key: str) -> Path:
    out = b.tmp / f"{key}.txt"
    started = time.monotonic()
    orders = [Order(f"peer-{uuid.uuid4().hex[:20]}", 10_000 + 100 * (i % 50)) for i in range(count)]
    paths = standin.open_windows(b.toss.base, orders, peer.base, threads=12)
    out.write_text("".join(p + "\n" for p in paths))
    log(f"  prepared {count} windows in {time.monotonic() - started:.1f} s")
    return out


def confirm_run(
    b: Bench, server: Proc, paths: Path, shoppers: int, seconds: float, measured: list[Proc]
) -> Run:
    count = sum(1 for _ in paths.open())
    run = wrk(
        b.wrk_bin,
        server.base + "/checkout/success",
        seconds,
        shoppers,
        lua(b.tmp, "confirm"),
        [str(paths), "2"],
        measured=measured,
    )
    # A wrk thread that used up its windows stopped early: the rate is then a lower bound.
    run.extra["prepared"] = count
    run.extra["ran_out"] = run.requests >= count - 2
    return run


def measure_confirms(
    b: Bench,
    server: Proc,
    latency_ms: int,
    shoppers: int,
    ceiling: float,
    key: str,
    *,
    product: bool,
) -> tuple[Run, Path]:
    """A short warm-up run tells how many windows the measured run will consume (each one is
    confirmed once), so that many are prepared, and no more than the stand-in alone could
    take; then the measured run. Its figures and its windows."""
    prepare = prepare_product if product else prepare_peer
    bound = ceiling * 1.25
    if latency_ms:
        bound = min(bound, shoppers / (latency_ms / 1000))
    warm = confirm_run(
        b, server, prepare(b, server, 2 * shoppers, key + "-warm"), shoppers, WARM_SECONDS, [server]
    )
    rate = bound if warm.extra["ran_out"] else min(bound, 1.5 * warm.rps + 20)
    paths = prepare(b, server, math.ceil(rate * b.args.seconds) + shoppers, key)
    run = confirm_run(b, server, paths, shoppers, b.args.seconds, [server])
    if run.extra["ran_out"]:
        log(f"  ran out of prepared windows ({run.extra['prepared']}): a lower bound")
    return run, paths


def show(name: str, run: Run) -> None:
    log(
        f"  {name:<34} {run.rps:7.1f}/s  p50 {run.p50_ms:7.1f} ms  p99 {run.p99_ms:7.1f} ms"
        f"  cpu {1000 * run.cpu_s / max(run.requests, 1):5.2f} ms/req  errors {run.errors}"
        f"  bad {run.bad}"
    )


# -- (b) webhooks while shoppers confirm --------------------------------------------------------


def webhook_sender(port: int, paths: Path, rate: float, seconds: float) -> dict[str, Any]:
    """POST PAYMENT_STATUS_CHANGED events about the orders being paid at `rate`/s (paced, as Toss
    sends them, not as fast as answers come) for `seconds`; each acknowledgement's latency."""
    events = []
    for line in paths.read_text().splitlines():
        query = dict(p.split("=", 1) for p in line.split("?", 1)[1].split("&"))
        events.append((query["orderId"], query["paymentKey"], int(query["amount"])))
    senders = 8
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    lock = threading.Lock()
    begin = time.monotonic() + 0.5

    def send(n: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        i = 0
        while True:
            due = begin + (n + i * senders) / rate
            if due >= begin + seconds:
                return
            if (wait := due - time.monotonic()) > 0:
                time.sleep(wait)
            order_id, payment_key, amount = events[(n + i * senders) % len(events)]
            body = json.dumps(
                {
                    "eventType": "PAYMENT_STATUS_CHANGED",
                    "createdAt": datetime.now(UTC).isoformat(timespec="microseconds")[:26],
                    "data": {
                        "paymentKey": payment_key,
                        "orderId": order_id,
                        "status": "DONE",
                        "totalAmount": amount,
                    },
                }
            )
            headers = {
                "Content-Type": "application/json",
                "tosspayments-webhook-transmission-id": f"whtrans_{uuid.uuid4().hex}",
                "tosspayments-webhook-transmission-time": datetime.now(UTC).isoformat(),
            }
            sent = time.perf_counter()
            try:
                conn.request("POST", "/api/payment/webhook", body=body, headers=headers)
                resp = conn.getresponse()
                resp.read()
                status = resp.status
            except OSError:
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                status = 0
            with lock:
                latencies.append(1000 * (time.perf_counter() - sent))
                statuses[status] = statuses.get(status, 0) + 1
            i += 1

    threads = [threading.Thread(target=send, args=(n,)) for n in range(senders)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    latencies.sort()

    def pct(p: float) -> float:
        return round(latencies[min(len(latencies) - 1, int(p * len(latencies)))], 1)

    return {
        "p50_ms": pct(0.50),
        "p99_ms": pct(0.99),
        "max_ms": round(latencies[-1], 1),
        "acks": len(latencies),
        "rate_per_s": rate,
        "statuses": statuses,
    }


# -- (c) the catalog ----------------------------------------------------------------------------


def catalog_pair(b: Bench, shop: Proc, bare: Proc, rounds: int) -> dict[str, Any]:
    """The catalog and the bare page in alternating rounds (a noisy neighbour hits both)."""
    plain = lua(b.tmp, None)
    seconds = b.args.seconds / rounds
    shop_runs, bare_runs = [], []
    wrk(b.wrk_bin, shop.base + "/", 2, FEW_SHOPPERS, plain)  # warm-up
    wrk(b.wrk_bin, bare.base + "/page", 2, FEW_SHOPPERS, plain)
    for _ in range(rounds):
        shop_runs.append(
            wrk(b.wrk_bin, shop.base + "/", seconds, FEW_SHOPPERS, plain, measured=[shop])
        )
        bare_runs.append(
            wrk(b.wrk_bin, bare.base + "/page", seconds, FEW_SHOPPERS, plain, measured=[bare])
        )

    def rate(runs: list[Run]) -> float:
        return sum(r.requests for r in runs) / sum(r.seconds for r in runs)

    result = {
        "rps": round(rate(shop_runs), 1),
        "bare_page_rps": round(rate(bare_runs), 1),
        "ratio": round(rate(shop_runs) / rate(bare_runs), 3),
        "p99_ms": round(max(r.p99_ms for r in shop_runs), 1),
        "bare_p99_ms": round(max(r.p99_ms for r in bare_runs), 1),
        "errors": sum(r.errors for r in shop_runs),
        "cpu_ms_per_request": round(
            1000 * sum(r.cpu_s for r in shop_runs) / max(sum(r.requests for r in shop_runs), 1), 2
        ),
    }
    log(
        f"  catalog {result['rps']}/s, bare page {result['bare_page_rps']}/s: {result['ratio']:.0%}"
    )
    return result


# -- (f) the junk flood -------------------------------------------------------------------------


def junk_flood(b: Bench) -> dict[str, Any]:
    out = b.tmp / "junk.json"
    cmd = [
        sys.executable,
        str(BENCH / "webhook_junk.py"),
        "--out",
        str(out),
        "--seconds",
        str(b.args.junk_seconds),
        "--real-at",
        str(b.args.junk_seconds / 3),
    ]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    if not out.exists():
        raise SystemExit(f"webhook_junk.py failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    data = json.loads(out.read_text())
    result = {
        "real_event_wait_s": data["real_event_applied_after_s"],
        "junk_rate_reached_per_s": data["junk_rate_reached_per_s"],
        "real_event_ack_ms": data["real_event_ack_ms"],
        "toss_lookups": data["toss_lookups"],
        "gunicorn": data["gunicorn"],
    }
    log(
        f"  junk flood: real event applied after {result['real_event_wait_s']} s "
        f"({result['junk_rate_reached_per_s']} junk/s)"
    )
    return result


# -- the run ------------------------------------------------------------------------------------


def measure(b: Bench, models: list[str]) -> dict[str, Any]:
    """One server at a time (with the stand-in restarted for each latency): their connection
    pools together stay within PostgreSQL's default 100 connections."""
    args = b.args
    alone: dict[int, Run] = {}
    product: dict[str, dict[str, Any]] = {m: {} for m in models}
    flask: dict[str, dict[str, Any]] = {m: {} for m in models}
    express: dict[str, Any] = {}
    ceiling: dict[int, float] = {}

    def standin_at(latency: int) -> None:
        b.start_standin(latency)
        log(f"Toss at {latency} ms")
        if latency in alone:
            return
        # The stand-in alone first: what no server confirming through it can exceed here.
        most = args.standin_ceiling if latency == 0 else SHOPPERS / (latency / 1000)
        count = math.ceil(most * args.alone_seconds) + SHOPPERS
        paths = prepare_peer(b, b.toss, count, f"alone-{latency}")
        alone[latency] = wrk(
            b.wrk_bin,
            b.toss.base + standin.API_BASE_PATH + "/v1/payments/confirm",
            args.alone_seconds,
            SHOPPERS,
            lua(b.tmp, "toss_confirm"),
            [str(paths), "2", standin.AUTHORIZATION],
            measured=[b.toss],
        )
        show("stand-in alone", alone[latency])
        ceiling[latency] = max(alone[latency].rps, 50.0)

    for model in models:
        log(f"product, {model}")
        shop = b.start_product(model)
        for latency in LATENCIES_MS:
            key = f"confirm_toss_{latency}ms"
            standin_at(latency)
            run, _ = measure_confirms(
                b, shop, latency, SHOPPERS, ceiling[latency], f"{key}-{model}", product=True
            )
            show(f"product {model}", run)
            product[model][key] = run.summary()
            b.note_rss()
            if latency == 300:
                run, _ = measure_confirms(
                    b,
                    shop,
                    latency,
                    FEW_SHOPPERS,
                    ceiling[latency],
                    f"{key}-32-{model}",
                    product=True,
                )
                show(f"product {model}, 32 shoppers", run)
                product[model][key + "_32"] = run.summary()
                product[model]["webhook_ack_under_load"] = webhook_under_load(b, shop, run, model)
                b.note_rss()
        # The catalog against the bare page (which touches no database) of the same model.
        bare = b.start_flask(model)
        log(f"catalog, {model}")
        product[model]["catalog"] = catalog_pair(b, shop, bare, args.rounds)
        for proc in (shop, b.worker):
            if proc:
                proc.stop()
        for latency in LATENCIES_MS:
            key = f"confirm_toss_{latency}ms"
            standin_at(latency)
            run, _ = measure_confirms(
                b, bare, latency, SHOPPERS, ceiling[latency], f"{key}-flask-{model}", product=False
            )
            show(f"peer flask {model}", run)
            flask[model][key] = run.summary()
            b.note_rss()
        bare.stop()

    peer = b.start_express()
    for latency in LATENCIES_MS:
        key = f"confirm_toss_{latency}ms"
        standin_at(latency)
        run, _ = measure_confirms(
            b, peer, latency, SHOPPERS, ceiling[latency], f"{key}-express", product=False
        )
        show("peer express", run)
        express[key] = run.summary()
        b.note_rss()
    peer.stop()

    webhook = {m: product[m].pop("webhook_ack_under_load") for m in models}
    return {
        "standin_alone": {f"confirm_toss_{k}ms": v.summary() for k, v in alone.items()},
        "product": product,
        "peer_flask": flask,
        "peer_express": express,
        "webhook_ack_under_load": webhook,
    }


def webhook_under_load(b: Bench, shop: Proc, few: Run, model: str) -> dict[str, Any]:
    """32 shoppers confirm at 300 ms (as many windows as `few`, the same load, consumed)
    while Toss's webhooks about their orders arrive."""
    args = b.args
    paths = prepare_product(b, shop, few.extra["prepared"], f"webhook-load-{model}")
    result: dict[str, Any] = {}

    def hooks() -> None:
        result.update(webhook_sender(shop.port, paths, args.webhook_rate, args.seconds - 1))

    sender = threading.Thread(target=hooks)
    sender.start()
    run = confirm_run(b, shop, paths, FEW_SHOPPERS, args.seconds, [shop])
    sender.join()
    show("confirm while webhooks arrive", run)
    log(
        f"  webhook ack p50 {result['p50_ms']} ms, p99 {result['p99_ms']} ms "
        f"({result['acks']} at {args.webhook_rate}/s, answers {result['statuses']})"
    )
    result["confirm_meanwhile"] = run.summary()
    return result


def best_flask(flask: dict[str, dict[str, Any]], key: str) -> tuple[str, dict[str, Any]]:
    model = max(flask, key=lambda m: flask[m][key]["rps"])
    return model, flask[model][key]


def report(
    b: Bench, models: list[str], labels: dict[str, str], m: dict[str, Any], junk: dict[str, Any]
) -> dict[str, Any]:
    """The figures of the default model at the top level (what gunicorn.conf.py ships), every
    model's under `models`."""
    default = models[0]
    shop = m["product"][default]
    out: dict[str, Any] = {}
    for latency in LATENCIES_MS:
        key = f"confirm_toss_{latency}ms"
        model, peer = best_flask(m["peer_flask"], key)
        entry = {k: shop[key][k] for k in ("rps", "p50_ms", "p99_ms", "bad_answers", "ran_out")}
        entry["peer_flask"] = {
            **{k: peer[k] for k in ("rps", "p50_ms", "p99_ms", "bad_answers")},
            "model": model,
        }
        ex = m["peer_express"][key]
        entry["peer_express"] = {k: ex[k] for k in ("rps", "p50_ms", "p99_ms", "bad_answers")}
        entry["ratio_to_peer_flask"] = round(shop[key]["rps"] / max(peer["rps"], 0.1), 3)
        entry["ratio_to_peer_express"] = round(shop[key]["rps"] / max(ex["rps"], 0.1), 3)
        entry["standin_alone"] = {
            k: m["standin_alone"][key][k] for k in ("rps", "p50_ms", "p99_ms")
        }
        out[key] = entry
    few = shop["confirm_toss_300ms_32"]
    out["confirm_toss_300ms_32"] = {k: few[k] for k in ("rps", "p50_ms", "p99_ms", "bad_answers")}
    hook = m["webhook_ack_under_load"][default]
    out["webhook_ack_under_load"] = {k: v for k, v in hook.items() if k != "confirm_meanwhile"}
    out["catalog"] = {k: shop["catalog"][k] for k in ("rps", "ratio", "bare_page_rps")}
    # What production runs on the shop's machines; Toss (the stand-in) and the peers apart.
    rss = b.rss_peak
    counted = [f"product_{default}", "webhook_worker"]
    out["rss_mb_total"] = round(sum(rss.get(name, {}).get("total", 0.0) for name in counted), 1)
    out["rss_mb"] = {
        "counted_in_total": {name: rss.get(name, {}) for name in counted},
        "not_counted": {k: v for k, v in rss.items() if k not in counted},
    }
    out["junk_flood"] = junk
    out["model"] = {"name": default, "gunicorn": labels[default]}
    return out


def verdicts(top: dict[str, Any]) -> dict[str, bool]:
    c300, c1000 = top["confirm_toss_300ms"], top["confirm_toss_1000ms"]
    wait = top["junk_flood"]["real_event_wait_s"]
    return {
        "confirm_toss_300ms": c300["rps"] >= 150
        and c300["ratio_to_peer_flask"] >= 0.5
        and c300["bad_answers"] == 0,
        "confirm_toss_300ms_32": top["confirm_toss_300ms_32"]["p99_ms"] < 500
        and top["confirm_toss_300ms_32"]["bad_answers"] == 0,
        "confirm_toss_1000ms": c1000["rps"] >= 100 and c1000["bad_answers"] == 0,
        "webhook_ack_under_load": top["webhook_ack_under_load"]["p99_ms"] < 100,
        "catalog": top["catalog"]["ratio"] >= 0.5,
        "rss_mb_total": top["rss_mb_total"] <= 600,
        "junk_flood": wait is not None and wait < 5,
    }


def markdown(
    top: dict[str, Any], ok: dict[str, bool], models: dict[str, Any], labels: dict[str, str]
) -> str:
    def mark(key: str) -> str:
        return "yes" if ok[key] else "**no**"

    def conf(e: dict[str, Any]) -> str:
        return f"{e['rps']:.0f}/s, p50 {e['p50_ms']:.0f} ms, p99 {e['p99_ms']:.0f} ms"

    lines = [
        f"Product: {top['model']['gunicorn']} (`{top['model']['name']}`).",
        "",
        "| measure | product | bare Flask (best model) | Express | stand-in alone | target | met |",
        "|---|---|---|---|---|---|---|",
    ]
    for latency in LATENCIES_MS:
        key = f"confirm_toss_{latency}ms"
        e = top[key]
        target = TARGETS.get(key, "")
        lines.append(
            f"| confirm, Toss {latency} ms, 256 shoppers | {conf(e)} | "
            f"{conf(e['peer_flask'])} ({e['peer_flask']['model']}; product "
            f"{e['ratio_to_peer_flask']:.0%}) | {conf(e['peer_express'])} (product "
            f"{e['ratio_to_peer_express']:.0%}) | {conf(e['standin_alone'])} | {target} | "
            f"{mark(key) if key in ok else 'recorded'} |"
        )
    few = top["confirm_toss_300ms_32"]
    hook, cat, junk = top["webhook_ack_under_load"], top["catalog"], top["junk_flood"]
    lines += [
        f"| confirm, Toss 300 ms, 32 shoppers | {conf(few)} | | | | p99 < 500 ms | "
        f"{mark('confirm_toss_300ms_32')} |",
        f"| webhook ack while 32 shoppers confirm at 300 ms | p50 {hook['p50_ms']:.0f} ms, "
        f"p99 {hook['p99_ms']:.0f} ms ({hook['rate_per_s']:.0f}/s sent) | | | | p99 < 100 ms | "
        f"{mark('webhook_ack_under_load')} |",
        f"| catalog `GET /` | {cat['rps']:.0f}/s | bare page {cat['bare_page_rps']:.0f}/s | | | "
        f"≥ 50 % (here {cat['ratio']:.0%}) | {mark('catalog')} |",
        f"| RSS, product (master + workers) and webhook worker | {top['rss_mb_total']:.0f} MB"
        f" | | | {top['rss_mb']['not_counted'].get('standin', {}).get('total', 0):.0f} MB | "
        f"≤ 600 MB | {mark('rss_mb_total')} |",
        f"| junk flood: a real event's wait at 1,000 junk/s | {junk['real_event_wait_s']} s | | "
        f"| | < 5 s | {mark('junk_flood')} |",
    ]
    if len(models) > 1:
        lines += [
            "",
            "| model | gunicorn | confirm/s Toss 0 / 300 / 1000 ms | p99 ms at 300 ms | "
            "32 shoppers p99 ms | webhook ack p99 ms | catalog ratio | bare Flask confirm/s "
            "0 / 300 / 1000 ms |",
            "|---|---|---|---:|---:|---:|---:|---|",
        ]
        for name, r in models.items():
            p, f = r["product"], r["peer_flask"]
            lines.append(
                f"| {name} | {labels[name]} | "
                + " / ".join(f"{p[f'confirm_toss_{x}ms']['rps']:.0f}" for x in LATENCIES_MS)
                + f" | {p['confirm_toss_300ms']['p99_ms']:.0f} | "
                f"{p['confirm_toss_300ms_32']['p99_ms']:.0f} | {r['webhook_p99_ms']:.0f} | "
                f"{p['catalog']['ratio']:.0%} | "
                + " / ".join(f"{f[f'confirm_toss_{x}ms']['rps']:.0f}" for x in LATENCIES_MS)
                + " |"
            )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="a short run of the default model for development"
    )
    choices = ", ".join(MODELS)
    parser.add_argument(
        "--models",
        default="default,gevent,gthread",
        help=f"comma-separated, the first is reported at the top: {choices} "
        "(ones gunicorn.conf.py resolves alike run once)",
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="per measured wrk run")
    parser.add_argument(
        "--alone-seconds", type=float, default=5.0, help="the stand-in alone, per latency"
    )
    parser.add_argument("--rounds", type=int, default=2, help="catalog/bare page rounds")
    parser.add_argument("--standin-workers", type=int, default=2)
    parser.add_argument(
        "--standin-ceiling",
        type=float,
        default=500.0,
        help="confirms/s prepared for the stand-in alone at Toss 0 ms",
    )
    parser.add_argument(
        "--webhook-rate", type=float, default=100.0, help="webhooks/s sent during (b)"
    )
    parser.add_argument("--junk-seconds", type=float, default=15.0)
    parser.add_argument("--out", default="", help="JSON path (default bench/results/<date>.json)")
    args = parser.parse_args()
    if args.quick:
        args.models = args.models.split(",")[0]
        args.seconds, args.alone_seconds, args.rounds, args.junk_seconds = 4.0, 3.0, 1, 6.0
    wanted = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in wanted if m not in MODELS]
    if unknown or not wanted:
        parser.error(f"unknown model(s): {', '.join(unknown) or '(none)'}")

    started = time.monotonic()
    load_at_start = os.getloadavg()
    wrk_bin = ensure_wrk()
    try:
        socket.create_connection(("127.0.0.1", 6379), timeout=2).close()
    except OSError:
        raise SystemExit("Redis is not answering on 127.0.0.1:6379") from None
    # Models gunicorn.conf.py resolves to the same settings run once (under the first name).
    labels: dict[str, str] = {}
    for name in wanted:
        text = label(gunicorn_settings(MODELS[name]))
        if text not in labels.values():
            labels[name] = text
    models = list(labels)
    log("models: " + "; ".join(f"{k} = {v}" for k, v in labels.items()))

    run_id = uuid.uuid4().hex[:8]
    names = {k: f"bench_{run_id}_{k}" for k in ("shop", "toss", "peers")}
    with tempfile.TemporaryDirectory(prefix="shop-bench-") as tmp_name:
        b = Bench(args, wrk_bin, Path(tmp_name), run_id)
        try:
            b.product_db = create_db(names["shop"])
            b.toss_db = create_db(names["toss"])
            b.peers_db = create_db(names["peers"])
            setup_databases(b)
            b.toss_port = free_port()
            measured = measure(b, models)
        finally:
            b.stop_all()
            for name in names.values():
                drop_db(name)
        log("junk-webhook flood")
        junk = junk_flood(b)

    per_model = {
        name: {
            "gunicorn": labels[name],
            "product": measured["product"][name],
            "peer_flask": measured["peer_flask"][name],
            "webhook_p99_ms": measured["webhook_ack_under_load"][name]["p99_ms"],
            "webhook_ack_under_load": measured["webhook_ack_under_load"][name],
        }
        for name in models
    }
    top = report(b, models, labels, measured, junk)
    ok = verdicts(top)
    table = markdown(top, ok, per_model, labels)
    now = datetime.now(UTC)
    wrk_version = subprocess.run([wrk_bin, "-v"], capture_output=True, text=True).stdout
    result = {
        "date": now.isoformat(timespec="seconds"),
        **top,
        "targets": TARGETS,
        "verdicts": ok,
        "models": per_model,
        "peer_express": measured["peer_express"],
        "standin_alone": measured["standin_alone"],
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "kernel": platform.release(),
            # Other work on the machine takes its share of the 2 cores from every figure.
            "load_average_at_start": load_at_start,
            "load_average_at_end": os.getloadavg(),
            "postgresql": PG.rsplit("/", 1)[0].split("@")[-1],
        },
        "method": {
            "tool": wrk_version.split(" Copyright")[0].strip(),
            "wrk_threads": 2,
            "seconds_per_run": args.seconds,
            "standin": f"toss-sandbox serve --worker-class gevent --workers "
            f"{args.standin_workers} --latency-ms N, PostgreSQL, webhooks off",
            "product": "gunicorn app:app -c gunicorn.conf.py, PostgreSQL, Redis rate limits "
            f"(RATELIMIT_* = {NO_LIMIT}), flask payments worker; APP_ENV=development, "
            "TOSS_SANDBOX=0, test keys, TOSS_API_BASE = the stand-in",
            "rss_mb_total": "largest RSS seen of the product's master and workers and the webhook "
            "worker (what runs on the shop's machines); the stand-in and the peers apart",
            "server_cpu_ms_per_request": "the server's master and workers' user+system CPU over "
            "the run / requests",
        },
        "elapsed_s": round(time.monotonic() - started, 1),
        "table": table,
    }
    out = Path(args.out) if args.out else BENCH / "results" / f"{now:%Y-%m-%d}.json"
    n = 1
    while not args.out and out.exists():  # an earlier run of the day keeps its file
        n += 1
        out = BENCH / "results" / f"{now:%Y-%m-%d}-{n}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    print(table)
    print()
    shown = out.relative_to(ROOT) if out.is_relative_to(ROOT) else out
    print(f"{result['elapsed_s']} s; written to {shown}")
    return 0 if all(ok.values()) else 1


def setup_databases(b: Bench) -> None:
    """The product's database migrated and seeded with stock for every prepared order; the
    peers' tables."""
    import psycopg

    env = b.product_env()
    for command in (["db", "upgrade"], ["seed"]):
        done = subprocess.run(
            [str(BIN / "flask"), "--app", "app", *command],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
        )
        if done.returncode != 0:
            raise SystemExit(f"flask {' '.join(command)} failed:\n{done.stderr[-3000:]}")
    with psycopg.connect(b.product_db, autocommit=True) as conn:
        has_stock = conn.execute(
            "SELECT 1 FROM information_schema.columns "
            "WHERE table_name = 'products' AND column_name = 'stock'"
        ).fetchone()
        if has_stock:
            conn.execute("UPDATE products SET stock = 100000000")
    with psycopg.connect(b.peers_db, autocommit=True) as conn:
        for table in ("baseline_confirms", "express_confirms"):
            conn.execute(
                f"CREATE TABLE {table} (id BIGSERIAL PRIMARY KEY, order_id TEXT NOT NULL, "
                "payment_key TEXT NOT NULL, status TEXT NOT NULL, payment TEXT NOT NULL, "
                "created_at TIMESTAMPTZ NOT NULL)"
            )
        conn.execute(
            "CREATE TABLE baseline_hits (id BIGSERIAL PRIMARY KEY, body TEXT NOT NULL, "
            "created_at TIMESTAMPTZ NOT NULL)"
        )
    log("databases ready (product migrated and seeded, stand-in's empty, peers' tables)")


if __name__ == "__main__":
    raise SystemExit(main())
