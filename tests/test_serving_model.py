"""The serving model: gunicorn.conf.py's default (gevent workers) as deployed, and the parts of
the shop that must keep working under it.

Each gunicorn here runs the project's gunicorn.conf.py without naming a worker class, on the
test database (PostgreSQL when TEST_DATABASE_URL is set, else an SQLite file), with SECRET_KEY
set. Toss is `toss-sandbox serve` in its own process, the sandbox mounted in-process, or a
stand-in in this process that holds its answers as long as a test says.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
import responses
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.serving import make_server
from werkzeug.wrappers import Request
from werkzeug.wrappers import Response as WerkzeugResponse

from payments.core.models import Order
from payments.extensions import db
from payments.sandbox.testing import SandboxDriver
from tests.helpers import (
    CLIENT_KEY,
    CONFIRM_URL,
    SECRET_KEY,
    TOSS,
    console_script,
    free_port,
    get_order,
    payment_json,
    success_url,
)

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
# What these tests set themselves: nothing of the runner's environment may decide them.
OWN = ("TOSS_", "DATABASE_URL", "APP_ENV", "SECRET_KEY", "SANDBOX_", "REDIS_URL", "RATELIMIT_",
       "WEB_CONCURRENCY", "PUBLIC_BASE_URL", "TRUSTED_PROXY_COUNT", "PROMETHEUS_", "GUNICORN_",
       "WEBHOOK_", "METRICS_")  # fmt: skip
NO_LIMIT = "100000 per minute"


def shop_env(tmp_path: Path, database_url: str, **values: str) -> dict[str, str]:
    """Development with SECRET_KEY set, limits out of the way, no worker count or class given."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(OWN)}
    env.update(
        APP_ENV="development",
        SECRET_KEY="serving-model-test-secret-key-0123456789",
        DATABASE_URL=database_url,
        SANDBOX_DATABASE_URL=f"sqlite:///{tmp_path / 'sandbox.sqlite3'}",
        PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "metrics"),
        RATELIMIT_CONFIRM=NO_LIMIT,
        RATELIMIT_SHOP=NO_LIMIT,
        RATELIMIT_WEBHOOK=NO_LIMIT,
        REDIS_URL="",
    )
    env.update(values)
    return env


def toss_at(base: str) -> dict[str, str]:
    """The shop's settings for a Toss at `base` (the sandbox's keys: the sandbox is off)."""
    return {
        "TOSS_SANDBOX": "0",
        "TOSS_CLIENT_KEY": CLIENT_KEY,
        "TOSS_SECRET_KEY": SECRET_KEY,
        "TOSS_API_BASE": base,
    }


@dataclass
class Server:
    base: str
    process: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@contextmanager
