"""The operator console in a real browser against the sandbox: log in, find the orders a shopper
paid through the real checkout, refund part of one through the form, and look at every screen
on a desktop and a phone."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect
from werkzeug.security import generate_password_hash

from tests.browser.conftest import fill_cart_and_checkout, open_window_and_choose, serve_shop
from tests.helpers import SmtpInbox, start_smtp_server

pytestmark = pytest.mark.browser

PASSWORD = "correct horse battery"
PHONE = {"width": 390, "height": 844}


@pytest.fixture(scope="module")
def admin_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The shop as `live_server` runs it, with the console enabled."""
    url, stop = serve_shop(
        tmp_path_factory.mktemp("admin-browser") / "shop.sqlite3",
        ADMIN_PASSWORD_HASH=generate_password_hash(PASSWORD),
    )
    yield url
    stop()


@pytest.fixture(scope="module")
def mail_shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, SmtpInbox]]:
    """The shop as `admin_server` runs it, sending the buyers' e-mail through a real SMTP server
    started here (its embedded worker drains the mail outbox as it applies webhooks): its URL
    and that server's inbox."""
    inbox, port, stop_smtp = start_smtp_server()
    url, stop = serve_shop(
        tmp_path_factory.mktemp("mail-browser") / "shop.sqlite3",
        ADMIN_PASSWORD_HASH=generate_password_hash(PASSWORD),
        MAIL_URL=f"smtp://127.0.0.1:{port}",
        MAIL_FROM="토스 상점 <shop@example.kr>",
    )
    yield url, inbox
    stop()
    stop_smtp()


@pytest.fixture(scope="module")
def shop_orders(browser: Browser, admin_server: str) -> list[tuple[str, int]]:
    """Orders a shopper placed through the real checkout: two paid, one refused card first."""
    context = browser.new_context(base_url=admin_server, locale="ko-KR")
    page = context.new_page()
    made = []
    try:
        for scenario in ("approve", "insufficient_balance", "approve"):
            amount = fill_cart_and_checkout(page)
            open_window_and_choose(page, scenario)
            if scenario == "insufficient_balance":  # refused at confirm: a failed attempt
                expect(page).to_have_url(re.compile(r"/checkout/fail\?"))
                page.get_by_role("link", name="다시 결제하기").click()
                open_window_and_choose(page, "approve")
            expect(page.get_by_test_id("order-status")).to_have_attribute("data-status", "PAID")
            made.append((page.url.split("/orders/")[1].split("?")[0], amount))
    finally:
        context.close()
    return made


def log_in(page: Page) -> None:
    page.goto("/admin/")
    expect(page).to_have_url(re.compile(r"/admin/login\?next="))
    page.get_by_label("비밀번호").fill(PASSWORD)
    page.get_by_role("button", name="로그인").click()
    expect(page.get_by_role("heading", name=re.compile("대시보드"))).to_be_visible()


def fits(page: Page, width: int) -> None:
    """Nothing wider than the screen: wide tables scroll inside their own wrapper."""
    assert page.evaluate("document.documentElement.scrollWidth") <= width


def test_wrong_password_is_refused(browser: Browser, admin_server: str) -> None:
    context = browser.new_context(base_url=admin_server, locale="ko-KR")
    page = context.new_page()
    try:
        page.goto("/admin/login")
        page.get_by_label("비밀번호").fill("not the password")
        page.get_by_role("button", name="로그인").click()
        expect(page.get_by_test_id("login-error")).to_have_text("비밀번호가 올바르지 않습니다.")
        page.goto("/admin/orders")
        expect(page).to_have_url(re.compile(r"/admin/login"))
    finally:
        context.close()


