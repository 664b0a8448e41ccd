"""Checkout benchmark: the product against the bare Flask stack, same machine, same run.

    make bench        (or: .venv/bin/python bench/run.py [--seconds 10] [--models gthread,sync])

On loopback with PostgreSQL (127.0.0.1:5432, trust auth), for each gunicorn worker model:
  1. starts the bare baseline (bench/baseline_app.py: a text route, a Jinja page, one
     SQLAlchemy insert) and the product (`app:app`), both with `-c gunicorn.conf.py` and the same
     worker settings, each on a fresh PostgreSQL database (the product's migrated and seeded);
  2. drives each with `wrk` (installed with apt-get when missing) at 32 connections for a fixed
     time, in pairs measured in alternating rounds: catalog `GET /` vs the baseline page; webhook
     acknowledgement `POST /api/payment/webhook` vs the baseline insert; the full confirmation
     (`GET /checkout/success?…` for orders and approved sandbox windows prepared just before,
     confirmed server-side with the in-process sandbox) vs the same baseline insert; and, to
     compare worker models the way production loads them, the confirmation again with the
     sandbox taking --toss-latency seconds to answer, as Toss does over the internet;
  3. records requests/s, p50, p99, the workers' CPU time per request, each worker's RSS and the
     ratios to the baseline.
Writes bench/results/<date>.json and prints Markdown tables with the targets.

The product runs as close to production as the in-process sandbox allows: APP_ENV=development
(production refuses the sandbox) with SECRET_KEY set, the webhook worker NOT embedded (as in
production, where `flask payments worker` runs beside the web servers), the sandbox's own
webhook sender off, and rate limits raised out of the way (RATELIMIT_* = 1000000 per minute) —
the limiter itself still runs on every request, with in-memory counters. wrk sends no cookies:
every catalog view is a first visit (a new session and CSRF token).
"""

from __future__ import annotations

import argparse
import getpass
import json
import math
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
BIN = Path(sys.executable).parent
# Local trust auth as the current user, like scripts/pytest-postgres; BENCH_PG picks another.
PG = os.environ.get("BENCH_PG") or f"postgresql://{getpass.getuser()}@127.0.0.1:5432/postgres"
NO_LIMIT = "1000000 per minute"
TICK = os.sysconf("SC_CLK_TCK")

# Targets from the issue: the product's share of the bare stack in the same run (2 cores).
TARGETS: dict[str, dict[str, Any]] = {
    "catalog": {"ratio": 0.50, "baseline": "baseline_page"},
    "webhook": {"ratio": 0.60, "baseline": "baseline_insert", "p99_ms": 100.0},
    # Its own rounds of the bare insert, alternating with the confirmation's.
    "confirm": {"ratio": 0.25, "baseline": "baseline_insert_c"},
}
RSS_TARGET_MB = 120.0

# name → (gunicorn worker class, workers, threads per worker, other gunicorn.conf.py settings).
# "gthread" is gunicorn.conf.py's default; the others are what it was chosen against.
MODELS: dict[str, tuple[str, int, int, dict[str, str]]] = {
    "gthread": ("gthread", 4, 4, {}),
    "sync": ("sync", 4, 1, {}),
    "gthread2x4": ("gthread", 2, 4, {}),
    "gthread4x2": ("gthread", 4, 2, {}),
    "gthread2x8": ("gthread", 2, 8, {}),
    # Keep-alive off: every request is a new connection, taken by whichever worker is free.
    "gthread-close": ("gthread", 4, 4, {"GUNICORN_KEEPALIVE": "0"}),
    "sync2": ("sync", 2, 1, {}),
}


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ensure_wrk() -> str:
    """wrk's path; installed from Debian's repository when missing (needs root)."""
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise SystemExit("wrk is missing: install it (apt-get install wrk) and run again")
    log("installing wrk with apt-get")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    # apt's progress goes to stderr with the log: stdout carries only the tables.
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "wrk"]):
        subprocess.run(cmd, check=True, env=env, timeout=180, stdout=sys.stderr)
    found = shutil.which("wrk")
    if not found:
        raise SystemExit("apt-get did not install wrk")
    return found


# -- databases ----------------------------------------------------------------------------------


