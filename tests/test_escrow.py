"""Escrow (구매안전서비스) as Toss's v2 SDK offers it: `useEscrow` and `escrowProducts` under the
widget's `transfer` and `virtualAccount` options (@tosspayments/tosspayments-sdk 2.8.1,
types/index.d.ts, WidgetPaymentRequest), built from the order's lines when TOSS_ESCROW is on and
absent otherwise; the buyer-protection notice on the checkout page; the sandbox's stand-in and
window registration checking the options as the types define them; its Payment's `useEscrow`.

static/js/checkout.js and the stand-in (payments/sandbox/static/widget.js) run in Node with a
stub of the few DOM calls they make, as in tests/test_sandbox_sdk.py."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select, update

from payments.core.models import Order, OrderLine, Product
from payments.extensions import db
from payments.sandbox.testing import SandboxDriver, new_order_id
from payments.shop.catalog import seed_catalog
from tests.helpers import Shopper, dispose, get_order, make_app, sandbox_alone

REPO = Path(__file__).resolve().parents[1]
WIDGET_JS = REPO / "payments" / "sandbox" / "static" / "widget.js"
CHECKOUT_JS = REPO / "static" / "js" / "checkout.js"
NOTICE = (
    "고객님은 안전거래를 위해 현금 등으로 결제 시 저희 쇼핑몰에서 가입한 토스페이먼츠의 "
    "구매안전서비스를 이용하실 수 있습니다."
)
API_CLIENT_KEY = "test_ck_sandbox"
API_SECRET_KEY = "test_sk_sandbox"
PRODUCTS = [
    {"id": "7", "name": "토스 티셔츠", "code": "toss-tshirt", "unitPrice": 6_000, "quantity": 2},
    {"id": "8", "name": "토스 머그컵", "code": None, "unitPrice": 3_000, "quantity": 1},
]


def node() -> str:
    found = shutil.which("node")
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail("node is missing: the scripts cannot be run")
        pytest.skip("node is not installed")
    return found


# -- the checkout page -------------------------------------------------------------------------


def shop(database_url: str, **overrides: Any) -> Flask:
    app = make_app(database_url, **overrides)
    with app.app_context():
        seed_catalog()
    return app


@pytest.fixture
def escrow_shop(database_url: str) -> Iterator[Flask]:
    app = shop(database_url, TOSS_ESCROW="1")
    yield app
    dispose(app)


class _Checkout(HTMLParser):
    """The data- attributes of <div id="checkout">, as the browser's dataset names them."""

    def __init__(self) -> None:
        super().__init__()
        self.dataset: dict[str, str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if values.get("id") != "checkout":
            return
        self.dataset = {}
        for name, value in attrs:
            if name.startswith("data-"):
                head, *rest = name[5:].split("-")
                self.dataset[head + "".join(part.title() for part in rest)] = value or ""


def dataset_of(html: str) -> dict[str, str]:
    parser = _Checkout()
    parser.feed(html)
    assert parser.dataset is not None, "no #checkout on the page"
    return parser.dataset


def checkout_page(app: Flask) -> tuple[str, str, dict[str, str]]:
    """An order of 2 × the first product and 1 × the second placed by a shopper: (orderId,
    the checkout page's HTML, its bootstrap's dataset)."""
    shopper = Shopper(app, app.test_client())
    order_id = shopper.place_order()
    resp = shopper.client.get(f"/checkout/{order_id}")
    assert resp.status_code == 200
    html = resp.get_data(as_text=True)
    return order_id, html, dataset_of(html)


def lines_of(app: Flask, order_id: str) -> list[OrderLine]:
    with app.app_context():
        lines = db.session.scalars(
            select(OrderLine).join(Order).where(Order.order_id == order_id).order_by(OrderLine.id)
        ).all()
        db.session.expunge_all()
        return list(lines)


def test_escrow_products_are_the_order_lines_when_configured(escrow_shop: Flask) -> None:
    """TOSS_ESCROW=1: the bootstrap gets one escrow product per order line (the SDK's {id, name,
    code, unitPrice, quantity}: the product's id, its name, the shop's product code (slug), the
    line's unit price and quantity), and the page shows the buyer-protection notice."""
    order_id, html, dataset = checkout_page(escrow_shop)
    lines = lines_of(escrow_shop, order_id)
    with escrow_shop.app_context():
        slugs = dict(db.session.execute(select(Product.id, Product.slug)).all())
    products = json.loads(dataset["escrowProducts"])
    assert products == [
        {
            "id": str(line.product_id),
            "name": line.product_name,
            "code": slugs[line.product_id],
            "unitPrice": line.unit_price,
            "quantity": line.quantity,
        }
        for line in lines
    ]
    assert [p["quantity"] for p in products] == [2, 1]
    assert (
        sum(p["unitPrice"] * p["quantity"] for p in products)
        == get_order(escrow_shop, order_id).amount
    )
    assert NOTICE in html
    assert 'data-testid="escrow-notice"' in html


def test_no_escrow_options_or_notice_unless_configured(app: Flask) -> None:
    """TOSS_ESCROW unset (the default): no escrow products reach the bootstrap and no notice."""
    _, html, dataset = checkout_page(app)
    assert "escrowProducts" not in dataset
    assert "구매안전서비스" not in html
    assert "escrow-notice" not in html


def test_a_line_whose_product_is_gone_keeps_its_own_id(escrow_shop: Flask) -> None:
    """A line whose product was deleted after the order (product_id set to NULL by its foreign
    key): the escrow product is named after the line, without a product code."""
    shopper = Shopper(escrow_shop, escrow_shop.test_client())
    order_id = shopper.place_order()
    lines = lines_of(escrow_shop, order_id)
    gone = lines[0].id
    with escrow_shop.app_context():
        db.session.execute(update(OrderLine).where(OrderLine.id == gone).values(product_id=None))
        db.session.commit()
    dataset = dataset_of(shopper.client.get(f"/checkout/{order_id}").get_data(as_text=True))
    first, second = json.loads(dataset["escrowProducts"])
    assert (first["id"], first["code"]) == (f"line-{gone}", None)
    assert second["id"] == str(lines[1].product_id)
    assert second["code"]


# -- checkout.js: what it passes to requestPayment ---------------------------------------------

# checkout.js with a TossPayments that records requestPayment's argument; the page's dataset as
# the browser would hand it over. Prints {request, error}.
CHECKOUT_PROBE = r"""
const fs = require("fs"), vm = require("vm");
const [path, datasetJson] = process.argv.slice(-2);
let onClick = null, request = null;
const elements = {
  checkout: { dataset: JSON.parse(datasetJson) },
  "pay-button": { disabled: true, addEventListener: (event, fn) => { onClick = fn; } },
  "checkout-error": { hidden: true, textContent: "" },
};
const document = { getElementById: (id) => elements[id] || null };
const widgets = {
  setAmount: async () => {}, renderPaymentMethods: async () => ({}),
  renderAgreement: async () => ({}), requestPayment: async (r) => { request = r; },
};
const window = { TossPayments: () => ({ widgets: () => widgets }) };
vm.runInContext(fs.readFileSync(path, "utf8"), vm.createContext({ window, document }));
(async () => {
  for (let i = 0; i < 100 && !onClick; i++) await new Promise((r) => setImmediate(r));
  if (!onClick) throw new Error("the pay button never got its handler");
  await onClick();
  const error = elements["checkout-error"].textContent;
  process.stdout.write(JSON.stringify({ request, error }));
})().catch((e) => { console.error(e); process.exit(1); });
"""


def request_payment_of(dataset: dict[str, str]) -> dict[str, Any]:
    done = subprocess.run(
        [node(), "-", str(CHECKOUT_JS), json.dumps(dataset)],
        input=CHECKOUT_PROBE,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    assert result["error"] == ""
    request: dict[str, Any] = result["request"]
    return request


def test_request_payment_carries_escrow_under_transfer_and_virtual_account(
    escrow_shop: Flask,
) -> None:
    """Configured: requestPayment gets `transfer` and `virtualAccount` each with
    `useEscrow: true` and the order's escrowProducts (the widget's `card` has no escrow option
    in the types, so none there)."""
    _, _, dataset = checkout_page(escrow_shop)
    request = request_payment_of(dataset)
    expected = {"useEscrow": True, "escrowProducts": json.loads(dataset["escrowProducts"])}
    assert request["transfer"] == expected
    assert request["virtualAccount"] == expected
    assert "card" not in request
    assert request["orderId"] == dataset["orderId"]


def test_request_payment_has_no_escrow_options_unless_configured(app: Flask) -> None:
    """Not configured: neither option object is passed (absent, not `useEscrow: false`, which
    the types make optional)."""
    _, _, dataset = checkout_page(app)
    request = request_payment_of(dataset)
    assert not {"transfer", "virtualAccount", "card"} & set(request)
    assert request["orderId"] == dataset["orderId"]


# -- the stand-in: the SDK's checks ------------------------------------------------------------

# widget.js in Node; for each case, a fresh widgets() (or payment()) object calls requestPayment
# with the case's extra fields. fetch records the window registration's body and fails, so
# every call settles. Prints [{name, code, body}] in case order.
STAND_IN_PROBE = r"""
const fs = require("fs"), vm = require("vm");
const [path, casesJson] = process.argv.slice(-2);
class El {
  constructor() { this.children = []; this.attrs = {}; }
  setAttribute(k, v) { this.attrs[k] = String(v); }
  appendChild(c) { this.children.push(c); return c; }
  replaceChildren(...cs) { this.children = cs; }
  addEventListener() {}
}
const slots = { "#methods": new El(), "#agreement": new El() };
const document = {
  currentScript: { src: "http://sandbox.test/sandbox/widget/v2/standard" },
  head: new El(), body: new El(), createElement: () => new El(),
  querySelector: (selector) => slots[selector] || null,
};
const window = {
  document, navigator: { userAgent: "node" }, screen: { width: 1280 },
  location: { href: "http://shop.test/checkout/x", assign() {} }, addEventListener() {},
};
window.window = window;
let body = null;
const fetch = (url, init) => {
  body = JSON.parse(init.body);
  return Promise.reject(new Error("offline"));
};
vm.runInContext(fs.readFileSync(path, "utf8"), vm.createContext({ window, document, URL, fetch }));
const base = {
  orderId: "order_escrow_1", orderName: "토스 티셔츠 외 1건",
  successUrl: "http://shop.test/success", failUrl: "http://shop.test/fail",
};
(async () => {
  const out = [];
  for (const c of JSON.parse(casesJson)) {
    body = null;
    let call;
    if (c.product === "payment") {
      const payment = window.TossPayments("test_ck_sandbox").payment({ customerKey: "cust_1" });
      const amount = { currency: "KRW", value: 15000 };
      call = payment.requestPayment({ ...base, amount, ...c.extra });
    } else {
      slots["#methods"] = new El();
      const widgets = window.TossPayments("test_gck_sandbox").widgets({ customerKey: "cust_1" });
      await widgets.setAmount({ currency: "KRW", value: 15000 });
      await widgets.renderPaymentMethods({ selector: "#methods" });
      call = widgets.requestPayment({ ...base, ...c.extra });
    }
    try { await call; out.push({ name: null, code: null, body }); }
    catch (e) { out.push({ name: e.name, code: e.code, body }); }
  }
  process.stdout.write(JSON.stringify(out));
})().catch((e) => { console.error(e); process.exit(1); });
"""


def stand_in(cases: list[dict[str, Any]]) -> list[dict[str, Any]]:
    done = subprocess.run(
        [node(), "-", str(WIDGET_JS), json.dumps(cases)],
        input=STAND_IN_PROBE,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result: list[dict[str, Any]] = json.loads(done.stdout)
    return result


def escrow(products: Any = None, use: Any = True) -> dict[str, Any]:
    return {"useEscrow": use, "escrowProducts": PRODUCTS if products is None else products}


MALFORMED: dict[str, dict[str, Any]] = {
    "options not an object": {"virtualAccount": "escrow"},
    "useEscrow not a boolean": {"virtualAccount": escrow(use="true")},
    "escrowProducts not an array": {"transfer": escrow(products={"id": "7"})},
    "a product not an object": {"virtualAccount": escrow(products=["toss-tshirt"])},
    "unitPrice a string": {
        "virtualAccount": escrow(products=[{**PRODUCTS[0], "unitPrice": "6000"}])
    },
    "quantity a fraction": {"virtualAccount": escrow(products=[{**PRODUCTS[0], "quantity": 1.5}])},
    "id a number": {"transfer": escrow(products=[{**PRODUCTS[0], "id": 7}])},
    "a field the types lack": {"virtualAccount": escrow(products=[{**PRODUCTS[0], "price": 1}])},
    "useEscrow without products": {"virtualAccount": {"useEscrow": True}},
    "useEscrow with no products": {"virtualAccount": escrow(products=[])},
}


def test_the_stand_in_refuses_malformed_escrow_options_as_the_sdk() -> None:
    """Options that break the types (useEscrow boolean; escrowProducts an array of {id, name,
    code: string; unitPrice, quantity: number}, required with useEscrow) reject requestPayment
    with the SDK's InvalidParametersError / INVALID_PARAMETERS, before any window opens."""
    results = stand_in([{"extra": extra} for extra in MALFORMED.values()])
    for why, result in zip(MALFORMED, results, strict=True):
        assert (result["name"], result["code"]) == (
            "InvalidParametersError",
            "INVALID_PARAMETERS",
        ), why
        assert result["body"] is None, why  # nothing registered


def test_the_stand_in_passes_well_formed_escrow_options_on() -> None:
    """Well-formed options reach the window's registration as given (missing fields as null);
    without them the registration has no option objects; the payment window takes its own
    method's options (CardPaymentRequest.card.useEscrow)."""
    sparse = [{"name": "토스 티셔츠", "unitPrice": 6_000, "quantity": 2}]
    with_escrow, sparse_escrow, without, card_window, card_malformed = stand_in(
        [
            {"extra": {"transfer": escrow(), "virtualAccount": escrow()}},
            {"extra": {"virtualAccount": escrow(products=sparse)}},
            {"extra": {}},
            {"product": "payment", "extra": {"method": "CARD", "card": escrow()}},
            {"product": "payment", "extra": {"method": "CARD", "card": escrow(use=1)}},
        ]
    )
    assert with_escrow["code"] == "UNKNOWN"  # the probe's fetch fails after recording
    assert with_escrow["body"]["virtualAccount"] == {"useEscrow": True, "escrowProducts": PRODUCTS}
    assert with_escrow["body"]["transfer"] == {"useEscrow": True, "escrowProducts": PRODUCTS}
    assert sparse_escrow["body"]["virtualAccount"]["escrowProducts"] == [
        {"id": None, "name": "토스 티셔츠", "code": None, "unitPrice": 6_000, "quantity": 2}
    ]
    assert "transfer" not in sparse_escrow["body"]
    assert without["body"] is not None
    assert not {"transfer", "virtualAccount", "card"} & set(without["body"])
    assert card_window["body"]["card"] == {"useEscrow": True, "escrowProducts": PRODUCTS}
    assert card_malformed["code"] == "INVALID_PARAMETERS"


# -- the sandbox: registration checks and the Payment's useEscrow ------------------------------


@pytest.fixture
def sandbox(database_url: str) -> Iterator[Flask]:
    app = sandbox_alone(database_url)
    yield app
    dispose(app)


@pytest.fixture
def client(sandbox: Flask) -> FlaskClient:
    return sandbox.test_client()


def widget_session(**extra: Any) -> dict[str, Any]:
    from tests.helpers import CLIENT_KEY

    return {
        "clientKey": CLIENT_KEY,
        "customerKey": "@@ANONYMOUS",
        "orderId": new_order_id(),
        "orderName": "토스 티셔츠 외 1건",
        "amount": 15_000,
        "successUrl": "http://app.test/success",
        "failUrl": "http://app.test/fail",
        **extra,
    }


@pytest.mark.parametrize("why", list(MALFORMED))
def test_the_window_registration_refuses_malformed_escrow_options(
    client: FlaskClient, why: str
) -> None:
    """The sandbox's server checks what the stand-in checks (a page may post to it directly):
    400 INVALID_REQUEST, as for every ill-formed field of the registration."""
    resp = client.post("/sandbox/widget/sessions", json=widget_session(**MALFORMED[why]))
    assert resp.status_code == 400, resp.get_json()
    assert resp.get_json()["code"] == "INVALID_REQUEST"


def confirmed(driver: SandboxDriver, **window: Any) -> dict[str, Any]:
    w = driver.open_window(amount=15_000, **window)
    answer = driver.confirm(w.payment_key or "", w.order_id, 15_000)
    assert answer.status == 200, answer.body
    assert driver.get(w.payment_key or "").body["useEscrow"] == answer.body["useEscrow"]
    return dict(answer.body)


def test_a_virtual_account_with_use_escrow_is_an_escrow_payment(client: FlaskClient) -> None:
    """The widget's virtualAccount.useEscrow true and a virtual account paid: Toss's Payment
    carries `useEscrow: true`; the same options on a card payment (the widget's card has no
    escrow option) or useEscrow false (the buyer's choice, which the sandbox's window does not
    offer) or no options: `useEscrow: false`."""
    widget = SandboxDriver.in_process(client)
    va = {"virtualAccount": escrow(), "transfer": escrow()}
    paid = confirmed(widget, scenario="virtual_account", **va)
    assert (paid["status"], paid["method"], paid["useEscrow"]) == (
        "WAITING_FOR_DEPOSIT",
        "가상계좌",
        True,
    )
    assert confirmed(widget, scenario="approve", **va)["useEscrow"] is False
    assert confirmed(widget, scenario="virtual_account")["useEscrow"] is False
    unused = {"virtualAccount": escrow(use=False)}
    assert confirmed(widget, scenario="virtual_account", **unused)["useEscrow"] is False


def test_the_payment_window_applies_escrow_to_its_own_method(client: FlaskClient) -> None:
    """payment().requestPayment: TRANSFER with transfer.useEscrow → an escrow 계좌이체; a CARD
    window with card.useEscrow → an escrow card payment (CardPaymentRequest.card); a CARD
    window given only transfer options → none."""
    window = SandboxDriver.in_process(client, client_key=API_CLIENT_KEY, secret_key=API_SECRET_KEY)
    transfer = confirmed(window, method="TRANSFER", product="payment", transfer=escrow())
    assert (transfer["method"], transfer["useEscrow"]) == ("계좌이체", True)
    card = confirmed(window, method="CARD", product="payment", card=escrow())
    assert (card["method"], card["useEscrow"]) == ("카드", True)
    other = confirmed(window, method="CARD", product="payment", transfer=escrow())
    assert other["useEscrow"] is False


def test_an_open_window_is_no_escrow_payment_yet(client: FlaskClient) -> None:
    """Before the shopper picks a method (READY) the Payment says no escrow."""
    widget = SandboxDriver.in_process(client)
    payment_key, _ = widget.start_window(virtualAccount=escrow())
    assert widget.get(payment_key).body["useEscrow"] is False
