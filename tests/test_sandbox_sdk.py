"""The widget stand-in against Toss's own SDK interface, and the SDK's payment() surface.

Toss ships the TypeScript interface of its browser SDK in the npm package
@tosspayments/tosspayments-sdk (types/index.d.ts, Korean doc comments); `scripts/ensure-sdk-types`
installs version 2.8.1 into .sdk/. These tests read it and run the stand-in
(payments/sandbox/static/widget.js) in Node with a tiny DOM stub, so a method the shop calls
that the stand-in lacks or names differently fails here. The payment window of `payment()`
(API-family keys, CARD / TRANSFER / VIRTUAL_ACCOUNT) is shown against the sandbox over
(in-process) HTTP, and in Chromium from a page on another origin than the sandbox.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from payments.sandbox.payments import TRANSFER_BANKS
from payments.sandbox.testing import SandboxDriver, new_order_id
from tests.helpers import CLIENT_KEY, SECRET_KEY, dispose, sandbox_alone

REPO = Path(__file__).resolve().parents[1]
SDK_DIR = REPO / ".sdk" / "node_modules" / "@tosspayments" / "tosspayments-sdk"
SDK_VERSION = "2.8.1"
WIDGET_JS = REPO / "payments" / "sandbox" / "static" / "widget.js"
CHECKOUT_JS = REPO / "static" / "js" / "checkout.js"
CHROMIUM = "/usr/bin/chromium"
# The API-family twins of the sandbox's widget keys (docs/toss.md, "Keys and authentication").
API_CLIENT_KEY = "test_ck_sandbox"
API_SECRET_KEY = "test_sk_sandbox"

# Members of Toss's interface the stand-in does not serve (the shop uses none of them), and why.
NOT_SERVED = {
    "brandpay": "BrandPay needs Toss's member accounts; no stand-in",
    "requestPaymentWindow": "@deprecated in the interface (renderPaymentWindow replaces it)",
    "renderPaymentWindow": "the widget's own payment window; the shop renders the widget UI",
    "requestBillingAuth": "billing (자동결제) is not part of the sandbox",
}
# Toss's interface → the stand-in object that implements it (see NODE_PROBE).
INTERFACES = {
    "TossPaymentsSDK": "sdk",
    "TossPaymentsWidgets": "widgets",
    "TossPaymentsPayment": "payment",
    "WidgetPaymentMethodWidget": "paymentMethodWidget",
    "WidgetAgreementWidget": "agreementWidget",
}


# -- Toss's interface ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sdk_types() -> str:
    """types/index.d.ts of the pinned SDK; missing is a failure in CI and a skip elsewhere."""
    path = SDK_DIR / "types" / "index.d.ts"
    package = SDK_DIR / "package.json"
    if not path.exists() or not package.exists():
        why = f"{path.relative_to(REPO)} is missing: run scripts/ensure-sdk-types (needs npm)"
        if os.environ.get("CI") == "true":
            pytest.fail(why)
        pytest.skip(why)
    assert json.loads(package.read_text())["version"] == SDK_VERSION
    return path.read_text(encoding="utf-8")


def interface_members(source: str) -> dict[str, set[str]]:
    """Every `interface Name { … }` of a .d.ts with the names of its own members."""
    text = re.sub(r"/\*.*?\*/", "", source, flags=re.S)
    text = re.sub(r"^\s*//[^\n]*", "", text, flags=re.M)
    found: dict[str, set[str]] = {}
    for match in re.finditer(r"\binterface\s+(\w+)(?:\s+extends\s+[^{]+)?\s*\{", text):
        depth, i, top = 1, match.end(), []
        while depth:
            ch = text[i]
            if ch in "{([":
                depth += 1
            elif ch in "})]":
                depth -= 1
            elif depth == 1:
                top.append(ch)
            i += 1
        flat = "".join(top)
        found[match.group(1)] = set(re.findall(r"(?:^|[;\n])\s*(\w+)\??\s*:", flat))
    return found


def thrown_names(source: str) -> set[str]:
    """The error names the interface's @throws tags give (PublicError.<product>.<Name>)."""
    return set(re.findall(r"\bPublicError\.\w+\.(\w+Error)\b", source)) | set(
        re.findall(r"\{Widgets\.(\w+Error)\}", source)
    )


