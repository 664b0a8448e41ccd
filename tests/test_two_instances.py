"""Two app instances (two gunicorn servers on two loopback ports) sharing one PostgreSQL
database, in sandbox mode: each server mounts the sandbox, and both sandboxes keep their state
in one database of the sandbox's own (SANDBOX_DATABASE_URL), so both servers talk to one Toss.
Needs TEST_DATABASE_URL; each test migrates a fresh database of its own.

The rate limit is shared too: with REDIS_URL both servers spend one budget per client.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from flask import Flask
from sqlalchemy import func, select

from payments.core.models import Payment, WebhookEvent
from payments.extensions import db
from payments.sandbox.testing import SandboxDriver, Window
from tests.helpers import (
    BUYER_FORM,
    csrf_token,
    dispose,
    free_port,
    get_order,
    make_app,
    race,
    transitions,
)

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SHARED_SECRET_KEY = "two-instances-shared-secret-key"


REDIS_URL = "redis://127.0.0.1:6379/15"


@pytest.fixture
def postgres_url(pg_base_url: str | None, fresh_database_url: str) -> str:
    if not pg_base_url:
        pytest.skip("needs TEST_DATABASE_URL (PostgreSQL)")
    return fresh_database_url


def base_env(database_url: str, sandbox_database_url: str) -> dict[str, str]:
    """Sandbox mode (no Toss keys), one SECRET_KEY for both servers, no embedded worker, one
    sandbox database for both.

    Each server runs the sandbox's webhook sender: it claims due webhooks in the shared sandbox
    database and delivers them in-process to its own server, where they are only stored
    (WEBHOOK_WORKER_EMBEDDED=0)."""
    drop = ("TOSS_", "DATABASE_URL", "APP_ENV", "SECRET_KEY", "PROMETHEUS_", "WEBHOOK_", "SANDBOX_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env.update(
        APP_ENV="development",
        DATABASE_URL=database_url,
        SECRET_KEY=SHARED_SECRET_KEY,
        WEBHOOK_WORKER_EMBEDDED="0",
        SANDBOX_DATABASE_URL=sandbox_database_url,
    )
    return env


def flask_cli(env: dict[str, str], *args: str) -> None:
    done = subprocess.run(
        [str(BIN / "flask"), "--app", "app", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


@dataclass
class Instance:
    name: str
    base: str
    env: dict[str, str]
    process: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


def stop(process: subprocess.Popen[bytes], timeout: float = 15) -> int | None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
    return process.returncode


@dataclass
class Cluster:
    a: Instance
    b: Instance
    app: Flask  # the shop on the shared database, for reading what the servers wrote
    tmp: Path


@pytest.fixture
def cluster(postgres_url: str, tmp_path: Path) -> Iterator[Cluster]:
    with running_cluster(postgres_url, tmp_path) as started:
        yield started


@contextmanager
def running_cluster(postgres_url: str, tmp_path: Path, **extra_env: str) -> Iterator[Cluster]:
    """`flask db upgrade` on a fresh database (the sandbox creates its tables in its own
    database then), then two gunicorn servers on them (the catalog is seeded while they boot)."""
    sandbox_url = "sqlite:///" + str(tmp_path / "toss-sandbox.sqlite3")
    env = {**base_env(postgres_url, sandbox_url), **extra_env}
    flask_cli(env, "db", "upgrade")
    started: list[Instance] = []
    app = make_app(postgres_url)
    try:
        for name in ("a", "b"):
            port = free_port()
            server_env = {**env, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / f"metrics-{name}")}
            log = tmp_path / f"gunicorn-{name}.log"
            with log.open("wb") as out:
                process = subprocess.Popen(
                    [str(BIN / "gunicorn"), "app:app", "-c", "gunicorn.conf.py", "-w", "1",
                     "-b", f"127.0.0.1:{port}", *control_socket(tmp_path / f"{name}.ctl")],
                    cwd=ROOT, env=server_env, stdout=out, stderr=subprocess.STDOUT,
                )  # fmt: skip
            started.append(Instance(name, f"http://127.0.0.1:{port}", server_env, process, log))
        flask_cli(env, "seed")
        for inst in started:
            deadline = time.monotonic() + 30
            while True:
                assert inst.process.poll() is None, inst.output()
                try:
                    if requests.get(inst.base + "/", timeout=2).status_code == 200:
                        break
                except (requests.ConnectionError, requests.Timeout):
                    pass
                assert time.monotonic() < deadline, inst.output()
                time.sleep(0.1)
        yield Cluster(started[0], started[1], app, tmp_path)
    finally:
        for inst in started:
            if inst.process.poll() is None:
                inst.process.send_signal(signal.SIGTERM)
        for inst in started:
            stop(inst.process)
        dispose(app)


def control_socket(path: Path) -> list[str]:
    """gunicorn ≥ 25 opens a control socket, by default one per user: one of its own each."""
    from gunicorn.config import KNOWN_SETTINGS

    if any(s.name == "control_socket" for s in KNOWN_SETTINGS):
        return ["--control-socket", str(path)]
    return []


# -- helpers --------------------------------------------------------------------------------------


def order_across_servers(cluster: Cluster, shopper: requests.Session) -> dict[str, str]:
    """Fill the cart on A, order on B (one session, one CSRF secret): the checkout data."""
    catalog = shopper.get(cluster.a.base + "/", timeout=10).text
    product_id = re.search(r'data-product-id="(\d+)"', catalog).group(1)  # type: ignore[union-attr]
    added = shopper.post(
        cluster.a.base + "/cart",
        data={"product_id": product_id, "quantity": "2", "csrf_token": csrf_token(catalog)},
        timeout=10,
    )
    assert added.status_code == 200, added.text
    cart = shopper.get(cluster.b.base + "/cart", timeout=10).text
    assert f'data-product-id="{product_id}"' in cart  # B reads the cart A wrote
    checkout = shopper.post(
        cluster.b.base + "/orders",
        data={"csrf_token": csrf_token(cart), **BUYER_FORM},
        timeout=10,
    )
    assert checkout.status_code == 200, checkout.text
    assert re.search(r"/checkout/[A-Za-z0-9_-]{20,}$", checkout.url), checkout.url
    return dict(re.findall(r'data-([a-z-]+)="([^"]*)"', checkout.text))


def open_window(base: str, data: dict[str, str], method: str, scenario: str) -> Window:
    """What the widget and window do when the shopper finishes (once): the success redirect."""
    return SandboxDriver.over_http(base, client_key=data["client-key"]).open_window(
        data["order-id"],
        int(data["amount"]),
        scenario=scenario,
        order_name=data["order-name"],
        method=method,
        success_url=base + "/checkout/success",
        fail_url=base + "/checkout/fail",
    )


def toss_view(base: str, payment_key: str) -> dict[str, Any]:
    return SandboxDriver.over_http(base).payment(payment_key)


# -- (a) one confirmation split across both servers -----------------------------------------------


def test_confirmations_split_across_two_servers_confirm_once(cluster: Cluster) -> None:
    shopper = requests.Session()
    data = order_across_servers(cluster, shopper)
    order_id, amount = data["order-id"], int(data["amount"])
    window = open_window(cluster.a.base, data, "카드", "approve")
    assert window.payment_key is not None, window
    payment_key = window.payment_key
    path_and_query = window.redirect_url[len(cluster.a.base) :]
    body = {"paymentKey": payment_key, "orderId": order_id, "amount": amount}

    def visit(base: str) -> Callable[[], tuple[str, int, str]]:
        def call() -> tuple[str, int, str]:
            resp = requests.get(base + path_and_query, allow_redirects=False, timeout=30)
            return ("success", resp.status_code, resp.headers.get("Location", ""))

        return call

    def verify(base: str) -> Callable[[], tuple[str, int, str]]:
        def call() -> tuple[str, int, str]:
            resp = requests.post(base + "/api/payment/verify", json=body, timeout=30)
            answer = resp.json()
            return ("verify", resp.status_code, answer.get("status") or answer.get("code"))

        return call

    calls = [make(inst.base) for inst in (cluster.a, cluster.b) for make in (visit, verify)] * 4
    answers = race(calls)

    print(f"\n16 doors over two servers: {sorted(answers)}")
    for door, status, detail in answers:
        if door == "success":
            # These calls carry no session: while another door's confirmation is in flight,
            # a browser that did not order waits on the page that asks again (202).
            assert status in (202, 303), (door, status, detail)
            if status == 303:
                assert f"/orders/{order_id}" in detail
        else:
            assert (status, detail) in ((200, "PAID"), (409, "PAYMENT_PENDING")), (status, detail)
    # Asking again once it is settled: the payer (right paymentKey) gets the signed link.
    for inst in (cluster.a, cluster.b):
        again = requests.get(inst.base + path_and_query, allow_redirects=False, timeout=30)
        assert again.status_code == 303
        assert f"/orders/{order_id}?t=" in again.headers["Location"]
    view = toss_view(cluster.b.base, payment_key)
    assert view["sandbox"]["confirmRequests"] == 1
    assert (view["status"], view["orderId"], view["totalAmount"]) == ("DONE", order_id, amount)
    order = get_order(cluster.app, order_id)
    assert (order.status, order.payment_key) == ("PAID", payment_key)
    assert [m[1] for m in transitions(cluster.app, order_id)] == ["CONFIRMING", "PAID"]
    with cluster.app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Payment)) == 1
    # The shopper's session (made on A, used on B) sees the paid order on either server.
    for inst in (cluster.a, cluster.b):
        page = shopper.get(f"{inst.base}/orders/{order_id}", timeout=10)
        assert page.status_code == 200
        assert 'data-status="PAID"' in page.text


# -- (b) a webhook accepted by A, processed by a worker beside B ------------------------------


def status_changed(order_id: str, payment_key: str, tid: str) -> tuple[bytes, dict[str, str]]:
    body = {
        "eventType": "PAYMENT_STATUS_CHANGED",
        "createdAt": "2026-11-22T10:00:06.000000",
        "data": {"paymentKey": payment_key, "orderId": order_id, "status": "DONE"},
    }
    headers = {
        "Content-Type": "application/json",
        "tosspayments-webhook-transmission-id": tid,
        "tosspayments-webhook-transmission-time": "2026-11-22T10:00:06+09:00",
        "tosspayments-webhook-transmission-retried-count": "0",
    }
    return json.dumps(body).encode(), headers


def test_webhook_accepted_by_one_server_is_processed_by_a_worker_beside_the_other(
    cluster: Cluster,
) -> None:
    shopper = requests.Session()
    data = order_across_servers(cluster, shopper)
    order_id = data["order-id"]
    window = open_window(cluster.a.base, data, "가상계좌", "virtual_account")
    assert window.payment_key is not None, window
    payment_key = window.payment_key
    landed = shopper.get(cluster.b.base + window.redirect_url[len(cluster.a.base) :], timeout=30)
    assert 'data-status="AWAITING_DEPOSIT"' in landed.text

    deposit = SandboxDriver.over_http(cluster.a.base).deposit(order_id)
    assert deposit.status == 200, deposit.body
    tid = "whtrans_two_instances_0001"
    raw, headers = status_changed(order_id, payment_key, tid)
    ack = requests.post(cluster.a.base + "/api/payment/webhook", data=raw, headers=headers)
    assert ack.status_code == 200, ack.text

    with cluster.app.app_context():
        event = db.session.execute(select(WebhookEvent).filter_by(transmission_id=tid)).scalar_one()
        assert (event.status, event.payment_key) == ("PENDING", payment_key)
    # Neither server processes webhooks (no embedded worker): the order waits.
    assert get_order(cluster.app, order_id).status == "AWAITING_DEPOSIT"

    worker_env = {**cluster.b.env, "PROMETHEUS_MULTIPROC_DIR": str(cluster.tmp / "metrics-w")}
    log = cluster.tmp / "worker.log"
    with log.open("wb") as out:
        worker = subprocess.Popen(
            [str(BIN / "flask"), "--app", "app", "payments", "worker", "--poll", "0.2"],
            cwd=ROOT, env=worker_env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with cluster.app.app_context():
                event_status = db.session.execute(
                    select(WebhookEvent.status).filter_by(transmission_id=tid)
                ).scalar_one()
                db.session.remove()
            if event_status == "DONE" and get_order(cluster.app, order_id).status == "PAID":
                break
            assert worker.poll() is None, log.read_text(errors="replace")
            time.sleep(0.2)
    finally:
        code = stop(worker)
    assert code == 0, log.read_text(errors="replace")  # SIGTERM: finishes the event in hand

    order = get_order(cluster.app, order_id)
    assert (order.status, order.payment_key) == ("PAID", payment_key)
    moves = transitions(cluster.app, order_id)
    assert moves[-1] == ("AWAITING_DEPOSIT", "PAID", "webhook")
    assert [m[1] for m in moves].count("PAID") == 1
    with cluster.app.app_context():
        s = db.session
        event = s.execute(select(WebhookEvent).filter_by(transmission_id=tid)).scalar_one()
        assert event.status == "DONE", (event.status, event.result, event.last_error)
        assert event.order_id == order_id
        # Its own lookup, or the sandbox's earlier webhook of the same payment looked it up
        # after this one arrived and settled both (coalesced).
        assert (event.result or "").startswith(("Toss DONE:", "coalesced into #")), event.result
        payment = s.execute(select(Payment).filter_by(payment_key=payment_key)).scalar_one()
        assert (payment.status, payment.balance_amount) == ("DONE", order.amount)
        outcomes = s.execute(select(WebhookEvent.kind, WebhookEvent.status)).all()
        assert all(st in ("DONE", "PENDING") for _, st in outcomes), outcomes
        print(f"\nwebhook events: {sorted(tuple(o) for o in outcomes)}; moves {moves}")
    view = toss_view(cluster.a.base, payment_key)
    assert view["status"] == "DONE"
    assert view["sandbox"]["confirmRequests"] == 1


def test_both_servers_spend_one_rate_limit_budget_in_redis(
    postgres_url: str, tmp_path: Path
) -> None:
    try:
        import redis

        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping()
    except Exception:  # noqa: BLE001 — any failure means no Redis here
        if os.environ.get("CI") == "true":
            raise
        pytest.skip("Redis is not reachable on 127.0.0.1:6379")
    prefix = f"two{uuid.uuid4().hex[:8]}"
    with running_cluster(
        postgres_url, tmp_path, REDIS_URL=REDIS_URL, RATELIMIT_CONFIRM="6 per minute",
        RATELIMIT_KEY_PREFIX=prefix,
    ) as both:  # fmt: skip
        statuses = []
        for i in range(8):
            server = both.a if i % 2 == 0 else both.b
            # A kept-alive idle connection would hold a gunicorn thread, and so the servers'
            # graceful stop, until the test's kill deadline.
            resp = requests.post(
                server.base + "/api/payment/verify",
                json={},
                headers={"Connection": "close"},
                timeout=10,
            )
            statuses.append((server.name, resp.status_code, resp.json()["code"]))
    assert [s[1] for s in statuses[:6]] == [400] * 6  # 3 on each server, one budget of 6
    assert [s[1:] for s in statuses[6:]] == [(429, "TOO_MANY_REQUESTS")] * 2
    assert {s[0] for s in statuses[6:]} == {"a", "b"}  # refused whichever server it reaches
