"""The widget stand-in and the payment window: served script, window page, redirects, browser.

The sandbox runs alone on the test's database, except where the shop that mounts it is what is
shown (its widget script setting, its CSRF protection not reaching the sandbox).
"""

from __future__ import annotations

import os
import re
import shutil
import threading
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
from flask import Flask, request
from flask.testing import FlaskClient
from werkzeug.serving import make_server

from payments.sandbox import state
from payments.sandbox.testing import SandboxDriver, new_order_id
from payments.sandbox.windows import SCENARIOS
from tests.helpers import CLIENT_KEY, dispose, sandbox_alone, sandbox_app

# The window's buttons, in the order the shopper sees them.
SCENARIO_ORDER = [
    "approve",
    "reject_card",
    "insufficient_balance",
    "cancel_by_user",
    "virtual_account",
    "provider_error",
    "server_error",
    "slow_confirm",
]


@pytest.fixture
def sandbox(database_url: str) -> Iterator[Flask]:
    sandbox = sandbox_alone(database_url)
    yield sandbox
    dispose(sandbox)


@pytest.fixture
def client(sandbox: Flask) -> FlaskClient:
    return sandbox.test_client()


@pytest.fixture
def driver(client: FlaskClient) -> SandboxDriver:
    return SandboxDriver.in_process(client)


@pytest.fixture
def shop(database_url: str) -> Iterator[Flask]:
    """The shop with the sandbox mounted, CSRF protection on."""
    app = sandbox_app(database_url, WTF_CSRF_ENABLED=True)
    yield app
    dispose(app)


def request_body(**overrides: Any) -> dict[str, Any]:
    """What the widget's requestPayment posts."""
    body = {
        "clientKey": CLIENT_KEY,
        "customerKey": "@@ANONYMOUS",
        "orderId": new_order_id(),
        "orderName": "무선 키보드 외 1건",
        "amount": 103_000,
        "successUrl": "http://shop.test/checkout/success",
        "failUrl": "http://shop.test/checkout/fail",
        "method": "CARD",
    }
    body.update(overrides)
    return body


def widget_session(client: FlaskClient, **overrides: Any) -> tuple[str, dict[str, Any]]:
    """What requestPayment does before it navigates; returns (window path, body)."""
    body = request_body(**overrides)
    resp = client.post("/sandbox/widget/sessions", json=body)
    assert resp.status_code == 201, resp.get_json()
    return urlsplit(resp.get_json()["windowUrl"]).path, body


def query(url: str) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(url).query))


def test_widget_script_is_served_as_javascript(client: FlaskClient) -> None:
    """The stand-in for js.tosspayments.com/v2/standard: window.TossPayments with the widget
    calls the shop uses."""
    resp = client.get("/sandbox/widget/v2/standard")
    assert resp.status_code == 200
    assert resp.mimetype == "application/javascript"
    js = resp.get_data(as_text=True)
    for name in (
        "window.TossPayments",
        "ANONYMOUS",
        "widgets",
        "setAmount",
        "renderPaymentMethods",
        "renderAgreement",
        "requestPayment",
        "window.location.assign",
    ):
        assert name in js, name
    assert client.get("/sandbox/static/widget.css").status_code == 200


def test_the_shop_loads_the_widget_from_its_mounted_sandbox(shop: Flask) -> None:
    assert shop.config["TOSS_WIDGET_SCRIPT_URL"] == "/sandbox/widget/v2/standard"
    resp = shop.test_client().get("/sandbox/widget/v2/standard")
    assert resp.status_code == 200
    assert resp.mimetype == "application/javascript"


def test_widget_session_registers_a_ready_window(
    client: FlaskClient, driver: SandboxDriver
) -> None:
    """The window's payment exists from the moment it opens: READY, with its paymentKey (Toss's
    initial status, https://docs.tosspayments.com/reference, Payment 객체); no webhook."""
    path, body = widget_session(client)
    assert re.fullmatch(r"/sandbox/window/[A-Za-z0-9_-]{20,}", path)
    found = driver.get_by_order(body["orderId"])
    assert found.status == 200
    assert (found.body["status"], found.body["method"]) == ("READY", None)
    assert driver.get(found.body["paymentKey"]).body == found.body


