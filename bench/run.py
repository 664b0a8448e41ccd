"""Checkout benchmark: the product against the bare Flask stack, same machine, same run.

    .venv/bin/python bench/run.py [--seconds 10] [--models gthread,sync]

On loopback with PostgreSQL (127.0.0.1:5432, trust auth), for each gunicorn worker model:
  1. starts the bare baseline (bench/baseline_app.py: a text route, a Jinja page, one
     SQLAlchemy insert) and the product (`app:app`), both with `-c gunicorn.conf.py` and the same
     worker settings, each on a fresh PostgreSQL database (the product's migrated and seeded);
  2. drives each with `wrk` (installed with apt-get when missing) at 32 connections for a fixed
     time, in pairs: catalog `GET /` vs the baseline page; webhook acknowledgement
     `POST /api/payment/webhook` vs the baseline insert; the full confirmation
     (`GET /checkout/success?…` for orders and approved sandbox windows prepared just before,
     confirmed server-side with the in-process sandbox) vs the same baseline insert;
  3. records requests/s, p50, p99, each gunicorn worker's RSS and the ratios to the baseline.
Writes bench/results/<date>.json and prints a Markdown table with the targets.

The product runs as close to production as the in-process sandbox allows: APP_ENV=development
(production refuses the sandbox) with SECRET_KEY set, the webhook worker NOT embedded (as in
production, where `flask payments worker` runs beside the web servers), the sandbox's own
webhook sender off, and rate limits raised out of the way (RATELIMIT_* = 1000000 per minute) —
the limiter itself still runs on every limited request.
"""

from __future__ import annotations

import argparse
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
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
BIN = Path(sys.executable).parent
PG = os.environ.get("BENCH_PG", "postgresql://root@127.0.0.1:5432/postgres")
NO_LIMIT = "1000000 per minute"

# Targets from the issue: the product's share of the bare stack in the same run (2 cores).
TARGETS = {
    "catalog": {"ratio": 0.50, "baseline": "page"},
    "webhook": {"ratio": 0.60, "baseline": "insert", "p99_ms": 100.0},
    "confirm": {"ratio": 0.25, "baseline": "insert"},
}
RSS_TARGET_MB = 120.0

# name → (gunicorn worker class, workers, threads per worker)
MODELS: dict[str, tuple[str, int, int]] = {
    "gthread": ("gthread", 2, 4),
    "gthread8": ("gthread", 2, 8),
    "sync": ("sync", 4, 1),
    "sync2": ("sync", 2, 1),
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
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, timeout=180)
    subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True, env=env, timeout=180)
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


# -- servers ------------------------------------------------------------------------------------


def product_env(database_url: str) -> dict[str, str]:
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
        SANDBOX_WEBHOOKS_ENABLED="0",
        RATELIMIT_CONFIRM=NO_LIMIT,
        RATELIMIT_WEBHOOK=NO_LIMIT,
        RATELIMIT_SHOP=NO_LIMIT,
    )
    return env


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
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            # pid (comm) state ppid …; comm may hold spaces, so split after the last ")".
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid == self.proc.pid:
                pids.append(int(entry.name))
        return sorted(pids)

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

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def start_server(
    name: str, wsgi: str, env: dict[str, str], model: tuple[str, int, int], logs: Path
) -> Server:
    worker_class, workers, threads = model
    port = free_port()
    env = {
        **env,
        "GUNICORN_BIND": f"127.0.0.1:{port}",
        "GUNICORN_WORKER_CLASS": worker_class,
        "WEB_CONCURRENCY": str(workers),
        "GUNICORN_THREADS": str(threads),
        "PROMETHEUS_MULTIPROC_DIR": str(logs / f"{name}-metrics"),
    }
    env.pop("GUNICORN_ACCESS_LOG", None)
    log_path = logs / f"{name}.log"
    out = log_path.open("wb")
    proc = subprocess.Popen(
        [str(BIN / "gunicorn"), wsgi, "-c", "gunicorn.conf.py", "--log-level", "warning"],
        cwd=ROOT,
        env=env,
        stdout=out,
        stderr=subprocess.STDOUT,
    )
    out.close()
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
    label: str
    url: str
    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    errors: int
    bad: int = 0
    raw: dict[str, Any] = field(default_factory=dict)

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
        }