def db_url(name: str) -> str:
    return PG.rsplit("/", 1)[0] + f"/{name}"


def create_db(name: str, template: str | None = None) -> str:
    with psycopg.connect(PG, autocommit=True) as conn:
        if template:
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        else:
            conn.execute(f'CREATE DATABASE "{name}"')
    return db_url(name)


def drop_db(name: str) -> None:
    try:
        with psycopg.connect(PG, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    except psycopg.Error as exc:
        log(f"could not drop {name}: {exc}")


def sqlalchemy_url(url: str) -> str:
    return url.replace("postgresql://", "postgresql+psycopg://", 1)


# -- servers ------------------------------------------------------------------------------------


def product_env(database_url: str, sandbox_url: str, toss_latency: float = 0.0) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TOSS_", "SANDBOX_"))}
    env.update(
        APP_ENV="development",
        SECRET_KEY="bench-secret-key-not-for-production-0123456789",
        DATABASE_URL=database_url,
        # Empty values beat a stray .env (python-dotenv never overrides what is set).
        TOSS_CLIENT_KEY="",
        TOSS_SECRET_KEY="",
        TOSS_SANDBOX="1",
        REDIS_URL="",
        PUBLIC_BASE_URL="",
        WEBHOOK_WORKER_EMBEDDED="0",
        # The in-process sandbox keeps its state in a database of its own, as always.
        SANDBOX_DATABASE_URL=sandbox_url,
        SANDBOX_WEBHOOKS_ENABLED="0",
        # Only windows finished with the slow_confirm scenario wait this long.
        SANDBOX_SLOW_CONFIRM_SECONDS=str(toss_latency),
        RATELIMIT_CONFIRM=NO_LIMIT,
        RATELIMIT_WEBHOOK=NO_LIMIT,
        RATELIMIT_SHOP=NO_LIMIT,
    )
    return env


def _stat_fields(pid: int) -> list[str]:
    # pid (comm) state ppid …; comm may hold spaces, so split after the last ")".
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


@dataclass
class Server:
    name: str
    port: int
    proc: subprocess.Popen[bytes]
    log_path: Path

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def worker_pids(self) -> list[int]:
        pids = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                if int(_stat_fields(int(entry.name))[1]) == self.proc.pid:
                    pids.append(int(entry.name))
            except (OSError, IndexError, ValueError):
                continue
        return sorted(pids)

    def worker_cpu_seconds(self) -> float:
        """User + system CPU time of the workers so far."""
        total = 0
        for pid in self.worker_pids():
            try:
                fields = _stat_fields(pid)
            except OSError:
                continue
            total += int(fields[11]) + int(fields[12])  # utime, stime
        return total / TICK

    def worker_rss_mb(self) -> list[float]:
        sizes = []
        for pid in self.worker_pids():
            try:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        sizes.append(round(int(line.split()[1]) / 1024, 1))
            except OSError:
                continue
        return sizes

    def connections(self) -> list[int]:
        """Established client connections held by each worker (largest first), via `ss`."""
        if not shutil.which("ss"):
            return []
        out = subprocess.run(
            ["ss", "-tnpH", "state", "established", f"( sport = :{self.port} )"],
            capture_output=True, text=True, timeout=10,
        ).stdout  # fmt: skip
        pids = self.worker_pids()
        counts = [out.count(f"pid={pid},") for pid in pids]
        return sorted(counts, reverse=True)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


# One side of a measured pair: (key, server, path, wrk script, the script's arguments for
# round r, where r = -1 is the warm-up).
Side = tuple[str, Server, str, Path, Callable[[int], list[str]]]


def start_server(
    name: str,
    wsgi: str,
    env: dict[str, str],
    model: tuple[str, int, int, dict[str, str]],
    logs: Path,
) -> Server:
    worker_class, workers, threads, settings = model
    port = free_port()
    env = {
        **env,
        # gunicorn.conf.py reads these; everything else in it applies to both apps alike.
        "GUNICORN_BIND": f"127.0.0.1:{port}",
        "GUNICORN_WORKER_CLASS": worker_class,
        "WEB_CONCURRENCY": str(workers),
        "GUNICORN_THREADS": str(threads),
        "PROMETHEUS_MULTIPROC_DIR": str(logs / f"{name}-metrics"),
        **settings,
    }
    env.pop("GUNICORN_ACCESS_LOG", None)
    log_path = logs / f"{name}.log"
    with log_path.open("wb") as out:
        proc = subprocess.Popen(
            [str(BIN / "gunicorn"), wsgi, "-c", "gunicorn.conf.py", "--log-level", "warning"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    server = Server(name, port, proc, log_path)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{name} exited at start:\n{log_path.read_text()[-3000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                pass
            if len(server.worker_pids()) >= workers:
                return server
        except OSError:
            pass
        time.sleep(0.2)
    server.stop()
    raise SystemExit(f"{name} did not start:\n{log_path.read_text()[-3000:]}")


# -- wrk ----------------------------------------------------------------------------------------


@dataclass
class Run:
    url: str
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    errors: int
    bad: int = 0
    cpu_s: float = 0.0
    spread: list[list[int]] = field(default_factory=list)  # per round, largest first
    raw: dict[str, Any] = field(default_factory=dict)

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def summary(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "requests": self.requests,
            "seconds": round(self.seconds, 2),
            "requests_per_s": round(self.rps, 1),
            "p50_ms": round(self.p50_ms, 2),
            "p99_ms": round(self.p99_ms, 2),
            "max_ms": round(self.max_ms, 2),
            "errors": self.errors,
            "bad_answers": self.bad,
            "worker_cpu_ms_per_request": round(1000 * self.cpu_s / max(self.requests, 1), 3),
            "connections_per_worker": self.spread,
        }

    def merged(self, other: Run) -> Run:
        """This run and a later round of the same measurement as one: counts add up, p50 is
        the request-weighted mean of the rounds' and p99/max the worst (conservative)."""
        total = self.requests + other.requests
        return Run(
            url=self.url,
            requests=total,
            seconds=self.seconds + other.seconds,
            p50_ms=(self.p50_ms * self.requests + other.p50_ms * other.requests) / max(total, 1),
            p99_ms=max(self.p99_ms, other.p99_ms),
            max_ms=max(self.max_ms, other.max_ms),
            errors=self.errors + other.errors,
            bad=self.bad + other.bad,
            cpu_s=self.cpu_s + other.cpu_s,
            spread=self.spread + other.spread,
        )


def script(tmp: Path, scenario: str | None) -> Path:
    """A wrk script: the scenario (if any) followed by the shared reporter."""
    parts = []
    if scenario:
        parts.append((BENCH / "wrk" / f"{scenario}.lua").read_text())
    parts.append((BENCH / "wrk" / "report.lua").read_text())
    path = tmp / f"{scenario or 'plain'}.lua"
    path.write_text("\n".join(parts))
    return path


def wrk(wrk_bin: str, url: str, seconds: float, args: argparse.Namespace, lua: Path,
        lua_args: list[str]) -> Run:  # fmt: skip
    cmd = [wrk_bin, f"-t{args.threads}", f"-c{args.connections}", f"-d{max(1, round(seconds))}s",
           "--timeout", "10s", "-s", str(lua), url, "--", *lua_args]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("BENCH_JSON ")), None)
    if line is None:
        raise SystemExit(f"wrk gave no figures for {url}:\n{out.stdout}\n{out.stderr}")
    data = json.loads(line.split(" ", 1)[1])
    errors = sum(data[k] for k in data if k.startswith("errors_"))
    return Run(
        url=url,
        # The confirm scenario counts its own answers (fillers after a thread ran out are not).
        requests=data["counted"] or data["requests"],
        seconds=data["duration_us"] / 1e6,
        p50_ms=data["p50_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        max_ms=data["max_us"] / 1000,
        errors=errors,
        bad=data["bad"],
        raw=data,
    )


# -- one worker model ---------------------------------------------------------------------------


def prepare_orders(
    server: Server, env: dict[str, str], count: int, out: Path, scenario: str
) -> list[str]:
    """`count` orders with approved sandbox windows, made by 2 processes; their success paths."""
    procs = []
    for i, n in enumerate([count // 2, count - count // 2]):
        cmd = [str(BIN / "python"), str(BENCH / "prepare_orders.py"), "--count", str(n),
               "--base", server.base, "--out", str(out.with_suffix(f".{i}")),
               "--scenario", scenario, "--max-seconds", "60"]  # fmt: skip
        procs.append(
            subprocess.Popen(
                cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
            )
        )
    lines: list[str] = []
    for i, proc in enumerate(procs):
        _, err = proc.communicate(timeout=120)
        if proc.returncode != 0:
            raise SystemExit(f"preparing orders failed:\n{err.decode()[-3000:]}")
        lines += out.with_suffix(f".{i}").read_text().splitlines()
    out.write_text("".join(p + "\n" for p in lines))
    return lines


def orders_by_status(database_url: str, paths: list[str]) -> dict[str, int]:
    order_ids = [p.split("orderId=", 1)[1].split("&", 1)[0] for p in paths]
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT status, count(*) FROM orders WHERE order_id = ANY(%s) GROUP BY status",
            (order_ids,),
        ).fetchall()
    return {status: n for status, n in rows}


def bench_model(
    name: str, args: argparse.Namespace, wrk_bin: str, tmp: Path, template_db: str, run_id: str
) -> dict[str, Any]:
    model = MODELS[name]
    label = f"{model[0]}, {model[1]} workers" + (f" x {model[2]} threads" if model[2] > 1 else "")
    label += "".join(f", {k.removeprefix('GUNICORN_').lower()}={v}" for k, v in model[3].items())
    log(f"{name}: {label}")
    base_db, shop_db = f"{template_db}_{name}_bare", f"{template_db}_{name}_shop"
    sandbox_db = f"{template_db}_{name}_sandbox"
    base_url = create_db(base_db)
    with psycopg.connect(base_url, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE baseline_hits (id BIGSERIAL PRIMARY KEY, body TEXT NOT NULL, "
            "created_at TIMESTAMPTZ NOT NULL)"
        )
    shop_url = create_db(shop_db, template=template_db)
    sandbox_url = create_db(sandbox_db)
    env = product_env(shop_url, sandbox_url, args.toss_latency)
    plain, hook, confirm = script(tmp, None), script(tmp, "webhook"), script(tmp, "confirm")
    servers: list[Server] = []
    runs: dict[str, Run] = {}
    confirms: dict[str, dict[str, Any]] = {}

    def one(server: Server, path: str, seconds: float, lua: Path, lua_args: list[str]) -> Run:
        cpu = server.worker_cpu_seconds()
        spread: list[list[int]] = []
        # Halfway through: how wrk's connections ended up spread over the workers.
        timer = threading.Timer(seconds / 2, lambda: spread.append(server.connections()))
        timer.start()
        run = wrk(wrk_bin, server.base + path, seconds, args, lua, lua_args)
        timer.cancel()
        run.cpu_s = server.worker_cpu_seconds() - cpu
        run.spread = spread[:1]
        return run

    def record(key: str, run: Run) -> None:
        runs[key] = run
        log(
            f"{name:>10} {key:<16} {run.rps:8.1f} req/s  p50 {run.p50_ms:6.1f} ms  "
            f"p99 {run.p99_ms:6.1f} ms  cpu {1000 * run.cpu_s / max(run.requests, 1):5.2f} ms/req"
            f"  errors {run.errors}  bad {run.bad}  connections/worker {run.spread}"
        )

    def measure(key: str, server: Server, path: str, lua: Path, lua_args: list[str]) -> None:
        if args.warmup > 0:
            wrk(wrk_bin, server.base + path, args.warmup, args, lua, lua_args)
        record(key, one(server, path, args.seconds, lua, lua_args))

    def measure_pair(pair: list[Side], warmup: bool = True) -> None:
        """Bare stack and product in alternating rounds (the same total time each), so a
        noisy neighbour hits both sides of the ratio alike, and each round's new connections
        land on the workers afresh (gthread keeps a connection on the worker that took it)."""
        for _, server, path, lua, lua_args in pair:
            if warmup and args.warmup > 0:
                wrk(wrk_bin, server.base + path, args.warmup, args, lua, lua_args(-1))
        merged: dict[str, Run] = {}
        for r in range(args.rounds):
            for key, server, path, lua, lua_args in pair:
                run = one(server, path, args.seconds / args.rounds, lua, lua_args(r))
                merged[key] = merged[key].merged(run) if key in merged else run
        for key, *_ in pair:
            record(key, merged[key])

    def tagged(tag: str) -> Callable[[int], list[str]]:
        return lambda r: [f"{tag}{'w' if r < 0 else f'r{r}'}"]

    def prepare(key: str, scenario: str, count: int) -> list[str]:
        started = time.monotonic()
        paths = prepare_orders(shop, env, count, tmp / f"{name}-{key}.txt", scenario)
        log(f"{name:>10} prepared {len(paths)} orders in {time.monotonic() - started:.1f} s")
        return paths

    def note_confirm(key: str, scenario: str, paths: list[str], rounds: int) -> None:
        run = runs[key]
        confirms[key] = {
            "scenario": scenario,
            "orders_prepared": len(paths),
            "orders_by_status_after": orders_by_status(shop_url, paths),
            # A wrk thread that used up its orders stops early (fewer requests in that round).
            "ran_out_of_orders": run.requests >= len(paths) - rounds * args.threads,
        }

    def round_files(key: str, paths: list[str], rounds: int) -> list[Path]:
        """The prepared success paths split into one file per round (each confirmed once)."""
        files = []
        for r in range(rounds):
            f = tmp / f"{name}-{key}-r{r}.txt"
            f.write_text("".join(p + "\n" for p in paths[r::rounds]))
            files.append(f)
        return files

    try:
        baseline = start_server(
            f"{name}-bare",
            "bench.baseline_app:app",
            {**os.environ, "BASELINE_DATABASE_URL": sqlalchemy_url(base_url)},
            model,
            tmp,
        )
        servers.append(baseline)
        shop = start_server(f"{name}-shop", "app:app", env, model, tmp)
        servers.append(shop)

        tag = f"{run_id}{name}"
        if args.text:
            measure("baseline_text", baseline, "/text", plain, ["-"])

        def same(_round: int) -> list[str]:
            return ["-"]

        measure_pair(
            [("baseline_page", baseline, "/page", plain, same), ("catalog", shop, "/", plain, same)]
        )
        measure_pair(
            [
                ("baseline_insert", baseline, "/insert", hook, tagged(f"{tag}i")),
                ("webhook", shop, "/api/payment/webhook", hook, tagged(f"{tag}h")),
            ]
        )
        # Enough orders for every round (a wrk thread that runs out stops early).
        cap = runs["webhook"].rps * args.seconds
        paths = prepare("confirm", "approve", max(400, math.ceil(cap * args.confirm_share)))
        files = round_files("confirm", paths, args.rounds)
        threads = str(args.threads)
        measure_pair(
            [
                ("baseline_insert_c", baseline, "/insert", hook, tagged(f"{tag}c")),
                ("confirm", shop, "/checkout/success", confirm,
                 lambda r: [str(files[r]), threads]),
            ],
            warmup=False,  # every prepared order is for a measured round
        )  # fmt: skip
        note_confirm("confirm", "approve", paths, args.rounds)
        if args.toss_latency > 0:
            # At most one confirmation per connection per latency, and never more than unloaded.
            bound = min(args.connections / args.toss_latency, runs["confirm"].rps * 1.5)
            count = max(100, math.ceil(bound * args.seconds * 1.2))
            paths = prepare("confirm_slow_toss", "slow_confirm", count)
            (f,) = round_files("confirm_slow_toss", paths, 1)
            record("confirm_slow_toss", one(shop, "/checkout/success", args.seconds, confirm,
                                            [str(f), threads]))  # fmt: skip
            note_confirm("confirm_slow_toss", "slow_confirm", paths, 1)
        rss = {"baseline": baseline.worker_rss_mb(), "product": shop.worker_rss_mb()}
    finally:
        for server in servers:
            server.stop()
        drop_db(base_db)
        drop_db(shop_db)
        drop_db(sandbox_db)

    ratios = {key: round(runs[key].rps / runs[t["baseline"]].rps, 3) for key, t in TARGETS.items()}
    return {
        "gunicorn": {
            "worker_class": model[0],
            "workers": model[1],
            "threads": model[2],
            **model[3],
        },
        "label": label,
        "runs": {key: run.summary() for key, run in runs.items()},
        "ratios": ratios,
        "confirmations": confirms,
        "worker_rss_mb": rss,
    }


# -- report -------------------------------------------------------------------------------------


def verdicts(result: dict[str, Any]) -> dict[str, bool]:
    runs, ratios = result["runs"], result["ratios"]
    out = {}
    for key, target in TARGETS.items():
        run = runs[key]
        ok = ratios[key] >= target["ratio"] and run["errors"] == 0 and run["bad_answers"] == 0
        if "p99_ms" in target:
            ok = ok and run["p99_ms"] < target["p99_ms"]
        out[key] = ok
    out["rss"] = max(result["worker_rss_mb"]["product"], default=0) < RSS_TARGET_MB
    return out


def markdown(results: dict[str, dict[str, Any]], best: str, latency: float) -> str:
    lines = [
        "| model | measure | product req/s | p50 ms | p99 ms | CPU ms/req | bare stack | "
        "bare req/s | bare p99 ms | bare CPU ms/req | ratio | target | met |",
        "|---|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---|---|",
    ]
    titles = {"catalog": "catalog `GET /`", "webhook": "webhook ack", "confirm": "confirmation"}
    for model, result in results.items():
        runs, ok = result["runs"], verdicts(result)
        tag = f"{model}{' (best)' if model == best else ''}"
        for key, target in TARGETS.items():
            run, base = runs[key], runs[target["baseline"]]
            bare = target["baseline"].removeprefix("baseline_").removesuffix("_c")
            want = f"≥ {target['ratio']:.0%}"
            if "p99_ms" in target:
                want += f", p99 < {target['p99_ms']:.0f} ms"
            lines.append(
                f"| {tag} | {titles[key]} | {run['requests_per_s']:.0f} | {run['p50_ms']:.1f} | "
                f"{run['p99_ms']:.1f} | {run['worker_cpu_ms_per_request']:.2f} | "
                f"{bare} | {base['requests_per_s']:.0f} | "
                f"{base['p99_ms']:.1f} | {base['worker_cpu_ms_per_request']:.2f} | "
                f"{result['ratios'][key]:.0%} | {want} | {'yes' if ok[key] else '**no**'} |"
            )
        rss = result["worker_rss_mb"]
        lines.append(
            f"| {tag} | worker RSS MB (max) | {max(rss['product'], default=0):.0f} | | | | bare | "
            f"{max(rss['baseline'], default=0):.0f} | | | | < {RSS_TARGET_MB:.0f} MB | "
            f"{'yes' if ok['rss'] else '**no**'} |"
        )
    lines += [
        "",
        "| model | gunicorn | catalog req/s | webhook req/s | confirm req/s | "
        f"confirm req/s, Toss {latency * 1000:.0f} ms | "
        f"confirm p99 ms, Toss {latency * 1000:.0f} ms | targets met |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for model, result in results.items():
        runs, ok = result["runs"], verdicts(result)
        slow = runs.get("confirm_slow_toss", {})
        lines.append(
            f"| {model}{' (best)' if model == best else ''} | {result['label']} | "
            f"{runs['catalog']['requests_per_s']:.0f} | {runs['webhook']['requests_per_s']:.0f} | "
            f"{runs['confirm']['requests_per_s']:.0f} | {slow.get('requests_per_s', 0):.0f} | "
            f"{slow.get('p99_ms', 0):.0f} | {sum(ok.values())}/{len(ok)} |"
        )
    return "\n".join(lines)


def pick_best(results: dict[str, dict[str, Any]]) -> str:
    """The model with the highest geometric mean of the product's throughputs: catalog, webhook
    ack, confirmation, and confirmation while Toss takes --toss-latency to answer (production's
    bottleneck at a sale's peak, which the loopback figures alone would hide)."""

    def score(name: str) -> float:
        runs = results[name]["runs"]
        keys = [k for k in ("catalog", "webhook", "confirm", "confirm_slow_toss") if k in runs]
        rps = [max(runs[k]["requests_per_s"], 0.001) for k in keys]
        return math.prod(rps) ** (1 / len(rps))

    return max(results, key=score)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="per measured wrk run")
    parser.add_argument("--warmup", type=float, default=2.0, help="untimed wrk run before each")
    parser.add_argument(
        "--rounds", type=int, default=5, help="alternating rounds per bare/product pair"
    )
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    choices = ", ".join(f"{k} ({v[0]} {v[1]}x{v[2]})" for k, v in MODELS.items())
    parser.add_argument("--models", default="gthread,sync", help=f"comma-separated: {choices}")
    parser.add_argument(
        "--toss-latency",
        type=float,
        default=0.3,
        help="seconds the sandbox holds each answer in the second confirmation run (0: skip)",
    )
    parser.add_argument(
        "--confirm-share",
        type=float,
        default=0.25,
        help="orders prepared = webhook req/s x seconds x this (a confirmation costs ~10x more)",
    )
    parser.add_argument(
        "--text", action="store_true", help="also drive the bare stack's text route (a ceiling)"
    )
    parser.add_argument("--out", default="", help="JSON path (default bench/results/<date>.json)")
    args = parser.parse_args()
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in models if m not in MODELS]
    if unknown or not models:
        parser.error(f"unknown model(s): {', '.join(unknown) or '(none)'}")

    started = time.monotonic()
    wrk_bin = ensure_wrk()
    run_id = uuid.uuid4().hex[:8]
    template_db = f"bench_{run_id}"
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="shop-bench-") as tmp_name:
        tmp = Path(tmp_name)
        try:
            # Migrating the template also starts the in-process sandbox: give it a scratch file.
            env = product_env(create_db(template_db), f"sqlite:///{tmp / 'template-sandbox.db'}")
            for command in (["db", "upgrade"], ["seed"]):
                done = subprocess.run(
                    [str(BIN / "flask"), "--app", "app", *command],
                    cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
                )  # fmt: skip
                if done.returncode != 0:
                    raise SystemExit(f"flask {' '.join(command)} failed:\n{done.stderr[-3000:]}")
            log(f"product database migrated and seeded ({template_db}, the template of each run)")
            for name in models:
                results[name] = bench_model(name, args, wrk_bin, tmp, template_db, run_id)
        finally:
            drop_db(template_db)

    best = pick_best(results)
    table = markdown(results, best, args.toss_latency)
    now = datetime.now(UTC)
    wrk_version = subprocess.run([wrk_bin, "-v"], capture_output=True, text=True).stdout
    report = {
        "date": now.isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "kernel": platform.release(),
            "postgresql": PG.rsplit("/", 1)[0].split("@")[-1],
        },
        "method": {
            "tool": wrk_version.split(" Copyright")[0].strip(),
            "connections": args.connections,
            "wrk_threads": args.threads,
            "seconds_per_run": args.seconds,
            "warmup_seconds": args.warmup,
            "rounds_per_pair": args.rounds,
            "toss_latency_s": args.toss_latency,
            "product_mode": (
                "APP_ENV=development with SECRET_KEY, in-process sandbox (TOSS_SANDBOX=1, no "
                "keys), WEBHOOK_WORKER_EMBEDDED=0, SANDBOX_WEBHOOKS_ENABLED=0, RATELIMIT_* = "
                f"{NO_LIMIT}, rate-limit counters in memory, no cookies (first visits)"
            ),
            "gunicorn": "both apps: -c gunicorn.conf.py with the model's worker settings",
            "cpu_ms_per_request": "gunicorn workers' user+system CPU over the run / requests "
            "(PostgreSQL and wrk not included)",
        },
        "targets": {**TARGETS, "worker_rss_mb": RSS_TARGET_MB},
        "models": results,
        "verdicts": {name: verdicts(result) for name, result in results.items()},
        "best_model": best,
        "elapsed_s": round(time.monotonic() - started, 1),
        "table": table,
    }
    out = Path(args.out) if args.out else BENCH / "results" / f"{now:%Y-%m-%d}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    print(table)
    print()
    print(f"best worker model for the product: {best} ({results[best]['label']})")
    shown = out.relative_to(ROOT) if out.is_relative_to(ROOT) else out
    print(f"{report['elapsed_s']} s; written to {shown}")
    return 0 if all(verdicts(results[best]).values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
