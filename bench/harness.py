"""What every bench measure needs: databases, processes (started, waited for, measured, stopped)
and wrk runs. No product code: the servers under test are separate processes."""

from __future__ import annotations

import getpass
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
BIN = Path(sys.executable).parent
# Local trust auth as the current user, like scripts/pytest-postgres; BENCH_PG picks another.
PG = os.environ.get("BENCH_PG") or f"postgresql://{getpass.getuser()}@127.0.0.1:5432/postgres"
TICK = os.sysconf("SC_CLK_TCK")


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
    # apt's progress goes to stderr with the log: stdout carries only the table.
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "wrk"]):
        subprocess.run(cmd, check=True, env=env, timeout=180, stdout=sys.stderr)
    found = shutil.which("wrk")
    if not found:
        raise SystemExit("apt-get did not install wrk")
    return found


# -- databases ----------------------------------------------------------------------------------


def db_url(name: str) -> str:
    return PG.rsplit("/", 1)[0] + f"/{name}"


def sqlalchemy_url(url: str) -> str:
    return url.replace("postgresql://", "postgresql+psycopg://", 1)


def create_db(name: str, template: str | None = None) -> str:
    with psycopg.connect(PG, autocommit=True) as conn:
        suffix = f' TEMPLATE "{template}"' if template else ""
        conn.execute(f'CREATE DATABASE "{name}"{suffix}')
    return db_url(name)


def drop_db(name: str) -> None:
    try:
        with psycopg.connect(PG, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    except psycopg.Error as exc:
        log(f"could not drop {name}: {exc}")


# -- processes ----------------------------------------------------------------------------------


def _stat_fields(pid: int) -> list[str]:
    # pid (comm) state ppid …; comm may hold spaces, so split after the last ")".
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int(_stat_fields(int(entry.name))[1]) == pid:
                    found.append(int(entry.name))
            except (OSError, IndexError, ValueError):
                continue
    return sorted(found)


def _rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return 0.0


def _cpu_s(pid: int) -> float:
    try:
        fields = _stat_fields(pid)
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime


@dataclass
class Proc:
    """A started server process and its children (gunicorn's workers)."""

    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    port: int = 0

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def pids(self) -> list[int]:
        return [self.proc.pid, *_children(self.proc.pid)]

    def workers(self) -> list[int]:
        return _children(self.proc.pid)

    def rss_mb(self) -> dict[str, float]:
        """RSS of the process ("main") and each child (by pid)."""
        return {("main" if pid == self.proc.pid else str(pid)): _rss_mb(pid) for pid in self.pids()}

    def cpu_s(self) -> float:
        """User + system CPU time so far of the process and its living children."""
        return sum(_cpu_s(pid) for pid in self.pids())

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def start(
    name: str,
    cmd: Sequence[str],
    env: dict[str, str],
    logs: Path,
    *,
    port: int = 0,
    ready_path: str | None = "/",
    min_children: int = 0,
    timeout: float = 60,
) -> Proc:
    """Start `cmd`; with a port, wait until it answers HTTP on `ready_path` (any status) and has
    `min_children` children (gunicorn's workers)."""
    log_path = logs / f"{name}.log"
    with log_path.open("ab") as out:
        popen = subprocess.Popen(list(cmd), cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    proc = Proc(name, popen, log_path, port)
    if not port or ready_path is None:
        return proc
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if popen.poll() is not None:
            raise SystemExit(f"{name} exited at start:\n{log_path.read_text()[-3000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                sock.sendall(f"GET {ready_path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n".encode())
                answered = sock.recv(12).startswith(b"HTTP/")
            if answered and len(proc.workers()) >= min_children:
                return proc
        except OSError:
            pass
        time.sleep(0.2)
    proc.stop()
    raise SystemExit(f"{name} did not start:\n{log_path.read_text()[-3000:]}")


# -- wrk ----------------------------------------------------------------------------------------


@dataclass
class Run:
    """One wrk run's figures (latencies in ms) and the server CPU it cost."""

    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    errors: int
    bad: int = 0
    cpu_s: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def summary(self) -> dict[str, Any]:
        return {
            "rps": round(self.rps, 1),
            "p50_ms": round(self.p50_ms, 1),
            "p99_ms": round(self.p99_ms, 1),
            "max_ms": round(self.max_ms, 1),
            "requests": self.requests,
            "seconds": round(self.seconds, 2),
            "errors": self.errors,
            "bad_answers": self.bad,
            "server_cpu_ms_per_request": round(1000 * self.cpu_s / max(self.requests, 1), 2),
            **self.extra,
        }


def lua(tmp: Path, scenario: str | None) -> Path:
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
    url: str,
    seconds: float,
    connections: int,
    script: Path,
    script_args: Sequence[str] = (),
    *,
    threads: int = 2,
    measured: Sequence[Proc] = (),
) -> Run:
    """Drive `url` for `seconds` (wrk stops sooner once a scenario's threads run out of work);
    the CPU `measured` processes spent meanwhile is kept with the figures."""
    cmd = [
        wrk_bin,
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "15s",
        "-s",
        str(script),
        url,
        "--",
        *script_args,
    ]
    cpu = sum(p.cpu_s() for p in measured)
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
    spent = sum(p.cpu_s() for p in measured) - cpu
    for line in out.stdout.splitlines():
        if line.startswith("BAD "):  # the first wrong answers a scenario printed
            log(f"  {url}: {line[:300]}")
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("BENCH_JSON ")), None)
    if line is None:
        raise SystemExit(f"wrk gave no figures for {url}:\n{out.stdout}\n{out.stderr}")
    data = json.loads(line.split(" ", 1)[1])
    return Run(
        # A scenario that counts its own answers leaves out its fillers.
        requests=data["counted"] or data["requests"],
        seconds=data["duration_us"] / 1e6,
        p50_ms=data["p50_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        max_ms=data["max_us"] / 1000,
        errors=sum(v for k, v in data.items() if k.startswith("errors_")),
        bad=data["bad"],
        cpu_s=spent,
    )
