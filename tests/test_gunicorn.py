"""gunicorn as deployed: `gunicorn app:app -w 1` (one sync worker) completes a sandbox checkout,
and gunicorn.conf.py refuses unsafe multi-worker settings before any worker starts.

Calling our own port from inside the only worker would deadlock; the sandbox is reached
in-process, so confirmation and the webhooks it triggers all complete.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests
from werkzeug.security import generate_password_hash

from payments.sandbox.testing import SandboxDriver
from tests.helpers import BUYER_FORM, csrf_token, free_port

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


@pytest.fixture
def gunicorn_shop(tmp_path: Path) -> Iterator[str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TOSS_", "DATABASE_URL", "APP_ENV", "SECRET_KEY", "SANDBOX_"))
    }
    env.update(
        APP_ENV="development",
        DATABASE_URL=f"sqlite:///{tmp_path / 'shop.sqlite3'}",
        SECRET_KEY="gunicorn-test-secret-key",
        # The sandbox (on: no Toss keys) keeps its own database, here beside the shop's.
        SANDBOX_DATABASE_URL=f"sqlite:///{tmp_path / 'sandbox.sqlite3'}",
    )
    for command in (["db", "upgrade"], ["seed"]):
        subprocess.run(
            [str(BIN / "flask"), "--app", "app", *command],
            cwd=ROOT, env=env, check=True, capture_output=True, timeout=60,
        )  # fmt: skip
    port = free_port()
    server = subprocess.Popen(
        [str(BIN / "gunicorn"), "app:app", "-w", "1", "-k", "sync", "-b", f"127.0.0.1:{port}",
         "--timeout", "20"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                requests.get(base + "/", timeout=5)
                break
            except (requests.ConnectionError, requests.Timeout):
                time.sleep(0.2)
        yield base
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()


@pytest.mark.parametrize("scenario", ["approve", "virtual_account"])
def test_single_sync_worker_completes_a_checkout(gunicorn_shop: str, scenario: str) -> None:
    shopper = requests.Session()
    catalog = shopper.get(gunicorn_shop + "/", timeout=10).text
    product_id = re.search(r'data-product-id="(\d+)"', catalog).group(1)  # type: ignore[union-attr]
    shopper.post(
        gunicorn_shop + "/cart",
        data={"product_id": product_id, "quantity": "2", "csrf_token": csrf_token(catalog)},
        timeout=10,
    )
    cart = shopper.get(gunicorn_shop + "/cart", timeout=10).text
    checkout = shopper.post(
        gunicorn_shop + "/orders",
        data={"csrf_token": csrf_token(cart), **BUYER_FORM},
        timeout=10,
    )
    assert re.search(r"/checkout/[A-Za-z0-9_-]{20,}$", checkout.url)
    page = checkout.text
    data = dict(re.findall(r'data-([a-z-]+)="([^"]*)"', page))
    assert data["success-url"] == gunicorn_shop + "/checkout/success"

    # What the widget and payment window do when the shopper picks the outcome.
    toss = SandboxDriver.over_http(gunicorn_shop, client_key=data["client-key"])
    window = toss.open_window(
        data["order-id"],
        int(data["amount"]),
        scenario=scenario,
        order_name=data["order-name"],
        method="가상계좌" if scenario == "virtual_account" else "카드",
        success_url=data["success-url"],
        fail_url=data["fail-url"],
    )
    landed = shopper.get(window.redirect_url, timeout=30)

    expected = "AWAITING_DEPOSIT" if scenario == "virtual_account" else "PAID"
    assert landed.status_code == 200
    assert f"/orders/{data['order-id']}" in landed.url
    assert f'data-status="{expected}"' in landed.text
    assert f"{int(data['amount']):,}원" in landed.text

    if scenario == "virtual_account":
        deposit = toss.deposit(data["order-id"])
        assert deposit.status == 200, deposit.body
        deadline = time.monotonic() + 20
        status = ""
        while time.monotonic() < deadline and status != "PAID":
            time.sleep(0.3)
            html = shopper.get(landed.url, timeout=10).text
            status = re.search(r'data-status="([A-Z_]+)"', html).group(1)  # type: ignore[union-attr]
        assert status == "PAID"


# -- start-up refusals and shared limits (several workers) ---------------------------------------

REDIS = "redis://127.0.0.1:6379/15"
LIVE_KEYS = {
    "TOSS_CLIENT_KEY": "live_gck_" + "gunicorntest",
    "TOSS_SECRET_KEY": "live_gsk_" + "gunicorntest",
}
# What these tests set themselves: nothing of the runner's environment may decide them.
OWN = ("TOSS_", "DATABASE_URL", "APP_ENV", "SECRET_KEY", "SANDBOX_", "REDIS_URL", "RATELIMIT_",
       "WEB_CONCURRENCY", "PUBLIC_BASE_URL", "TRUSTED_PROXY_COUNT", "PROMETHEUS_", "GUNICORN_",
       "ADMIN_", "WEBHOOK_")  # fmt: skip


def clean_env(tmp_path: Path, **values: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(OWN)}
    env.update(
        DATABASE_URL=f"sqlite:///{tmp_path / 'shop.sqlite3'}",
        SANDBOX_DATABASE_URL=f"sqlite:///{tmp_path / 'sandbox.sqlite3'}",
        SANDBOX_WEBHOOKS_ENABLED="0",
        WEBHOOK_WORKER_EMBEDDED="0",
        PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "metrics"),
    )
    env.update(values)
    return env


def production_env(tmp_path: Path, **values: str) -> dict[str, str]:
    return clean_env(
        tmp_path,
        APP_ENV="production",
        SECRET_KEY="gunicorn-production-secret-key-0123456789",
        TOSS_SANDBOX="0",
        PUBLIC_BASE_URL="https://shop.example.kr",
        TRUSTED_PROXY_COUNT="1",
        **LIVE_KEYS,
        **values,
    )


def gunicorn(env: dict[str, str], *args: str) -> list[str]:
    port = free_port()
    env["GUNICORN_BIND"] = f"127.0.0.1:{port}"
    return [str(BIN / "gunicorn"), "app:app", "-c", "gunicorn.conf.py", *args]


def refusal(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """Run gunicorn expecting it to stop at start: its exit and output."""
    return subprocess.run(
        gunicorn(env, *args), cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )


@contextmanager
def serving(env: dict[str, str], *args: str) -> Iterator[str]:
    """gunicorn with `env`, until it answers /healthz (as its trusted proxy would ask)."""
    command = gunicorn(env, *args)
    base = "http://" + env["GUNICORN_BIND"]
    server = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            assert server.poll() is None, f"gunicorn exited:\n{server.communicate()[0]}"
            try:
                requests.get(base + "/healthz", headers=PROXIED, timeout=2)
                break
            except (requests.ConnectionError, requests.Timeout):
                assert time.monotonic() < deadline, "gunicorn did not answer"
                time.sleep(0.2)
        yield base
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


# The proxy in front (TRUSTED_PROXY_COUNT=1) tells the app the shopper came over https.
PROXIED = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.50"}


@pytest.fixture
def redis_db() -> str:
    try:
        import redis

        redis.Redis.from_url(REDIS, socket_connect_timeout=1).ping()
    except Exception:  # noqa: BLE001 — any failure means no Redis here
        if os.environ.get("CI") == "true":
            raise
        pytest.skip("Redis is not reachable on 127.0.0.1:6379")
    return REDIS


def test_production_with_two_workers_and_no_shared_limits_refuses_to_start(
    tmp_path: Path,
) -> None:
    """Each worker would count alone: admin login's 5 a minute would be 5 per worker."""
    done = refusal(production_env(tmp_path), "-w", "2")

    assert done.returncode != 0
    output = done.stdout + done.stderr
    assert "REDIS_URL" in output
    assert "WEB_CONCURRENCY=2" in output  # the count given on the command line
    assert "Booting worker" not in output  # refused before any worker started
    assert "Traceback" not in output


