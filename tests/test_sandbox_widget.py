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
from playwright.sync_api import expect
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
    # Ready for a strict CSP: no inline script or style anywhere; one script of its own
    # (window.js, which closes the window when it sits in the stand-in's iframe).
    assert re.findall(r"<script[^>]*>", html) == ['<script src="/sandbox/static/window.js" defer>']
    assert "<style" not in html
    assert " style=" not in html
    assert "/sandbox/static/window.css" in html
    assert client.get("/sandbox/static/window.css").status_code == 200
    assert client.get("/sandbox/static/window.js").status_code == 200
    # Every form and link leaves for the whole tab (in the iframe the stand-in opens on a PC).
    assert '<base target="_top">' in html


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
    try { await fn(); out[name] = "ok"; }
    catch (e) { out[name] = e.name + " " + e.code + ": " + e.message; }
  };
  const done = location.origin + "/harness/done";
  const urls = {successUrl: done, failUrl: done};
  const order = (extra) => ({orderId: "order-123456", orderName: "x", ...urls, ...extra});
  await attempt("apiKey", () => TossPayments("test_ck_sandbox").widgets({customerKey: "cust_1"}));
  await attempt("secretKey",
      () => TossPayments("test_gsk_sandbox").widgets({customerKey: "cust_1"}));
  await attempt("secretCustomerKey",
      () => TossPayments(clientKey).widgets({customerKey: "test_gsk_sandbox"}));
  await attempt("badCustomer", () => TossPayments(clientKey).widgets({customerKey: "a b"}));
  const w = TossPayments(clientKey).widgets({customerKey: TossPayments.ANONYMOUS});
  await attempt("renderFirst", () => w.renderPaymentMethods({selector: "#methods"}));
  await attempt("payFirst", () => w.requestPayment(order()));
  await attempt("usd", () => w.setAmount({currency: "USD", value: 10}));
  await attempt("fraction", () => w.setAmount({currency: "KRW", value: 10.5}));
  await attempt("negative", () => w.setAmount({currency: "KRW", value: -1}));
  await attempt("setAmount", () => w.setAmount({currency: "KRW", value: 103000}));
  await attempt("badVariant",
      () => w.renderPaymentMethods({selector: "#methods", variantKey: "X"}));
  await attempt("render",
      () => w.renderPaymentMethods({selector: "#methods", variantKey: "DEFAULT"}));
  await attempt("renderTwice", () => w.renderPaymentMethods({selector: "#methods"}));
  await attempt("agreement",
      () => w.renderAgreement({selector: "#agreement", variantKey: "AGREEMENT"}));
  await attempt("agreementTwice", () => w.renderAgreement({selector: "#agreement"}));
  await attempt("badOrderId", () => w.requestPayment(order({orderId: "x"})));
  await attempt("badOrderName", () => w.requestPayment(order({orderName: ""})));
  await attempt("badPhone", () => w.requestPayment(order({customerMobilePhone: "010-1234-5678"})));
  await attempt("badSuccessUrl", () => w.requestPayment(order({successUrl: "/done"})));
  await attempt("badFailUrl", () => w.requestPayment(order({failUrl: "javascript:void(0)"})));
  await attempt("promiseStyle",
      () => w.requestPayment({orderId: "order-123456", orderName: "x"}));
  await attempt("badMetadata", () => w.requestPayment(order({metadata: {a: 1}})));
  await attempt("badTarget", () => w.requestPayment(order({windowTarget: "popup"})));
  await w.setAmount({currency: "KRW", value: 0});
  await attempt("zero", () => w.requestPayment(order()));
  await w.setAmount({currency: "KRW", value: 103000});
  document.querySelector("[data-testid=sandbox-agreement]").click();
  await attempt("disagreed", () => w.requestPayment(order()));
  document.querySelector("[data-testid=sandbox-agreement]").click();
  const other = TossPayments(clientKey).widgets({customerKey: "cust_2"});
  await other.setAmount({currency: "KRW", value: 1000});
  await attempt("missingSelector", () => other.renderPaymentMethods({selector: "#nowhere"}));
  window.__widgets = w;
  return out;
}"""


def sdk_error(text: str, name: str, code: str) -> bool:
    """The attempt failed with the SDK error `name` (types/index.d.ts) and its code."""
    return text.startswith(f"{name} {code}: ")


@pytest.mark.browser
@pytest.mark.skipif(
    not (shutil.which("chromium") or os.path.exists(CHROMIUM)), reason="chromium is not installed"
)
def test_widget_in_a_browser(page: Any, live_shop: str) -> None:
    """The stand-in refuses what Toss's SDK refuses, with the SDK's error names and codes
    (@tosspayments/tosspayments-sdk 2.8.1 types/index.d.ts: widgets() throws
    NotSupportedAPIIndividualKeyError, InvalidClientKeyError, InsecureKeyUsageError,
    InvalidCustomerKeyError; setAmount InvalidAmountCurrencyError/InvalidAmountValueError;
    renderPaymentMethods NotSetupAmountError, PaymentMethodsWidgetAlreadyRenderedError,
    InvalidVariantKeyError, InvalidSelectorError; renderAgreement
    AgreementWidgetAlreadyRenderedError; requestPayment NotSelectedPaymentMethodError,
    InvalidParametersError (orderId 6–64 of A-Za-z0-9-_=, orderName, customerMobilePhone 8–15
    digits), Incorrect{Success,Fail}UrlFormatError, NotSupportedPromiseError, InvalidMetadataError,
    BelowZeroAmountError, NeedAgreementWithRequiredTermsError), draws the picker, and on a PC its
    requestPayment shows the window in an iframe over the page (windowTarget "iframe", "PC
    환경에서 기본 값"), whose outcome moves the whole tab to successUrl."""
    page.goto(f"{live_shop}/harness")
    out = page.evaluate(MISUSE, CLIENT_KEY)
    assert sdk_error(
        out["apiKey"], "NotSupportedAPIIndividualKeyError", "NOT_SUPPORTED_API_INDIVIDUAL_KEY"
    )
    assert "API 개별 연동 키" in out["apiKey"]
    assert sdk_error(out["secretKey"], "InvalidClientKeyError", "INVALID_CLIENT_KEY")
    assert sdk_error(out["secretCustomerKey"], "InsecureKeyUsageError", "INSECURE_KEY_USAGE")
    assert sdk_error(out["badCustomer"], "InvalidCustomerKeyError", "INVALID_CUSTOMER_KEY")
    assert sdk_error(out["renderFirst"], "NotSetupAmountError", "NOT_SETUP_AMOUNT")
    assert sdk_error(
        out["payFirst"], "NotSelectedPaymentMethodError", "NOT_SELECTED_PAYMENT_METHOD"
    )
    assert sdk_error(out["usd"], "InvalidAmountCurrencyError", "INVALID_AMOUNT_CURRENCY")
    for name in ("fraction", "negative"):
        assert sdk_error(out[name], "InvalidAmountValueError", "INVALID_AMOUNT_VALUE")
    assert out["setAmount"] == out["render"] == out["agreement"] == "ok"
    assert sdk_error(out["badVariant"], "InvalidVariantKeyError", "INVALID_VARIANT_KEY")
    assert sdk_error(
        out["renderTwice"],
        "PaymentMethodsWidgetAlreadyRenderedError",
        "PAYMENT_METHODS_WIDGET_ALREADY_RENDERED",
    )
    assert sdk_error(
        out["agreementTwice"],
        "AgreementWidgetAlreadyRenderedError",
        "AGREEMENT_WIDGET_ALREADY_RENDERED",
    )
    for name, field in (
        ("badOrderId", "orderId"),
        ("badOrderName", "orderName"),
        ("badPhone", "customerMobilePhone"),
        ("badTarget", "windowTarget"),
    ):
        assert sdk_error(out[name], "InvalidParametersError", "INVALID_PARAMETERS"), out[name]
        assert field in out[name]
    assert sdk_error(
        out["badSuccessUrl"], "IncorrectSuccessUrlFormatError", "INCORRECT_SUCCESS_URL_FORMAT"
    )
    assert sdk_error(out["badFailUrl"], "IncorrectFailUrlFormatError", "INCORRECT_FAIL_URL_FORMAT")
    assert sdk_error(out["promiseStyle"], "NotSupportedPromiseError", "NOT_SUPPORTED_PROMISE")
    assert sdk_error(out["badMetadata"], "InvalidMetadataError", "INVALID_METADATA")
    assert sdk_error(out["zero"], "BelowZeroAmountError", "BELOW_ZERO_AMOUNT")
    assert sdk_error(
        out["disagreed"],
        "NeedAgreementWithRequiredTermsError",
        "NEED_AGREEMENT_WITH_REQUIRED_TERMS",
    )
    assert sdk_error(out["missingSelector"], "InvalidSelectorError", "INVALID_SELECTOR")
    # None of the refused requests opened a window.
    assert page.locator("[data-toss-sandbox-overlay]").count() == 0

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

    # Pick 가상계좌, pay: the window opens over the page, shows the order, and its outcome
    # takes the whole tab to successUrl.
    page.locator("#methods input[value=VIRTUAL_ACCOUNT]").check()
    order_id = new_order_id()
    page.evaluate(
        """(orderId) => { window.__widgets.requestPayment({orderId, orderName: "드립백 커피",
            successUrl: location.origin + "/harness/done?step=ok",
            failUrl: location.origin + "/harness/done?step=fail"}); }""",
        order_id,
    )
    window = page.frame_locator("iframe[data-toss-sandbox-window]")
    assert page.url == f"{live_shop}/harness"
    expect(window.get_by_text("테스트 결제 (샌드박스) — 실제로 결제되지 않습니다")).to_be_visible()
    expect(window.get_by_test_id("amount")).to_have_text("103,000원")
    expect(window.locator(".facts")).to_contain_text("가상계좌")
    window.locator('[data-scenario="virtual_account"]').click()
    page.wait_for_url(re.compile(r"/harness/done\?"))
    q = query(page.url)
    assert list(q) == ["step", "paymentType", "orderId", "paymentKey", "amount"]
    assert (q["orderId"], q["amount"]) == (order_id, "103000")


CANCEL = """(orderId) => {
  const w = TossPayments(%r).widgets({customerKey: "cust_cancel"});
  window.__outcomes = [];
  const pay = () => w.requestPayment({orderId, orderName: "드립백 커피",
      successUrl: location.origin + "/harness/done?step=ok",
      failUrl: location.origin + "/harness/done?step=fail"})
    .then(() => window.__outcomes.push("resolved"),
          (e) => window.__outcomes.push({name: e.name, code: e.code, message: e.message}));
  window.__pay = pay;
  return w.setAmount({currency: "KRW", value: 15000})
    .then(() => w.renderPaymentMethods({selector: "#methods"}))
    .then(() => { pay(); });
}"""


@pytest.mark.browser
@pytest.mark.skipif(
    not (shutil.which("chromium") or os.path.exists(CHROMIUM)), reason="chromium is not installed"
)
def test_closing_the_window_on_a_pc_rejects_with_user_cancel(
    page: Any, live_shop: str, sandbox: Flask, driver: SandboxDriver
) -> None:
    """Closing the payment window on a PC rejects requestPayment with the SDK's UserCancelError
    (types/index.d.ts: "@throws UserCancelError 사용자가 결제를 취소한 경우"; its code USER_CANCEL
    is what closing Toss's window gives, https://techchat.tosspayments.com/m/1360069663744069843)
    instead of going to failUrl; the page stays, the window's payment stays READY and nothing is
    sent (READY until authentication, https://docs.tosspayments.com/reference, Payment 객체).
    The shopper can open another window (another payment) and close it with its close button."""
    order_id = new_order_id()
    page.goto(f"{live_shop}/harness")
    page.evaluate(CANCEL % CLIENT_KEY, order_id)
    window = page.frame_locator("iframe[data-toss-sandbox-window]")
    window.locator('[data-scenario="cancel_by_user"]').click()
    page.wait_for_function("window.__outcomes.length === 1")
    (outcome,) = page.evaluate("window.__outcomes")
    assert (outcome["name"], outcome["code"]) == ("UserCancelError", "USER_CANCEL")
    assert page.url == f"{live_shop}/harness"  # not failUrl
    assert page.locator("[data-toss-sandbox-overlay]").count() == 0

    first = driver.get_by_order(order_id).body
    assert first["status"] == "READY"
    assert driver.payment(first["paymentKey"])["sandbox"]["webhooksSent"] == 0

    # Again: a second window (a payment of its own), closed with the window's close button.
    page.evaluate("() => { window.__pay(); }")  # its promise settles when the window closes
    window.locator('[data-action="close"]').click()
    page.wait_for_function("window.__outcomes.length === 2")
    assert page.evaluate("window.__outcomes[1].code") == "USER_CANCEL"
    second = driver.get_by_order(order_id).body
    assert second["paymentKey"] != first["paymentKey"]
    assert {driver.get(k).body["status"] for k in (first["paymentKey"], second["paymentKey"])} == {
        "READY"
    }