def gunicorn(
    tmp_path: Path, env: dict[str, str], *args: str, port: int | None = None
) -> Iterator[Server]:
    """`gunicorn app:app -c gunicorn.conf.py` until it answers /healthz; stopped afterwards."""
    port = port or free_port()
    env = {**env, "GUNICORN_BIND": f"127.0.0.1:{port}"}
    log = tmp_path / f"gunicorn-{port}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(BIN / "gunicorn"), "app:app", "-c", "gunicorn.conf.py", *args],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    server = Server(f"http://127.0.0.1:{port}", process, log)
    try:
        wait_until_up(server.base + "/healthz", process, log)
        yield server
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(40)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def wait_until_up(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    """Until `url` answers 200 (a worker may take seconds to import the app on a busy machine)."""
    deadline = time.monotonic() + 60
    while True:
        assert process.poll() is None, f"{url}: exited {process.returncode}:\n{log.read_text()}"
        try:
            if requests.get(url, timeout=5).status_code == 200:
                return
        except requests.RequestException:
            pass
        assert time.monotonic() < deadline, f"{url} did not answer:\n{log.read_text()}"
        time.sleep(0.1)


def pay_window(shop: str, sandbox: str, order: Order, scenario: str = "approve") -> str:
    """What the widget and the payment window do when the shopper pays: the success redirect."""
    window = SandboxDriver.over_http(sandbox, client_key=CLIENT_KEY).open_window(
        order.order_id,
        order.amount,
        scenario=scenario,
        order_name=order.order_name,
        method="가상계좌" if scenario == "virtual_account" else "카드",
        success_url=shop + "/checkout/success",
        fail_url=shop + "/checkout/fail",
    )
    return window.redirect_url


def landed_status(page: requests.Response) -> str:
    found = re.search(r'data-status="([A-Z_]+)"', page.text)
    assert found, page.text[:500]
    return found.group(1)


def wait_for_status(app: Flask, order_id: str, status: str, seconds: float = 30) -> str:
    deadline = time.monotonic() + seconds
    current = ""
    while time.monotonic() < deadline:
        current = get_order(app, order_id).status
        if current == status:
            break
        time.sleep(0.2)
    return current


# -- a Toss stand-in -------------------------------------------------------------------------------


class TossStandIn:
    """Toss's confirm on a loopback port: answers a DONE card payment for what it was asked,
    after `hold` seconds or, with `gather`, once that many confirms are waiting at once (each
    gives up after `hold`). Lookups find nothing (404 NOT_FOUND_PAYMENT) at once."""

    def __init__(self, hold: float = 0.0, gather: int = 0) -> None:
        self.hold = hold
        self.gather = gather
        self.confirms: list[dict[str, Any]] = []
        self.in_flight = 0
        self.peak = 0
        self.changed = threading.Condition()
        self.server = make_server("127.0.0.1", 0, self._app, threaded=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}"

    def _app(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        if request.method != "POST" or not request.path.endswith("/payments/confirm"):
            body = {"code": "NOT_FOUND_PAYMENT", "message": "존재하지 않는 결제 정보 입니다."}
            return _json(404, body)(environ, start_response)
        asked = request.get_json()
        deadline = time.monotonic() + self.hold
        with self.changed:
            self.confirms.append(asked)
            self.in_flight += 1
            self.peak = max(self.peak, self.in_flight)
            self.changed.notify_all()
            while time.monotonic() < deadline and not (self.gather and self.peak >= self.gather):
                self.changed.wait(deadline - time.monotonic())
            self.in_flight -= 1
        payment = payment_json(asked["orderId"], asked["amount"], asked["paymentKey"])
        return _json(200, payment)(environ, start_response)

    def wait_for_confirms(self, count: int, seconds: float = 30) -> None:
        deadline = time.monotonic() + seconds
        with self.changed:
            while len(self.confirms) < count:
                left = deadline - time.monotonic()
                assert left > 0, f"{len(self.confirms)} of {count} confirms reached Toss"
                self.changed.wait(left)


def _json(status: int, body: object) -> WerkzeugResponse:
    return WerkzeugResponse(json.dumps(body), status, mimetype="application/json")


@contextmanager
def stand_in(hold: float = 0.0, gather: int = 0) -> Iterator[TossStandIn]:
    toss = TossStandIn(hold, gather)
    toss.thread.start()
    try:
        yield toss
    finally:
        toss.server.shutdown()
        toss.thread.join(5)


# -- the model -------------------------------------------------------------------------------------


def test_gunicorn_conf_defaults_to_gevent_with_one_process_per_core() -> None:
    """Read as gunicorn reads it, with no GUNICORN_* or WEB_CONCURRENCY in the environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(OWN)}
    code = (
        "import runpy, json; c = runpy.run_path('gunicorn.conf.py'); "
        "print(json.dumps({k: c[k] for k in ('worker_class', 'workers', 'worker_connections', "
        "'graceful_timeout', 'timeout')}))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    settings = json.loads(done.stdout)
    assert settings["worker_class"] == "gevent"
    assert settings["workers"] == 2
    assert settings["worker_connections"] >= 256
    assert settings["graceful_timeout"] >= 10
    assert settings["timeout"] > settings["graceful_timeout"]


def test_no_database_connection_is_held_while_toss_answers(
    app: Flask,
    client: FlaskClient,
    toss: responses.RequestsMock,
    order_factory: Callable[..., Order],
) -> None:
    """The claim is committed before Toss is called and nothing reads the order again until
    Toss answers: a confirmation waiting on Toss holds no pooled connection, so a pool far
    smaller than the confirmations in flight never runs dry. The same for the lookup that
    follows an unknown outcome."""
    order = order_factory()
    held: dict[str, int] = {}

    def confirm(_request: Any) -> Any:
        held["confirm"] = db.engine.pool.checkedout()  # type: ignore[attr-defined]
        raise requests.ReadTimeout("Toss took too long")

    def lookup(_request: Any) -> Any:
        held["lookup"] = db.engine.pool.checkedout()  # type: ignore[attr-defined]
        return 200, {}, json.dumps(payment_json(order.order_id, order.amount, "tpk_serving_1"))

    toss.add_callback(responses.POST, CONFIRM_URL, callback=confirm)
    toss.add_callback(responses.GET, f"{TOSS}/v1/payments/orders/{order.order_id}", callback=lookup)
    app.extensions["toss"].max_retries = 0

    resp = client.get(success_url(order.order_id, "tpk_serving_1", order.amount))

    assert resp.status_code == 303
    assert held == {"confirm": 0, "lookup": 0}
    assert get_order(app, order.order_id).status == "PAID"


# -- end to end under gunicorn ---------------------------------------------------------------------


@pytest.fixture
def sandbox_server(tmp_path: Path) -> Iterator[Callable[[str], str]]:
    """Starts `toss-sandbox serve` (its own process and database) sending webhooks to a shop:
    call with the shop's origin, get the sandbox's."""
    started: list[subprocess.Popen[bytes]] = []

    def start(shop: str) -> str:
        port = free_port()
        log = tmp_path / "toss-sandbox.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SANDBOX_", "TOSS_"))}
        with log.open("wb") as out:
            process = subprocess.Popen(
                [*console_script("toss-sandbox", "payments.sandbox"), "serve",
                 "--port", str(port), "--db", str(tmp_path / "toss-sandbox.sqlite3"),
                 "--webhook-url", shop + "/api/payment/webhook"],
                cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        started.append(process)
        base = f"http://127.0.0.1:{port}"
        wait_until_up(base + "/sandbox/widget/v2/standard", process, log)
        return base

    yield start
    for process in started:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


@pytest.mark.parametrize("toss", ["toss-sandbox serve", "in-process sandbox"])
def test_gunicorn_default_model_pays_a_card_and_a_virtual_account_end_to_end(
    app: Flask,
    database_url: str,
    order_factory: Callable[..., Order],
    sandbox_server: Callable[[str], str],
    tmp_path: Path,
    toss: str,
) -> None:
    """The shopper returns from the payment window and lands on a PAID order page; the deposit
    of a virtual account arrives as Toss's webhook, which the embedded webhook worker (a
    greenlet here) re-checks with Toss before the order becomes PAID."""
    port = free_port()
    shop_base = f"http://127.0.0.1:{port}"
    env = shop_env(tmp_path, database_url, WEBHOOK_WORKER_EMBEDDED="1")
    if toss == "toss-sandbox serve":
        sandbox = sandbox_server(shop_base)
        env.update(toss_at(sandbox + "/sandbox"))
    else:
        sandbox = shop_base  # mounted under /sandbox, reached without a socket
    card, account = order_factory(), order_factory()

    with gunicorn(tmp_path, env, port=port) as shop:
        assert "Using worker: gevent" in shop.output()
        shopper = requests.Session()
        landed = shopper.get(pay_window(shop.base, sandbox, card), timeout=30)
        assert landed.status_code == 200
        assert f"/orders/{card.order_id}" in landed.url
        assert landed_status(landed) == "PAID"

        waiting = shopper.get(
            pay_window(shop.base, sandbox, account, "virtual_account"), timeout=30
        )
        assert landed_status(waiting) == "AWAITING_DEPOSIT"
        deposit = SandboxDriver.over_http(sandbox, client_key=CLIENT_KEY).deposit(account.order_id)
        assert deposit.status == 200, deposit.body
        assert wait_for_status(app, account.order_id, "PAID") == "PAID"
    assert "Traceback" not in shop.output()


def test_one_worker_keeps_forty_confirmations_waiting_on_toss_at_once(
    app: Flask, database_url: str, order_factory: Callable[..., Order], tmp_path: Path
) -> None:
    """One gevent worker: Toss answers only once 40 confirmations wait on it together — more
    than the database pool's 15 connections and than any thread count gunicorn.conf.py had.
    Every one ends PAID with a 303 to its order page."""
    orders = [order_factory() for _ in range(40)]
    env = shop_env(tmp_path, database_url, WEBHOOK_WORKER_EMBEDDED="0")
    with stand_in(hold=60, gather=len(orders)) as toss:
        env.update(toss_at(toss.base))
        with gunicorn(tmp_path, env, "-w", "1") as shop:

            def confirm(i: int) -> int:
                order = orders[i]
                url = shop.base + success_url(order.order_id, f"tpk_many_{i}", order.amount)
                return requests.get(url, allow_redirects=False, timeout=90).status_code

            with ThreadPoolExecutor(len(orders)) as pool:
                statuses = list(pool.map(confirm, range(len(orders))))
        assert toss.peak == len(orders), f"at most {toss.peak} confirms waited on Toss at once"
    assert statuses == [303] * len(orders)
    assert {get_order(app, o.order_id).status for o in orders} == {"PAID"}
    assert "Traceback" not in shop.output()


def test_the_toss_read_timeout_holds_under_gevent(
    app: Flask, database_url: str, order_factory: Callable[..., Order], tmp_path: Path
) -> None:
    """Toss holds the confirm longer than TOSS_READ_TIMEOUT: the monkey-patched socket gives up
    at the timeout, the outcome is unknown, the lookup finds nothing yet, and the order waits
    for reconcile (NEEDS_RECONCILE) while the shopper is sent to the order page — well before
    Toss would have answered."""
    order = order_factory()
    env = shop_env(
        tmp_path, database_url, WEBHOOK_WORKER_EMBEDDED="0", TOSS_READ_TIMEOUT="1",
        TOSS_MAX_RETRIES="0",
    )  # fmt: skip
    with stand_in(hold=30) as toss:
        env.update(toss_at(toss.base))
        with gunicorn(tmp_path, env, "-w", "1") as shop:
            url = shop.base + success_url(order.order_id, "tpk_slow_1", order.amount)
            resp = requests.get(url, allow_redirects=False, timeout=20)
            with toss.changed:
                toss.hold = 0  # let the held answer go, so the server stops promptly
                toss.changed.notify_all()
    assert resp.status_code in (202, 303), resp.text[:300]
    assert len(toss.confirms) == 1
    assert get_order(app, order.order_id).status == "NEEDS_RECONCILE"


def test_sigterm_lets_a_confirmation_waiting_on_toss_finish(
    app: Flask, database_url: str, order_factory: Callable[..., Order], tmp_path: Path
) -> None:
    """SIGTERM to the master while Toss holds a confirmation for 2 s: the worker stops taking
    new connections but finishes the one in hand (graceful_timeout), then gunicorn exits."""
    order = order_factory()
    env = shop_env(tmp_path, database_url, WEBHOOK_WORKER_EMBEDDED="0")
    answer: dict[str, Any] = {}
    with stand_in(hold=2) as toss:
        env.update(toss_at(toss.base))
        with gunicorn(tmp_path, env, "-w", "1") as shop:

            def confirm() -> None:
                url = shop.base + success_url(order.order_id, "tpk_term_1", order.amount)
                try:
                    answer["resp"] = requests.get(url, allow_redirects=False, timeout=30)
                except requests.RequestException as exc:
                    answer["error"] = exc

            shopper = threading.Thread(target=confirm)
            shopper.start()
            toss.wait_for_confirms(1)
            shop.process.send_signal(signal.SIGTERM)
            shopper.join(30)
            exit_code = shop.process.wait(40)
    assert "error" not in answer, answer.get("error")
    assert answer["resp"].status_code == 303
    assert answer["resp"].headers["Location"].startswith(f"/orders/{order.order_id}")
    assert get_order(app, order.order_id).status == "PAID"
    assert exit_code == 0, shop.output()[-2000:]


def test_metrics_add_up_across_two_gevent_workers(
    app: Flask, database_url: str, order_factory: Callable[..., Order], tmp_path: Path
) -> None:
    """Prometheus multiprocess mode (gunicorn.conf.py sets the directory): confirmations
    answered by both workers are summed in /metrics, whichever worker serves the scrape. Each
    confirmation comes on a fresh connection, until both workers have answered some (the access
    log names the worker's pid)."""
    orders = [order_factory() for _ in range(30)]
    access_log = tmp_path / "access.log"
    env = shop_env(tmp_path, database_url, WEBHOOK_WORKER_EMBEDDED="0")
    args = ("-w", "2", "--access-logfile", str(access_log), "--access-logformat", "%(p)s %(U)s")

    def answered_by() -> set[str]:
        lines = access_log.read_text().splitlines() if access_log.exists() else []
        return {line.split()[0] for line in lines if line.endswith(" /checkout/success")}

    statuses = []
    with stand_in() as toss:
        env.update(toss_at(toss.base))
        with gunicorn(tmp_path, env, *args) as shop:
            for i, order in enumerate(orders):
                url = shop.base + success_url(order.order_id, f"tpk_metrics_{i}", order.amount)
                resp = requests.get(
                    url, allow_redirects=False, timeout=30, headers={"Connection": "close"}
                )
                statuses.append(resp.status_code)
                if i >= 3 and len(answered_by()) == 2:
                    break
            scrapes = [
                requests.get(shop.base + "/metrics", timeout=10, headers={"Connection": "close"})
                for _ in range(4)
            ]
    assert statuses == [303] * len(statuses)
    assert len(answered_by()) == 2, "one worker answered every confirmation"
    for scrape in scrapes:
        assert scrape.status_code == 200
        found = re.search(r'^shop_confirmations_total\{[^}]*outcome="paid"[^}]*\} (\S+)$',
                          scrape.text, re.MULTILINE)  # fmt: skip
        assert found, scrape.text[:2000]
        assert float(found.group(1)) == len(statuses)