def test_widget_session_speaks_cors_for_a_sandbox_on_another_origin(client: FlaskClient) -> None:
    pre = client.options("/sandbox/widget/sessions", headers={"Origin": "http://shop.test"})
    assert pre.status_code == 204
    assert pre.headers["Access-Control-Allow-Origin"] == "*"
    assert "POST" in pre.headers["Access-Control-Allow-Methods"]
    assert "Content-Type" in pre.headers["Access-Control-Allow-Headers"]
    bad = client.post("/sandbox/widget/sessions", json=request_body(orderId="x"))
    assert bad.status_code == 400
    assert bad.get_json()["code"] == "INVALID_REQUEST"
    assert bad.headers["Access-Control-Allow-Origin"] == "*"


def test_widget_cannot_pick_its_own_outcome(client: FlaskClient) -> None:
    path, _ = widget_session(client, scenario="slow_confirm")
    page = client.get(path).get_data(as_text=True)
    assert page.count("data-scenario=") == len(SCENARIOS)  # the shopper still chooses


def test_window_page(client: FlaskClient) -> None:
    path, _ = widget_session(client, orderName="무선 키보드 외 2건", amount=103_000)
    resp = client.get(path)
    assert resp.status_code == 200
    assert resp.mimetype == "text/html"
    html = resp.get_data(as_text=True)
    assert "테스트 결제 (샌드박스) — 실제로 결제되지 않습니다" in html
    assert "무선 키보드 외 2건" in html
    assert "103,000원" in html
    assert '<html lang="ko">' in html
    assert 'name="viewport"' in html
    assert re.findall(r'data-scenario="([a-z_]+)"', html) == SCENARIO_ORDER
    assert list(SCENARIOS) == SCENARIO_ORDER
    for label in ("카드 결제 승인", "카드사 승인 거절", "잔액 부족", "결제 취소", "가상계좌 발급"):
        assert label in html
    assert re.search(rf'<form[^>]+method="post"[^>]+action="{re.escape(path)}"', html)
    # Ready for a strict CSP: no inline script or style anywhere.
    assert "<script" not in html
    assert "<style" not in html
    assert " style=" not in html
    assert "/sandbox/static/window.css" in html
    assert client.get("/sandbox/static/window.css").status_code == 200


def test_choosing_approve_redirects_with_tosss_success_parameters(
    client: FlaskClient, driver: SandboxDriver
) -> None:
    """Toss sends an approved window to successUrl with paymentType, orderId, paymentKey and
    amount; the payment is IN_PROGRESS until the merchant confirms."""
    path, body = widget_session(client, amount=103_000)
    resp = client.post(path, data={"scenario": "approve"})
    assert resp.status_code == 303
    location = resp.headers["Location"]
    assert location.startswith(body["successUrl"] + "?")
    q = query(location)
    assert list(q) == ["paymentType", "orderId", "paymentKey", "amount"]
    assert (q["paymentType"], q["orderId"], q["amount"]) == ("NORMAL", body["orderId"], "103000")
    assert driver.get(q["paymentKey"]).body["status"] == "IN_PROGRESS"
    # A resubmitted window (back button) goes to the same place and creates nothing new.
    assert client.post(path, data={"scenario": "reject_card"}).headers["Location"] == location
    page = client.get(path).get_data(as_text=True)
    assert "이미 결과를 선택한 결제창" in page
    assert "data-scenario" not in page


@pytest.mark.parametrize(
    ("scenario", "code"),
    [("reject_card", "REJECT_CARD_COMPANY"), ("cancel_by_user", "PAY_PROCESS_CANCELED")],
)
def test_choosing_a_failure_redirects_with_tosss_fail_parameters(
    client: FlaskClient, scenario: str, code: str
) -> None:
    """Toss sends a failed window to failUrl with code, message (Korean) and orderId."""
    path, body = widget_session(client)
    location = client.post(path, data={"scenario": scenario}).headers["Location"]
    assert location.startswith(body["failUrl"] + "?code=")
    q = query(location)
    assert list(q) == ["code", "message", "orderId"]
    assert q["code"] == code
    assert q["orderId"] == body["orderId"]
    assert re.search(r"[가-힣]", q["message"])


def test_virtual_account_button_issues_an_account_at_confirm(
    client: FlaskClient, driver: SandboxDriver
) -> None:
    """Toss issues the virtual account when the merchant confirms: WAITING_FOR_DEPOSIT."""
    path, _ = widget_session(client, method="VIRTUAL_ACCOUNT")
    q = query(client.post(path, data={"scenario": "virtual_account"}).headers["Location"])
    p = driver.confirm(q["paymentKey"], q["orderId"], int(q["amount"])).body
    assert p["status"] == "WAITING_FOR_DEPOSIT"
    assert p["method"] == "가상계좌"