def script(tmp: Path, scenario: str | None) -> Path:
    """A wrk script: the scenario (if any) followed by the shared reporter."""
    parts = []
    if scenario:
        parts.append((BENCH / "wrk" / f"{scenario}.lua").read_text())
    parts.append((BENCH / "wrk" / "report.lua").read_text())
    path = tmp / f"{scenario or 'plain'}.lua"
    path.write_text("\n".join(parts))
    return path


def wrk(
    wrk_bin: str,
    label: str,
    url: str,
    seconds: float,
    connections: int,
    threads: int,
    lua: Path,
    args: list[str] | None = None,
) -> Run:
    cmd = [
        wrk_bin,
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "10s",
        "-s",
        str(lua),
        url,
    ]
    if args:
        cmd += ["--", *args]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("BENCH_JSON ")), None)
    if line is None:
        raise SystemExit(f"wrk gave no figures for {label}:\n{out.stdout}\n{out.stderr}")
    data = json.loads(line.split(" ", 1)[1])
    duration = data["duration_us"] / 1e6
    errors = (
        data["errors_connect"]
        + data["errors_read"]
        + data["errors_write"]
        + data["errors_status"]
        + data["errors_timeout"]
    )
    # The confirm scenario counts its own answers (fillers after a thread ran out are not).
    requests = data["counted"] or data["requests"]
    return Run(
        label=label,
        url=url,
        requests=requests,
        seconds=duration,
        rps=requests / duration if duration else 0.0,
        p50_ms=data["p50_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        max_ms=data["max_us"] / 1000,
        errors=errors,
        bad=data["bad"],
        raw=data,
    )


# -- one worker model ---------------------------------------------------------------------------


def prepare_orders(server: Server, env: dict[str, str], count: int, out: Path) -> int:
    """`count` orders with approved sandbox windows, made by 2 processes; paths into `out`."""
    procs = []
    halves = [count // 2, count - count // 2]
    for i, n in enumerate(halves):
        procs.append(
            subprocess.Popen(
                [
                    str(BIN / "python"),
                    str(BENCH / "prepare_orders.py"),
                    "--count",
                    str(n),
                    "--base",
                    server.base,
                    "--out",
                    str(out.with_suffix(f".{i}")),
                    "--max-seconds",
                    "90",
                ],
                cwd=ROOT,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
        )
    lines: list[str] = []
    for i, proc in enumerate(procs):
        _, err = proc.communicate(timeout=150)
        if proc.returncode != 0:
            raise SystemExit(f"preparing orders failed:\n{err.decode()[-3000:]}")
        lines += out.with_suffix(f".{i}").read_text().splitlines()
    out.write_text("".join(p + "\n" for p in lines))
    return len(lines)


def count_paid(database_url: str, order_ids: list[str]) -> dict[str, int]:
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT status, count(*) FROM orders WHERE order_id = ANY(%s) GROUP BY status",
            (order_ids,),
        ).fetchall()
    return {status: n for status, n in rows}


def bench_model(
    name: str,
    args: argparse.Namespace,
    wrk_bin: str,
    tmp: Path,
    template_db: str,
    run_id: str,
) -> dict[str, Any]:
    model = MODELS[name]
    base_db = f"{template_db}_{name}_base"
    prod_db = f"{template_db}_{name}_shop"
    base_url = create_db(base_db)
    with psycopg.connect(base_url, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE baseline_hits (id BIGSERIAL PRIMARY KEY, body TEXT NOT NULL, "
            "created_at TIMESTAMPTZ NOT NULL)"
        )
    prod_url = create_db(prod_db, template=template_db)
    sa = lambda url: url.replace("postgresql://", "postgresql+psycopg://", 1)  # noqa: E731
    base_env = {**os.environ, "BASELINE_DATABASE_URL": sa(base_url)}
    env = product_env(prod_url)
    plain, hook, confirm = script(tmp, None), script(tmp, "webhook"), script(tmp, "confirm")
    servers: list[Server] = []
    runs: dict[str, Run] = {}

    def measure(key: str, url: str, lua: Path, extra: list[str] | None = None) -> Run:
        if args.warmup > 0 and key != "confirm":
            wrk(wrk_bin, key, url, args.warmup, args.connections, args.threads, lua,
                [f"{run_id}{name}w{key}"] if extra is None else extra)  # fmt: skip
        run = wrk(wrk_bin, key, url, args.seconds, args.connections, args.threads, lua,
                  [f"{run_id}{name}{key}"] if extra is None else extra)  # fmt: skip
        log(
            f"{name:>8} {key:<15} {run.rps:8.1f} req/s  p50 {run.p50_ms:6.1f} ms  "
            f"p99 {run.p99_ms:6.1f} ms  errors {run.errors}  bad {run.bad}"
        )
        runs[key] = run
        return run

    try:
        label = f"{model[0]} {model[1]} workers" + (f" x {model[2]} threads" if model[2] > 1 else "")
        log(f"{name}: {label}")
        baseline = start_server(f"{name}-baseline", "bench.baseline_app:app", base_env, model, tmp)
        servers.append(baseline)
        shop = start_server(f"{name}-shop", "app:app", env, model, tmp)
        servers.append(shop)

        measure("baseline_text", baseline.base + "/text", plain)
        # Pairs back to back, so a noisy neighbour hits both sides of a ratio alike.
        measure("baseline_page", baseline.base + "/page", plain)
        measure("catalog", shop.base + "/", plain)
        measure("baseline_insert", baseline.base + "/insert", hook)
        measure("webhook", shop.base + "/api/payment/webhook", hook)

        count = args.orders or max(
            500, math.ceil(runs["webhook"].rps * args.seconds * args.confirm_share)
        )
        paths_file = tmp / f"{name}-paths.txt"
        started = time.monotonic()
        prepared = prepare_orders(shop, env, count, paths_file)
        log(f"{name:>8} prepared {prepared} orders in {time.monotonic() - started:.1f} s")
        order_ids = [
            p.split("orderId=", 1)[1].split("&", 1)[0] for p in paths_file.read_text().split()
        ]
        measure("confirm", shop.base + "/checkout/success", confirm,
                [str(paths_file), str(args.threads)])  # fmt: skip
        statuses = count_paid(prod_url, order_ids)
        rss = {"baseline": baseline.worker_rss_mb(), "product": shop.worker_rss_mb()}
    finally:
        for server in servers:
            server.stop()
        drop_db(base_db)
        drop_db(prod_db)

    ran_out = runs["confirm"].requests >= prepared
    ratios = {
        key: round(runs[key].rps / runs[f"baseline_{t['baseline']}"].rps, 3)
        for key, t in TARGETS.items()
    }
    return {
        "gunicorn": {"worker_class": model[0], "workers": model[1], "threads": model[2]},
        "label": label,
        "runs": {key: run.summary() for key, run in runs.items()},
        "ratios": ratios,
        "confirm": {
            "orders_prepared": prepared,
            "orders_by_status_after": statuses,
            "ran_out_of_orders": ran_out,
        },
        "worker_rss_mb": rss,
    }


# -- report -------------------------------------------------------------------------------------


def verdicts(result: dict[str, Any]) -> dict[str, bool]:
    runs, ratios = result["runs"], result["ratios"]
    out = {}
    for key, target in TARGETS.items():
        ok = ratios[key] >= target["ratio"] and runs[key]["errors"] == 0
        ok = ok and runs[key]["bad_answers"] == 0
        if "p99_ms" in target:
            ok = ok and runs[key]["p99_ms"] < target["p99_ms"]
        out[key] = ok
    out["rss"] = max(result["worker_rss_mb"]["product"], default=0) < RSS_TARGET_MB
    return out


def markdown(results: dict[str, dict[str, Any]], best: str) -> str:
    lines = [
        "| model | measure | product req/s | p50 ms | p99 ms | bare stack | bare req/s | "
        "bare p99 ms | ratio | target | met |",
        "|---|---|---:|---:|---:|---|---:|---:|---:|---|---|",
    ]
    names = {
        "catalog": ("catalog `GET /`", "page"),
        "webhook": ("webhook ack", "insert"),
        "confirm": ("full confirmation", "insert"),
    }
    for model, result in results.items():
        runs, ok = result["runs"], verdicts(result)
        tag = f"{model}{' (best)' if model == best else ''}"
        for key, (title, bare) in names.items():
            run, base = runs[key], runs[f"baseline_{bare}"]
            target = TARGETS[key]
            want = f"≥ {target['ratio']:.0%}"
            if "p99_ms" in target:
                want += f", p99 < {target['p99_ms']:.0f} ms"
            lines.append(
                f"| {tag} | {title} | {run['requests_per_s']:.0f} | {run['p50_ms']:.1f} | "
                f"{run['p99_ms']:.1f} | {bare} | {base['requests_per_s']:.0f} | "
                f"{base['p99_ms']:.1f} | {result['ratios'][key]:.0%} | {want} | "
                f"{'yes' if ok[key] else '**no**'} |"
            )
        rss = result["worker_rss_mb"]
        lines.append(
            f"| {tag} | worker RSS (MB) | {max(rss['product'], default=0):.0f} | | | "
            f"bare | {max(rss['baseline'], default=0):.0f} | | | < {RSS_TARGET_MB:.0f} MB | "
            f"{'yes' if ok['rss'] else '**no**'} |"
        )
    return "\n".join(lines)


def pick_best(results: dict[str, dict[str, Any]]) -> str:
    """The model meeting the most targets; ties go to the higher geometric mean of the three
    product throughputs."""

    def score(name: str) -> tuple[int, float]:
        result = results[name]
        met = sum(verdicts(result).values())
        rps = [result["runs"][k]["requests_per_s"] for k in TARGETS]
        return met, math.prod(max(r, 0.001) for r in rps) ** (1 / len(rps))

    return max(results, key=score)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="per measured wrk run")
    parser.add_argument("--warmup", type=float, default=2.0, help="untimed wrk run before each")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument(
        "--models",
        default="gthread,sync",
        help=f"comma-separated, from: {', '.join(f'{k} ({v[0]} {v[1]}x{v[2]})' for k, v in MODELS.items())}",
    )
    parser.add_argument("--orders", type=int, default=0, help="orders to prepare (0: sized)")
    parser.add_argument(
        "--confirm-share",
        type=float,
        default=0.35,
        help="orders prepared = webhook req/s x seconds x this (when --orders is 0)",
    )
    parser.add_argument("--out", default="", help="JSON path (default bench/results/<date>.json)")
    args = parser.parse_args()
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in models if m not in MODELS]
    if unknown:
        parser.error(f"unknown model(s): {', '.join(unknown)}")

    started = time.monotonic()
    wrk_bin = ensure_wrk()
    run_id = uuid.uuid4().hex[:8]
    template_db = f"bench_{run_id}"
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="shop-bench-") as tmp_name:
        tmp = Path(tmp_name)
        try:
            template_url = create_db(template_db)
            env = product_env(template_url)
            for command in (["db", "upgrade"], ["seed"]):
                done = subprocess.run(
                    [str(BIN / "flask"), "--app", "app", *command],
                    cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
                )  # fmt: skip
                if done.returncode != 0:
                    raise SystemExit(f"flask {' '.join(command)} failed:\n{done.stderr[-3000:]}")
            log(f"product database migrated and seeded ({template_db})")
            for name in models:
                results[name] = bench_model(name, args, wrk_bin, tmp, template_db, run_id)
        finally:
            drop_db(template_db)

    best = pick_best(results)
    table = markdown(results, best)
    now = datetime.now(UTC)
    report = {
        "date": now.isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "kernel": platform.release(),
            "postgresql": PG.rsplit("/", 1)[0].split("@")[-1],
        },
        "method": {
            "tool": subprocess.run([wrk_bin, "-v"], capture_output=True, text=True).stdout.split(
                " Copyright"
            )[0],
            "connections": args.connections,
            "wrk_threads": args.threads,
            "seconds_per_run": args.seconds,
            "warmup_seconds": args.warmup,
            "product_mode": (
                "APP_ENV=development with SECRET_KEY, in-process sandbox (TOSS_SANDBOX=1, no "
                "keys), WEBHOOK_WORKER_EMBEDDED=0, SANDBOX_WEBHOOKS_ENABLED=0, RATELIMIT_* = "
                f"{NO_LIMIT}, rate-limit storage in memory"
            ),
            "gunicorn": "both apps: -c gunicorn.conf.py, worker settings per model below",
        },
        "targets": {
            **{k: {kk: vv for kk, vv in v.items()} for k, v in TARGETS.items()},
            "worker_rss_mb": RSS_TARGET_MB,
        },
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
    print(f"{report['elapsed_s']} s; written to {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")
    return 0 if all(verdicts(results[best]).values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
