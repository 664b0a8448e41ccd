"""The shop and the sandbox as two processes, as a team runs them when the sandbox stands in for
Toss on another origin: `toss-sandbox serve` on one port, the shop (`flask run`, with Toss keys,
so not in sandbox mode) on another, a shopper paying in Chromium."""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import pytest
import requests
from playwright.sync_api import ConsoleMessage, Page, expect

from payments.sandbox.testing import SandboxDriver
from tests.browser.conftest import fill_buyer
from tests.helpers import console_script, free_port, wait_until_serving

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[2]
CLIENT_KEY = "test_gck_sandbox"
SECRET_KEY = "test_gsk_sandbox"


@dataclass(frozen=True)
class Stack:
    shop: str
    sandbox: str


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    """The sandbox and the shop, each a process of its own pointing at the other."""
    sandbox_port, shop_port = free_port(), free_port()
    sandbox = f"http://127.0.0.1:{sandbox_port}"
    shop = f"http://127.0.0.1:{shop_port}"
    base_env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TOSS_", "SANDBOX_", "FLASK_", "WEBHOOK_", "RATELIMIT_"))
        and k not in ("APP_ENV", "DATABASE_URL", "REDIS_URL", "PUBLIC_BASE_URL", "SECRET_KEY")
    }
    shop_env = {
        **base_env,
        "APP_ENV": "development",
        "SECRET_KEY": "standalone-sandbox-test-secret-key",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'shop.sqlite3'}",
        "TOSS_CLIENT_KEY": CLIENT_KEY,
        "TOSS_SECRET_KEY": SECRET_KEY,
        "TOSS_API_BASE": f"{sandbox}/sandbox",
        "TOSS_WIDGET_SCRIPT_URL": f"{sandbox}/sandbox/widget/v2/standard",
        "FLASK_SKIP_DOTENV": "1",
    }
    flask = [*console_script("flask", "flask"), "--app", "app"]
    for command in (["db", "upgrade"], ["seed"]):
        done = subprocess.run(
            [*flask, *command], cwd=REPO, env=shop_env, capture_output=True, timeout=120
        )
        assert done.returncode == 0, done.stdout.decode() + done.stderr.decode()

    procs: list[tuple[subprocess.Popen[bytes], Path]] = []

    def start(cmd: list[str], env: dict[str, str], log: Path, ready: str) -> None:
        with log.open("wb") as out:
            proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
        procs.append((proc, log))
        wait_until_serving(ready, proc, log)

    try:
        start(
            [
                *console_script("toss-sandbox", "payments.sandbox"),
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(sandbox_port),
                "--db",
                str(tmp_path / "sandbox.sqlite3"),
                "--latency-ms",
                "0",
                "--webhook-url",
                f"{shop}/api/payment/webhook",
            ],
            base_env,
            tmp_path / "sandbox.log",
            f"{sandbox}/sandbox/widget/v2/standard",
        )
        start(
            [*flask, "run", "--host", "127.0.0.1", "--port", str(shop_port), "--no-reload"],
            shop_env,
            tmp_path / "shop.log",
            f"{shop}/healthz",
        )
        yield Stack(shop=shop, sandbox=sandbox)
    finally:
        for proc, _ in procs:
            proc.terminate()
        for proc, log in procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
            # Shown only when the test fails.
            print(f"--- {log.name} ---\n{log.read_text(errors='replace')[-4000:]}")


def test_a_shopper_pays_through_a_sandbox_on_another_origin(page: Page, stack: Stack) -> None:
    """Cart, order, checkout, the sandbox's widget and window (another origin, allowed by the
    shop's CSP), approve: the shop confirms with the sandbox over HTTP and shows 결제 완료.
    (Absolute URLs throughout: `base_url` is the in-process shop of conftest.py.)"""
    console: list[ConsoleMessage] = []
    page.on("console", lambda m: console.append(m))
    documents: list[str] = []
    page.on(
        "request",
        lambda r: documents.append(r.url) if r.resource_type == "document" else None,
    )

    page.goto(stack.shop + "/")
    cards = page.locator("li.product")
    prices = []
    for i in (0, 1):
        card = cards.nth(i)
        prices.append(int(re.sub(r"[^0-9]", "", card.locator(".price").inner_text())))
        card.get_by_role("button", name="장바구니 담기").click()
        expect(page.locator(".flash")).to_contain_text("장바구니에 담았습니다")
    amount = sum(prices)
    page.get_by_role("link", name=re.compile("장바구니")).click()
    fill_buyer(page)
    page.get_by_role("button", name=re.compile("주문하기")).click()
    expect(page).to_have_url(re.compile(r"/checkout/[A-Za-z0-9_-]{20,}$"))
    order_id = page.url.rsplit("/", 1)[1]
    expect(page.get_by_test_id("checkout-amount")).to_have_text(f"{amount:,}원")
    # The widget came from the sandbox's origin and drew its picker.
    expect(page.get_by_test_id("sandbox-payment-methods")).to_be_visible()

    pay = page.locator("#pay-button")
    expect(pay).to_be_enabled()
    pay.click()
    # The window, from the sandbox's origin, in an iframe over the checkout page (a PC).
    frame = page.locator("iframe[data-toss-sandbox-window]")
    expect(frame).to_have_attribute(
        "src", re.compile(re.escape(stack.sandbox) + r"/sandbox/window/")
    )
    window = page.frame_locator("iframe[data-toss-sandbox-window]")
    expect(window.get_by_text("테스트 결제 (샌드박스) — 실제로 결제되지 않습니다")).to_be_visible()
    window.locator('[data-scenario="approve"]').click()

    expect(page).to_have_url(re.compile(re.escape(stack.shop) + r"/orders/"))
    status = page.get_by_test_id("order-status")
    expect(status).to_have_attribute("data-status", "PAID")
    expect(status).to_have_text("결제 완료")
    expect(page.get_by_test_id("order-amount")).to_have_text(f"{amount:,}원")
    assert [m.text for m in console if "Content Security Policy" in m.text] == []

    # Toss's redirect back to the shop carried the paymentKey; the sandbox saw one confirm.
    (success,) = [u for u in documents if u.startswith(stack.shop + "/checkout/success?")]
    query = dict(parse_qsl(urlsplit(success).query))
    assert (query["orderId"], query["amount"]) == (order_id, str(amount))
    resp = requests.get(f"{stack.sandbox}/sandbox/api/payments/{query['paymentKey']}", timeout=10)
    view = resp.json()
    assert (view["status"], view["orderId"], view["totalAmount"]) == ("DONE", order_id, amount)
    assert view["sandbox"]["confirmRequests"] == 1

    # The sandbox's PAYMENT_STATUS_CHANGED reached the shop's webhook route (--webhook-url).
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        sent = SandboxDriver.over_http(stack.sandbox).payment(query["paymentKey"])["sandbox"]
        if sent["webhooksSent"] == 1:
            break
        time.sleep(0.2)
    assert sent["webhooksSent"] == 1, sent
