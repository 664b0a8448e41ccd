"""The sandbox's dashboard and its payment window's card field in Chromium: a developer clicks
each action and sees the payment's status change, on a desktop and on a phone-sized screen.

The dashboard stands in for Toss's developer centre, whose test-payment list cancels a payment
or makes a virtual account's deposit (https://docs.tosspayments.com/resources/faq). The sandbox
runs alone on a loopback port (absolute URLs throughout: `base_url` is the shop of
conftest.py).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect
from werkzeug.serving import make_server

from payments.sandbox.testing import SandboxDriver
from tests.helpers import dispose, sandbox_alone

pytestmark = pytest.mark.browser


@pytest.fixture
def sandbox_url(tmp_path: Path) -> Iterator[str]:
    """The sandbox alone on a loopback port (webhooks recorded, none sent)."""
    app = sandbox_alone(
        f"sqlite:///{tmp_path / 'sandbox.sqlite3'}", webhook_url="http://shop.test/hook"
    )
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(10)
    dispose(app)


def confirmed(driver: SandboxDriver, scenario: str = "approve") -> str:
    """A window finished with `scenario` and confirmed: its paymentKey."""
    w = driver.open_window(amount=15_000, scenario=scenario)
    assert w.payment_key is not None
    assert driver.confirm(w.payment_key, w.order_id, 15_000).status == 200
    return w.payment_key


def click_action(page: Page, payment_key: str, action: str, status: str) -> None:
    """Click `action` on the payment's card; the page comes back showing `status`."""
    card = page.locator(f'li[data-payment-key="{payment_key}"]')
    card.locator(f'[data-action="{action}"]').click()
    expect(page.get_by_test_id("done")).to_contain_text(payment_key)
    expect(page.get_by_test_id("done")).to_contain_text(status)
    expect(card.get_by_test_id("status")).to_have_attribute("data-status", status)


def test_each_dashboard_action_changes_the_payment(
    page: Page, sandbox_url: str, screenshot_dir: Path
) -> None:
    """deposit, deposit error, expire (a window, and a virtual account's due date), abort and
    cancel, each from its button; the buttons follow the status."""
    driver = SandboxDriver.over_http(sandbox_url)
    window_key, _ = driver.start_window(amount=5_000)
    authenticated = driver.open_window(amount=7_000)
    assert authenticated.payment_key is not None
    account = confirmed(driver, "virtual_account")
    late_account = confirmed(driver, "virtual_account")
    card = confirmed(driver)

    page.goto(f"{sandbox_url}/sandbox/dashboard")
    expect(page.get_by_test_id("dev-note")).to_contain_text("CSRF")
    expect(page.get_by_test_id("payment")).to_have_count(5)

    click_action(page, account, "deposit", "DONE")
    click_action(page, account, "deposit-error", "WAITING_FOR_DEPOSIT")
    click_action(page, account, "deposit", "DONE")
    click_action(page, window_key, "expire", "EXPIRED")
    click_action(page, authenticated.payment_key, "abort", "ABORTED")
    click_action(page, card, "cancel", "CANCELED")
    # A virtual account past its due date stays waiting (Toss sends nothing for it).
    click_action(page, late_account, "expire", "WAITING_FOR_DEPOSIT")
    late = page.locator(f'li[data-payment-key="{late_account}"]')
    expect(late).to_contain_text("기한 지남")
    expect(late.locator('[data-action="deposit"]')).to_have_count(0)

    aborted = page.locator(f'li[data-payment-key="{authenticated.payment_key}"]')
    expect(aborted.get_by_test_id("failure")).to_have_text("REJECT_CARD_PAYMENT")
    expect(aborted.locator("[data-action]")).to_have_count(0)
    expect(page.locator(f'li[data-payment-key="{card}"]').get_by_test_id("balance")).to_have_text(
        "잔액 0원"
    )
    assert driver.payment(account)["status"] == "DONE"
    page.screenshot(path=str(screenshot_dir / "sandbox-dashboard.png"), full_page=True)


def test_dashboard_on_a_phone(page: Page, sandbox_url: str, screenshot_dir: Path) -> None:
    """On a phone-sized screen every card fits the width and its buttons stay usable."""
    driver = SandboxDriver.over_http(sandbox_url)
    key = confirmed(driver, "virtual_account")
    page.set_viewport_size({"width": 375, "height": 740})
    page.goto(f"{sandbox_url}/sandbox/dashboard")
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 375
    button = page.locator(f'li[data-payment-key="{key}"] [data-action="deposit"]')
    box = button.bounding_box()
    assert box is not None
    assert box["height"] >= 40
    assert box["x"] + box["width"] <= 375
    page.screenshot(path=str(screenshot_dir / "sandbox-dashboard-phone.png"), full_page=True)
    click_action(page, key, "deposit", "DONE")


def test_a_test_card_pays_in_the_window_and_an_unknown_one_is_refused(
    page: Page, sandbox_url: str
) -> None:
    """The window's card field: the approving test card authenticates and returns to
    successUrl with the paymentKey; any other number shows INVALID_CARD_NUMBER ("카드번호를
    다시 확인해주세요.", https://docs.tosspayments.com/reference/error-codes)."""
    driver = SandboxDriver.over_http(sandbox_url)
    back = f"{sandbox_url}/sandbox/dashboard"
    key, window_url = driver.start_window(amount=9_900, success_url=back, fail_url=back)
    page.goto(window_url)
    page.get_by_test_id("card-number").fill("1234 5678 9012 3456")
    page.get_by_test_id("pay-with-card").click()
    expect(page.get_by_role("heading", name="INVALID_CARD_NUMBER")).to_be_visible()
    expect(page.get_by_text("카드번호를 다시 확인해주세요.")).to_be_visible()

    page.goto(window_url)
    page.get_by_text("테스트 카드 번호").click()
    expect(page.get_by_text("4330 0000 0000 0003")).to_be_visible()
    page.get_by_test_id("card-number").fill("4330 0000 0000 0003")
    page.get_by_test_id("pay-with-card").click()
    expect(page).to_have_url(re.compile(re.escape(back) + r"\?paymentType=NORMAL&.*paymentKey="))
    card = page.locator(f'li[data-payment-key="{key}"]')
    expect(card.get_by_test_id("status")).to_have_attribute("data-status", "IN_PROGRESS")
