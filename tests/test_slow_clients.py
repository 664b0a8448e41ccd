"""Slow clients: 256 connections that trickle a request header one byte a second.

Production puts nginx in front of gunicorn (docs/deploy/nginx.conf): it reads each request
whole, under client_header_timeout, before gunicorn sees it, limits bodies and buffers answers.
This test runs the project's gunicorn settings as they are (gunicorn.conf.py's default worker
model) and an nginx made of the upstream and server blocks of docs/deploy/nginx.conf (ports
changed, TLS left out), and shows normal requests answered through nginx while the trickle goes
on and every trickler cut off at the header deadline.

Straight to gunicorn, its gevent workers hold each trickler with a greenlet, not a thread, so the
others are still served, and they read every request under the keep-alive deadline
(GUNICORN_KEEPALIVE), which ends the trickle too. A gthread worker reads a header with no
deadline: the same trickle would hold every thread and starve everybody else.

nginx is Debian's package (scripts/ensure-nginx): missing, the test skips, except in CI.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from tests.helpers import free_port

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
DEPLOY_CONF = ROOT / "docs" / "deploy" / "nginx.conf"

SLOW_CONNECTIONS = 256
# A request line and headers that never end: one byte of it per connection per second.
TRICKLE = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Trickle: " + b"a" * 4000
# What the production server block must keep for this test to mean anything.
REQUIRED = (
    "client_header_timeout 10s;",
    "client_max_body_size 64k;",
    "proxy_request_buffering on;",
    "proxy_buffering on;",
    "proxy_set_header X-Forwarded-For $remote_addr;",
    "proxy_set_header X-Forwarded-Proto $scheme;",
)


@pytest.fixture
def nginx_binary() -> str:
    """Asked before gunicorn starts: a skip costs nothing."""
    found = shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx",) if os.access(p, os.X_OK)), None
    )
    if found:
        return found
    if os.environ.get("CI") == "true":
        pytest.fail("nginx is missing: CI must run the slow-client test (scripts/ensure-nginx)")
    pytest.skip("nginx not found: install Debian's nginx (scripts/ensure-nginx) to run this")


def top_level_blocks(conf: str) -> list[str]:
    """The top-level `name args { … }` blocks of an nginx file, comments and quotes respected."""
    blocks, depth, start, i = [], 0, None, 0
    while i < len(conf):
        ch = conf[i]
        if ch == "#":
            i = conf.find("\n", i) if "\n" in conf[i:] else len(conf)
            continue
        if ch in "'\"":
            end = i + 1
            while conf[end] != ch:
                end += 2 if conf[end] == "\\" else 1
            i = end + 1
            continue
        if depth == 0 and start is None and not ch.isspace():
            start = i
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0 and start is not None:
                blocks.append(conf[start : i + 1])
                start = None
        elif ch == ";" and depth == 0:
            start = None
        i += 1
    return blocks


def proxy_config(nginx_port: int, upstream_port: int, prefix: Path) -> str:
    """docs/deploy/nginx.conf's upstream and the shop's server block, on test ports, no TLS."""
    blocks = top_level_blocks(DEPLOY_CONF.read_text(encoding="utf-8"))
    upstream = next(b for b in blocks if b.startswith("upstream shop "))
    server = next(b for b in blocks if b.startswith("server ") and "proxy_pass" in b)
    assert "server 127.0.0.1:8000;" in upstream
    upstream = upstream.replace("127.0.0.1:8000", f"127.0.0.1:{upstream_port}")
    lines = [
        line
        for line in server.splitlines()
        if not re.match(r"\s*(listen|ssl_)", line.split("#")[0])
    ]
    lines.insert(1, f"    listen 127.0.0.1:{nginx_port};")
    server = "\n".join(lines)
    for directive in REQUIRED:
        assert directive in server, f"docs/deploy/nginx.conf lost `{directive}`"
    temp_paths = "\n".join(
        f"    {kind}_temp_path {prefix / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    # As root, nginx's workers drop to an unprivileged user (they can still enter the prefix).
    user = "user nobody nogroup;\n" if os.geteuid() == 0 else ""
    return (
        f"{user}worker_processes 1;\n"
        f"pid {prefix / 'nginx.pid'};\n"
        f"error_log {prefix / 'error.log'} warn;\n"
        "events { worker_connections 2048; }\n"
        "http {\n"
        "    access_log off;\n"
        "    default_type application/octet-stream;\n"
        f"{temp_paths}\n"
        f"{upstream}\n{server}\n"
        "}\n"
    )


def wait_until_up(base: str, process: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            output = process.stdout.read().decode(errors="replace") if process.stdout else ""
            pytest.fail(f"{what} exited with {process.returncode}:\n{output[-3000:]}")
        try:
            if requests.get(base + "/healthz", timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    pytest.fail(f"{what} did not answer /healthz within 30 s")


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)


@pytest.fixture
def gunicorn_port(tmp_path: Path) -> Iterator[int]:
    """The shop under gunicorn with the project's gunicorn.conf.py and its defaults."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(
            ("TOSS_", "DATABASE_URL", "APP_ENV", "SECRET_KEY", "SANDBOX_", "GUNICORN_", "WEB_")
        )
    }
    port = free_port()
    env.update(
        APP_ENV="development",
        DATABASE_URL=f"sqlite:///{tmp_path / 'shop.sqlite3'}",
        SANDBOX_DATABASE_URL=f"sqlite:///{tmp_path / 'sandbox.sqlite3'}",
        SECRET_KEY="slow-clients-test-secret-key",
        TRUSTED_PROXY_COUNT="1",
        GUNICORN_BIND=f"127.0.0.1:{port}",
        PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "metrics"),
    )
    for command in (["db", "upgrade"], ["seed"]):
        subprocess.run(
            [str(BIN / "flask"), "--app", "app", *command],
            cwd=ROOT, env=env, check=True, capture_output=True, timeout=60,
        )  # fmt: skip
    server = subprocess.Popen(
        [str(BIN / "gunicorn"), "app:app", "-c", "gunicorn.conf.py"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        wait_until_up(f"http://127.0.0.1:{port}", server, "gunicorn")
        yield port
    finally:
        stop(server)


@pytest.fixture
def nginx_port(nginx_binary: str, gunicorn_port: int) -> Iterator[int]:
    """nginx with the production server block, in a prefix of its own (never the system's)."""
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="shop-nginx-") as name:
        prefix = Path(name)
        prefix.chmod(0o755)
        conf = prefix / "nginx.conf"
        conf.write_text(proxy_config(port, gunicorn_port, prefix), encoding="utf-8")
        server = subprocess.Popen(
            [nginx_binary, "-p", str(prefix), "-c", str(conf), "-e", str(prefix / "error.log"),
             "-g", "daemon off;"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            wait_until_up(f"http://127.0.0.1:{port}", server, "nginx")
            yield port
        finally:
            stop(server)


class Trickle:
    """`count` connections to `port`, each sent one more byte of a never-ending header every
    second by one thread, until closed."""

    def __init__(self, port: int, count: int) -> None:
        # Paced, as an attacker would: a burst could all be accepted by the one gunicorn worker
        # that happens to be awake, leaving the other free.
        self.sockets = []
        for _ in range(count):
            self.sockets.append(socket.create_connection(("127.0.0.1", port), timeout=5))
            time.sleep(0.005)
        for s in self.sockets:
            s.setblocking(False)  # a peek that never waits; one byte always fits the buffer
        self.closed_by_server: set[int] = set()
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set() and self.sent < len(TRICKLE):
            byte = TRICKLE[self.sent : self.sent + 1]
            for i, s in enumerate(self.sockets):
                if i in self.closed_by_server:
                    continue
                try:
                    # An answer (408) or EOF means the server has given up on this connection.
                    s.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
                    self.closed_by_server.add(i)
                    continue
                except BlockingIOError:
                    pass
                except OSError:
                    self.closed_by_server.add(i)
                    continue
                try:
                    s.send(byte)
                except OSError:
                    self.closed_by_server.add(i)
            self.sent += 1
            self._stop.wait(1.0)

    def open_count(self) -> int:
        return len(self.sockets) - len(self.closed_by_server)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        for s in self.sockets:
            s.close()


def timed_get(url: str, timeout: float) -> tuple[int | str, float]:
    """(status or the exception's name, seconds)."""
    started = time.monotonic()
    try:
        status: int | str = requests.get(url, timeout=timeout).status_code
    except requests.RequestException as exc:
        status = type(exc).__name__
    return status, time.monotonic() - started


def test_normal_requests_are_answered_through_nginx_while_256_clients_trickle(
    nginx_port: int, gunicorn_port: int
) -> None:
    proxied = f"http://127.0.0.1:{nginx_port}"
    direct = f"http://127.0.0.1:{gunicorn_port}"

    # nginx's own refusal of an oversized body keeps the app's {"code", "message"} shape.
    too_large = requests.post(proxied + "/api/payment/webhook", data=b"x" * 65 * 1024, timeout=5)
    assert too_large.status_code == 413
    assert too_large.json()["code"] == "PAYLOAD_TOO_LARGE"

    # Through nginx: 20 normal requests spread over ~6 s of trickling, each within 5 s.
    trickle = Trickle(nginx_port, SLOW_CONNECTIONS)
    try:
        time.sleep(2)
        results = []
        for i in range(20):
            results.append(timed_get(proxied + ("/healthz" if i % 2 else "/"), timeout=5))
            time.sleep(0.2)
        still_trickling = trickle.open_count()
        # client_header_timeout (10 s, one deadline for the whole header) ends them all.
        deadline = time.monotonic() + 8
        while trickle.open_count() and time.monotonic() < deadline:
            time.sleep(0.5)
        left_after_header_timeout = trickle.open_count()
        trickled_seconds = trickle.sent
    finally:
        trickle.close()
    slowest = max(seconds for _, seconds in results)
    print(
        f"\nthrough nginx: {sum(s == 200 for s, _ in results)}/20 answered 200, slowest "
        f"{slowest:.2f} s, {still_trickling}/{SLOW_CONNECTIONS} still trickling meanwhile; "
        f"{left_after_header_timeout} left open after {trickled_seconds} s"
    )
    assert [status for status, _ in results] == [200] * 20
    assert slowest < 5
    assert still_trickling == SLOW_CONNECTIONS  # the requests really ran during the trickle
    assert left_after_header_timeout == 0

    # The contrast, straight to gunicorn: the gevent workers keep answering while all 256
    # trickle, and drop each trickler themselves at their keep-alive deadline.
    trickle = Trickle(gunicorn_port, SLOW_CONNECTIONS)
    try:
        time.sleep(1)
        with ThreadPoolExecutor(4) as pool:
            direct_results = list(
                pool.map(lambda _: timed_get(direct + "/healthz", timeout=5), range(4))
            )
        held_at_first = trickle.open_count()  # the requests really ran during the trickle
        deadline = time.monotonic() + 15
        while trickle.open_count() and time.monotonic() < deadline:
            time.sleep(0.5)
        left_by_gunicorn = trickle.open_count()
        gunicorn_seconds = trickle.sent
    finally:
        trickle.close()
    print(
        f"straight to gunicorn: {direct_results} while {held_at_first} trickled; "
        f"{left_by_gunicorn} left open after {gunicorn_seconds} s"
    )
    assert held_at_first == SLOW_CONNECTIONS
    assert [status for status, _ in direct_results] == [200] * 4
    assert left_by_gunicorn == 0