def test_virtual_account_below_its_minimum_is_refused_in_the_window(client: FlaskClient) -> None:
    """Toss: a virtual account needs at least 200 won (a card 100): BELOW_MINIMUM_AMOUNT."""
    path, _ = widget_session(client, amount=150)
    location = client.post(path, data={"scenario": "virtual_account"}).headers["Location"]
    assert query(location)["code"] == "BELOW_MINIMUM_AMOUNT"


def test_window_expires_after_thirty_minutes(sandbox: Flask, client: FlaskClient) -> None:
    """A payment window left open 30 minutes is gone: the shopper goes to failUrl with
    PAY_PROCESS_ABORTED and no paymentKey."""
    path, _ = widget_session(client)
    state(sandbox).advance(30 * 60 - 1)
    assert "data-scenario" in client.get(path).get_data(as_text=True)
    state(sandbox).advance(1)
    page = client.get(path).get_data(as_text=True)
    assert "만료" in page
    assert "data-scenario" not in page
    location = client.post(path, data={"scenario": "approve"}).headers["Location"]
    assert "code=PAY_PROCESS_ABORTED" in location
    assert "paymentKey" not in location


def test_unknown_window_and_bad_choice(client: FlaskClient) -> None:
    missing = client.get("/sandbox/window/nope")
    assert missing.status_code == 404
    assert missing.mimetype == "text/html"
    assert "테스트 결제 (샌드박스)" in missing.get_data(as_text=True)
    path, _ = widget_session(client)
    assert client.post(path, data={"scenario": "steal"}).status_code == 400
    assert client.post(path, data={}).status_code == 400


def test_the_shops_csrf_protection_does_not_reach_the_sandbox(shop: Flask) -> None:
    """Toss's window and the sandbox helpers take no token of the shop's."""
    client = shop.test_client()
    assert SandboxDriver.in_process(client).open_window().payment_key
    path, _ = widget_session(client)
    assert client.post(path, data={"scenario": "approve"}).status_code == 303
    # The shop itself still wants its token.
    assert client.post("/cart", data={"action": "add", "product_id": 1}).status_code == 400


def test_receipt_page(client: FlaskClient, driver: SandboxDriver) -> None:
    """Toss's receipt.url exists once the payment is paid."""
    path, body = widget_session(client, amount=15_000)
    q = query(client.post(path, data={"scenario": "approve"}).headers["Location"])
    assert client.get(f"/sandbox/receipt/{q['paymentKey']}").status_code == 404  # not paid yet
    p = driver.confirm(q["paymentKey"], body["orderId"], 15_000).body
    receipt = client.get(urlsplit(p["receipt"]["url"]).path)
    assert receipt.status_code == 200
    assert "15,000원" in receipt.get_data(as_text=True)


# -- in a real browser -----------------------------------------------------------------------------

CHROMIUM = "/usr/bin/chromium"
HARNESS = """<!doctype html>
<html lang="ko"><head><meta charset="utf-8"><title>harness</title></head>
<body><div id="methods"></div><div id="agreement"></div>
<script src="/sandbox/widget/v2/standard"></script></body></html>"""


@pytest.fixture
def live_shop(sandbox: Flask) -> Iterator[str]:
    """The sandbox on loopback, with a bare page beside it that loads the widget script."""

    @sandbox.get("/harness")
    def harness() -> str:
        return HARNESS

    @sandbox.get("/harness/done")
    def done() -> dict[str, str]:
        return dict(request.args)

    server = make_server("127.0.0.1", 0, sandbox, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(5)


@pytest.fixture(scope="session")
def base_url() -> str | None:
    """Absolute URLs only here (and not pytest-base-url's deprecated fixture)."""
    return None


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict[str, Any]) -> dict[str, Any]:
    return {
        **browser_type_launch_args,
        "executable_path": CHROMIUM,
        "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run"],
    }


