"""`toss-sandbox serve`: the sandbox as a process of its own, reached over real HTTP as any app or
test suite would reach it (the shop's Toss client, `requests`, `SandboxDriver.over_http`)."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests

from payments.sandbox.testing import SandboxDriver
from payments.toss import TossClient, TossError
from tests.helpers import WebhookReceiver, console_script, free_port, wait_until_serving

REPO = Path(__file__).resolve().parents[1]
SECRET = "test_gsk_sandbox"


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., str]]:
    """Start `toss-sandbox serve` on a free port with its database in tmp_path (extra options
    as arguments); its base URL. Every process started is killed at the end."""
    procs: list[subprocess.Popen[bytes]] = []
    # Only the command line configures it: no SANDBOX_* of the environment running the tests.
    env = {k: v for k, v in os.environ.items() if not k.startswith("SANDBOX_")}

    def start(*options: str) -> str:
        port = free_port()
        log = tmp_path / f"toss-sandbox-{port}.log"
        cmd = [
            *console_script("toss-sandbox", "payments.sandbox"),
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--db",
            str(tmp_path / f"sandbox-{port}.sqlite3"),
            *options,
        ]
        with log.open("wb") as out:
            proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
        procs.append(proc)
        base = f"http://127.0.0.1:{port}"
        wait_until_serving(f"{base}/sandbox/widget/v2/standard", proc, log)
        return base

    yield start
    for proc in procs:
        proc.terminate()
    for proc in procs:
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def test_serve_answers_tosss_api_over_http(serve: Callable[..., str]) -> None:
    """A window approved, confirm → DONE, a repeat with the same Idempotency-Key replayed,
    lookup by orderId, a cancel: Toss's flow against the served sandbox."""
    base = serve("--latency-ms", "0")
    driver = SandboxDriver.over_http(base)
    toss = TossClient(SECRET, f"{base}/sandbox", max_retries=0)

    window = driver.open_window(amount=15_000)
    assert window.redirect_url.startswith("http://shop.test/checkout/success?")
    done = toss.confirm(window.payment_key, window.order_id, 15_000, idempotency_key="cli-1")
    assert (done.status, done.total_amount, done.payment_key) == (
        "DONE",
        15_000,
        window.payment_key,
    )

    # Toss replays the first answer for a repeated Idempotency-Key, byte for byte.
    again = toss.confirm(window.payment_key, window.order_id, 15_000, idempotency_key="cli-1")
    assert again.raw == done.raw
    body = {"paymentKey": window.payment_key, "orderId": window.order_id, "amount": 15_000}
    first = requests.post(
        f"{base}/sandbox/v1/payments/confirm",
        json=body,
        headers={**driver.auth(), "Idempotency-Key": "cli-raw"},
        timeout=10,
    )
    repeat = requests.post(
        f"{base}/sandbox/v1/payments/confirm",
        json=body,
        headers={**driver.auth(), "Idempotency-Key": "cli-raw"},
        timeout=10,
    )
    assert first.status_code == repeat.status_code == 400
    assert first.json()["code"] == "ALREADY_PROCESSED_PAYMENT"
    assert repeat.content == first.content
    with pytest.raises(TossError) as exc:
        toss.confirm(window.payment_key, window.order_id, 15_000, idempotency_key="cli-2")
    assert exc.value.code == "ALREADY_PROCESSED_PAYMENT"

    assert toss.get_payment_by_order(window.order_id).payment_key == window.payment_key
    assert driver.get_by_order(window.order_id).body["status"] == "DONE"

    canceled = toss.cancel(window.payment_key, "고객 요청", idempotency_key="cli-cancel")
    assert (canceled.status, canceled.balance_amount) == ("CANCELED", 0)
    view = driver.payment(window.payment_key)
    assert view["status"] == "CANCELED"
    # Every confirm that reached it counts, the replayed ones too.
    assert view["sandbox"]["confirmRequests"] == 5


def test_latency_ms_holds_every_api_answer(serve: Callable[..., str]) -> None:
    """--latency-ms holds each API answer, as a remote Toss's network would."""
    base = serve("--latency-ms", "300")
    driver = SandboxDriver.over_http(base)
    started = time.monotonic()
    answer = driver.get_by_order("order-not-there")
    held = time.monotonic() - started
    assert answer.code == "NOT_FOUND_PAYMENT"
    assert held >= 0.3


def test_gevent_workers_confirm_many_at_once_and_still_refuse(serve: Callable[..., str]) -> None:
    """--worker-class gevent --workers 2: concurrent confirms held by --latency-ms each succeed
    once, whichever worker takes them; a repeat, a wrong amount and a wrong key are refused."""
    base = serve("--worker-class", "gevent", "--workers", "2", "--latency-ms", "100")
    driver = SandboxDriver.over_http(base)
    windows = [driver.open_window(amount=10_000 + i) for i in range(12)]

    def confirm(window: Any, amount: int, secret: str = SECRET) -> requests.Response:
        body = {"paymentKey": window.payment_key, "orderId": window.order_id, "amount": amount}
        return requests.post(
            f"{base}/sandbox/v1/payments/confirm", json=body, auth=(secret, ""), timeout=30
        )

    with ThreadPoolExecutor(len(windows)) as pool:
        answers = list(pool.map(lambda w: confirm(w, w.amount), windows))
    assert [a.status_code for a in answers] == [200] * len(windows)
    assert {a.json()["status"] for a in answers} == {"DONE"}
    assert confirm(windows[0], windows[0].amount).json()["code"] == "ALREADY_PROCESSED_PAYMENT"
    fresh = driver.open_window(amount=5_000)
    assert confirm(fresh, 5_001).status_code == 400
    assert confirm(fresh, 5_000, "test_gsk_not_the_key").status_code == 401
    assert driver.payment(fresh.payment_key)["status"] != "DONE"


def test_webhook_url_receives_payment_status_changed(
    serve: Callable[..., str], webhook_receiver: WebhookReceiver
) -> None:
    """--webhook-url: Toss POSTs PAYMENT_STATUS_CHANGED there when a payment changes status."""
    base = serve("--latency-ms", "0", "--webhook-url", webhook_receiver.url)
    driver = SandboxDriver.over_http(base)
    window = driver.open_window(amount=12_000)
    confirmed = driver.confirm(window.payment_key, window.order_id, 12_000)
    assert confirmed.body["status"] == "DONE"

    headers, body = webhook_receiver.wait_until(
        lambda b: b.get("data", {}).get("paymentKey") == window.payment_key
    )
    assert body["eventType"] == "PAYMENT_STATUS_CHANGED"
    assert body["data"]["status"] == "DONE"
    assert body["data"]["orderId"] == window.order_id
    assert headers["Tosspayments-Webhook-Transmission-Id"].startswith("whtrans_")
