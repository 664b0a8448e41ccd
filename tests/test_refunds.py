"""Refunds: full, partial down to zero, guards before Toss, races, unknown outcomes."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
import responses
from flask import Flask
from flask.testing import FlaskClient

from payments.admin.refunds import parse_refund_form, request_refund
from payments.core.errors import ServiceError
from payments.core.models import Order, Payment, Refund
from payments.extensions import db
from payments.ops.reconcile import reconcile
from payments.sandbox.testing import SandboxDriver
from payments.shop.catalog import seed_catalog
from payments.toss import RefundAccount
from tests.helpers import (
    CONFIRM_URL,
    TOSS,
    Shopper,
    dispose,
    get_order,
    payment_json,
    race,
    sandbox_app,
    transitions,
)

PK = "tpk_refund_0001"
CANCEL = f"{TOSS}/v1/payments/{PK}/cancel"


def paid_order(
    app: Flask, client: FlaskClient, toss: responses.RequestsMock, place: Any, **extra: Any
) -> Order:
    order_id = place()
    amount = get_order(app, order_id).amount
    toss.post(CONFIRM_URL, json=payment_json(order_id, amount, PK, **extra))
    resp = client.post(
        "/api/payment/verify", json={"paymentKey": PK, "orderId": order_id, "amount": amount}
    )
    assert resp.status_code == 200, resp.get_data(as_text=True)
    return load(app, order_id)


def load(app: Flask, order_id: str) -> Order:
    with app.app_context():
        order = db.session.execute(db.select(Order).filter_by(order_id=order_id)).scalar_one()
        _ = order.payment, order.refunds
        db.session.expunge_all()
        return order


def cancel_answer(order: Order, balance: int, cancels: list[int]) -> dict[str, Any]:
    status = "CANCELED" if balance == 0 else "PARTIAL_CANCELED"
    return payment_json(
        order.order_id,
        order.amount,
        PK,
        status=status,
        balanceAmount=balance,
        cancels=[
            {
                "cancelAmount": c,
                "cancelReason": "고객 요청",
                "canceledAt": "2026-11-22T11:00:00+09:00",
                "transactionKey": f"txcancel_{i}",
                "cancelStatus": "DONE",
            }
            for i, c in enumerate(cancels)
        ],
    )


def refund(
    app: Flask, order: Order, amount: int | None, account: RefundAccount | None = None
) -> Refund:
    with app.app_context():
        done = request_refund(order.order_id, amount, "고객 요청", account, "operator")
        db.session.refresh(done)
        db.session.expunge(done)
        return done


@pytest.fixture
def order(
    app: Flask, client: FlaskClient, toss: responses.RequestsMock, place_order: Callable[..., str]
) -> Order:
    return paid_order(app, client, toss, place_order)


def test_full_refund(app: Flask, toss: responses.RequestsMock, order: Order) -> None:
    cancel = toss.post(CANCEL, json=cancel_answer(order, 0, [order.amount]))

    done = refund(app, order, None)

    assert (done.status, done.amount, done.full) == ("DONE", order.amount, True)
    body = json.loads(cancel.calls[0].request.body)
    assert body == {"cancelReason": "고객 요청", "refundableAmount": order.amount}  # whole rest
    assert cancel.calls[0].request.headers["Idempotency-Key"] == done.refund_key
    after = load(app, order.order_id)
    assert after.status == "REFUNDED"
    assert after.payment is not None
    assert after.payment.balance_amount == 0
    assert transitions(app, order.order_id)[-1] == ("PAID", "REFUNDED", "admin")


def test_partial_refunds_down_to_zero(
    app: Flask, toss: responses.RequestsMock, order: Order
) -> None:
    first, second = order.amount // 2, order.amount // 4
    rest = order.amount - first - second
    cancel = toss.post(CANCEL, json=cancel_answer(order, order.amount - first, [first]))
    refund(app, order, first)
    assert load(app, order.order_id).status == "PARTIALLY_REFUNDED"

    toss.replace(responses.POST, CANCEL, json=cancel_answer(order, rest, [first, second]))
    refund(app, order, second)
    toss.replace(responses.POST, CANCEL, json=cancel_answer(order, 0, [first, second, rest]))
    refund(app, order, rest)

    calls = [c for c in toss.calls if c.request.url == CANCEL]
    bodies = [json.loads(c.request.body) for c in calls]
    assert [(b.get("cancelAmount"), b["refundableAmount"]) for b in bodies] == [
        (first, order.amount),
        (second, order.amount - first),
        (None, rest),  # the last one takes the whole rest
    ]
    assert cancel.call_count == 1
    assert len({c.request.headers["Idempotency-Key"] for c in calls}) == 3
    after = load(app, order.order_id)
    assert after.status == "REFUNDED"
    assert [r.status for r in after.refunds] == ["DONE", "DONE", "DONE"]
    assert transitions(app, order.order_id)[-3:] == [
        ("PAID", "PARTIALLY_REFUNDED", "admin"),
        ("PARTIALLY_REFUNDED", "PARTIALLY_REFUNDED", "admin"),
        ("PARTIALLY_REFUNDED", "REFUNDED", "admin"),
    ]


def test_over_refund_is_refused_before_calling_toss(
    app: Flask, toss: responses.RequestsMock, order: Order
) -> None:
    cancel = toss.post(CANCEL, json={})
    with pytest.raises(ServiceError) as exc:
        refund(app, order, order.amount + 1)
    assert exc.value.code == "REFUND_EXCEEDS_BALANCE"
    assert f"{order.amount:,}원" in exc.value.message
    assert cancel.call_count == 0
    with app.app_context():
        assert db.session.scalar(db.select(db.func.count()).select_from(Refund)) == 0


def test_one_refund_in_flight_per_order(
    app: Flask, toss: responses.RequestsMock, order: Order
) -> None:
    toss.post(CANCEL, body=requests.exceptions.ReadTimeout("slow"))
    with pytest.raises(ServiceError) as first:
        refund(app, order, 1000)
    assert first.value.code == "REFUND_PENDING"
    calls = len(toss.calls)

    with pytest.raises(ServiceError) as second:
        refund(app, order, 1000)
    assert second.value.code == "REFUND_IN_PROGRESS"
    assert len(toss.calls) == calls


def test_timeout_leaves_pending_and_reconcile_settles_with_the_same_key(
    app: Flask, toss: responses.RequestsMock, order: Order
) -> None:
    toss.post(CANCEL, body=requests.exceptions.ReadTimeout("slow"))
    with pytest.raises(ServiceError) as exc:
        refund(app, order, 5000)
    assert exc.value.code == "REFUND_PENDING"
    with app.app_context():
        pending = db.session.scalars(db.select(Refund)).one()
        assert pending.status == "PENDING"
        key = pending.refund_key
        db.session.execute(
            db.update(Refund).values(created_at=pending.created_at.replace(year=2025))
        )
        db.session.commit()
    assert load(app, order.order_id).status == "PAID"

    toss.replace(responses.POST, CANCEL, json=cancel_answer(order, order.amount - 5000, [5000]))
    with app.app_context():
        report = reconcile()
    assert report.refunds == {"DONE": 1}
    calls = [c for c in toss.calls if c.request.url == CANCEL]
    assert len(calls) >= 2
    assert {c.request.headers["Idempotency-Key"] for c in calls} == {key}
    after = load(app, order.order_id)
    assert after.status == "PARTIALLY_REFUNDED"
    assert after.refunds[0].status == "DONE"


def test_toss_refusal_fails_the_refund_with_a_korean_message(
    app: Flask, toss: responses.RequestsMock, order: Order
) -> None:
    toss.post(CANCEL, status=403, json={"code": "NOT_CANCELABLE_PAYMENT", "message": "x"})
    with pytest.raises(ServiceError) as exc:
        refund(app, order, 1000)
    assert exc.value.code == "NOT_CANCELABLE_PAYMENT"
    assert exc.value.message == "취소할 수 없는 결제입니다."
    after = load(app, order.order_id)
    assert after.status == "PAID"
    assert (after.refunds[0].status, after.refunds[0].failure_code) == (
        "FAILED",
        "NOT_CANCELABLE_PAYMENT",
    )
    # A failed refund does not block the next one.
    toss.replace(responses.POST, CANCEL, json=cancel_answer(order, order.amount - 1000, [1000]))
    assert refund(app, order, 1000).status == "DONE"


def test_unpaid_orders_cannot_be_refunded(
    app: Flask, toss: responses.RequestsMock, place_order: Callable[..., str]
) -> None:
    order_id = place_order()
    with app.app_context(), pytest.raises(ServiceError) as exc:
        request_refund(order_id, None, "x", None, "operator")
    assert exc.value.code == "REFUND_NOT_ALLOWED"
    with app.app_context(), pytest.raises(ServiceError) as missing:
        request_refund("no-such-order-000001", None, "x", None, "operator")
    assert missing.value.code == "ORDER_NOT_FOUND"
    assert len(toss.calls) == 0


def test_virtual_account_refund_needs_an_account(
    app: Flask, client: FlaskClient, toss: responses.RequestsMock, place_order: Callable[..., str]
) -> None:
    va = {
        "method": "가상계좌",
        "card": None,
        "virtualAccount": {"accountNumber": "X1234567890", "bankCode": "20"},
    }
    order = paid_order(app, client, toss, place_order, **va)
    assert order.status == "PAID"
    cancel = toss.post(CANCEL, json=cancel_answer(order, 0, [order.amount]))

    with pytest.raises(ServiceError) as exc:
        refund(app, order, None)
    assert exc.value.code == "REFUND_ACCOUNT_REQUIRED"
    assert cancel.call_count == 0

    done = refund(app, order, None, RefundAccount("88", "110123456789", "김토스"))
    assert done.status == "DONE"
    assert done.masked_account == "********6789"
    body = json.loads(cancel.calls[0].request.body)
    assert body["refundReceiveAccount"] == {
        "bank": "88",
        "accountNumber": "110123456789",
        "holderName": "김토스",
    }


@pytest.mark.parametrize(
    ("form", "needle"),
    [
        ({"amount": "abc", "reason": "x"}, "정수"),
        ({"amount": "0", "reason": "x"}, "정수"),
        ({"amount": "-5", "reason": "x"}, "정수"),
        ({"amount": "1.5", "reason": "x"}, "정수"),
        ({"amount": "100"}, "사유"),
        ({"amount": "100", "reason": "x" * 201}, "200자"),
        ({"reason": "x", "bank": "88", "account_number": "12ab"}, "계좌번호"),
        (
            {"reason": "x", "bank": "", "account_number": "110123456789", "holder_name": "김"},
            "은행",
        ),
        (
            {"reason": "x", "bank": "88", "account_number": "110123456789", "holder_name": ""},
            "예금주",
        ),
    ],
)
def test_refund_form_validation(form: dict[str, str], needle: str) -> None:
    with pytest.raises(ServiceError) as exc:
        parse_refund_form(form)
    assert exc.value.code == "INVALID_REQUEST"
    assert needle in exc.value.message


def test_refund_form_parses_amounts_and_accounts() -> None:
    assert parse_refund_form({"amount": "30,000", "reason": " 부분 환불 "}) == (
        30000,
        "부분 환불",
        None,
    )
    assert parse_refund_form({"amount": "", "reason": "전액"}) == (None, "전액", None)
    _, _, account = parse_refund_form(
        {"reason": "x", "bank": "88", "account_number": "110-123-456789", "holder_name": "김토스"}
    )
    assert account == RefundAccount("88", "110123456789", "김토스")


def test_shopper_sees_refunds_and_the_receipt(
    app: Flask, client: FlaskClient, toss: responses.RequestsMock, order: Order
) -> None:
    toss.post(CANCEL, json=cancel_answer(order, order.amount - 3000, [3000]))
    refund(app, order, 3000)
    html = client.get(f"/orders/{order.order_id}").get_data(as_text=True)
    assert "부분 환불" in html
    assert "3,000원" in html
    assert "영수증 보기" in html
    assert 'data-testid="refunds"' in html


# -- concurrency, against the sandbox (it enforces balances and refundableAmount) -------------


@pytest.fixture
def sandboxed(database_url: str) -> Iterator[Flask]:
    app = sandbox_app(database_url)
    with app.app_context():
        seed_catalog()
    yield app
    dispose(app)


def test_concurrent_refunds_never_exceed_the_paid_amount(sandboxed: Flask) -> None:
    shopper = Shopper(sandboxed, sandboxed.test_client())
    order_id = shopper.place_order({shopper.product_ids()[0]: 2})
    amount = get_order(sandboxed, order_id).amount
    assert shopper.pay_in_sandbox(order_id, amount).status_code == 303
    assert get_order(sandboxed, order_id).status == "PAID"

    share = amount * 2 // 5  # three of these would be 120 % of the payment

    def operator() -> str:
        with sandboxed.app_context():
            try:
                request_refund(order_id, share, "동시 환불", None, "op")
                return "DONE"
            except ServiceError as exc:
                return exc.code
            finally:
                db.session.remove()

    outcomes = race([operator] * 6)

    with sandboxed.app_context():
        done = db.session.scalars(db.select(Refund).filter_by(status="DONE")).all()
        payment = db.session.scalars(db.select(Payment)).one()
    toss_view = SandboxDriver.in_process(shopper.client).payment(payment.payment_key)
    refunded = sum(r.amount for r in done)
    assert refunded <= amount
    assert 1 <= len(done) <= 2
    assert outcomes.count("DONE") == len(done)
    assert set(outcomes) <= {
        "DONE",
        "REFUND_IN_PROGRESS",
        "REFUND_EXCEEDS_BALANCE",
        "NOT_MATCHES_REFUNDABLE_AMOUNT",
    }
    # Our books and Toss's agree.
    assert toss_view["balanceAmount"] == amount - refunded == payment.balance_amount
    assert sum(c["cancelAmount"] for c in toss_view["cancels"] or []) == refunded


def test_a_repeated_form_submit_refunds_once(
    app: Flask, toss: responses.RequestsMock, order: Order
) -> None:
    cancel = toss.post(CANCEL, json=cancel_answer(order, order.amount - 2000, [2000]))
    with app.app_context():
        first = request_refund(order.order_id, 2000, "중복 클릭", None, "op", request_key="k" * 20)
        again = request_refund(order.order_id, 2000, "중복 클릭", None, "op", request_key="k" * 20)
        assert again.id == first.id
        assert db.session.scalar(db.select(db.func.count()).select_from(Refund)) == 1
    assert cancel.call_count == 1
    assert load(app, order.order_id).payment.balance_amount == order.amount - 2000  # type: ignore[union-attr]


def test_a_refund_key_of_another_order_is_refused(
    app: Flask,
    client: FlaskClient,
    toss: responses.RequestsMock,
    order: Order,
    place_order: Callable[..., str],
) -> None:
    toss.post(CANCEL, json=cancel_answer(order, order.amount - 2000, [2000]))
    with app.app_context():
        request_refund(order.order_id, 2000, "x", None, "op", request_key="z" * 20)
        other = place_order()
        with pytest.raises(ServiceError) as exc:
            request_refund(other, 2000, "x", None, "op", request_key="z" * 20)
    assert exc.value.code == "INVALID_REQUEST"