def test_the_interface_is_read_as_toss_wrote_it(sdk_types: str) -> None:
    """The parser finds the members types/index.d.ts 2.8.1 declares (a guard for the tests
    below: an empty parse would compare nothing)."""
    members = interface_members(sdk_types)
    assert members["TossPaymentsSDK"] == {"widgets", "brandpay", "payment"}
    assert members["TossPaymentsWidgets"] == {
        "setAmount",
        "renderPaymentMethods",
        "requestPayment",
        "requestPaymentWindow",
        "renderAgreement",
        "renderPaymentWindow",
    }
    assert members["TossPaymentsPayment"] == {"requestPayment", "requestBillingAuth", "destroy"}
    assert members["WidgetPaymentMethodWidget"] == {"on", "getSelectedPaymentMethod", "destroy"}
    assert members["WidgetAgreementWidget"] == {"on", "destroy"}
    assert {"UserCancelError", "NeedAgreementWithRequiredTermsError"} <= thrown_names(sdk_types)


# -- the stand-in in Node --------------------------------------------------------------------------

# Runs widget.js in a bare Node context with just enough of a DOM (elements that keep children
# and attributes) and prints the members of each object it hands out.
NODE_PROBE = r"""
const fs = require("fs"), vm = require("vm");
class El {
  constructor(tag) {
    this.tagName = tag; this.children = []; this.attrs = {}; this.parentNode = null;
  }
  setAttribute(k, v) { this.attrs[k] = String(v); }
  getAttribute(k) { return k in this.attrs ? this.attrs[k] : null; }
  appendChild(c) { c.parentNode = this; this.children.push(c); return c; }
  removeChild(c) { this.children = this.children.filter((x) => x !== c); return c; }
  replaceChildren(...cs) { this.children = []; cs.forEach((c) => this.appendChild(c)); }
  addEventListener() {}
}
const slots = { "#methods": new El("div"), "#agreement": new El("div") };
const document = {
  currentScript: { src: "http://sandbox.test/sandbox/widget/v2/standard" },
  head: new El("head"), body: new El("body"), documentElement: new El("html"),
  createElement: (tag) => new El(tag),
  querySelector: (selector) => slots[selector] || null,
};
const window = {
  document, navigator: { userAgent: "node" }, screen: { width: 1280 },
  location: { href: "http://shop.test/checkout/x", assign() {} },
  addEventListener() {},
};
window.window = window;
const context = vm.createContext({
  window, document, URL, fetch: () => Promise.reject(new Error("offline")),
});
const source = fs.readFileSync(process.argv[process.argv.length - 1], "utf8");
vm.runInContext(source, context, { filename: "widget.js" });
(async () => {
  const TossPayments = window.TossPayments;
  const sdk = TossPayments("test_gck_sandbox");
  const widgets = sdk.widgets({ customerKey: TossPayments.ANONYMOUS });
  const payment = TossPayments("test_ck_sandbox").payment({ customerKey: "cust_1" });
  await widgets.setAmount({ currency: "KRW", value: 15000 });
  const paymentMethodWidget = await widgets.renderPaymentMethods({ selector: "#methods" });
  const agreementWidget = await widgets.renderAgreement({ selector: "#agreement" });
  const objects = { sdk, widgets, payment, paymentMethodWidget, agreementWidget };
  const out = { anonymous: TossPayments.ANONYMOUS };
  for (const [name, obj] of Object.entries(objects)) {
    out[name] = Object.keys(obj).filter((k) => typeof obj[k] === "function").sort();
  }
  process.stdout.write(JSON.stringify(out));
})().catch((e) => { console.error(e); process.exit(1); });
"""


