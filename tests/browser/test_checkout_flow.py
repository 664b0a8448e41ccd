"""A shopper's whole checkout in a real browser against the sandbox: no network."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from payments.sandbox.testing import SandboxDriver
from tests.browser.conftest import fill_cart_and_checkout, open_window_and_choose

pytestmark = pytest.mark.browser


def test_approve_reaches_a_paid_order(page: Page, screenshot_dir: Path) -> None:
    amount = fill_cart_and_checkout(page)
    open_window_and_choose(page, "approve")

    expect(page).to_have_url(re.compile(r"/orders/[A-Za-z0-9_-]+"))
    expect(page.get_by_test_id("order-status")).to_have_attribute("data-status", "PAID")
    expect(page.get_by_test_id("order-amount")).to_have_text(f"{amount:,}원")
    expect(page.get_by_text("결제가 완료되었습니다")).to_be_visible()
    page.screenshot(path=str(screenshot_dir / "paid.png"), full_page=True)

    # A refresh of the order page, and going back to the success URL, change nothing.
    page.reload()
    expect(page.get_by_test_id("order-status")).to_have_attribute("data-status", "PAID")


def test_rejected_card_explains_and_keeps_the_order_payable(
    page: Page, screenshot_dir: Path
) -> None:
    fill_cart_and_checkout(page)
    open_window_and_choose(page, "reject_card")

    expect(page).to_have_url(re.compile(r"/checkout/fail\?.*code=REJECT_CARD_COMPANY"))
    expect(page.get_by_test_id("fail-message")).to_contain_text("카드사에서 결제를 거절했습니다")
    expect(page.get_by_role("link", name="다시 결제하기")).to_be_visible()
    page.screenshot(path=str(screenshot_dir / "rejected.png"), full_page=True)


def test_cancel_then_pay_again(page: Page, screenshot_dir: Path) -> None:
    """Closing the window on a PC rejects requestPayment with USER_CANCEL (the SDK's
    UserCancelError): the checkout page stays, says so, and pays again."""
    amount = fill_cart_and_checkout(page)
    checkout = page.url
    open_window_and_choose(page, "cancel_by_user")

    expect(page.locator("#checkout-error")).to_have_text(re.compile("결제를 취소했습니다"))
    assert page.url == checkout
    page.screenshot(path=str(screenshot_dir / "canceled.png"), full_page=True)
    open_window_and_choose(page, "approve")
    expect(page.get_by_test_id("order-status")).to_have_attribute("data-status", "PAID")
    expect(page.get_by_test_id("order-amount")).to_have_text(f"{amount:,}원")


def test_insufficient_balance_is_refused_at_confirm(page: Page) -> None:
    fill_cart_and_checkout(page)
    open_window_and_choose(page, "insufficient_balance")

    expect(page).to_have_url(re.compile(r"/checkout/fail\?.*code=REJECT_CARD_PAYMENT"))
    expect(page.get_by_test_id("fail-message")).to_have_text("잔액이 부족합니다.")


def test_virtual_account_shows_the_account(page: Page, screenshot_dir: Path) -> None:
    fill_cart_and_checkout(page)
    open_window_and_choose(page, "virtual_account")

    expect(page.get_by_test_id("order-status")).to_have_attribute("data-status", "AWAITING_DEPOSIT")
    expect(page.get_by_test_id("va-account")).to_have_text(re.compile(r"\S{6,}"))
    page.screenshot(path=str(screenshot_dir / "virtual-account.png"), full_page=True)


def test_virtual_account_deposit_turns_the_order_paid(
    page: Page, live_server: str, screenshot_dir: Path
) -> None:
    fill_cart_and_checkout(page)
    open_window_and_choose(page, "virtual_account")
    status = page.get_by_test_id("order-status")
    expect(status).to_have_attribute("data-status", "AWAITING_DEPOSIT")
    order_id = page.url.split("/orders/")[1].split("?")[0]

    deposit = SandboxDriver.over_http(live_server).deposit(order_id)
    assert deposit.status == 200, deposit.body

    # The deposit reaches the shop only as webhooks: wait for the worker to apply them.
    deadline = time.monotonic() + 15
    while status.get_attribute("data-status") != "PAID" and time.monotonic() < deadline:
        time.sleep(0.3)
        page.reload()
    expect(status).to_have_attribute("data-status", "PAID")
    page.screenshot(path=str(screenshot_dir / "virtual-account-paid.png"), full_page=True)


def test_checkout_and_payment_window_fit_a_phone(
    browser: Any, base_url: str, screenshot_dir: Path
) -> None:
    context = browser.new_context(
        base_url=base_url, viewport={"width": 390, "height": 844}, is_mobile=True
    )
    page = context.new_page()
    try:
        fill_cart_and_checkout(page)
        expect(page.locator("#pay-button")).to_be_enabled()
        page.screenshot(path=str(screenshot_dir / "phone-checkout.png"), full_page=True)
        # Nothing wider than the screen: no sideways scrolling on a phone.
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        page.locator("#pay-button").click()
        # A phone's window replaces the page ("self"); the checkout page's own widget shows the
        # same sandbox badge, so wait for the window's URL before measuring.
        expect(page).to_have_url(re.compile(r"/sandbox/window/"))
        expect(
            page.get_by_text("테스트 결제 (샌드박스) — 실제로 결제되지 않습니다")
        ).to_be_visible()
        page.screenshot(path=str(screenshot_dir / "phone-payment-window.png"), full_page=True)
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        page.locator('[data-scenario="approve"]').click()
        expect(page.get_by_test_id("order-status")).to_have_attribute("data-status", "PAID")
        page.screenshot(path=str(screenshot_dir / "phone-paid.png"), full_page=True)
    finally:
        context.close()
