"""Browser tests: Debian's chromium driven by Playwright against a live server in sandbox mode.

Besides the fixtures, the page actions every browser test shares live here
(`fill_cart_and_checkout`, `open_window_and_choose`): test modules import them from this file,
never from each other.
"""

from __future__ import annotations

import os
import re
import shutil
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect
from werkzeug.serving import make_server

from payments.sandbox import Clock
from payments.shop.catalog import seed_catalog
from tests.helpers import dispose, sandbox_app

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if shutil.which("chromium") or os.path.exists(CHROMIUM):
        return
    if os.environ.get("CI") == "true":
        return  # let them fail loudly: CI must run the browser tests
    skip = pytest.mark.skip(reason="Debian's chromium is not installed (apt-get install chromium)")
    for item in items:
        if "browser" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict[str, Any]) -> dict[str, Any]:
    return {**browser_type_launch_args, "executable_path": CHROMIUM, "args": CHROMIUM_ARGS}


def serve_shop(db_file: Path, **overrides: Any) -> tuple[str, Callable[[], None]]:
    """The shop as `make run` serves it, on a loopback port: the sandbox mounted in-process and
    sending its webhooks on real time, an embedded worker applying them, CSRF on. Its base URL
    and a function that stops it."""
    app = sandbox_app(
        f"sqlite:///{db_file}",
        sandbox={"webhooks_enabled": True, "clock": Clock()},
        WEBHOOK_WORKER_EMBEDDED="1",
        WTF_CSRF_ENABLED=True,
        **overrides,
    )
    with app.app_context():
        seed_catalog()
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()

    def stop() -> None:
        server.shutdown()
        thread.join(10)
        dispose(app)

    return f"http://127.0.0.1:{server.server_port}", stop


@pytest.fixture(scope="session")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The shop in sandbox mode on a loopback port, as `make run` serves it."""
    url, stop = serve_shop(tmp_path_factory.mktemp("browser") / "shop.sqlite3")
    yield url
    stop()


@pytest.fixture(scope="session")
def base_url(live_server: str) -> str:
    return live_server


@pytest.fixture
def screenshot_dir() -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS


# -- what a shopper does in the browser ------------------------------------------------------------


def fill_cart_and_checkout(page: Page) -> int:
    """Add two products, order them, land on the checkout page; returns the expected amount."""
    page.goto("/")
    cards = page.locator("li.product")
    prices = []
    for i in (0, 1):
        card = cards.nth(i)
        prices.append(int(re.sub(r"[^0-9]", "", card.locator(".price").inner_text())))
        card.get_by_role("button", name="장바구니 담기").click()
        expect(page.locator(".flash")).to_contain_text("장바구니에 담았습니다")
    expect(page.get_by_test_id("cart-count")).to_have_text("2")
    page.get_by_role("link", name=re.compile("장바구니")).click()
    expect(page.get_by_test_id("cart-total")).to_have_text(f"{sum(prices):,}원")
    fill_buyer(page)
    page.get_by_role("button", name=re.compile("주문하기")).click()
    expect(page).to_have_url(re.compile(r"/checkout/[A-Za-z0-9_-]{20,}$"))
    expect(page.get_by_test_id("checkout-amount")).to_have_text(f"{sum(prices):,}원")
    return sum(prices)


# What a shopper types into the cart's order form, by field name.
BUYER_FIELDS = {
    "buyer_name": "김토스",
    "buyer_email": "buyer@example.com",
    "buyer_phone": "010-1234-5678",
    "postcode": "06236",
    "address": "서울특별시 강남구 테헤란로 142",
    "address_detail": "4층",
}


def fill_buyer(page: Page, **changes: str) -> None:
    """Fill the buyer and delivery fields on the cart page (`changes` by field name)."""
    form = page.get_by_test_id("order-form")
    for name, value in {**BUYER_FIELDS, **changes}.items():
        form.locator(f'input[name="{name}"]').fill(value)


def open_window_and_choose(page: Page, scenario: str) -> None:
    """Open the sandbox's payment window from the checkout page and finish it with `scenario`
    (on a PC the window is an iframe over the checkout page, as Toss's SDK shows it)."""
    pay = page.locator("#pay-button")
    expect(pay).to_be_enabled()
    pay.click()
    window = page.frame_locator("iframe[data-toss-sandbox-window]")
    expect(window.get_by_test_id("sandbox-banner")).to_be_visible()
    window.locator(f'[data-scenario="{scenario}"]').click()