@pytest.fixture(scope="module")
def stand_in() -> dict[str, Any]:
    """What the stand-in hands out: {object: [its function members]}."""
    node = shutil.which("node")
    if node is None:
        if os.environ.get("CI") == "true":
            pytest.fail("node is missing: the stand-in cannot be run")
        pytest.skip("node is not installed")
    done = subprocess.run(
        [node, "-", str(WIDGET_JS)],
        input=NODE_PROBE,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def shop_calls() -> dict[str, set[str]]:
    """The SDK members static/js/checkout.js calls, by the interface they belong to."""
    js = CHECKOUT_JS.read_text()
    calls = {
        "TossPaymentsSDK": set(re.findall(r"\btossPayments\.(\w+)\(", js)),
        "TossPaymentsWidgets": set(re.findall(r"\bwidgets\.(\w+)\(", js)),
    }
    assert "window.TossPayments(" in js
    return calls


def test_the_stand_in_serves_tosss_interface_under_tosss_names(
    sdk_types: str, stand_in: dict[str, Any]
) -> None:
    """Each object the stand-in hands out has exactly the members Toss's interface gives it
    (types/index.d.ts: TossPaymentsSDK, TossPaymentsWidgets, TossPaymentsPayment,
    WidgetPaymentMethodWidget, WidgetAgreementWidget), less the ones it does not serve
    (NOT_SERVED): a missing or renamed method, or one Toss does not have, fails here."""
    members = interface_members(sdk_types)
    for interface, obj in INTERFACES.items():
        expected = members[interface] - set(NOT_SERVED)
        assert set(stand_in[obj]) == expected, interface
    assert set(NOT_SERVED) <= set().union(*(members[i] for i in INTERFACES))
    assert stand_in["anonymous"] == "@@ANONYMOUS"  # `declare const ANONYMOUS = "@@ANONYMOUS"`
    assert 'declare const ANONYMOUS = "@@ANONYMOUS"' in sdk_types


def test_every_sdk_method_the_shop_calls_is_tosss_and_the_stand_ins(
    sdk_types: str, stand_in: dict[str, Any]
) -> None:
    """static/js/checkout.js calls only members of Toss's interface (types/index.d.ts), all of
    them served by the stand-in: TossPayments(clientKey).widgets(…), setAmount,
    renderPaymentMethods, renderAgreement, requestPayment."""
    members = interface_members(sdk_types)
    calls = shop_calls()
    assert calls["TossPaymentsSDK"] == {"widgets"}
    assert calls["TossPaymentsWidgets"] == {
        "setAmount",
        "renderPaymentMethods",
        "renderAgreement",
        "requestPayment",
    }
    for interface, names in calls.items():
        assert names <= members[interface], interface
        assert names <= set(stand_in[INTERFACES[interface]]), interface


def test_the_stand_ins_errors_are_the_sdks(sdk_types: str) -> None:
    """Every error the stand-in throws carries a name from the interface's @throws tags
    (PublicError.Widgets/Payment.<Name>), with the SDK's code: USER_CANCEL for closing the
    window (https://techchat.tosspayments.com/m/1360069663744069843), and the others by Toss's
    SDK error-code table (NOT_SETUP_AMOUNT, NEED_AGREEMENT_WITH_REQUIRED_TERMS, …)."""
    js = WIDGET_JS.read_text()
    block = js.split("// -- sdk errors --", 1)[1].split("// -- end sdk errors --", 1)[0]
    table = dict(re.findall(r"(\w+Error): \[\s*\"([A-Z_]+)\"", block))
    assert set(table) <= thrown_names(sdk_types)
    assert table["UserCancelError"] == "USER_CANCEL"
    assert table["NeedAgreementWithRequiredTermsError"] == "NEED_AGREEMENT_WITH_REQUIRED_TERMS"
    assert table["NotSetupAmountError"] == "NOT_SETUP_AMOUNT"
    assert table["PaymentMethodsWidgetAlreadyRenderedError"] == (
        "PAYMENT_METHODS_WIDGET_ALREADY_RENDERED"
    )
    assert table["NotSupportedAPIIndividualKeyError"] == "NOT_SUPPORTED_API_INDIVIDUAL_KEY"
    assert table["NotSupportedWidgetKeyError"] == "NOT_SUPPORTED_WIDGET_KEY"
    # The calls the shop makes can throw what the interface says they throw.
    for name in ("BelowZeroAmountError", "IncorrectSuccessUrlFormatError", "InvalidSelectorError"):
        assert name in table


# -- payment(): the payment window, over (in-process) HTTP ----------------------------------------


@pytest.fixture
def sandbox(database_url: str) -> Iterator[Flask]:
    sandbox = sandbox_alone(database_url)
    yield sandbox
    dispose(sandbox)


@pytest.fixture
def client(sandbox: Flask) -> FlaskClient:
    return sandbox.test_client()


@pytest.fixture
def window_driver(client: FlaskClient) -> SandboxDriver:
    """A merchant on Toss's payment-window integration: the API key family."""
    return SandboxDriver.in_process(client, client_key=API_CLIENT_KEY, secret_key=API_SECRET_KEY)


@pytest.fixture
def widget_driver(client: FlaskClient) -> SandboxDriver:
    return SandboxDriver.in_process(client)


def session(**overrides: Any) -> dict[str, Any]:
    """What payment().requestPayment posts for a window."""
    body = {
        "clientKey": API_CLIENT_KEY,
        "customerKey": "@@ANONYMOUS",
        "method": "CARD",
        "orderId": new_order_id(),
        "orderName": "토스 티셔츠 외 2건",
        "amount": 15_000,
        "successUrl": "http://app.test/success",
        "failUrl": "http://app.test/fail",
    }
    body.update(overrides)
    return body


def query(url: str) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(url).query))


