"""Stock: shown in the catalog, taken by conditional updates when an order is created (all or
nothing, never below zero), given back once when the order ends unpaid, and on a full refund
when the operator restocks. The race for the last units runs on PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
import responses
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from payments.admin.refunds import request_refund
from payments.core import stock
from payments.core.clock import utcnow
from payments.core.errors import ServiceError
from payments.core.models import AuditEntry, Order, Product
from payments.core.orders import find_order, transition
from payments.core.states import OrderStatus, Source
from payments.extensions import db
from payments.ops.reconcile import reconcile
from payments.shop.catalog import create_order, seed_catalog
from tests.helpers import (
    BUYER,
    BUYER_FORM,
    CONFIRM_URL,
    TOSS,
    Shopper,
    dispose,
    get_order,
    make_app,
    payment_json,
    race,
)

PK = "tpk_stock_0001"


def set_stock(app: Flask, **by_id: int) -> None:
    with app.app_context():
        for key, value in by_id.items():
            db.session.execute(
                update(Product).where(Product.id == int(key.lstrip("p"))).values(stock=value)
            )
        db.session.commit()


def stock_of(app: Flask, product_id: int) -> int:
    with app.app_context():
        return int(db.session.scalar(select(Product.stock).where(Product.id == product_id)) or 0)


def releases(app: Flask, order_id: str) -> int:
    with app.app_context():
        order = find_order(order_id)
        assert order is not None
        return len(
            db.session.scalars(
                select(AuditEntry).where(
                    AuditEntry.order_pk == order.id, AuditEntry.event == "stock_released"
                )
            ).all()
        )


def test_the_catalog_shows_units_left_and_sold_out(app: Flask, client: FlaskClient) -> None:
    set_stock(app, p1=0, p2=3)
    html = client.get("/").get_data(as_text=True)
    first = html[html.index('data-product-id="1"') : html.index('data-product-id="2"')]
    second = html[html.index('data-product-id="2"') : html.index('data-product-id="3"')]
    assert "품절" in first
    assert "장바구니 담기" not in first
    assert "남은 수량 3개" in second
    refused = client.post("/cart", data={"action": "add", "product_id": "1"})
    assert refused.status_code == 409
    assert "품절되었습니다" in refused.get_data(as_text=True)


def test_an_order_takes_its_units_and_holds_them(app: Flask, shopper: Shopper) -> None:
    ids = shopper.product_ids()
    before = (stock_of(app, ids[0]), stock_of(app, ids[1]))
    order_id = shopper.place_order({ids[0]: 2, ids[1]: 1})
    assert (stock_of(app, ids[0]), stock_of(app, ids[1])) == (before[0] - 2, before[1] - 1)
    assert get_order(app, order_id).stock_reserved is True


def test_too_few_units_refuse_the_whole_order_and_keep_the_cart(
    app: Flask, shopper: Shopper
) -> None:
    ids = shopper.product_ids()
    shopper.add(ids[0], 1)
    shopper.add(ids[1], 5)
    set_stock(app, **{f"p{ids[1]}": 3})
    before = stock_of(app, ids[0])

    resp = shopper.client.post("/orders", data=BUYER_FORM)

    assert resp.status_code == 409
    html = resp.get_data(as_text=True)
    assert "남은 수량은 3개입니다" in html
    assert 'data-testid="line-short"' in html
    # All or nothing: the first product's unit went back with the rollback; no order exists.
    assert (stock_of(app, ids[0]), stock_of(app, ids[1])) == (before, 3)
    with app.app_context():
        assert db.session.query(Order).count() == 0
    # The cart and what was typed are still there.
    assert html.count("data-product-id") == 2
    assert f'value="{BUYER_FORM["buyer_email"]}"' in html


def test_stock_never_goes_below_zero_even_if_written_directly(app: Flask) -> None:
    with app.app_context():
        with pytest.raises(IntegrityError, match="(?i)check|constraint"):
            db.session.execute(update(Product).where(Product.id == 1).values(stock=-1))
        db.session.rollback()


def test_expiry_gives_the_units_back(
    app: Flask, toss: responses.RequestsMock, order_factory: Callable[..., Order]
) -> None:
    before = stock_of(app, 1)
    order = order_factory({"1": 3})
    assert stock_of(app, 1) == before - 3
    toss.get(
        f"{TOSS}/v1/payments/orders/{order.order_id}",
        status=404,
        json={"code": "NOT_FOUND_PAYMENT", "message": "존재하지 않는 결제 정보 입니다."},
    )
    with app.app_context():
        db.session.execute(
            update(Order)
            .where(Order.id == order.id)
            .values(created_at=utcnow() - timedelta(hours=2), updated_at=utcnow())
        )
        db.session.commit()
        report = reconcile()
    assert report.expired == 1
    assert get_order(app, order.order_id).status == "EXPIRED"
    assert stock_of(app, 1) == before
    assert get_order(app, order.order_id).stock_reserved is False
    assert releases(app, order.order_id) == 1


def test_a_failed_payment_gives_the_units_back(
    app: Flask,
    client: FlaskClient,
    toss: responses.RequestsMock,
    place_order: Callable[..., str],
) -> None:
    before = stock_of(app, 1)
    order_id = place_order({1: 2})
    amount = get_order(app, order_id).amount
    toss.post(CONFIRM_URL, status=400, json={"code": "EXCEED_MAX_AMOUNT", "message": "x"})
    resp = client.post(
        "/api/payment/verify", json={"paymentKey": PK, "orderId": order_id, "amount": amount}
    )
    assert resp.status_code == 400
    assert get_order(app, order_id).status == "FAILED"
    assert stock_of(app, 1) == before


def test_a_card_refusal_keeps_the_units_for_the_next_try(
    app: Flask,
    client: FlaskClient,
    toss: responses.RequestsMock,
    place_order: Callable[..., str],
) -> None:
    before = stock_of(app, 1)
    order_id = place_order({1: 2})
    amount = get_order(app, order_id).amount
    toss.post(CONFIRM_URL, status=400, json={"code": "REJECT_CARD_COMPANY", "message": "x"})
    client.post(
        "/api/payment/verify", json={"paymentKey": PK, "orderId": order_id, "amount": amount}
    )
    assert get_order(app, order_id).status == "PENDING"
    assert stock_of(app, 1) == before - 2


def test_units_go_back_once_whatever_ends_the_order(
    app: Flask, order_factory: Callable[..., Order]
) -> None:
    before = stock_of(app, 1)
    order = order_factory({"1": 4})
    with app.app_context():
        found = find_order(order.order_id)
        assert found is not None
        assert transition(found, OrderStatus.CANCELED, Source.ADMIN)
        db.session.commit()
        # A second path (a late refund with restock, a repeated release) finds nothing held.
        assert stock.release(found, Source.RECONCILE, "again") is False
        db.session.commit()
    assert stock_of(app, 1) == before
    assert releases(app, order.order_id) == 1


def test_two_releases_racing_return_the_units_once(database_url: str) -> None:
    app = make_app(database_url)
    try:
        with app.app_context():
            seed_catalog()
            order_id = create_order({"1": 5}, "cust_stock_race", BUYER).order_id
        before = stock_of(app, 1)

        def release() -> bool:
            with app.app_context():
                found = find_order(order_id)
                assert found is not None
                done = stock.release(found, Source.WORKER, "race")
                db.session.commit()
                return done

        assert sorted(race([release] * 4)) == [False, False, False, True]
        assert stock_of(app, 1) == before + 5
        assert releases(app, order_id) == 1
    finally:
        dispose(app)


# -- refunds ---------------------------------------------------------------------------------------


def paid(app: Flask, client: FlaskClient, toss: responses.RequestsMock, order_id: str) -> int:
    amount = get_order(app, order_id).amount
    toss.post(CONFIRM_URL, json=payment_json(order_id, amount, PK))
    resp = client.post(
        "/api/payment/verify", json={"paymentKey": PK, "orderId": order_id, "amount": amount}
    )
    assert resp.status_code == 200, resp.get_data(as_text=True)
    return amount


def cancelled(order_id: str, amount: int, balance: int) -> dict[str, object]:
    return payment_json(
        order_id,
        amount,
        PK,
        status="CANCELED" if balance == 0 else "PARTIAL_CANCELED",
        balanceAmount=balance,
        cancels=[
            {
                "cancelAmount": amount - balance,
                "cancelReason": "고객 요청",
                "canceledAt": "2026-11-22T11:00:00+09:00",
                "transactionKey": "txcancel_0",
                "cancelStatus": "DONE",
            }
        ],
    )


@pytest.mark.parametrize("restock", [True, False])
def test_a_full_refund_restocks_only_when_the_operator_asks(
    app: Flask,
    client: FlaskClient,
    toss: responses.RequestsMock,
    place_order: Callable[..., str],
    restock: bool,
) -> None:
    before = stock_of(app, 1)
    order_id = place_order({1: 2})
    amount = paid(app, client, toss, order_id)
    toss.post(f"{TOSS}/v1/payments/{PK}/cancel", json=cancelled(order_id, amount, 0))
    with app.app_context():
        request_refund(order_id, None, "고객 요청", None, "operator", restock=restock)
    assert get_order(app, order_id).status == "REFUNDED"
    assert stock_of(app, 1) == (before if restock else before - 2)
    assert releases(app, order_id) == (1 if restock else 0)


def test_restock_needs_the_whole_balance(
    app: Flask,
    client: FlaskClient,
    toss: responses.RequestsMock,
    place_order: Callable[..., str],
) -> None:
    order_id = place_order({1: 2})
    amount = paid(app, client, toss, order_id)
    with app.app_context(), pytest.raises(ServiceError) as refused:
        request_refund(order_id, amount - 1000, "일부", None, "operator", restock=True)
    assert refused.value.code == "RESTOCK_NEEDS_FULL_REFUND"
    assert refused.value.http_status == 400


# -- the race for the last units -------------------------------------------------------------------


def test_fifty_shoppers_racing_for_the_last_ten_units(
    pg_base_url: str | None, database_url: str
) -> None:
    """Each shopper is a browser of its own (its own session and database connection) ordering
    one unit at the same moment: exactly ten orders exist, forty were told it is sold out."""
    if not pg_base_url:
        pytest.skip("needs TEST_DATABASE_URL: SQLite runs one writer at a time, no race")
    app = make_app(database_url, SQLALCHEMY_ENGINE_OPTIONS={"pool_size": 50, "max_overflow": 5})
    try:
        with app.app_context():
            seed_catalog()
        set_stock(app, p1=10)
        shoppers = [Shopper(app, app.test_client()) for _ in range(50)]
        for shopper in shoppers:
            shopper.add(1, 1)

        answers = race(
            [lambda s=s: s.client.post("/orders", data=BUYER_FORM).status_code for s in shoppers]
        )

        assert sorted(answers).count(303) == 10
        assert answers.count(409) == 40
        assert stock_of(app, 1) == 0
        with app.app_context():
            orders = db.session.scalars(select(Order)).all()
            assert len(orders) == 10
            assert all(o.stock_reserved and o.lines[0].quantity == 1 for o in orders)
    finally:
        dispose(app)
