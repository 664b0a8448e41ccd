"""Who gets an order's signed link, what a stranger's paymentKey does to an order, who leaves a
trace through the fail URL, and which answers may be cached.

The success URL is public: anyone who knows an orderId and its amount can call it with any
paymentKey. Only the order's own browser session, or the payer whose paymentKey Toss confirmed
for this order, gets the 30-day signed link to the order page and payment JSON; an unknown or
foreign paymentKey leaves the order payable, with the refusal on its timeline.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import responses
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from payments.core.models import AuditEntry, Order
from payments.extensions import db
from payments.sandbox.testing import SandboxDriver
from payments.shop.catalog import seed_catalog
from tests.helpers import (
    CONFIRM_URL,
    TOSS,
    Shopper,
    dispose,
    error_json,
    get_order,
    make_app,
    payment_json,
    sandbox_app,
    success_url,
)

MADE_UP = "tpk_made_up_by_a_stranger_0001"
REAL = "tpk_real_payment_0001"


def _link_token(location: str) -> str | None:
    """The signed-link token a redirect hands out, if any."""
    return parse_qs(urlsplit(location).query).get("t", [None])[0]


def _audit_codes(app: Flask, order_id: str) -> list[tuple[str, str | None, str | None]]:
    with app.app_context():
        order = db.session.execute(select(Order).filter_by(order_id=order_id)).scalar_one()
        return [
            (a.event, a.to_status, a.code)
            for a in db.session.scalars(
                select(AuditEntry).filter_by(order_pk=order.id).order_by(AuditEntry.id)
            )
        ]


def _assert_stranger_sees_nothing(
    app: Flask, stranger: FlaskClient, resp: Any, order_id: str, payment_keys: list[str]
) -> None:
    """Neither the redirect nor where it leads opens the order page or the payment JSON."""
    location = resp.headers.get("Location", "")
    token = _link_token(location)
    assert token is None, location
    if location:
        page = stranger.get(location)
        assert page.status_code in (200, 404)
        html = page.get_data(as_text=True)
        assert f"/checkout/{order_id}" not in html
        assert f"/orders/{order_id}" not in html
        assert 'data-testid="order-status"' not in html
    for key in payment_keys:
        assert stranger.get(f"/api/payment/{key}").status_code == 404
    assert stranger.get(f"/orders/{order_id}").status_code == 404


# -- the signed link -------------------------------------------------------------------------------


def test_a_made_up_payment_key_on_a_payable_order_gets_no_link(
    app: Flask, toss: responses.RequestsMock, place_order: Callable[..., str]
) -> None:
    order_id = place_order()
    amount = get_order(app, order_id).amount
    toss.post(CONFIRM_URL, status=404, json=error_json("NOT_FOUND_PAYMENT"))
    stranger = app.test_client()
    resp = stranger.get(success_url(order_id, MADE_UP, amount))
    assert resp.status_code == 303
    _assert_stranger_sees_nothing(app, stranger, resp, order_id, [MADE_UP])


@pytest.mark.parametrize("method", ["card", "virtual_account"])
def test_a_made_up_payment_key_on_a_paid_order_gets_no_link(
    app: Flask,
    client: FlaskClient,
    toss: responses.RequestsMock,
    place_order: Callable[..., str],
    method: str,
) -> None:
    order_id = place_order()
    amount = get_order(app, order_id).amount
    extra: dict[str, Any] = {}
    status = "DONE"
    if method == "virtual_account":
        status = "WAITING_FOR_DEPOSIT"
        extra = {
            "method": "가상계좌",
            "card": None,
            "virtualAccount": {
                "accountNumber": "X6950000012345",
                "bankCode": "20",
                "customerName": "김토스",
                "dueDate": "2026-11-29T23:59:59+09:00",
                "refundStatus": "NONE",
                "expired": False,
            },
            "secret": "ps_secret_0001",
        }
    toss.post(CONFIRM_URL, json=payment_json(order_id, amount, REAL, status=status, **extra))
    assert "t=" in client.get(success_url(order_id, REAL, amount)).headers["Location"]

    stranger = app.test_client()
    resp = stranger.get(success_url(order_id, MADE_UP, amount))
    assert resp.status_code == 303
    _assert_stranger_sees_nothing(app, stranger, resp, order_id, [REAL, MADE_UP])
    assert len(toss.calls) == 1  # the stranger's key never reached Toss


def _in_flight(app: Flask, order_id: str, payment_key: str, status: str = "CONFIRMING") -> None:
    with app.app_context():
        db.session.execute(
            db.update(Order)
            .where(Order.order_id == order_id)
            .values(status=status, payment_key=payment_key)
        )
        db.session.commit()


def test_a_made_up_payment_key_while_the_payment_is_in_flight_gets_no_link(
    app: Flask, toss: responses.RequestsMock, place_order: Callable[..., str]
) -> None:
    order_id = place_order()
    amount = get_order(app, order_id).amount
    _in_flight(app, order_id, REAL)
    stranger = app.test_client()
    resp = stranger.get(success_url(order_id, MADE_UP, amount))
    assert resp.status_code == 202  # the waiting page, which asks the success URL again
    assert re.search(r"[?&]t=|/orders/|/checkout/[^sf]", resp.get_data(as_text=True)) is None
    _assert_stranger_sees_nothing(app, stranger, resp, order_id, [REAL, MADE_UP])
    assert get_order(app, order_id).payment_key == REAL


def test_the_owner_and_the_rightful_payer_in_a_fresh_browser_keep_the_link(
    app: Flask, client: FlaskClient, toss: responses.RequestsMock, place_order: Callable[..., str]
) -> None:
    order_id = place_order()
    amount = get_order(app, order_id).amount
    toss.post(CONFIRM_URL, json=payment_json(order_id, amount, REAL))

    # Toss's redirect lands in another browser (an app's webview) than the one that ordered.
    payer = app.test_client()
    resp = payer.get(success_url(order_id, REAL, amount))
    assert resp.status_code == 303
    token = _link_token(resp.headers["Location"])
    assert token is not None
    assert payer.get(resp.headers["Location"]).status_code == 200
    paid = payer.get(f"/api/payment/{REAL}?t={token}")
    assert paid.status_code == 200
    assert paid.get_json()["status"] == "PAID"

    # A refresh of the success URL in yet another browser: the same paymentKey, settled.
    again = app.test_client().get(success_url(order_id, REAL, amount))
    assert _link_token(again.headers["Location"]) is not None

    # The ordering session sees its order with or without the link.
    assert client.get(f"/orders/{order_id}").status_code == 200
    assert client.get(f"/api/payment/{REAL}").status_code == 200
    assert len(toss.calls) == 1


def test_the_owner_session_is_sent_to_its_order_while_its_payment_is_in_flight(
    app: Flask, client: FlaskClient, place_order: Callable[..., str]
) -> None:
    order_id = place_order()
    amount = get_order(app, order_id).amount
    _in_flight(app, order_id, REAL)
    resp = client.get(success_url(order_id, REAL, amount))
    assert urlsplit(resp.headers["Location"]).path == f"/orders/{order_id}"
    assert client.get(resp.headers["Location"]).status_code == 200


def test_the_owner_waits_out_a_strangers_attempt_and_then_pays(
    app: Flask, client: FlaskClient, toss: responses.RequestsMock, place_order: Callable[..., str]
) -> None:
    """A stranger's made-up key holds the order for the moment the real payer comes back: the
    payer waits on a page that asks the success URL again, which confirms once it is free."""
    order_id = place_order()
    amount = get_order(app, order_id).amount
    _in_flight(app, order_id, MADE_UP)
    waiting = client.get(success_url(order_id, REAL, amount))
    assert waiting.status_code == 202
    assert 'http-equiv="refresh"' in waiting.get_data(as_text=True)

    with app.app_context():  # the stranger's attempt is refused and released
        db.session.execute(
            db.update(Order)
            .where(Order.order_id == order_id)
            .values(status="PENDING", payment_key=None)
        )
        db.session.commit()
    toss.post(CONFIRM_URL, json=payment_json(order_id, amount, REAL))
    resp = client.get(success_url(order_id, REAL, amount))
    assert urlsplit(resp.headers["Location"]).path == f"/orders/{order_id}"
    assert get_order(app, order_id).status == "PAID"


def test_the_payer_in_a_fresh_browser_waits_on_a_payment_in_flight(
    app: Flask, toss: responses.RequestsMock, place_order: Callable[..., str]
) -> None:
    """Not confirmed yet: no link, but a page that asks the success URL again; the link once
    Toss's record shows the payment."""
    order_id = place_order()
    amount = get_order(app, order_id).amount
    _in_flight(app, order_id, REAL, "NEEDS_RECONCILE")
    by_order = f"{TOSS}/v1/payments/orders/{order_id}"
    toss.get(by_order, status=404, json=error_json("NOT_FOUND_PAYMENT"))
    payer = app.test_client()
    resp = payer.get(success_url(order_id, REAL, amount))
    assert resp.status_code == 202
    html = resp.get_data(as_text=True)
    assert 'http-equiv="refresh"' in html
    assert "결제를 확인하고 있습니다" in html
    assert re.search(r"[?&]t=", html) is None

    toss.replace(responses.GET, by_order, json=payment_json(order_id, amount, REAL))
    resp = payer.get(success_url(order_id, REAL, amount))
    assert resp.status_code == 303
    assert payer.get(resp.headers["Location"]).status_code == 200
    assert get_order(app, order_id).status == "PAID"