MISUSE = """async (clientKey) => {
  const out = {};
  const attempt = async (name, fn) => {
    try { await fn(); out[name] = "ok"; } catch (e) { out[name] = e.code + ": " + e.message; }
  };
  await attempt("apiKey", () => TossPayments("test_ck_sandbox").widgets({customerKey: "cust_1"}));
  await attempt("secretKey", () => TossPayments("test_gsk_sandbox"));
  await attempt("badCustomer", () => TossPayments(clientKey).widgets({customerKey: "a b"}));
  const w = TossPayments(clientKey).widgets({customerKey: TossPayments.ANONYMOUS});
  await attempt("renderFirst", () => w.renderPaymentMethods({selector: "#methods"}));
  await attempt("payFirst", () => w.requestPayment({orderId: "order-123456", orderName: "x",
      successUrl: location.origin + "/harness/done", failUrl: location.origin + "/harness/done"}));
  await attempt("setAmount", () => w.setAmount({currency: "KRW", value: 103000}));
  await attempt("render",
      () => w.renderPaymentMethods({selector: "#methods", variantKey: "DEFAULT"}));
  await attempt("renderTwice", () => w.renderPaymentMethods({selector: "#methods"}));
  await attempt("agreement",
      () => w.renderAgreement({selector: "#agreement", variantKey: "AGREEMENT"}));
  await attempt("badOrderId", () => w.requestPayment({orderId: "x", orderName: "x",
      successUrl: location.origin + "/a", failUrl: location.origin + "/b"}));
  const other = TossPayments(clientKey).widgets({customerKey: "cust_2"});
  await other.setAmount({currency: "KRW", value: 1000});
  await attempt("missingSelector", () => other.renderPaymentMethods({selector: "#nowhere"}));
  window.__widgets = w;
  return out;
}"""


@pytest.mark.browser
@pytest.mark.skipif(
    not (shutil.which("chromium") or os.path.exists(CHROMIUM)), reason="chromium is not installed"
)
def test_widget_in_a_browser(page: Any, live_shop: str) -> None:
    """The stand-in refuses what Toss's SDK refuses (API client key, secret key, bad
    customerKey, rendering or paying before setAmount, rendering twice, bad orderId or
    selector), draws the picker, and its requestPayment opens the window."""
    page.goto(f"{live_shop}/harness")
    out = page.evaluate(MISUSE, CLIENT_KEY)
    assert out["apiKey"].startswith("INVALID_CLIENT_KEY: ")
    assert "API 개별 연동 키" in out["apiKey"]
    assert out["secretKey"].startswith("INVALID_CLIENT_KEY")
    assert out["badCustomer"].startswith("INVALID_CUSTOMER_KEY")
    assert "amount is not set" in out["renderFirst"]
    assert "amount is not set" in out["payFirst"]
    assert out["setAmount"] == out["render"] == out["agreement"] == "ok"
    assert out["renderTwice"].startswith("ALREADY_RENDERED")
    assert out["badOrderId"].startswith("INVALID_ORDER_ID")
    assert out["missingSelector"].startswith("INVALID_SELECTOR")

    # The picker and the agreement were drawn; the stylesheet came from the sandbox.
    assert page.locator("#methods input[type=radio]").count() == 2
    assert page.locator("#methods").inner_text().count("카드") >= 1
    assert "가상계좌" in page.locator("#methods").inner_text()
    assert "103,000원" in page.locator("#methods").inner_text()
    assert page.locator("#agreement input[type=checkbox]").is_checked()
    assert (
        page.locator("link[data-toss-sandbox]")
        .get_attribute("href")
        .endswith("/sandbox/static/widget.css")
    )

    # Pick 가상계좌, pay: the window opens, shows the order, and approve goes to successUrl.
    page.locator("#methods input[value=VIRTUAL_ACCOUNT]").check()
    order_id = new_order_id()
    page.evaluate(
        """(orderId) => { window.__widgets.requestPayment({orderId, orderName: "드립백 커피",
            successUrl: location.origin + "/harness/done?step=ok",
            failUrl: location.origin + "/harness/done?step=fail"}); }""",
        order_id,
    )
    page.wait_for_url(re.compile(r"/sandbox/window/"))
    assert page.get_by_text("테스트 결제 (샌드박스) — 실제로 결제되지 않습니다").is_visible()
    assert page.get_by_test_id("amount").inner_text() == "103,000원"
    assert "가상계좌" in page.locator(".facts").inner_text()
    page.locator('[data-scenario="virtual_account"]').click()
    page.wait_for_url(re.compile(r"/harness/done\?"))
    q = query(page.url)
    assert list(q) == ["step", "paymentType", "orderId", "paymentKey", "amount"]
    assert (q["orderId"], q["amount"]) == (order_id, "103000")
