"""Operators move a paid order through 배송 준비 → 배송 중 → 배송 완료: one step at a time (a
double click neither repeats nor skips one), carrier and tracking number required for 배송 중,
an audit row per step, and the shopper's order page shows where the parcel is."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import responses
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.security import generate_password_hash

from payments.admin.fulfilment import advance, parse_step_form
from payments.core.errors import ServiceError
from payments.core.states import FulfilmentStatus
from payments.extensions import db
from payments.shop.catalog import seed_catalog
from tests.helpers import (
    CONFIRM_URL,
    Shopper,
    audit,
    dispose,
    get_order,
    make_app,
    payment_json,
    race,
)

PASSWORD = "operator password"
PK = "tpk_ship_0001"
F = FulfilmentStatus


@pytest.fixture
def shop(database_url: str) -> Iterator[Flask]:
    app = make_app(database_url, ADMIN_PASSWORD_HASH=generate_password_hash(PASSWORD))
    with app.app_context():
        seed_catalog()
    yield app
    dispose(app)


@pytest.fixture
def operator(shop: Flask) -> FlaskClient:
    client = shop.test_client()
    assert client.post("/admin/login", data={"password": PASSWORD}).status_code == 303
    return client


@pytest.fixture
def shopper(shop: Flask) -> Shopper:
    return Shopper(shop, shop.test_client())


def pay(shop: Flask, shopper: Shopper, toss: responses.RequestsMock) -> str:
    order_id = shopper.place_order()
    amount = get_order(shop, order_id).amount
    toss.post(CONFIRM_URL, json=payment_json(order_id, amount, PK))
    resp = shopper.client.post(
        "/api/payment/verify", json={"paymentKey": PK, "orderId": order_id, "amount": amount}
    )
    assert resp.status_code == 200
    return order_id


def step(operator: FlaskClient, order_id: str, **form: str) -> tuple[int, str]:
    resp = operator.post(f"/admin/orders/{order_id}/fulfilment", data=form)
    return resp.status_code, resp.get_data(as_text=True)


def test_a_paid_order_ships_step_by_step_and_the_shopper_sees_it(
    shop: Flask, operator: FlaskClient, shopper: Shopper, toss: responses.RequestsMock
) -> None:
    order_id = pay(shop, shopper, toss)
    page = operator.get(f"/admin/orders/{order_id}").get_data(as_text=True)
    assert 'name="step" value="PREPARING"' in page

    assert step(operator, order_id, step="PREPARING")[0] == 303
    assert 'name="carrier"' in operator.get(f"/admin/orders/{order_id}").get_data(as_text=True)
    status, _ = step(
        operator, order_id, step="SHIPPED", carrier="CJ대한통운", tracking_number="6543 2109 8765"
    )
    assert status == 303
    mine = shopper.client.get(f"/orders/{order_id}").get_data(as_text=True)
    assert 'data-step="SHIPPED">배송 중<' in mine
    assert 'data-testid="carrier">CJ대한통운<' in mine
    assert 'data-testid="tracking-number">654321098765<' in mine

    assert step(operator, order_id, step="DELIVERED")[0] == 303
    order = get_order(shop, order_id)
    assert (order.fulfilment, order.carrier, order.tracking_number) == (
        "DELIVERED",
        "CJ대한통운",
        "654321098765",
    )
    rows = [a for a in audit(shop, order_id) if a[0] == "fulfilment"]
    assert [(a[3]) for a in rows] == ["admin"] * 3
    assert "배송 완료" in operator.get(f"/admin/orders/{order_id}").get_data(as_text=True)


def test_a_double_click_neither_repeats_nor_skips_a_step(
    shop: Flask, operator: FlaskClient, shopper: Shopper, toss: responses.RequestsMock
) -> None:
    order_id = pay(shop, shopper, toss)
    assert step(operator, order_id, step="PREPARING")[0] == 303
    again, html = step(operator, order_id, step="PREPARING")
    assert again == 409
    assert "이미 배송 준비 단계입니다" in html
    skipped, _ = step(operator, order_id, step="DELIVERED")
    assert skipped == 409
    assert get_order(shop, order_id).fulfilment == "PREPARING"


def test_two_operators_at_once_move_the_order_once(
    shop: Flask, shopper: Shopper, toss: responses.RequestsMock
) -> None:
    order_id = pay(shop, shopper, toss)

    def prepare() -> str:
        with shop.app_context():
            try:
                advance(order_id, F.PREPARING, "admin")
            except ServiceError as exc:
                db.session.rollback()
                return exc.code
            return "moved"

    assert sorted(race([prepare] * 3)) == ["FULFILMENT_STEP_TAKEN"] * 2 + ["moved"]
    assert len([a for a in audit(shop, order_id) if a[0] == "fulfilment"]) == 1


def test_an_unpaid_order_does_not_ship(
    shop: Flask, operator: FlaskClient, shopper: Shopper
) -> None:
    order_id = shopper.place_order()
    status, html = step(operator, order_id, step="PREPARING")
    assert status == 409
    assert "결제가 완료된 주문만" in html
    assert get_order(shop, order_id).fulfilment == "NONE"
    assert 'name="step"' not in operator.get(f"/admin/orders/{order_id}").get_data(as_text=True)


@pytest.mark.parametrize(
    ("form", "message"),
    [
        ({}, "알 수 없는 배송 단계"),
        ({"step": "NONE"}, "알 수 없는 배송 단계"),
        ({"step": "LOST"}, "알 수 없는 배송 단계"),
        ({"step": "SHIPPED", "tracking_number": "123456789"}, "택배사"),
        ({"step": "SHIPPED", "carrier": "x" * 41, "tracking_number": "123456789"}, "택배사"),
        ({"step": "SHIPPED", "carrier": "CJ", "tracking_number": ""}, "운송장 번호"),
        ({"step": "SHIPPED", "carrier": "CJ", "tracking_number": "12345"}, "운송장 번호"),
        ({"step": "SHIPPED", "carrier": "CJ", "tracking_number": "12345678<"}, "운송장 번호"),
        ({"step": "SHIPPED", "carrier": "C\nJ", "tracking_number": "123456789"}, "택배사"),
    ],
)
def test_a_bad_step_form_is_400_with_a_message(
    shop: Flask,
    operator: FlaskClient,
    shopper: Shopper,
    toss: responses.RequestsMock,
    form: dict[str, str],
    message: str,
) -> None:
    with pytest.raises(ServiceError) as refused:
        parse_step_form(form)
    assert message in refused.value.message
    order_id = pay(shop, shopper, toss)
    step(operator, order_id, step="PREPARING")
    status, html = step(operator, order_id, **form)
    assert status == 400
    assert 'data-testid="fulfilment-error"' in html
    assert get_order(shop, order_id).fulfilment == "PREPARING"


def test_unknown_order_is_404_and_the_form_needs_the_login(
    shop: Flask, operator: FlaskClient
) -> None:
    assert step(operator, "A" * 32, step="PREPARING")[0] == 404
    anonymous = shop.test_client().post(
        f"/admin/orders/{'A' * 32}/fulfilment", data={"step": "PREPARING"}
    )
    assert anonymous.status_code == 303
    assert "/admin/login" in anonymous.headers["Location"]