def test_a_card_payment_window_is_confirmed_with_the_api_secret_key(
    window_driver: SandboxDriver, widget_driver: SandboxDriver
) -> None:
    """payment().requestPayment({method: "CARD"}): the window's success redirect carries
    amount, orderId and paymentKey (types/index.d.ts, RequestCardPaymentWithRedirection:
    `{successUrl}?amount={AMOUNT}&orderId={ORDER_ID}&paymentKey={PAYMENT_KEY}`); the payment
    window takes the API individual keys, so its confirm takes test_sk_… and refuses the widget
    secret key (https://docs.tosspayments.com/guides/v2/get-started/migration-guide; the error
    is the sandbox's choice, docs/toss.md "Keys and authentication")."""
    w = window_driver.open_window(amount=15_000, method="CARD", product="payment")
    assert w.query.keys() == {"orderId", "paymentKey", "amount"}  # no paymentType
    refused = widget_driver.confirm(w.payment_key or "", w.order_id, 15_000)
    assert (refused.status, refused.code) == (400, "INVALID_API_KEY")
    assert "API 개별 연동 키" in refused.body["message"]
    done = window_driver.confirm(w.payment_key or "", w.order_id, 15_000)
    assert done.status == 200, done.body
    assert (done.body["status"], done.body["method"]) == ("DONE", "카드")
    assert done.body["card"]["amount"] == 15_000
    assert done.body["transfer"] is None


def test_a_widget_payment_is_not_confirmed_with_the_api_secret_key(
    window_driver: SandboxDriver, widget_driver: SandboxDriver
) -> None:
    """The other way round: a widget payment (결제위젯 연동 키) confirmed with test_sk_… is
    refused (https://docs.tosspayments.com/guides/v2/get-started/migration-guide)."""
    w = widget_driver.open_window(amount=15_000)
    assert "paymentType" in w.query  # the widget's redirect has it (WidgetPaymentResult)
    refused = window_driver.confirm(w.payment_key or "", w.order_id, 15_000)
    assert (refused.status, refused.code) == (400, "INVALID_API_KEY")


