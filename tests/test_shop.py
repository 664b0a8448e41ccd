"""Catalog, cart, order creation, ownership of order pages and the payment API, CSRF."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
import responses
from flask import Flask
from flask.testing import FlaskClient

from payments.access import order_token
from payments.checkout.routes import public_url
from payments.core.models import Order, OrderLine, Product
from payments.extensions import db
from payments.shop.catalog import seed_catalog
from tests.helpers import (
    BUYER_FORM,
    CONFIRM_URL,
    audit,
    csrf_token,
    get_order,
    make_app,
    payment_json,
)


def test_catalog_lists_seeded_products_in_korean_won(client: FlaskClient) -> None:
    html = client.get("/").get_data(as_text=True)
    assert html.count('class="product card"') >= 6
    assert "무선 키보드" in html
    assert "39,000원" in html


def test_cart_add_change_remove(client: FlaskClient, products: list[Product]) -> None:
    kb, mouse = products[0], products[1]
    assert client.post("/cart", data={"product_id": kb.id, "quantity": "2"}).status_code == 303
    client.post("/cart", data={"product_id": kb.id, "quantity": "1"})
    client.post("/cart", data={"product_id": mouse.id})
    html = client.get("/cart").get_data(as_text=True)
    assert f"{kb.price * 3 + mouse.price:,}원" in html

    client.post("/cart", data={"action": "update", "product_id": kb.id, "quantity": "5"})
    client.post("/cart", data={"action": "remove", "product_id": mouse.id})
    html = client.get("/cart").get_data(as_text=True)
    assert f"{kb.price * 5:,}원" in html
    assert mouse.name not in html


@pytest.mark.parametrize(
    ("form", "status", "needle"),
    [
        ({"product_id": "999999"}, 404, "존재하지 않는 상품"),
        ({"product_id": "abc"}, 400, "존재하지 않는 상품"),
        ({"product_id": "-1"}, 400, "존재하지 않는 상품"),
        ({}, 400, "상품을 선택"),
        ({"product_id": "1", "quantity": "0"}, 400, "1~99"),
        ({"product_id": "1", "quantity": "100"}, 400, "1~99"),
        ({"product_id": "1", "quantity": "-3"}, 400, "1~99"),
        ({"product_id": "1", "quantity": "2.5"}, 400, "1~99"),
        ({"product_id": "1", "quantity": "1e3"}, 400, "1~99"),
        ({"product_id": "1", "quantity": "９"}, 400, "1~99"),
        ({"action": "explode", "product_id": "1"}, 400, "알 수 없는"),
        ({"action": "update", "product_id": "1", "quantity": ""}, 400, "1~99"),
        ({"action": "remove", "product_id": "2"}, 404, "장바구니에 없는"),
    ],
)
def test_bad_cart_input_is_refused_and_changes_nothing(
    client: FlaskClient, form: dict[str, str], status: int, needle: str
) -> None:
    client.post("/cart", data={"product_id": "1", "quantity": "3"})
    with client.session_transaction() as sess:
        before = dict(sess["cart"])

    resp = client.post("/cart", data=form)

    assert resp.status_code == status
    assert needle in resp.get_data(as_text=True)
    with client.session_transaction() as sess:
        assert sess["cart"] == before == {"1": 3}


def test_adding_past_99_is_refused(client: FlaskClient) -> None:
    client.post("/cart", data={"product_id": "1", "quantity": "98"})
    resp = client.post("/cart", data={"product_id": "1", "quantity": "2"})
    assert resp.status_code == 400
    assert "최대 99개" in resp.get_data(as_text=True)


def test_order_is_priced_on_the_server_with_snapshots(
    app: Flask, client: FlaskClient, products: list[Product], place_order: Callable[..., str]
) -> None:
    a, b, c = products[0], products[1], products[2]
    order_id = place_order({a.id: 2, b.id: 1, c.id: 3})

    assert re.fullmatch(r"[A-Za-z0-9_-]{20,64}", order_id)
    with app.app_context():
        order = db.session.execute(db.select(Order).filter_by(order_id=order_id)).scalar_one()
        assert order.amount == a.price * 2 + b.price + c.price * 3
        assert order.order_name == f"{a.name} 외 2건"
        assert order.status == "PENDING"
        assert re.fullmatch(r"[A-Za-z0-9\-_=.@]{2,50}", order.customer_key)
        assert [(line.product_name, line.unit_price, line.quantity) for line in order.lines] == [
            (a.name, a.price, 2),
            (b.name, b.price, 1),
            (c.name, c.price, 3),
        ]
        # A later price change does not touch the placed order.
        db.session.get(Product, a.id).price = 1
        db.session.commit()
        assert db.session.get(OrderLine, order.lines[0].id).unit_price == a.price
    assert client.get("/cart").get_data(as_text=True).count("data-product-id") == 0


def test_order_ids_are_unique_and_unguessable(place_order: Callable[..., str]) -> None:
    ids = {place_order() for _ in range(5)}
    assert len(ids) == 5
    assert all(len(i) >= 20 for i in ids)


def test_empty_cart_cannot_be_ordered(client: FlaskClient) -> None:
    resp = client.post("/orders", data=BUYER_FORM)
    assert resp.status_code == 400
    assert "장바구니가 비어 있습니다" in resp.get_data(as_text=True)


def test_checkout_page_carries_the_stored_amount_and_absolute_urls(
    app: Flask, client: FlaskClient, place_order: Callable[..., str]
) -> None:
    order_id = place_order()
    html = client.get(f"/checkout/{order_id}").get_data(as_text=True)
    assert f'data-amount="{get_order(app, order_id).amount}"' in html
    assert f'data-order-id="{order_id}"' in html
    assert 'data-success-url="http://localhost/checkout/success"' in html
    assert 'data-fail-url="http://localhost/checkout/fail"' in html
    assert 'data-client-key="test_gck_sandbox"' in html
    assert re.search(
        r'<script nonce="[A-Za-z0-9_\-+/=]{16,}" src="https://js.tosspayments.com/v2/standard">',
        html,
    )


def test_public_base_url_builds_toss_redirects(database_url: str) -> None:
    app = make_app(database_url, PUBLIC_BASE_URL="https://shop.example.kr")
    with app.test_request_context():
        assert public_url("checkout.success") == "https://shop.example.kr/checkout/success"


def test_order_pages_belong_to_their_owner(
    app: Flask, client: FlaskClient, place_order: Callable[..., str]
) -> None:
    order_id = place_order()
    stranger = app.test_client()
    assert client.get(f"/orders/{order_id}").status_code == 200
    assert stranger.get(f"/orders/{order_id}").status_code == 404
    assert stranger.get(f"/checkout/{order_id}").status_code == 404
    assert stranger.get(f"/orders/{order_id}?t=forged.token.value").status_code == 404

    with app.test_request_context():
        token = order_token(order_id)
        other = order_token("another-order-id-000001")
    assert stranger.get(f"/orders/{order_id}?t={token}").status_code == 200
    assert stranger.get(f"/orders/{order_id}?t={other}").status_code == 404


def test_payment_api_is_for_the_owner_only(
    app: Flask,
    client: FlaskClient,
    toss: responses.RequestsMock,
    place_order: Callable[..., str],
) -> None:
    order_id = place_order()
    amount = get_order(app, order_id).amount
    toss.post(CONFIRM_URL, json=payment_json(order_id, amount, "tpk_owned_0001"))
    client.post(
        "/api/payment/verify",
        json={"paymentKey": "tpk_owned_0001", "orderId": order_id, "amount": amount},
    )

    mine = client.get("/api/payment/tpk_owned_0001")
    assert mine.status_code == 200
    assert mine.get_json()["status"] == "PAID"
    theirs = app.test_client().get("/api/payment/tpk_owned_0001")
    assert theirs.status_code == 404
    assert theirs.get_json()["code"] == "NOT_FOUND"
    assert client.get("/api/payment/tpk_unknown").status_code == 404


def test_fail_redirect_keeps_the_order_payable(
    app: Flask, client: FlaskClient, place_order: Callable[..., str]
) -> None:
    order_id = place_order()
    resp = client.get(
        f"/checkout/fail?code=PAY_PROCESS_CANCELED&message=%EC%B7%A8%EC%86%8C&orderId={order_id}"
    )
    html = resp.get_data(as_text=True)
    assert resp.status_code == 200
    assert "결제를 취소했습니다" in html
    assert f"/checkout/{order_id}" in html  # pay again
    assert get_order(app, order_id).status == "PENDING"
    assert "payment_failed" in [event for event, *_ in audit(app, order_id)]
    assert client.get(f"/checkout/{order_id}").status_code == 200


def test_fail_page_hides_other_peoples_orders(app: Flask, place_order: Callable[..., str]) -> None:
    order_id = place_order()
    html = (
        app.test_client()
        .get(f"/checkout/fail?code=REJECT_CARD_COMPANY&orderId={order_id}")
        .get_data(as_text=True)
    )
    assert "카드사에서 결제를 거절했습니다" in html
    assert f"/checkout/{order_id}" not in html


def test_csrf_protects_shop_forms(database_url: str) -> None:
    app = make_app(database_url, WTF_CSRF_ENABLED=True)
    with app.app_context():
        seed_catalog()
    browser = app.test_client()
    refused = browser.post("/cart", data={"product_id": "1"})
    assert refused.status_code == 400
    assert "보안 토큰" in refused.get_data(as_text=True)
    assert browser.post("/orders").status_code == 400

    page = browser.get("/").get_data(as_text=True)
    token = csrf_token(page)
    assert browser.post("/cart", data={"product_id": "1", "csrf_token": token}).status_code == 303
    # The JSON API is exempt: it is checked against the stored order and Toss instead.
    api = browser.post("/api/payment/verify", json={})
    assert api.status_code == 400
    assert api.get_json()["code"] == "INVALID_REQUEST"


def test_the_cached_catalog_carries_each_visitors_own_csrf_token(database_url: str) -> None:
    """The catalog is read once per cache period; the page around it is each visitor's own."""
    app = make_app(database_url, WTF_CSRF_ENABLED=True)
    with app.app_context():
        seed_catalog()
        product_id = db.session.scalars(db.select(Product.id).order_by(Product.id)).first()
    shoppers = [app.test_client() for _ in range(2)]
    tokens = []
    for shopper in shoppers:
        html = shopper.get("/").get_data(as_text=True)
        found = re.findall(r'name="csrf_token" value="([^"]+)"', html)
        assert len(found) == html.count('class="product card"') >= 6
        assert len(set(found)) == 1
        tokens.append(found[0])
    assert tokens[0] != tokens[1]

    def add(shopper: FlaskClient, token: str) -> int:
        form = {"csrf_token": token, "action": "add", "return_to": "catalog",
                "product_id": product_id, "quantity": "1"}  # fmt: skip
        return shopper.post("/cart", data=form).status_code

    # A card's form, as the browser sends it, works with its own page's token only.
    assert add(shoppers[0], tokens[1]) == 400
    assert add(shoppers[0], tokens[0]) == 303
