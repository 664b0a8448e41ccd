"""The sandbox's developer tools, driven the way Stripe's CLI drives Stripe: `toss-sandbox
trigger` (deposit, deposit-error, expire, cancel, abort), `toss-sandbox listen --forward-to`,
the /sandbox/dashboard page and its buttons, and the payment window's test card numbers.

The sandbox runs alone on the test's database, served on a loopback port by a werkzeug thread
(the commands reach it over HTTP as they would a `toss-sandbox serve`); one test runs both as
processes of their own. Toss's test environment has the same switches: its developer centre
lists test payments and cancels one or makes a virtual account's deposit
(https://docs.tosspayments.com/resources/faq).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from click.testing import CliRunner, Result
from flask import Flask
from werkzeug.serving import make_server

from payments.sandbox.cli import describe_delivery, main
from payments.sandbox.models import SandboxWebhook
from payments.sandbox.testing import SandboxDriver, new_order_id
from payments.sandbox.windows import TEST_CARDS
from tests.helpers import (
    WebhookReceiver,
    console_script,
    dispose,
    free_port,
    sandbox_alone,
    sandbox_app,
    sandbox_rows,
    wait_until_serving,
)

REPO = Path(__file__).resolve().parents[1]
# Webhooks are recorded for this URL (the sender is off unless a test turns it on).
HOOK = "http://shop.test/api/payment/webhook"
EXPIRED_MESSAGE = "결제가 만료되었습니다. 다시 시도해주세요."


@dataclass
class Served:
    """A sandbox alone, served on a loopback port."""

    app: Flask
    url: str

    @property
    def driver(self) -> SandboxDriver:
        return SandboxDriver.over_http(self.url)


@pytest.fixture
def serve_sandbox(database_url: str) -> Iterator[Callable[..., Served]]:
    """Serve the sandbox alone on the test's database (settings by field name; webhooks
    recorded for HOOK unless told otherwise) on a free loopback port."""
    started: list[tuple[Any, threading.Thread, Flask]] = []

    def start(**settings: Any) -> Served:
        app = sandbox_alone(database_url, **{"webhook_url": HOOK, **settings})
        server = make_server("127.0.0.1", 0, app, threaded=True)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        started.append((server, thread, app))
        return Served(app, f"http://127.0.0.1:{server.server_port}")

    yield start
    for server, thread, app in started:
        server.shutdown()
        thread.join(10)
        dispose(app)


@pytest.fixture
def served(serve_sandbox: Callable[..., Served]) -> Served:
    return serve_sandbox()


def trigger(served: Served, *args: str) -> Result:
    """`toss-sandbox trigger ARGS --url <served>`, in this process."""
    return CliRunner().invoke(main, ["trigger", *args, "--url", served.url])


def events(app: Flask) -> list[tuple[str, str]]:
    """(event type, status) of every webhook the sandbox queued, oldest first."""
    found = []
    for row in sandbox_rows(app, SandboxWebhook):
        body = json.loads(row.body)
        status = body["data"]["status"] if "data" in body else body["status"]
        found.append((row.event_type, status))
    return found


def issued_account(driver: SandboxDriver, amount: int = 15_000) -> tuple[str, str]:
    """A virtual account issued and waiting for its deposit: (orderId, paymentKey)."""
    w = driver.open_window(amount=amount, scenario="virtual_account", customerName="김토스")
    assert w.payment_key is not None
    answer = driver.confirm(w.payment_key, w.order_id, amount)
    assert answer.body["status"] == "WAITING_FOR_DEPOSIT", answer.body
    return w.order_id, w.payment_key


def paid_card(driver: SandboxDriver, amount: int = 15_000) -> tuple[str, str]:
    """A card payment confirmed (DONE): (orderId, paymentKey)."""
    w = driver.open_window(amount=amount)
    assert w.payment_key is not None
    assert driver.confirm(w.payment_key, w.order_id, amount).body["status"] == "DONE"
    return w.order_id, w.payment_key


# -- toss-sandbox trigger --------------------------------------------------------------------------


def test_trigger_deposit_and_deposit_error_by_order_id_or_payment_key(served: Served) -> None:
    """deposit: the buyer pays the waiting account (→ DONE); deposit-error: the bank reports an
    error on it (DONE → WAITING_FOR_DEPOSIT, https://docs.tosspayments.com/en/webhooks "In very
    few cases of network issues…"); each announced by PAYMENT_STATUS_CHANGED and
    DEPOSIT_CALLBACK (ibid.). REF may be the orderId or the paymentKey."""
    driver = served.driver
    order_id, payment_key = issued_account(driver)

    result = trigger(served, "deposit", order_id)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("deposit: DONE ")
    assert f"paymentKey={payment_key}" in result.stdout
    assert f"orderId={order_id}" in result.stdout

    result = trigger(served, "deposit-error", payment_key)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("deposit-error: WAITING_FOR_DEPOSIT ")
    assert trigger(served, "deposit", payment_key).exit_code == 0
    assert driver.payment(payment_key)["status"] == "DONE"
    assert events(served.app) == [
        ("PAYMENT_STATUS_CHANGED", "WAITING_FOR_DEPOSIT"),
        ("DEPOSIT_CALLBACK", "WAITING_FOR_DEPOSIT"),
        ("PAYMENT_STATUS_CHANGED", "DONE"),
        ("DEPOSIT_CALLBACK", "DONE"),
        ("PAYMENT_STATUS_CHANGED", "WAITING_FOR_DEPOSIT"),
        ("DEPOSIT_CALLBACK", "WAITING_FOR_DEPOSIT"),
        ("PAYMENT_STATUS_CHANGED", "DONE"),
        ("DEPOSIT_CALLBACK", "DONE"),
    ]


def test_trigger_expire(served: Served) -> None:
    """expire: an open window (READY) or an authenticated, unconfirmed payment (IN_PROGRESS) →
    EXPIRED with failure EXPIRED_PAYMENT and its webhook (the expired payment on Toss's forum,
    https://techchat.tosspayments.com/m/1410526054635933798); a virtual account passes its due
    date and stays WAITING_FOR_DEPOSIT with `virtualAccount.expired` true, sending nothing
    ("가상계좌가 만료된 경우에는 별도 콜백을 드리고 있지 않습니다",
    https://docs.tosspayments.com/misc/faq)."""
    driver = served.driver
    window_key, _ = driver.start_window(amount=5_000)
    result = trigger(served, "expire", window_key)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("expire: EXPIRED ")
    assert "failure=EXPIRED_PAYMENT" in result.stdout
    expired = driver.get(window_key).body
    assert expired["failure"] == {"code": "EXPIRED_PAYMENT", "message": EXPIRED_MESSAGE}

    authenticated = driver.open_window(amount=5_000)
    assert trigger(served, "expire", authenticated.order_id).exit_code == 0
    assert driver.get_by_order(authenticated.order_id).body["status"] == "EXPIRED"

    order_id, payment_key = issued_account(driver)
    queued = len(events(served.app))
    result = trigger(served, "expire", order_id, "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert (data["status"], data["virtualAccount"]["expired"]) == ("WAITING_FOR_DEPOSIT", True)
    assert len(events(served.app)) == queued  # nothing is sent
    assert events(served.app)[:2] == [
        ("PAYMENT_STATUS_CHANGED", "EXPIRED"),
        ("PAYMENT_STATUS_CHANGED", "EXPIRED"),
    ]
    # A deposit after the due date fails ("dueDate이 지난 시점에 입금을 시도하면 실패합니다",
    # https://docs.tosspayments.com/reference).
    refused = trigger(served, "deposit", payment_key)
    assert refused.exit_code == 1
    assert "VIRTUAL_ACCOUNT_EXPIRED" in refused.stderr


def test_trigger_cancel(served: Served) -> None:
    """cancel: the payment is cancelled outside the shop (as from Toss's developer centre or
    the merchant's console) through Toss's own cancel, with its webhooks: a card payment in
    full or in part (--amount); a waiting virtual account in full, announced by
    DEPOSIT_CALLBACK too (https://docs.tosspayments.com/en/webhooks); a deposited one refunded
    to a test account, its refundStatus PENDING (Toss refunds 2 days after the cancel,
    https://docs.tosspayments.com/reference, 결제 취소)."""
    driver = served.driver
    order_id, payment_key = paid_card(driver, 15_000)
    part = trigger(served, "cancel", order_id, "--amount", "5000")
    assert part.exit_code == 0, part.output
    assert part.stdout.startswith("cancel: PARTIAL_CANCELED ")
    assert "total=15,000 balance=10,000" in part.stdout
    rest = trigger(served, "cancel", payment_key)
    assert rest.exit_code == 0, rest.output
    assert rest.stdout.startswith("cancel: CANCELED ")
    cancelled = driver.get(payment_key).body
    assert [c["cancelAmount"] for c in cancelled["cancels"]] == [5_000, 10_000]
    assert (cancelled["balanceAmount"], cancelled["suppliedAmount"], cancelled["vat"]) == (0, 0, 0)

    waiting_order, _ = issued_account(driver)
    assert trigger(served, "cancel", waiting_order).exit_code == 0
    assert events(served.app)[-2:] == [
        ("PAYMENT_STATUS_CHANGED", "CANCELED"),
        ("DEPOSIT_CALLBACK", "CANCELED"),
    ]

    deposited_order, deposited_key = issued_account(driver)
    assert trigger(served, "deposit", deposited_order).exit_code == 0
    refunded = trigger(served, "cancel", deposited_order)
    assert refunded.exit_code == 0, refunded.output
    assert "refundStatus=PENDING" in refunded.stdout
    assert driver.get(deposited_key).body["virtualAccount"]["refundStatus"] == "PENDING"


def test_trigger_abort_fails_the_approval_and_a_later_confirm_gets_that_failure(
    served: Served,
) -> None:
    """abort: an authenticated payment's approval fails → ABORTED with the refusal as its
    `failure`, announced (ABORTED: "결제 승인이 실패한 상태", https://docs.tosspayments.com/reference;
    an ABORTED PAYMENT_STATUS_CHANGED on Toss's forum,
    https://techchat.tosspayments.com/m/1131524149819478036); the merchant's confirm then gets
    that error with its HTTP status (https://docs.tosspayments.com/reference/error-codes)."""
    driver = served.driver
    w = driver.open_window(amount=8_000)
    assert w.payment_key is not None
    result = trigger(served, "abort", w.payment_key)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("abort: ABORTED ")
    assert "failure=REJECT_CARD_PAYMENT" in result.stdout
    assert events(served.app) == [("PAYMENT_STATUS_CHANGED", "ABORTED")]
    answer = driver.confirm(w.payment_key, w.order_id, 8_000)
    assert (answer.status, answer.code) == (403, "REJECT_CARD_PAYMENT")

    other = driver.open_window(amount=8_000)
    assert other.payment_key is not None
    result = trigger(served, "abort", other.order_id, "--code", "COMMON_ERROR")
    assert result.exit_code == 0, result.output
    failure = driver.get(other.payment_key).body["failure"]
    assert failure == {
        "code": "COMMON_ERROR",
        "message": "일시적인 오류가 발생했습니다. 잠시 후 다시 시도해주세요.",
    }
    answer = driver.confirm(other.payment_key, other.order_id, 8_000)
    assert (answer.status, answer.code) == (500, "COMMON_ERROR")


def test_an_order_id_picks_the_payment_tosss_lookup_answers(served: Served) -> None:
    """REF as an orderId names the payment Toss's lookup by orderId answers: the approved one
    ("승인된 결제를 orderId로 조회", https://docs.tosspayments.com/reference), else the latest
    window (which one Toss answers then is not found in its docs: the sandbox's lookup)."""
    driver = served.driver
    order_id = new_order_id()
    first, _ = driver.start_window(order_id, 9_000)
    second, _ = driver.start_window(order_id, 9_000)
    assert trigger(served, "expire", order_id).exit_code == 0
    assert (driver.get(first).body["status"], driver.get(second).body["status"]) == (
        "READY",
        "EXPIRED",
    )
    paid = driver.open_window(order_id, 9_000)
    assert paid.payment_key is not None
    assert driver.confirm(paid.payment_key, order_id, 9_000).body["status"] == "DONE"
    assert trigger(served, "cancel", order_id).exit_code == 0
    assert driver.get(paid.payment_key).body["status"] == "CANCELED"
    assert driver.get(first).body["status"] == "READY"


@pytest.mark.parametrize(
    ("setup", "action", "code", "status"),
    [
        ("none", "deposit", "NOT_FOUND_PAYMENT", 404),
        ("none", "abort", "NOT_FOUND_PAYMENT", 404),
        ("card", "deposit", "NOT_WAITING_FOR_DEPOSIT", 409),
        ("card", "deposit-error", "NOT_DEPOSITED", 409),
        ("card", "abort", "NOT_ABORTABLE", 409),
        ("card", "expire", "NOT_EXPIRABLE", 409),
        ("window", "cancel", "NOT_CANCELABLE_PAYMENT", 403),
        ("window", "abort", "NOT_ABORTABLE", 409),
        ("cancelled", "cancel", "ALREADY_CANCELED_PAYMENT", 400),
    ],
)
def test_trigger_refusals_print_the_code_and_exit_1(
    served: Served, setup: str, action: str, code: str, status: int
) -> None:
    """An action the payment's status does not allow (or an unknown payment) changes nothing:
    the command prints the status, code and message on stderr and exits 1. Toss's own codes
    keep Toss's statuses (NOT_FOUND_PAYMENT 404, NOT_CANCELABLE_PAYMENT 403,
    ALREADY_CANCELED_PAYMENT 400: https://docs.tosspayments.com/reference/error-codes); the
    helpers' own refusals are 409."""
    driver = served.driver
    ref = "tvivaNoSuchPayment000000000000"
    if setup == "card":
        _, ref = paid_card(driver)
    elif setup == "window":
        ref, _ = driver.start_window()
    elif setup == "cancelled":
        _, ref = paid_card(driver)
        assert driver.cancel(ref).status == 200
    before = driver.payment(ref)["status"] if setup != "none" else None
    queued = len(events(served.app))

    result = trigger(served, action, ref)
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.startswith(f"refused: {status} {code}: ")
    if before is not None:
        assert driver.payment(ref)["status"] == before
    assert len(events(served.app)) == queued


def test_trigger_usage_errors_and_an_unreachable_sandbox(served: Served) -> None:
    """Options that do not fit the action are usage errors (exit 2); a sandbox that does not
    answer is said so (exit 1)."""
    assert trigger(served, "deposit", "x", "--amount", "100").exit_code == 2
    assert trigger(served, "cancel", "x", "--code", "COMMON_ERROR").exit_code == 2
    assert trigger(served, "refund", "x").exit_code == 2
    bad_code = trigger(served, "abort", "x", "--code", "PAY_PROCESS_CANCELED")
    assert (bad_code.exit_code, bad_code.stderr.split(":")[0]) == (1, "refused")
    assert "INVALID_REQUEST" in bad_code.stderr

    nowhere = f"http://127.0.0.1:{free_port()}"
    result = CliRunner().invoke(main, ["trigger", "deposit", "order-x", "--url", nowhere])
    assert result.exit_code == 1
    assert f"cannot reach the sandbox at {nowhere}" in result.stderr


def test_trigger_reaches_the_sandbox_a_shop_mounts(database_url: str) -> None:
    """With `make run` the sandbox is mounted in the shop's process under /sandbox: the shop's
    own origin is the --url, and the dashboard is there too."""
    shop = sandbox_app(database_url)
    server = make_server("127.0.0.1", 0, shop, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        served = Served(shop, f"http://127.0.0.1:{server.server_port}")
        payment_key, _ = served.driver.start_window(amount=2_000)
        result = trigger(served, "expire", payment_key)
        assert result.exit_code == 0, result.output
        assert result.stdout.startswith("expire: EXPIRED ")
        page = requests.get(f"{served.url}/sandbox/dashboard", timeout=10)
        assert page.status_code == 200
        assert payment_key in page.text
    finally:
        server.shutdown()
        thread.join(10)
        dispose(shop)


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """Start `toss-sandbox …` processes (output in tmp_path); each is stopped at the end."""
    procs: list[subprocess.Popen[bytes]] = []
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SANDBOX_", "TOSS_"))}

    def start(name: str, *args: str) -> subprocess.Popen[bytes]:
        with (tmp_path / f"{name}.log").open("wb") as out:
            proc = subprocess.Popen(
                [*console_script("toss-sandbox", "payments.sandbox"), *args],
                cwd=REPO,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    for proc in procs:
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def test_trigger_against_a_served_sandbox_as_processes(
    tmp_path: Path, processes: Callable[..., subprocess.Popen[bytes]]
) -> None:
    """The commands as a user runs them: `toss-sandbox serve` in one process, `toss-sandbox
    trigger` in another (TOSS_SANDBOX_URL names the sandbox)."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    serve = processes(
        "serve", "serve", "--port", str(port), "--db", str(tmp_path / "sandbox.sqlite3")
    )
    wait_until_serving(f"{base}/sandbox/widget/v2/standard", serve, tmp_path / "serve.log")
    order_id, payment_key = issued_account(SandboxDriver.over_http(base))
    env = {**os.environ, "TOSS_SANDBOX_URL": base}
    command = [*console_script("toss-sandbox", "payments.sandbox"), "trigger"]

    done = subprocess.run(
        [*command, "deposit", order_id], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("deposit: DONE ")
    again = subprocess.run(
        [*command, "deposit", payment_key], env=env, capture_output=True, text=True, timeout=60
    )
    assert again.returncode == 1
    assert again.stderr.startswith("refused: 409 NOT_WAITING_FOR_DEPOSIT: ")


# -- toss-sandbox listen ---------------------------------------------------------------------------


def wait_for_text(path: Path, pattern: str, proc: subprocess.Popen[bytes]) -> str:
    """The first line of the process's output matching `pattern` (waits while it runs)."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        text = path.read_text(errors="replace") if path.exists() else ""
        for line in text.splitlines():
            if re.search(pattern, line):
                return line
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    raise AssertionError(f"no line matching {pattern!r}:\n{path.read_text(errors='replace')}")


def test_listen_forwards_each_webhook_and_prints_it_with_the_answer(
    tmp_path: Path,
    serve_sandbox: Callable[..., Served],
    webhook_receiver: WebhookReceiver,
    processes: Callable[..., subprocess.Popen[bytes]],
) -> None:
    """`listen --forward-to URL` becomes the running sandbox's webhook destination, hands each
    delivery on byte for byte with Toss's transmission headers, prints it (event, transmission
    id, orderId, paymentKey, status) with the answer, and lets the sandbox retry what was not
    answered 200 (anything but 200 is a failure Toss retries,
    https://docs.tosspayments.com/guides/webhook). Stopped, it gives the sandbox back its
    webhook URL (here: none)."""
    served = serve_sandbox(webhook_url=None, webhooks_enabled=True)
    api = f"{served.url}/sandbox/api/webhook-url"
    log = tmp_path / "listen.log"
    listen = processes(
        "listen", "listen", "--url", served.url, "--forward-to", webhook_receiver.url
    )
    ready = wait_for_text(log, r"^Ready: ", listen)
    relay = requests.get(api, timeout=10).json()["webhookUrl"]
    assert relay is not None
    assert relay in ready
    assert webhook_receiver.url in ready

    driver = served.driver
    order_id, payment_key = paid_card(driver, 12_000)
    ((headers, body),) = webhook_receiver.wait_for(1)
    event = json.loads(body)
    assert event["eventType"] == "PAYMENT_STATUS_CHANGED"
    assert (event["data"]["paymentKey"], event["data"]["status"]) == (payment_key, "DONE")
    transmission = headers["Tosspayments-Webhook-Transmission-Id"]
    assert transmission.startswith("whtrans_")
    assert headers["Tosspayments-Webhook-Transmission-Retried-Count"] == "0"
    assert headers["Content-Type"] == "application/json"
    (row,) = sandbox_rows(served.app, SandboxWebhook)
    assert body == row.body.encode()  # the very bytes the sandbox sent
    line = wait_for_text(log, re.escape(transmission), listen)
    assert "PAYMENT_STATUS_CHANGED" in line
    assert f"orderId={order_id}" in line
    assert f"paymentKey={payment_key}" in line
    assert "status=DONE" in line
    assert line.endswith("-> 200")

    # The endpoint fails: printed, and the sandbox keeps the delivery for its next attempt.
    webhook_receiver.answers.append(503)
    assert driver.cancel(payment_key).status == 200
    webhook_receiver.wait_for(2)
    line = wait_for_text(log, r"status=CANCELED", listen)
    assert line.endswith("-> 503")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        rows = sandbox_rows(served.app, SandboxWebhook)
        if rows[-1].last_status_code is not None:
            break
        time.sleep(0.05)
    assert (rows[-1].status, rows[-1].attempts, rows[-1].last_status_code) == ("PENDING", 1, 503)

    # DEPOSIT_CALLBACK names no eventType and no paymentKey; the line says what it is.
    waiting_order, _ = issued_account(driver)
    webhook_receiver.wait_for(4)
    line = wait_for_text(log, r"DEPOSIT_CALLBACK", listen)
    assert f"orderId={waiting_order}" in line
    assert "status=WAITING_FOR_DEPOSIT" in line

    listen.send_signal(signal.SIGTERM)
    assert listen.wait(10) == 0
    assert "Stopped; the sandbox's webhook URL is none again." in log.read_text()
    assert requests.get(api, timeout=10).json()["webhookUrl"] is None


def test_listen_needs_a_reachable_sandbox(
    tmp_path: Path, processes: Callable[..., subprocess.Popen[bytes]]
) -> None:
    """Nothing to listen to: it says so and exits 1."""
    proc = processes(
        "listen",
        "listen",
        "--url",
        f"http://127.0.0.1:{free_port()}",
        "--forward-to",
        "http://127.0.0.1:9/hook",
    )
    assert proc.wait(30) == 1
    assert "cannot reach the sandbox" in (tmp_path / "listen.log").read_text()


def test_describe_delivery() -> None:
    """A delivery's line, from Toss's webhook bodies: PAYMENT_STATUS_CHANGED carries a Payment
    in `data`; DEPOSIT_CALLBACK is {createdAt, secret, status, transactionKey, orderId}
    (https://docs.tosspayments.com/en/webhooks); a retry says which."""
    status_changed = json.dumps(
        {
            "eventType": "PAYMENT_STATUS_CHANGED",
            "data": {"orderId": "order-1", "paymentKey": "tviva1", "status": "EXPIRED"},
        }
    ).encode()
    headers = {
        "tosspayments-webhook-transmission-id": "whtrans_1",
        "tosspayments-webhook-transmission-retried-count": "2",
    }
    line = describe_delivery(status_changed, headers)
    assert re.fullmatch(
        r"\d\d:\d\d:\d\d  PAYMENT_STATUS_CHANGED  whtrans_1  orderId=order-1  "
        r"paymentKey=tviva1  status=EXPIRED  \(retry 2\)",
        line,
    )
    callback = json.dumps({"secret": "ps_x", "status": "DONE", "orderId": "order-2"}).encode()
    line = describe_delivery(callback, {})
    assert "DEPOSIT_CALLBACK  -  orderId=order-2  paymentKey=-  status=DONE" in line


def test_webhook_url_route(served: Served) -> None:
    """PUT /sandbox/api/webhook-url sets where the webhooks queued from now on go; with
    "expected" only while the current URL is that one; http(s) only."""
    api = f"{served.url}/sandbox/api/webhook-url"
    assert requests.get(api, timeout=10).json() == {"webhookUrl": HOOK}
    moved = requests.put(api, json={"webhookUrl": "http://127.0.0.1:1/relay"}, timeout=10)
    assert moved.json() == {"webhookUrl": "http://127.0.0.1:1/relay", "previous": HOOK}
    order_id, _ = paid_card(served.driver)
    (row,) = sandbox_rows(served.app, SandboxWebhook)
    assert (row.url, row.order_id) == ("http://127.0.0.1:1/relay", order_id)

    stale = requests.put(api, json={"webhookUrl": None, "expected": HOOK}, timeout=10)
    assert (stale.status_code, stale.json()["code"]) == (409, "WEBHOOK_URL_CHANGED")
    assert requests.get(api, timeout=10).json()["webhookUrl"] == "http://127.0.0.1:1/relay"
    bad = requests.put(api, json={"webhookUrl": "ftp://example.test/"}, timeout=10)
    assert (bad.status_code, bad.json()["code"]) == (400, "INVALID_REQUEST")
    off = requests.put(
        api, json={"webhookUrl": None, "expected": "http://127.0.0.1:1/relay"}, timeout=10
    )
    assert off.status_code == 200
    paid_card(served.driver)
    assert len(sandbox_rows(served.app, SandboxWebhook)) == 1  # none recorded without a URL


# -- /sandbox/dashboard ----------------------------------------------------------------------------


@pytest.fixture
def sandbox(database_url: str) -> Iterator[Flask]:
    app = sandbox_alone(database_url, webhook_url=HOOK)
    yield app
    dispose(app)


def cards(html: str) -> list[str]:
    """Each payment's card on the dashboard page, in page order."""
    return re.findall(r'<li class="payment".*?</li>', html, flags=re.S)


def attr(card: str, name: str) -> str:
    found = re.search(rf'{name}="([^"]*)"', card)
    assert found, f"no {name} in {card}"
    return found.group(1)


def actions(card: str) -> list[str]:
    return re.findall(r'data-action="([^"]+)"', card)


def test_dashboard_lists_payments_newest_first_in_pages(sandbox: Flask) -> None:
    """The sandbox's payments, newest first, 20 a page: status, method, amounts (total and
    balance), orderId, paymentKey, webhooks sent and pending; the page says it is a
    development tool without CSRF tokens."""
    client = sandbox.test_client()
    driver = SandboxDriver.in_process(client)
    keys = [driver.start_window(amount=1_000 + i)[0] for i in range(21)]
    w = driver.open_window(amount=30_000)
    assert w.payment_key is not None
    assert driver.confirm(w.payment_key, w.order_id, 30_000).status == 200
    assert driver.cancel(w.payment_key, cancelAmount=4_000).status == 200

    page = client.get("/sandbox/dashboard")
    assert page.status_code == 200
    assert page.headers["Cache-Control"] == "no-store"
    html = page.get_data(as_text=True)
    assert "CSRF 토큰 없이" in html
    assert "운영 환경" in html
    assert 'data-testid="total">22건' in html
    shown = cards(html)
    assert len(shown) == 20
    newest = shown[0]
    assert attr(newest, "data-payment-key") == w.payment_key
    assert attr(newest, "data-order-id") == w.order_id
    assert attr(newest, "data-status") == "PARTIAL_CANCELED"
    assert "30,000원" in newest
    assert "잔액 26,000원" in newest
    assert "카드" in newest
    assert "보냄 0 · 대기 2" in newest  # DONE and PARTIAL_CANCELED, recorded, not sent yet
    assert actions(newest) == ["cancel"]
    assert [attr(c, "data-payment-key") for c in shown[1:]] == keys[::-1][:19]
    assert attr(shown[1], "data-status") == "READY"
    assert actions(shown[1]) == ["expire"]

    second = client.get("/sandbox/dashboard?page=2").get_data(as_text=True)
    assert [attr(c, "data-payment-key") for c in cards(second)] == keys[:2][::-1]
    assert "2 / 2" in second
    assert client.get("/sandbox/dashboard?page=x").status_code == 200


def test_dashboard_offers_the_actions_each_status_allows(sandbox: Flask) -> None:
    """Buttons per status: an open window can expire; an authenticated payment can fail its
    approval or expire; a waiting virtual account can be paid, pass its due date or be
    cancelled; a deposited one can get a deposit error or be cancelled; a final status has
    none."""
    client = sandbox.test_client()
    driver = SandboxDriver.in_process(client)
    driver.start_window()
    driver.open_window()
    issued_account(driver)
    deposited, _ = issued_account(driver)
    assert driver.deposit(deposited).status == 200
    _, cancelled = paid_card(driver)
    assert driver.cancel(cancelled).status == 200
    html = client.get("/sandbox/dashboard").get_data(as_text=True)
    assert [(attr(c, "data-status"), actions(c)) for c in cards(html)] == [
        ("CANCELED", []),
        ("DONE", ["deposit-error", "cancel"]),
        ("WAITING_FOR_DEPOSIT", ["deposit", "expire", "cancel"]),
        ("IN_PROGRESS", ["abort", "expire"]),
        ("READY", ["expire"]),
    ]


def test_dashboard_buttons_post_the_action_and_show_its_result(sandbox: Flask) -> None:
    """Each button is a POST form: the action runs and the page comes back (303) saying what
    it did; an action the status no longer allows shows Toss-style code and message."""
    client = sandbox.test_client()
    driver = SandboxDriver.in_process(client)
    order_id, payment_key = issued_account(driver)
    resp = client.post(f"/sandbox/dashboard/payments/{payment_key}/deposit", data={"page": "1"})
    assert resp.status_code == 303
    assert resp.headers["Location"].startswith("/sandbox/dashboard?page=1&done=deposit&key=")
    html = client.get(resp.headers["Location"]).get_data(as_text=True)
    assert re.search(r'data-testid="done">\s*입금하기 완료: <code>' + payment_key, html)
    assert "<strong>DONE</strong>" in html
    assert driver.payment(payment_key)["status"] == "DONE"

    again = client.post(f"/sandbox/dashboard/payments/{payment_key}/deposit")
    assert again.status_code == 409
    text = again.get_data(as_text=True)
    assert "NOT_WAITING_FOR_DEPOSIT" in text
    assert 'data-testid="error"' in text
    assert len(cards(text)) == 1

    assert client.post(f"/sandbox/dashboard/payments/{payment_key}/refund").status_code == 404
    assert client.post("/sandbox/dashboard/payments/tvivaNone/expire").status_code == 404
    assert events(sandbox)[-2:] == [
        ("PAYMENT_STATUS_CHANGED", "DONE"),
        ("DEPOSIT_CALLBACK", "DONE"),
    ]
    assert order_id in html


def test_cancel_and_abort_helper_routes(sandbox: Flask) -> None:
    """POST /sandbox/api/payments/<ref>/cancel ({"cancelAmount"} for a partial one) and
    /abort ({"code"}): the Payment after the change, or Toss-style errors."""
    client = sandbox.test_client()
    driver = SandboxDriver.in_process(client)
    order_id, payment_key = paid_card(driver, 10_000)
    part = client.post(f"/sandbox/api/payments/{order_id}/cancel", json={"cancelAmount": 2_500})
    assert part.status_code == 200
    assert (part.json["status"], part.json["balanceAmount"]) == ("PARTIAL_CANCELED", 7_500)
    assert part.json["cancels"][0]["cancelReason"] == "샌드박스 도구에서 취소"
    too_much = client.post(f"/sandbox/api/payments/{payment_key}/cancel", json={"cancelAmount": 9})
    assert too_much.status_code == 200  # 9 won of 7,500 left
    bad = client.post(f"/sandbox/api/payments/{payment_key}/cancel", json={"cancelAmount": -1})
    assert (bad.status_code, bad.json["code"]) == (400, "INVALID_REQUEST")

    w = driver.open_window()
    unknown = client.post(f"/sandbox/api/payments/{w.order_id}/abort", json={"code": "NOPE"})
    assert (unknown.status_code, unknown.json["code"]) == (400, "INVALID_REQUEST")
    aborted = client.post(f"/sandbox/api/payments/{w.order_id}/abort", json={"code": "FDS_ERROR"})
    assert aborted.status_code == 200
    assert aborted.json["failure"]["code"] == "FDS_ERROR"
    assert aborted.json["status"] == "ABORTED"


# -- test cards in the payment window --------------------------------------------------------------


def window_token(window_url: str) -> str:
    return window_url.rsplit("/", 1)[1]


@pytest.mark.parametrize(("number", "scenario"), list(TEST_CARDS.items()))
def test_each_test_card_picks_its_outcome(database_url: str, number: str, scenario: str) -> None:
    """The window's card field takes the test cards of docs/toss.md (the sandbox's own: Toss
    publishes none); each behaves as its outcome button: a refusal in the window goes to
    failUrl with REJECT_CARD_COMPANY; the others authenticate, and confirm answers DONE, 403
    REJECT_CARD_PAYMENT (ABORTED), a first 400 PROVIDER_ERROR or 500, or a late DONE (codes
    and statuses: https://docs.tosspayments.com/reference/error-codes)."""
    app = sandbox_alone(database_url, slow_confirm_seconds=0.05)
    try:
        client = app.test_client()
        driver = SandboxDriver.in_process(client)
        payment_key, url = driver.start_window(amount=20_000)
        grouped = f"{number[:4]} {number[4:8]}-{number[8:12]} {number[12:]}"
        resp = client.post(f"/sandbox/window/{window_token(url)}", data={"card_number": grouped})
        assert resp.status_code == 303
        location = resp.headers["Location"]
        view = driver.payment(payment_key)
        assert view["sandbox"]["scenario"] == scenario
        if scenario == "reject_card":
            assert location.startswith("http://shop.test/checkout/fail?code=REJECT_CARD_COMPANY")
            assert view["status"] == "READY"
            return
        assert location.startswith("http://shop.test/checkout/success?")
        assert f"paymentKey={payment_key}" in location
        order_id = view["orderId"]
        first = driver.confirm(payment_key, order_id, 20_000, idempotency_key="card-test")
        expected = {
            "approve": (200, None),
            "slow_confirm": (200, None),
            "insufficient_balance": (403, "REJECT_CARD_PAYMENT"),
            "provider_error": (400, "PROVIDER_ERROR"),
            "server_error": (500, "FAILED_PAYMENT_INTERNAL_SYSTEM_PROCESSING"),
        }[scenario]
        assert (first.status, first.code) == expected
        if scenario in ("provider_error", "server_error"):
            retry = driver.confirm(payment_key, order_id, 20_000, idempotency_key="card-test")
            assert retry.body["status"] == "DONE"
        final = "ABORTED" if scenario == "insufficient_balance" else "DONE"
        assert driver.payment(payment_key)["status"] == final
    finally:
        dispose(app)


def test_an_unknown_card_number_is_invalid_and_the_window_stays_open(sandbox: Flask) -> None:
    """Any other number: the window answers 400 INVALID_CARD_NUMBER ("카드번호를 다시
    확인해주세요.", https://docs.tosspayments.com/reference/error-codes); the payment stays
    READY and the window open, so a valid card still pays. The window lists the test cards."""
    client = sandbox.test_client()
    driver = SandboxDriver.in_process(client)
    payment_key, url = driver.start_window(amount=3_000)
    page = client.get(f"/sandbox/window/{window_token(url)}").get_data(as_text=True)
    assert 'name="card_number"' in page
    for number in TEST_CARDS:
        assert f"{number[:4]} {number[4:8]} {number[8:12]} {number[12:]}" in page

    for wrong in ("4111 1111 1111 1111", "", "4330-0000-0000-000X"):
        resp = client.post(f"/sandbox/window/{window_token(url)}", data={"card_number": wrong})
        assert resp.status_code == 400
        text = resp.get_data(as_text=True)
        assert "INVALID_CARD_NUMBER" in text
        assert "카드번호를 다시 확인해주세요." in text
    assert driver.payment(payment_key)["status"] == "READY"
    assert 'name="card_number"' in client.get(f"/sandbox/window/{window_token(url)}").get_data(
        as_text=True
    )
    ok = client.post(
        f"/sandbox/window/{window_token(url)}", data={"card_number": "4330000000000003"}
    )
    assert ok.status_code == 303
    assert driver.payment(payment_key)["status"] == "IN_PROGRESS"


def test_docs_test_card_table_is_the_windows() -> None:
    """docs/toss.md's test-card table lists exactly the numbers the window takes, with their
    outcomes."""
    text = (REPO / "docs" / "toss.md").read_text(encoding="utf-8")
    section = text.split("## Test cards", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `(\d{4} \d{4} \d{4} \d{4})` \| `([a-z_]+)` \|", section, flags=re.M)
    assert {number.replace(" ", ""): scenario for number, scenario in rows} == TEST_CARDS