def test_a_transfer_is_a_계좌이체_payment_with_its_transfer_object(
    window_driver: SandboxDriver,
) -> None:
    """payment().requestPayment({method: "TRANSFER"}) (types/index.d.ts, TransferPaymentRequest:
    "TRANSFER로 설정하면 퀵계좌이체 결제창이 열려요"): confirmed, the Payment has method
    "계좌이체", no card and a `transfer` {bankCode, settlementStatus} (Toss's Payment object,
    https://docs.tosspayments.com/reference); it can be cancelled like any payment."""
    w = window_driver.open_window(amount=15_000, method="TRANSFER", product="payment")
    p = window_driver.confirm(w.payment_key or "", w.order_id, 15_000).body
    assert (p["status"], p["method"], p["card"], p["virtualAccount"]) == (
        "DONE",
        "계좌이체",
        None,
        None,
    )
    assert p["transfer"]["bankCode"] in TRANSFER_BANKS
    assert p["transfer"]["settlementStatus"] == "INCOMPLETED"
    assert window_driver.get(p["paymentKey"]).body["transfer"] == p["transfer"]
    canceled = window_driver.cancel(p["paymentKey"])
    assert canceled.status == 200, canceled.body
    assert (canceled.body["status"], canceled.body["balanceAmount"]) == ("CANCELED", 0)


def test_a_transfer_needs_200_won(client: FlaskClient) -> None:
    """An account payment starts at 200 won (BELOW_MINIMUM_AMOUNT, "계좌는 200원 이상부터",
    https://docs.tosspayments.com/reference/error-codes)."""
    resp = client.post("/sandbox/payment/sessions", json=session(method="TRANSFER", amount=150))
    assert (resp.status_code, resp.get_json()["code"]) == (400, "BELOW_MINIMUM_AMOUNT")
    ok = client.post("/sandbox/payment/sessions", json=session(method="TRANSFER", amount=200))
    assert ok.status_code == 201


def test_a_virtual_account_window_issues_an_account(window_driver: SandboxDriver) -> None:
    """payment().requestPayment({method: "VIRTUAL_ACCOUNT"}): confirmed, a virtual account
    waits for its deposit (https://docs.tosspayments.com/guides/payment/virtual-account-api)."""
    w = window_driver.open_window(amount=15_000, method="VIRTUAL_ACCOUNT", product="payment")
    p = window_driver.confirm(w.payment_key or "", w.order_id, 15_000).body
    assert (p["status"], p["method"]) == ("WAITING_FOR_DEPOSIT", "가상계좌")


@pytest.mark.parametrize(
    ("method", "outcomes"),
    [
        (
            "CARD",
            [
                "approve",
                "reject_card",
                "insufficient_balance",
                "cancel_by_user",
                "provider_error",
                "server_error",
                "slow_confirm",
            ],
        ),
        (
            "TRANSFER",
            ["approve", "cancel_by_user", "provider_error", "server_error", "slow_confirm"],
        ),
        (
            "VIRTUAL_ACCOUNT",
            ["virtual_account", "cancel_by_user", "provider_error", "server_error", "slow_confirm"],
        ),
    ],
)
def test_a_payment_window_offers_its_methods_outcomes(
    client: FlaskClient, method: str, outcomes: list[str]
) -> None:
    """The merchant fixes the payment window's method (types/index.d.ts: `method` of
    Card/Transfer/VirtualAccountPaymentRequest), so its window offers that method's outcomes
    only (the sandbox's choice) and refuses another's."""
    resp = client.post("/sandbox/payment/sessions", json=session(method=method))
    assert resp.status_code == 201, resp.get_json()
    path = urlsplit(resp.get_json()["windowUrl"]).path
    html = client.get(path).get_data(as_text=True)
    assert re.findall(r'data-scenario="([a-z_]+)"', html) == outcomes
    if method == "TRANSFER":
        assert "계좌이체 승인" in html
    other = "approve" if method == "VIRTUAL_ACCOUNT" else "virtual_account"
    assert client.post(path, data={"scenario": other}).status_code == 400


