"""Escrow (구매안전서비스) in a real browser: with TOSS_ESCROW=1 the checkout page shows the
buyer-protection notice, its bootstrap passes the order's lines as escrowProducts under the
widget's `virtualAccount` and `transfer` options, and a virtual account paid through the
sandbox's window is an escrow payment at Toss (the Payment's `useEscrow`)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, expect

from payments.sandbox.testing import SandboxDriver
from tests.browser.conftest import fill_cart_and_checkout, open_window_and_choose, serve_shop

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def escrow_shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url, stop = serve_shop(
        tmp_path_factory.mktemp("escrow-browser") / "shop.sqlite3", TOSS_ESCROW="1"
    )
    yield url
    stop()


def paid_order(
    browser: Browser, base_url: str, scenario: str
) -> tuple[str, list[dict[str, object]]]:
    """A shopper orders two products and finishes the window with `scenario`: (orderId, the
    escrow products the checkout page gave its bootstrap)."""
    context = browser.new_context(base_url=base_url, locale="ko-KR")
    page = context.new_page()
    try:
        amount = fill_cart_and_checkout(page)
        expect(page.get_by_test_id("escrow-notice")).to_contain_text(
            "토스페이먼츠의 구매안전서비스를 이용하실 수 있습니다"
        )
        products = json.loads(page.locator("#checkout").get_attribute("data-escrow-products") or "")
        assert sum(p["unitPrice"] * p["quantity"] for p in products) == amount
        open_window_and_choose(page, scenario)
        expect(page).to_have_url(re.compile(r"/orders/"))
        expect(page.get_by_test_id("order-status")).to_have_attribute(
            "data-status", re.compile("AWAITING_DEPOSIT|PAID")
        )
        return page.url.split("/orders/")[1].split("?")[0], products
    finally:
        context.close()


def test_a_virtual_account_paid_with_escrow_on_is_an_escrow_payment(
    browser: Browser, escrow_shop: str
) -> None:
    """A virtual account: Toss's Payment says `useEscrow: true`; a card payment of the same
    shop (the widget's card has no escrow option) says false."""
    order_id, products = paid_order(browser, escrow_shop, "virtual_account")
    assert len(products) == 2
    toss = SandboxDriver.over_http(escrow_shop)
    payment = toss.get_by_order(order_id).body
    assert (payment["method"], payment["status"], payment["useEscrow"]) == (
        "가상계좌",
        "WAITING_FOR_DEPOSIT",
        True,
    )
    card_order, _ = paid_order(browser, escrow_shop, "approve")
    card = toss.get_by_order(card_order).body
    assert (card["method"], card["useEscrow"]) == ("카드", False)
