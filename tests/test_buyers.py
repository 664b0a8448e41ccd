"""The buyer and delivery address asked before the widget opens, what the widget is given, what
operators see, and a guest's order lookup by orderId and e-mail."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from flask import Flask
from flask.testing import FlaskClient

from payments.shop.routes import LOOKUP_MISS
from tests.helpers import BUYER_FORM, Shopper, get_order, make_app


def order_with(shopper: Shopper, **changes: str) -> tuple[int, str]:
    shopper.add(shopper.product_ids()[0], 2)
    resp = shopper.client.post("/orders", data={**BUYER_FORM, **changes})
    return resp.status_code, resp.get_data(as_text=True)


def field_errors(html: str) -> dict[str, str]:
    return dict(re.findall(r'class="field-error" id="[^"]+" data-field="([a-z_]+)">([^<]+)<', html))


def test_the_buyer_is_stored_with_the_order_phone_as_digits(app: Flask, shopper: Shopper) -> None:
    shopper.add(shopper.product_ids()[0])
    form = {**BUYER_FORM, "buyer_phone": " 010-9876-5432 ", "buyer_email": " Kim@Example.com "}
    resp = shopper.client.post("/orders", data=form)
    assert resp.status_code == 303
    order = get_order(app, resp.headers["Location"].rsplit("/", 1)[-1])
    assert order.buyer_name == "김토스"
    assert order.buyer_email == "Kim@Example.com"
    assert order.buyer_phone == "01098765432"
    assert (order.postcode, order.address, order.address_detail) == (
        "06236",
        "서울특별시 강남구 테헤란로 142",
        "4층",
    )


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("buyer_name", "", "이름을 입력해주세요"),
        ("buyer_name", "가" * 51, "50자 이내"),
        ("buyer_name", "김\n토스", "제어 문자"),
        ("buyer_email", "", "이메일을 입력해주세요"),
        ("buyer_email", "not-an-email", "올바른 이메일"),
        ("buyer_email", "a@b", "올바른 이메일"),
        ("buyer_email", "a" * 95 + "@x.com", "100자 이내"),
        ("buyer_phone", "", "휴대폰 번호를 입력해주세요"),
        ("buyer_phone", "0101234", "숫자 8~15자리"),
        ("buyer_phone", "010-1234-567a", "숫자 8~15자리"),
        ("buyer_phone", "1" * 16, "숫자 8~15자리"),
        ("postcode", "1234", "숫자 5자리"),
        ("postcode", "abcde", "숫자 5자리"),
        ("address", "", "주소를 입력해주세요"),
        ("address", "x" * 201, "200자 이내"),
        ("address_detail", "x" * 201, "200자 이내"),
    ],
)
def test_a_bad_field_gets_its_own_korean_message_and_the_cart_stays(
    app: Flask, shopper: Shopper, field: str, value: str, message: str
) -> None:
    status, html = order_with(shopper, **{field: value})
    assert status == 400
    errors = field_errors(html)
    assert list(errors) == [field]
    assert message in errors[field]
    # Nothing lost: the cart is intact and the other fields keep what was typed.
    assert html.count("data-product-id") == 1
    assert 'value="2"' in html
    for other, typed in BUYER_FORM.items():
        if other != field:
            assert f'value="{typed}"' in html
    with app.app_context():
        from payments.core.models import Order
        from payments.extensions import db

        assert db.session.query(Order).count() == 0


def test_every_missing_field_is_named_at_once(shopper: Shopper) -> None:
    shopper.add(shopper.product_ids()[0])
    resp = shopper.client.post("/orders", data={})
    assert resp.status_code == 400
    assert set(field_errors(resp.get_data(as_text=True))) == {
        "buyer_name",
        "buyer_email",
        "buyer_phone",
        "postcode",
        "address",
    }


def test_the_checkout_page_hands_the_buyer_to_request_payment(
    client: FlaskClient, place_order: Callable[..., str]
) -> None:
    html = client.get(f"/checkout/{place_order()}").get_data(as_text=True)
    assert 'data-customer-name="김토스"' in html
    assert 'data-customer-email="buyer@example.com"' in html
    assert 'data-customer-mobile-phone="01012345678"' in html


def test_the_bootstrap_script_passes_toss_customer_fields() -> None:
    from pathlib import Path

    script = (Path(__file__).resolve().parents[1] / "static" / "js" / "checkout.js").read_text()
    call = script[script.index("requestPayment({") :]
    call = call[: call.index("});")]
    for name, attr in (
        ("customerName", "d.customerName"),
        ("customerEmail", "d.customerEmail"),
        ("customerMobilePhone", "d.customerMobilePhone"),
    ):
        assert f"{name}: {attr} || null" in call


# -- operators -------------------------------------------------------------------------------------


def test_operators_see_the_buyer_and_find_orders_by_email_or_phone(database_url: str) -> None:
    from werkzeug.security import generate_password_hash

    from payments.shop.catalog import seed_catalog

    app = make_app(database_url, ADMIN_PASSWORD_HASH=generate_password_hash("operator pass"))
    with app.app_context():
        seed_catalog()
    shopper = Shopper(app, app.test_client())
    order_id = shopper.place_order()
    operator = app.test_client()
    assert operator.post("/admin/login", data={"password": "operator pass"}).status_code == 303

    page = operator.get(f"/admin/orders/{order_id}").get_data(as_text=True)
    assert 'data-testid="buyer-email">buyer@example.com<' in page
    assert 'data-testid="buyer-phone">01012345678<' in page
    assert "서울특별시 강남구 테헤란로 142 4층" in page
    for q in ("BUYER@example.com", "010-1234-5678", "01012345678"):
        listed = operator.get("/admin/orders", query_string={"q": q}).get_data(as_text=True)
        assert f'data-order-id="{order_id}"' in listed, q
    other = operator.get("/admin/orders", query_string={"q": "other@example.com"})
    assert f'data-order-id="{order_id}"' not in other.get_data(as_text=True)


# -- a guest's lookup ------------------------------------------------------------------------------


def test_lookup_with_the_right_pair_opens_the_order_in_a_new_browser(
    app: Flask, place_order: Callable[..., str]
) -> None:
    order_id = place_order()
    guest = app.test_client()
    assert guest.get(f"/orders/{order_id}").status_code == 404
    assert guest.get("/orders/lookup").status_code == 200
    resp = guest.post("/orders/lookup", data={"order_id": order_id, "email": "BUYER@Example.COM"})
    assert resp.status_code == 303
    assert resp.headers["Location"].endswith(f"/orders/{order_id}")
    page = guest.get(f"/orders/{order_id}")
    assert page.status_code == 200
    assert 'data-testid="fulfilment"' in page.get_data(as_text=True)


def test_a_wrong_email_and_an_unknown_order_get_the_same_answer(
    app: Flask, place_order: Callable[..., str]
) -> None:
    order_id = place_order()
    guest = app.test_client()
    wrong = guest.post("/orders/lookup", data={"order_id": order_id, "email": "x@example.com"})
    unknown = guest.post("/orders/lookup", data={"order_id": "A" * 32, "email": "x@example.com"})
    assert wrong.status_code == unknown.status_code == 404
    assert LOOKUP_MISS in wrong.get_data(as_text=True)
    # Same page but for the orderId typed back into the form.
    assert wrong.get_data(as_text=True).replace(order_id, "A" * 32) == unknown.get_data(
        as_text=True
    )
    assert guest.get(f"/orders/{order_id}").status_code == 404


@pytest.mark.parametrize(
    "form",
    [{}, {"order_id": "short", "email": "a@b.kr"}, {"order_id": "A" * 32}, {"email": "a@b.kr"}],
)
def test_lookup_with_missing_or_malformed_fields_is_400(
    client: FlaskClient, form: dict[str, str]
) -> None:
    resp = client.post("/orders/lookup", data=form)
    assert resp.status_code == 400
    assert field_errors(resp.get_data(as_text=True))


def test_lookup_is_rate_limited(database_url: str) -> None:
    app = make_app(database_url, RATELIMIT_ENABLED=True, RATELIMIT_LOOKUP="3 per minute")
    guest = app.test_client()
    form = {"order_id": "A" * 32, "email": "buyer@example.com"}
    assert [guest.post("/orders/lookup", data=form).status_code for _ in range(4)] == [
        404,
        404,
        404,
        429,
    ]