def test_production_with_two_workers_and_redis_starts(tmp_path: Path, redis_db: str) -> None:
    env = production_env(
        tmp_path, REDIS_URL=redis_db, RATELIMIT_KEY_PREFIX=f"g{uuid.uuid4().hex[:8]}"
    )
    with serving(env, "-w", "2") as base:
        health = requests.get(base + "/healthz", headers=PROXIED, timeout=10)
        assert health.status_code == 200
        # Straight from a client (no proxy's https): redirected to the configured origin,
        # whatever Host it named.
        plain = requests.get(
            base + "/cart?x=1", headers={"Host": "evil.example"}, allow_redirects=False, timeout=10
        )
        assert plain.status_code == 301
        assert plain.headers["Location"] == "https://shop.example.kr/cart?x=1"


@pytest.mark.parametrize("app_env", ["development", "production"])
def test_gunicorn_without_secret_key_refuses_to_start(tmp_path: Path, app_env: str) -> None:
    """Each worker would mint its own key: a CSRF token from one fails on the other."""
    env = production_env(tmp_path) if app_env == "production" else clean_env(tmp_path)
    env.pop("SECRET_KEY", None)
    env["APP_ENV"] = app_env

    done = refusal(env, "-w", "1")

    assert done.returncode != 0
    assert "SECRET_KEY" in done.stderr
    assert "Booting worker" not in done.stdout + done.stderr


def test_admin_login_limit_is_shared_by_two_workers(tmp_path: Path, redis_db: str) -> None:
    """Redis, two workers, 5 logins a minute: the 6th attempt and every one after it gets 429,
    whichever worker answers (every request on a fresh connection; the access log names the
    worker's pid)."""
    access_log = tmp_path / "access.log"
    env = clean_env(
        tmp_path,
        APP_ENV="development",
        SECRET_KEY="gunicorn-shared-limit-secret-key",
        REDIS_URL=redis_db,
        RATELIMIT_KEY_PREFIX=f"g{uuid.uuid4().hex[:8]}",
        ADMIN_LOGIN_LIMIT="5 per minute",
        ADMIN_PASSWORD_HASH=generate_password_hash("the-right-password"),
    )
    subprocess.run([str(BIN / "flask"), "--app", "app", "db", "upgrade"],
                   cwd=ROOT, env=env, check=True, capture_output=True, timeout=60)  # fmt: skip
    log_format = "%(p)s %(s)s %(m)s %(U)s"  # pid status method path
    args = ("-w", "2", "--access-logfile", str(access_log), "--access-logformat", log_format)
    with serving(env, *args) as base:
        operator = requests.Session()
        operator.headers["Connection"] = "close"  # a new connection, any worker, each time
        token = csrf_token(operator.get(base + "/admin/login", timeout=10).text)
        statuses = []
        for _ in range(40):
            resp = operator.post(
                base + "/admin/login",
                data={"password": "wrong", "csrf_token": token},
                timeout=10,
            )
            statuses.append(resp.status_code)
            refusers = {
                line.split()[0]
                for line in access_log.read_text().splitlines()
                if line.endswith(" 429 POST /admin/login")
            }
            if len(statuses) > 8 and len(refusers) >= 2:
                break
    assert statuses[:5] == [401] * 5
    assert set(statuses[5:]) == {429}
    assert len(refusers) == 2, "one worker answered every refused attempt"
    print(f"\n{len(statuses)} attempts: 5 x 401, then 429 from workers {sorted(refusers)}")