def test_each_product_takes_its_own_key_family(client: FlaskClient) -> None:
    """widgets() takes a widget client key (test_gck_…) and payment() an API individual one
    (test_ck_…); the SDK refuses the other family (types/index.d.ts:
    NotSupportedAPIIndividualKeyError, NotSupportedWidgetKeyError) and so does the sandbox's
    window registration (400 INVALID_CLIENT_KEY with the SDK's words), CORS included."""
    widget_key_in_payment = client.post(
        "/sandbox/payment/sessions", json=session(clientKey=CLIENT_KEY)
    )
    assert widget_key_in_payment.status_code == 400
    assert widget_key_in_payment.get_json()["code"] == "INVALID_CLIENT_KEY"
    assert "API 개별 연동 키" in widget_key_in_payment.get_json()["message"]
    assert widget_key_in_payment.headers["Access-Control-Allow-Origin"] == "*"
    api_key_in_widget = client.post("/sandbox/widget/sessions", json=session(method=None))
    assert api_key_in_widget.status_code == 400
    assert api_key_in_widget.get_json()["code"] == "INVALID_CLIENT_KEY"
    assert "결제위젯 연동 키" in api_key_in_widget.get_json()["message"]
    unknown = client.post("/sandbox/payment/sessions", json=session(clientKey="test_ck_other"))
    assert (unknown.status_code, unknown.get_json()["code"]) == (401, "UNAUTHORIZED_KEY")
    pre = client.options("/sandbox/payment/sessions", headers={"Origin": "http://app.test"})
    assert pre.status_code == 204
    assert pre.headers["Access-Control-Allow-Origin"] == "*"
    # A secret key never opens a window.
    for path, key in (
        ("/sandbox/payment/sessions", API_SECRET_KEY),
        ("/sandbox/widget/sessions", SECRET_KEY),
    ):
        assert client.post(path, json=session(clientKey=key)).status_code == 401


@pytest.mark.parametrize(
    ("patch", "ok"),
    [
        ({"method": None}, False),
        ({"method": "MOBILE_PHONE"}, False),
        ({"orderId": "order=123456"}, True),  # `=` is in the SDK's orderId alphabet
        ({"orderId": "order!123456"}, False),
        ({"customerMobilePhone": "01012345678"}, True),
        ({"customerMobilePhone": "010-1234-5678"}, False),  # "- 없이 숫자로만"
        ({"customerMobilePhone": "0101234"}, False),  # at least 8
        ({"amount": 0}, False),
    ],
)
def test_payment_window_field_rules(client: FlaskClient, patch: dict[str, Any], ok: bool) -> None:
    """The payment window's request by the SDK's field rules (types/index.d.ts, PaymentRequest:
    orderId of A-Za-z0-9 and -_= 6–64 characters, customerMobilePhone 8–15 digits without
    `-`, a method the sandbox serves, amount above 0)."""
    body = {k: v for k, v in session(**patch).items() if v is not None}
    resp = client.post("/sandbox/payment/sessions", json=body)
    assert (resp.status_code == 201) == ok, resp.get_json()
    if not ok:
        assert resp.get_json()["code"] == "INVALID_REQUEST"


# -- payment() in Chromium, from a page on another origin ------------------------------------------


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