# -- an unknown or foreign paymentKey leaves the order payable -------------------------------------


@pytest.fixture
def sandbox_shop(database_url: str) -> Iterator[Flask]:
    shop = sandbox_app(database_url)
    with shop.app_context():
        seed_catalog()
    yield shop
    dispose(shop)


def test_a_made_up_payment_key_leaves_the_order_payable_in_the_sandbox(
    sandbox_shop: Flask,
) -> None:
    shopper = Shopper(sandbox_shop, sandbox_shop.test_client())
    order_id = shopper.place_order()
    amount = get_order(sandbox_shop, order_id).amount

    stranger = sandbox_shop.test_client()
    resp = stranger.get(success_url(order_id, MADE_UP, amount))
    assert resp.status_code == 303
    assert "code=NOT_FOUND_PAYMENT" in resp.headers["Location"]
    order = get_order(sandbox_shop, order_id)
    assert order.status == "PENDING"
    assert order.payment_key is None
    assert order.failure_code is None  # the rightful shopper is not told of a stranger's try
    assert ("transition", "PENDING", "NOT_FOUND_PAYMENT") in _audit_codes(sandbox_shop, order_id)

    paid = shopper.pay_in_sandbox(order_id, amount)
    assert paid.status_code == 303
    assert urlsplit(paid.headers["Location"]).path == f"/orders/{order_id}"
    assert get_order(sandbox_shop, order_id).status == "PAID"