def test_operator_refunds_part_of_an_order(
    browser: Browser,
    admin_server: str,
    shop_orders: list[tuple[str, int]],
    screenshot_dir: Path,
) -> None:
    context = browser.new_context(
        base_url=admin_server, locale="ko-KR", viewport={"width": 1280, "height": 900}
    )
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    try:
        log_in(page)
        page.get_by_role("navigation", name="관리자 메뉴").get_by_role("link", name="주문").click()
        rows = page.locator("[data-testid=orders-table] tbody tr")
        expect(rows).to_have_count(len(shop_orders))
        total = sum(amount for _, amount in shop_orders)
        expect(page.get_by_test_id("total-amount")).to_have_text(f"{total:,}원")
        page.screenshot(path=str(screenshot_dir / "admin-orders.png"), full_page=True)

        order_id, amount = shop_orders[1]
        page.get_by_role("search").get_by_label("검색").fill(order_id)
        page.get_by_role("button", name="조회").click()
        expect(rows).to_have_count(1)
        rows.first.get_by_role("link").click()
        expect(page.get_by_test_id("order-id")).to_have_text(order_id)
        expect(page.get_by_test_id("payment-method")).to_have_text("카드")
        timeline = page.get_by_test_id("timeline")
        # The refused card and the second, successful try are both on the timeline.
        expect(timeline).to_contain_text("REJECT_CARD_PAYMENT")
        expect(timeline.locator("li[data-kind=audit]", has_text="CONFIRMING → PAID")).to_have_count(
            1
        )

        form = page.get_by_test_id("refund-form")
        form.get_by_label("환불 금액 (원)").fill("1,000")
        form.get_by_label("환불 사유 (필수)").fill("상품 일부 반품")
        form.get_by_role("button", name="환불하기").click()

        expect(page.locator(".flash")).to_have_text("환불되었습니다: 1,000원")
        expect(page.get_by_test_id("order-status").locator(".status")).to_have_attribute(
            "data-status", "PARTIALLY_REFUNDED"
        )
        expect(page.get_by_test_id("balance")).to_have_text(f"{amount - 1000:,}원")
        expect(page.locator("[data-testid=refunds-table] tbody tr")).to_have_count(1)
        expect(
            timeline.locator("li[data-kind=audit]", has_text="PAID → PARTIALLY_REFUNDED")
        ).to_have_count(1)
        # The sandbox's webhooks reach the timeline too (through the inbox and its worker).
        expect(timeline.locator("li[data-kind=webhook]").first).to_be_visible(timeout=10_000)
        page.reload()
        page.screenshot(path=str(screenshot_dir / "admin-order-detail.png"), full_page=True)

        page.get_by_role("navigation", name="관리자 메뉴").get_by_role(
            "link", name="대시보드"
        ).click()
        expect(page.get_by_test_id("confirmed")).to_have_text(str(len(shop_orders)))
        expect(page.get_by_test_id("failed")).to_have_text("1")
        expect(page.get_by_test_id("refunded-amount")).to_have_text("1,000원")
        expect(page.get_by_test_id("confirm-chart").locator("rect.bar")).to_have_count(48)
        page.screenshot(path=str(screenshot_dir / "admin-dashboard.png"), full_page=True)

        page.get_by_role("navigation", name="관리자 메뉴").get_by_role("link", name="웹훅").click()
        expect(page.get_by_test_id("webhooks-table")).to_be_visible()
        page.screenshot(path=str(screenshot_dir / "admin-webhooks.png"), full_page=True)

        # Nothing on the console's pages is blocked by the Content-Security-Policy.
        assert errors == []
        page.get_by_role("button", name="로그아웃").click()
        expect(page.get_by_role("heading", name="관리자 로그인")).to_be_visible()
        page.goto("/admin/orders")
        expect(page).to_have_url(re.compile(r"/admin/login"))
    finally:
        context.close()


def test_console_fits_a_phone(
    browser: Browser,
    admin_server: str,
    shop_orders: list[tuple[str, int]],
    screenshot_dir: Path,
) -> None:
    context: Any = browser.new_context(
        base_url=admin_server, locale="ko-KR", viewport=PHONE, is_mobile=True
    )
    page = context.new_page()
    try:
        log_in(page)
        fits(page, PHONE["width"])
        page.screenshot(path=str(screenshot_dir / "admin-dashboard-phone.png"), full_page=True)

        page.goto("/admin/orders")
        expect(page.locator("[data-testid=orders-table] tbody tr")).to_have_count(len(shop_orders))
        fits(page, PHONE["width"])
        page.screenshot(path=str(screenshot_dir / "admin-orders-phone.png"), full_page=True)

        page.goto(f"/admin/orders/{shop_orders[0][0]}")
        expect(page.get_by_test_id("refund-form")).to_be_visible()
        fits(page, PHONE["width"])
        page.screenshot(path=str(screenshot_dir / "admin-order-detail-phone.png"), full_page=True)

        page.goto("/admin/webhooks")
        fits(page, PHONE["width"])
        page.screenshot(path=str(screenshot_dir / "admin-webhooks-phone.png"), full_page=True)
    finally:
        context.close()