def serve(app: Any) -> tuple[str, Any]:
    """`app` on a loopback port of its own: (its base URL, the server)."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_port}", server


@pytest.fixture
def two_origins(sandbox: Flask) -> Iterator[tuple[str, str]]:
    """(the sandbox on its own port, a throwaway app on another port whose page loads the
    sandbox's SDK script and whose /success and /fail show what they were given)."""
    sandbox_url, sandbox_server = serve(sandbox)
    page = (
        '<!doctype html><html lang="ko"><head><meta charset="utf-8"><title>app</title>'
        f'<script src="{sandbox_url}/sandbox/widget/v2/standard"></script></head>'
        "<body><h1>주문서</h1></body></html>"
    )

    @Request.application  # type: ignore[arg-type]
    def app(request: Request) -> Response:
        if request.path == "/":
            return Response(page, mimetype="text/html")
        return Response(json.dumps(dict(request.args)), mimetype="application/json")

    app_url, app_server = serve(app)
    yield sandbox_url, app_url
    app_server.shutdown()
    sandbox_server.shutdown()


REQUEST_CARD = """([clientKey, orderId]) => {
  window.__outcomes = [];
  const payment = TossPayments(clientKey).payment({customerKey: TossPayments.ANONYMOUS});
  window.__payment = payment;
  window.__pay = () => payment.requestPayment({
      method: "CARD", amount: {currency: "KRW", value: 15000}, orderId,
      orderName: "토스 티셔츠 외 2건", customerEmail: "customer123@gmail.com",
      customerName: "김토스", customerMobilePhone: "01012341234",
      successUrl: location.origin + "/success", failUrl: location.origin + "/fail"})
    .catch((e) => window.__outcomes.push({name: e.name, code: e.code}));
  window.__pay();
}"""


@pytest.mark.browser
@pytest.mark.skipif(
    not (shutil.which("chromium") or os.path.exists(CHROMIUM)), reason="chromium is not installed"
)
def test_payment_window_from_another_origin(
    page: Any, two_origins: tuple[str, str], sandbox: Flask
) -> None:
    """A page on another origin than the sandbox loads its SDK script and calls
    payment().requestPayment({method: "CARD", amount: {currency, value}, …}) with the API
    individual client key (types/index.d.ts, TossPaymentsPayment). On a PC the window opens in
    an iframe over the page (windowTarget "iframe", "PC 환경에서 기본 값"); payment.destroy()
    closes it and rejects the request with PaymentRequestAbortedError ("현재 열려있는 결제창을
    닫고…"); the next request's approve takes the tab to the page's successUrl with paymentKey,
    orderId and amount, and the page's server confirms with test_sk_… over HTTP."""
    sandbox_url, app_url = two_origins
    assert urlsplit(sandbox_url).netloc != urlsplit(app_url).netloc
    order_id = new_order_id()
    page.goto(app_url + "/")
    page.evaluate(REQUEST_CARD, [API_CLIENT_KEY, order_id])
    frame = page.frame_locator("iframe[data-toss-sandbox-window]")
    frame.get_by_test_id("amount").wait_for()
    src = page.locator("iframe[data-toss-sandbox-window]").get_attribute("src")
    assert src.startswith(sandbox_url + "/sandbox/window/")

    page.evaluate("() => window.__payment.destroy()")
    page.wait_for_function("window.__outcomes.length === 1")
    assert page.evaluate("window.__outcomes[0]") == {
        "name": "PaymentRequestAbortedError",
        "code": "PAYMENT_REQUEST_ABORTED",
    }
    assert page.locator("[data-toss-sandbox-overlay]").count() == 0

    page.evaluate("() => { window.__pay(); }")
    assert "카드" in frame.locator(".facts").inner_text()
    frame.locator('[data-scenario="approve"]').click()
    page.wait_for_url(re.compile(re.escape(app_url) + r"/success\?"))
    q = query(page.url)
    assert (q["orderId"], q["amount"]) == (order_id, "15000")
    toss = SandboxDriver.over_http(
        sandbox_url, client_key=API_CLIENT_KEY, secret_key=API_SECRET_KEY
    )
    done = toss.confirm(q["paymentKey"], q["orderId"], int(q["amount"]))
    assert done.status == 200, done.body
    assert (done.body["status"], done.body["method"], done.body["orderId"]) == (
        "DONE",
        "카드",
        order_id,
    )
    # Toss's lookup by orderId answers the approved one of the order's two windows.
    assert toss.get_by_order(order_id).body["paymentKey"] == q["paymentKey"]