def test_another_orders_paid_payment_key_leaves_the_order_payable_in_the_sandbox(
    sandbox_shop: Flask,
) -> None:
    """A stranger pays their own order and presents its paymentKey with the victim's orderId:
    Toss answers ALREADY_PROCESSED_PAYMENT and its record is of the stranger's order."""
    victim = Shopper(sandbox_shop, sandbox_shop.test_client())
    order_id = victim.place_order()
    amount = get_order(sandbox_shop, order_id).amount
    stranger = Shopper(sandbox_shop, sandbox_shop.test_client())
    theirs = stranger.place_order()
    assert get_order(sandbox_shop, theirs).amount == amount
    window = SandboxDriver.in_process(stranger.client).open_window(
        theirs, amount, success_url="http://localhost/checkout/success"
    )
    stranger.client.get(window.redirect_url.removeprefix("http://localhost"))
    assert get_order(sandbox_shop, theirs).status == "PAID"
    assert window.payment_key is not None

    resp = stranger.client.get(success_url(order_id, window.payment_key, amount))
    assert resp.status_code == 303
    assert _link_token(resp.headers["Location"]) is None
    order = get_order(sandbox_shop, order_id)
    assert order.status == "PENDING"
    assert order.payment_key is None
    assert get_order(sandbox_shop, theirs).status == "PAID"  # nobody's payment is cancelled

    paid = victim.pay_in_sandbox(order_id, amount)
    assert urlsplit(paid.headers["Location"]).path == f"/orders/{order_id}"
    assert get_order(sandbox_shop, order_id).status == "PAID"


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (404, "NOT_FOUND_PAYMENT"),
        (403, "FORBIDDEN_REQUEST"),
        (400, "INVALID_REQUEST"),
        (400, "INVALID_API_KEY"),
    ],
)
def test_a_key_toss_says_is_not_this_orders_payment_leaves_the_order_payable(
    app: Flask,
    client: FlaskClient,
    toss: responses.RequestsMock,
    place_order: Callable[..., str],
    status: int,
    code: str,
) -> None:
    order_id = place_order()
    amount = get_order(app, order_id).amount
    toss.post(CONFIRM_URL, status=status, json=error_json(code))
    app.test_client().get(success_url(order_id, MADE_UP, amount))
    order = get_order(app, order_id)
    assert (order.status, order.payment_key, order.failure_code) == ("PENDING", None, None)
    assert ("transition", "PENDING", code) in _audit_codes(app, order_id)

    # The rightful shopper's payment goes through afterwards.
    toss.replace(responses.POST, CONFIRM_URL, json=payment_json(order_id, amount, REAL))
    resp = client.get(success_url(order_id, REAL, amount))
    assert urlsplit(resp.headers["Location"]).path == f"/orders/{order_id}"
    assert get_order(app, order_id).status == "PAID"