def test_a_shopper_corrects_the_form_pays_by_deposit_and_sees_the_parcel_ship(
    browser: Browser, mail_shop: tuple[str, SmtpInbox], screenshot_dir: Path
) -> None:
    """Bad buyer details are named field by field with the cart kept; good ones lead to the
    widget; a virtual account is issued and its e-mail (bank, account number, amount, due date)
    arrives over SMTP; the sandbox's deposit pays it and the deposit e-mail arrives; the
    operator prepares and ships the order; the shopper's page shows 배송 중 with the tracking
    number, and the shipping e-mail names the carrier and the tracking number."""
    from payments.core.formats import bank, kst, won
    from payments.sandbox.testing import SandboxDriver
    from tests.browser.conftest import fill_buyer

    admin_server, inbox = mail_shop
    shopper = browser.new_context(base_url=admin_server, locale="ko-KR").new_page()
    operator = browser.new_context(base_url=admin_server, locale="ko-KR").new_page()
    try:
        shopper.goto("/")
        shopper.locator("li.product").first.get_by_role("button", name="장바구니 담기").click()
        shopper.goto("/cart")
        fill_buyer(shopper, buyer_email="not-an-email", buyer_phone="010-12", postcode="12")
        shopper.get_by_role("button", name=re.compile("주문하기")).click()
        errors = shopper.locator(".field-error")
        expect(errors).to_have_count(3)
        expect(shopper.locator('[data-field="buyer_email"]')).to_contain_text("올바른 이메일")
        expect(shopper.locator('[data-field="buyer_phone"]')).to_contain_text("숫자 8~15자리")
        expect(shopper.locator('[data-field="postcode"]')).to_contain_text("숫자 5자리")
        expect(shopper.locator("tr[data-product-id]")).to_have_count(1)  # the cart is intact
        expect(shopper.locator('input[name="buyer_name"]')).to_have_value("김토스")
        shopper.screenshot(path=str(screenshot_dir / "buyer-form-errors.png"), full_page=True)

        fill_buyer(shopper)
        shopper.get_by_role("button", name=re.compile("주문하기")).click()
        expect(shopper).to_have_url(re.compile(r"/checkout/[A-Za-z0-9_-]{20,}$"))
        expect(shopper.locator("#checkout")).to_have_attribute(
            "data-customer-mobile-phone", "01012345678"
        )
        amount = int(shopper.locator("#checkout").get_attribute("data-amount") or 0)
        open_window_and_choose(shopper, "virtual_account")
        status = shopper.get_by_test_id("order-status")
        expect(status).to_have_attribute("data-status", "AWAITING_DEPOSIT")
        order_id = shopper.url.split("/orders/")[1].split("?")[0]

        # The issuance e-mail, over SMTP: Toss's account, as the sandbox issued it.
        toss = SandboxDriver.over_http(admin_server)
        account = toss.get_by_order(order_id).body["virtualAccount"]
        issued = inbox.wait_for("가상계좌가 발급되었습니다")
        assert order_id in str(issued["Subject"])
        assert str(issued["To"]) == "buyer@example.com"
        text = SmtpInbox.text(issued)
        assert f"입금 은행: {bank(account['bankCode'])}" in text
        assert f"계좌번호: {account['accountNumber']}" in text
        assert f"입금 금액: {won(amount)}" in text
        assert f"입금 기한: {kst(account['dueDate'])}" in text
        assert not any("입금이 확인되어" in str(m["Subject"]) for m in inbox.received)

        assert toss.deposit(order_id).status == 200
        for _ in range(50):  # the deposit arrives as a webhook the worker applies
            if status.get_attribute("data-status") == "PAID":
                break
            shopper.wait_for_timeout(300)
            shopper.reload()
        expect(status).to_have_attribute("data-status", "PAID")
        paid = inbox.wait_for("입금이 확인되어 결제가 완료되었습니다")
        assert order_id in str(paid["Subject"])
        assert f"입금 금액: {won(amount)}" in SmtpInbox.text(paid)

        log_in(operator)
        operator.goto(f"/admin/orders/{order_id}")
        expect(operator.get_by_test_id("buyer-email")).to_have_text("buyer@example.com")
        card = operator.get_by_test_id("fulfilment-card")
        card.get_by_role("button", name="배송 준비 시작").click()
        expect(operator.get_by_test_id("fulfilment")).to_have_text("배송 준비")
        card.get_by_label("택배사").fill("CJ대한통운")
        card.get_by_label("운송장 번호").fill("654321098765")
        card.get_by_role("button", name=re.compile("배송 시작")).click()
        expect(operator.get_by_test_id("fulfilment")).to_have_text("배송 중")

        shopper.reload()
        expect(shopper.get_by_test_id("fulfilment")).to_have_text("배송 중")
        expect(shopper.get_by_test_id("carrier")).to_have_text("CJ대한통운")
        expect(shopper.get_by_test_id("tracking-number")).to_have_text("654321098765")
        shipped = SmtpInbox.text(inbox.wait_for("주문하신 상품이 발송되었습니다"))
        assert "택배사: CJ대한통운" in shipped
        assert "송장번호: 654321098765" in shipped
        shopper.screenshot(path=str(screenshot_dir / "order-shipped.png"), full_page=True)
    finally:
        shopper.context.close()
        operator.context.close()