def test_a_definitive_refusal_of_the_order_itself_still_fails_it(
    app: Flask, toss: responses.RequestsMock, place_order: Callable[..., str]
) -> None:
    order_id = place_order()
    amount = get_order(app, order_id).amount
    toss.post(CONFIRM_URL, status=400, json=error_json("DUPLICATED_ORDER_ID"))
    app.test_client().get(success_url(order_id, REAL, amount))
    assert get_order(app, order_id).status == "FAILED"


# -- the fail URL, Cache-Control -------------------------------------------------------------------


def test_the_fail_url_records_only_for_the_orders_own_session(
    app: Flask, client: FlaskClient, place_order: Callable[..., str]
) -> None:
    order_id = place_order()
    stranger = app.test_client()
    for _ in range(20):
        resp = stranger.get(f"/checkout/fail?code=PAY_PROCESS_CANCELED&orderId={order_id}")
        assert resp.status_code == 200
    assert [row for row in _audit_codes(app, order_id) if row[0] == "payment_failed"] == []

    client.get(f"/checkout/fail?code=PAY_PROCESS_CANCELED&orderId={order_id}")
    recorded = [row for row in _audit_codes(app, order_id) if row[0] == "payment_failed"]
    assert recorded == [("payment_failed", "PENDING", "PAY_PROCESS_CANCELED")]


def test_the_fail_url_is_rate_limited(database_url: str) -> None:
    app = make_app(database_url, RATELIMIT_ENABLED=True, RATELIMIT_FAIL="3 per minute")
    client = app.test_client()
    statuses = [client.get("/checkout/fail?code=X&orderId=abcdef").status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    assert "요청이 너무 많습니다" in client.get("/checkout/fail").get_data(as_text=True)
    dispose(app)


def test_order_pages_and_payment_answers_are_never_stored(
    app: Flask, client: FlaskClient, toss: responses.RequestsMock, place_order: Callable[..., str]
) -> None:
    order_id = place_order()
    amount = get_order(app, order_id).amount
    answers = {"checkout page": client.get(f"/checkout/{order_id}")}
    toss.post(CONFIRM_URL, json=payment_json(order_id, amount, REAL))
    answers["success"] = client.get(success_url(order_id, REAL, amount))
    answers["order page"] = client.get(f"/orders/{order_id}")
    answers["payment JSON"] = client.get(f"/api/payment/{REAL}")
    answers["unknown payment JSON"] = client.get("/api/payment/tpk_unknown_0001")
    answers["verify"] = client.post(
        "/api/payment/verify", json={"paymentKey": REAL, "orderId": order_id, "amount": amount}
    )
    answers["confirm refused"] = client.post("/api/payment/confirm", json={})
    answers["fail"] = client.get(f"/checkout/fail?code=X&orderId={order_id}")
    assert {name: r.status_code for name, r in answers.items()} == {
        "checkout page": 200,
        "success": 303,
        "order page": 200,
        "payment JSON": 200,
        "unknown payment JSON": 404,
        "verify": 200,
        "confirm refused": 400,
        "fail": 200,
    }
    for name, resp in answers.items():
        assert "no-store" in resp.headers.get("Cache-Control", ""), name
