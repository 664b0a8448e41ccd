"""The confirmation service through its three doors: success redirect, /verify and /confirm."""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Callable
from typing import Any

import pytest
import requests
import responses
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.exc import OperationalError

import payments.checkout.settle
from payments.checkout.confirm import confirm_idempotency_key, settle_by_lookup
from payments.core.models import Order, Payment
from payments.core.states import Source
from payments.extensions import db
from tests.helpers import (
    CONFIRM_URL,
    SECRET_KEY,
    TOSS,
    audit,
    get_order,
    payment_json,
    race,
    success_url,
    transitions,
)

PK = "tpk_test_0001"


def confirm_calls(toss: responses.RequestsMock) -> list[Any]:
    return [c for c in toss.calls if c.request.url == CONFIRM_URL]


@pytest.fixture
def order_id(place_order: Callable[..., str]) -> str:
    return place_order()


@pytest.fixture
def amount(app: Flask, order_id: str) -> int:
    return get_order(app, order_id).amount


def test_success_redirect_confirms_and_lands_on_order_page(
    app: Flask, client: FlaskClient, toss: responses.RequestsMock, order_id: str, amount: int
) -> None:
    toss.post(CONFIRM_URL, json=payment_json(order_id, amount))

    resp = client.get(success_url(order_id, PK, amount))

    assert resp.status_code == 303
    assert resp.headers["Location"].startswith(f"/orders/{order_id}")
    order = get_order(app, order_id)
    assert order.status == "PAID"
    assert order.payment_key == PK
    with app.app_context():
        payment = db.session.execute(db.select(Payment).filter_by(payment_key=PK)).scalar_one()
        assert (payment.total_amount, payment.balance_amount) == (amount, amount)
        assert payment.card_number == "43301234****123*"
        assert payment.receipt_url
    assert [a[:3] for a in audit(app, order_id)] == [
        ("created", None, "PENDING"),
        ("transition", "PENDING", "CONFIRMING"),
        ("transition", "CONFIRMING", "PAID"),
    ]
    page = client.get(resp.headers["Location"])
    assert page.status_code == 200
    assert "결제 완료" in page.get_data(as_text=True)
    assert f"{amount:,}원" in page.get_data(as_text=True)


def test_confirm_request_carries_basic_auth_with_colon_body_and_idempotency_key(
    app: Flask, client: FlaskClient, toss: responses.RequestsMock, order_id: str, amount: int
) -> None:
    toss.post(CONFIRM_URL, json=payment_json(order_id, amount))
    client.get(success_url(order_id, PK, amount))

    (call,) = confirm_calls(toss)
    expected = "Basic " + base64.b64encode(f"{SECRET_KEY}:".encode()).decode()
    assert call.request.headers["Authorization"] == expected
    assert json.loads(call.request.body) == {
        "paymentKey": PK,
        "orderId": order_id,
        "amount": amount,
    }
    key = confirm_idempotency_key(order_id, PK)
    assert call.request.headers["Idempotency-Key"] == key
    assert get_order(app, order_id).confirm_idempotency_key == key


def test_tampered_amount_never_reaches_toss(
    app: Flask,
    client: FlaskClient,
    toss: responses.RequestsMock,
    order_id: str,
    amount: int,
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING):
        page = client.get(success_url(order_id, PK, 100))
        api = client.post(
            "/api/payment/verify", json={"paymentKey": PK, "orderId": order_id, "amount": 100}
        )

    assert page.status_code == 400
    assert "결제 금액이 주문 금액과 일치하지 않습니다" in page.get_data(as_text=True)
    assert api.status_code == 400
    assert api.get_json()["code"] == "AMOUNT_MISMATCH"
    assert len(toss.calls) == 0
    assert get_order(app, order_id).status == "PENDING"
    mismatches = [a for a in audit(app, order_id) if a[0] == "amount_mismatch"]
    assert len(mismatches) == 2
    assert any("amount mismatch" in r.getMessage() for r in caplog.records)


def test_refresh_and_second_tab_confirm_once(
    app: Flask, client: FlaskClient, toss: responses.RequestsMock, order_id: str, amount: int
) -> None:
    toss.post(CONFIRM_URL, json=payment_json(order_id, amount))

    first = client.get(success_url(order_id, PK, amount))
    again = client.get(success_url(order_id, PK, amount))
    api = client.post(
        "/api/payment/confirm", json={"paymentKey": PK, "orderId": order_id, "amount": amount}
    )

    assert first.status_code == again.status_code == 303
    assert again.headers["Location"].startswith(f"/orders/{order_id}")
    assert api.status_code == 200
    assert api.get_json()["status"] == "PAID"
    assert api.get_json()["payment"]["paymentKey"] == PK
    assert len(confirm_calls(toss)) == 1
    assert len(transitions(app, order_id)) == 2


def test_verify_api_returns_the_order_and_payment(
    client: FlaskClient, toss: responses.RequestsMock, order_id: str, amount: int
) -> None:
    toss.post(CONFIRM_URL, json=payment_json(order_id, amount))
    resp = client.post(
        "/api/payment/verify",
        json={"paymentKey": PK, "orderId": order_id, "amount": str(amount)},
    )
    assert resp.status_code == 200
    body = resp.get_json()
    assert body["orderId"] == order_id
    assert body["amount"] == amount
    assert body["payment"]["card"]["number"] == "43301234****123*"
    assert sum(line["total"] for line in body["lines"]) == amount


def test_order_paid_by_another_payment_is_not_payable(
    app: Flask, client: FlaskClient, toss: responses.RequestsMock, order_id: str, amount: int
) -> None:
    toss.post(CONFIRM_URL, json=payment_json(order_id, amount))
    client.get(success_url(order_id, PK, amount))

    resp = client.post(
        "/api/payment/verify",
        json={"paymentKey": "tpk_other_9999", "orderId": order_id, "amount": amount},
    )

    assert resp.status_code == 409
    assert resp.get_json()["code"] == "ORDER_NOT_PAYABLE"
    assert len(confirm_calls(toss)) == 1


@pytest.mark.parametrize("status", ["FAILED", "EXPIRED", "CANCELED"])
def test_closed_orders_are_not_payable(
    app: Flask,
    client: FlaskClient,
    toss: responses.RequestsMock,
    order_id: str,
    amount: int,
    status: str,
) -> None:
    with app.app_context():
        db.session.execute(db.update(Order).filter_by(order_id=order_id).values(status=status))
        db.session.commit()
    resp = client.post(
        "/api/payment/verify", json={"paymentKey": PK, "orderId": order_id, "amount": amount}
    )
    assert resp.status_code == 409
    assert resp.get_json()["code"] == "ORDER_NOT_PAYABLE"
    assert len(toss.calls) == 0


def test_confirmation_in_flight_answers_pending_without_a_call(
    app: Flask, client: FlaskClient, toss: responses.RequestsMock, order_id: str, amount: int
) -> None:
    with app.app_context():
        db.session.execute(
            db.update(Order)
            .filter_by(order_id=order_id)
            .values(status="CONFIRMING", payment_key=PK)
        )
        db.session.commit()
    resp = client.post(
        "/api/payment/verify", json={"paymentKey": PK, "orderId": order_id, "amount": amount}
    )
    page = client.get(success_url(order_id, PK, amount))

    assert resp.status_code == 409
    assert resp.get_json()["code"] == "PAYMENT_PENDING"
    assert page.status_code == 303  # to the self-refreshing "결제 확인 중" order page
    assert "결제 확인 중" in client.get(page.headers["Location"]).get_data(as_text=True)
    assert len(toss.calls) == 0


def test_concurrent_success_visits_call_toss_once(
    app: Flask, client: FlaskClient, toss: responses.RequestsMock, order_id: str, amount: int
) -> None:
    toss.post(CONFIRM_URL, json=payment_json(order_id, amount))
    body = {"paymentKey": PK, "orderId": order_id, "amount": amount}

    def visit() -> int:
        return app.test_client().post("/api/payment/verify", json=body).status_code

    statuses = race([visit] * 8)

    assert len(confirm_calls(toss)) == 1
    assert sorted(set(statuses)) <= [200, 409]
    assert 200 in statuses
    assert get_order(app, order_id).status == "PAID"
    paid = [a for a in audit(app, order_id) if a[2] == "PAID"]
    assert len(paid) == 1


def test_retries_reuse_the_same_idempotency_key(
    app: Flask, client: FlaskClient, toss: responses.RequestsMock, order_id: str, amount: int
) -> None:
    toss.post(
        CONFIRM_URL, status=500, json={"code": "FAILED_INTERNAL_SYSTEM_PROCESSING", "message": "x"}
    )
    toss.post(
        CONFIRM_URL, status=409, json={"code": "IDEMPOTENT_REQUEST_PROCESSING", "message": "y"}
    )
    toss.post(CONFIRM_URL, json=payment_json(order_id, amount))

    resp = client.get(success_url(order_id, PK, amount))

    assert resp.status_code == 303
    calls = confirm_calls(toss)
    assert len(calls) == 3
    assert len({c.request.headers["Idempotency-Key"] for c in calls}) == 1
    assert get_order(app, order_id).status == "PAID"


def test_read_timeout_leaves_needs_reconcile_and_a_later_lookup_settles(
    app: Flask, client: FlaskClient, toss: responses.RequestsMock, order_id: str, amount: int
) -> None:
    lookup = f"{TOSS}/v1/payments/orders/{order_id}"
    toss.post(CONFIRM_URL, body=requests.exceptions.ReadTimeout("slow"))
    toss.get(lookup, body=requests.exceptions.ReadTimeout("slow"))

    api = client.post(
        "/api/payment/verify", json={"paymentKey": PK, "orderId": order_id, "amount": amount}
    )

    assert api.status_code == 409
    assert api.get_json()["code"] == "PAYMENT_PENDING"
    assert get_order(app, order_id).status == "NEEDS_RECONCILE"
    calls = confirm_calls(toss)
    assert len(calls) == 3  # 1 + TOSS_MAX_RETRIES, one key
    assert len({c.request.headers["Idempotency-Key"] for c in calls}) == 1

    # The "결제 확인 중" page refreshes itself; Toss answers on a later visit.
    pending = client.get(f"/orders/{order_id}")
    assert '<meta http-equiv="refresh"' in pending.get_data(as_text=True)
    toss.replace(responses.GET, lookup, json=payment_json(order_id, amount))
    settled = client.get(f"/orders/{order_id}")
    assert "결제 완료" in settled.get_data(as_text=True)
    assert get_order(app, order_id).status == "PAID"
    assert len(confirm_calls(toss)) == 3
    assert ("transition", "CONFIRMING", "NEEDS_RECONCILE", "api") in audit(app, order_id)
    assert ("transition", "NEEDS_RECONCILE", "PAID", "redirect") in audit(app, order_id)


def test_unknown_outcome_settled_by_the_immediate_lookup(
    app: Flask, client: FlaskClient, toss: responses.RequestsMock, order_id: str, amount: int
) -> None:
    toss.post(CONFIRM_URL, body=requests.exceptions.ConnectionError("reset"))
    toss.get(f"{TOSS}/v1/payments/orders/{order_id}", json=payment_json(order_id, amount))

    resp = client.get(success_url(order_id, PK, amount))

    assert resp.status_code == 303
    assert resp.headers["Location"].startswith(f"/orders/{order_id}")
    assert get_order(app, order_id).status == "PAID"


@pytest.mark.parametrize(
    ("field", "value"),
    [("totalAmount", 1), ("orderId", "someone-elses-order-0001")],
)
def test_toss_answer_for_another_amount_or_order_is_cancelled(
    app: Flask,
    client: FlaskClient,
    toss: responses.RequestsMock,
    order_id: str,
    amount: int,
    field: str,
    value: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    answer = payment_json(order_id, amount)
    answer[field] = value
    toss.post(CONFIRM_URL, json=answer)
    cancel = toss.post(f"{TOSS}/v1/payments/{PK}/cancel", json=answer)

    with caplog.at_level(logging.CRITICAL):
        resp = client.post(
            "/api/payment/verify", json={"paymentKey": PK, "orderId": order_id, "amount": amount}
        )

    assert resp.status_code == 409
    assert resp.get_json()["code"] == "PAYMENT_MISMATCH"
    assert cancel.call_count == 1
    assert json.loads(cancel.calls[0].request.body)["cancelReason"]
    assert get_order(app, order_id).status == "FAILED"
    assert any(r.levelno == logging.CRITICAL and "ALERT" in r.getMessage() for r in caplog.records)
    with app.app_context():
        assert db.session.scalar(db.select(db.func.count()).select_from(Payment)) == 0


def test_card_refusal_keeps_the_order_payable(
    app: Flask, client: FlaskClient, toss: responses.RequestsMock, order_id: str, amount: int
) -> None:
    toss.post(
        CONFIRM_URL,
        status=403,
        json={
            "code": "REJECT_CARD_PAYMENT",
            "message": "한도초과 혹은 잔액부족으로 결제에 실패했습니다.",
        },
    )
    resp = client.get(success_url(order_id, PK, amount))

    assert resp.status_code == 303
    assert resp.headers["Location"].startswith("/checkout/fail?code=REJECT_CARD_PAYMENT")
    fail_page = client.get(resp.headers["Location"])
    assert "잔액이 부족합니다." in fail_page.get_data(as_text=True)
    assert "다시 결제하기" in fail_page.get_data(as_text=True)
    order = get_order(app, order_id)
    assert (order.status, order.failure_code, order.payment_key) == (
        "PENDING",
        "REJECT_CARD_PAYMENT",
        None,
    )
    assert len(confirm_calls(toss)) == 1  # refusals are never retried

    # A second card works.
    toss.replace(
        responses.POST, CONFIRM_URL, json=payment_json(order_id, amount, "tpk_second_0002")
    )
    again = client.post(
        "/api/payment/verify",
        json={"paymentKey": "tpk_second_0002", "orderId": order_id, "amount": amount},
    )
    assert again.status_code == 200
    assert again.get_json()["status"] == "PAID"


@pytest.mark.parametrize(
    ("code", "status", "message", "api_status", "after"),
    [
        ("UNAUTHORIZED_KEY", 401, "인증에 실패했습니다.", 502, "FAILED"),
        # Toss's word that the paymentKey is no payment of this order: a stranger can present
        # any key at the public success URL, so the order stays payable (test_order_access.py).
        ("INVALID_REQUEST", 400, "잘못된 요청입니다. 다시 시도해주세요.", 400, "PENDING"),
        ("NOT_FOUND_PAYMENT", 404, "존재하지 않는 결제입니다.", 404, "PENDING"),
        ("EXCEED_MAX_AMOUNT", 400, "결제 가능 금액을 초과했습니다.", 400, "FAILED"),
        ("SOMETHING_NEW", 400, "결제 처리 중 오류가 발생했습니다. 고객센터로 문의해주세요.", 400,
         "FAILED"),
    ],
)  # fmt: skip
def test_definitive_errors_fail_the_order_with_a_korean_message(
    app: Flask,
    client: FlaskClient,
    toss: responses.RequestsMock,
    order_id: str,
    amount: int,
    code: str,
    status: int,
    message: str,
    api_status: int,
    after: str,
) -> None:
    toss.post(CONFIRM_URL, status=status, json={"code": code, "message": "toss says no"})
    resp = client.post(
        "/api/payment/verify", json={"paymentKey": PK, "orderId": order_id, "amount": amount}
    )
    assert resp.status_code == api_status
    assert resp.get_json() == {"code": code, "message": message}
    order = get_order(app, order_id)
    assert (order.status, order.failure_code) == (after, code if after == "FAILED" else None)
    assert len(confirm_calls(toss)) == 1


def test_invalid_card_number_message_from_the_table(
    client: FlaskClient, toss: responses.RequestsMock, order_id: str, amount: int
) -> None:
    toss.post(CONFIRM_URL, status=400, json={"code": "INVALID_CARD_NUMBER", "message": "x"})
    resp = client.post(
        "/api/payment/verify", json={"paymentKey": PK, "orderId": order_id, "amount": amount}
    )
    assert resp.get_json() == {
        "code": "INVALID_CARD_NUMBER",
        "message": "유효하지 않은 카드번호입니다.",
    }


def test_already_processed_is_settled_from_tosss_record(
    app: Flask, client: FlaskClient, toss: responses.RequestsMock, order_id: str, amount: int
) -> None:
    toss.post(CONFIRM_URL, status=400, json={"code": "ALREADY_PROCESSED_PAYMENT", "message": "x"})
    toss.get(f"{TOSS}/v1/payments/{PK}", json=payment_json(order_id, amount))
    resp = client.post(
        "/api/payment/verify", json={"paymentKey": PK, "orderId": order_id, "amount": amount}
    )
    assert resp.status_code == 200
    assert get_order(app, order_id).status == "PAID"


def test_already_processed_payment_of_another_order_is_never_cancelled(
    app: Flask, client: FlaskClient, toss: responses.RequestsMock, order_id: str, amount: int
) -> None:
    """A forged paymentKey of someone else's paid order must not refund that shopper, nor end
    this order: it is no payment of this order."""
    toss.post(CONFIRM_URL, status=400, json={"code": "ALREADY_PROCESSED_PAYMENT", "message": "x"})
    toss.get(f"{TOSS}/v1/payments/{PK}", json=payment_json("victims-order-000001", amount))
    cancel = toss.post(f"{TOSS}/v1/payments/{PK}/cancel", json={})
    resp = client.post(
        "/api/payment/verify", json={"paymentKey": PK, "orderId": order_id, "amount": amount}
    )
    assert resp.status_code == 404
    assert resp.get_json()["code"] == "NOT_FOUND_PAYMENT"
    assert cancel.call_count == 0
    order = get_order(app, order_id)
    assert (order.status, order.payment_key) == ("PENDING", None)


def test_toss_busy_keeps_the_order_payable_and_a_retry_succeeds(
    app: Flask, client: FlaskClient, toss: responses.RequestsMock, order_id: str, amount: int
) -> None:
    toss.post(CONFIRM_URL, status=429, json={"code": "TOO_MANY_REQUESTS", "message": "slow down"})
    resp = client.post(
        "/api/payment/verify", json={"paymentKey": PK, "orderId": order_id, "amount": amount}
    )
    assert resp.status_code == 503
    assert resp.get_json()["code"] == "PROVIDER_UNAVAILABLE"
    assert get_order(app, order_id).status == "PENDING"

    toss.replace(responses.POST, CONFIRM_URL, json=payment_json(order_id, amount))
    retry = client.get(success_url(order_id, PK, amount))
    assert retry.status_code == 303
    assert get_order(app, order_id).status == "PAID"
    assert len({c.request.headers["Idempotency-Key"] for c in confirm_calls(toss)}) == 1


def test_failed_commit_after_confirm_is_finished_by_lookup(
    app: Flask,
    client: FlaskClient,
    toss: responses.RequestsMock,
    order_id: str,
    amount: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Toss approved, then storing its answer failed: the order stays CONFIRMING (never
    FAILED) and a lookup finishes it without a second confirm."""
    toss.post(CONFIRM_URL, json=payment_json(order_id, amount))

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise OperationalError("INSERT", {}, Exception("disk full"))

    monkeypatch.setattr(payments.checkout.settle, "_store_payment", broken)
    resp = client.post(
        "/api/payment/verify", json={"paymentKey": PK, "orderId": order_id, "amount": amount}
    )
    assert resp.status_code == 409
    assert resp.get_json()["code"] == "PAYMENT_PENDING"
    assert get_order(app, order_id).status == "CONFIRMING"

    monkeypatch.undo()
    toss.get(f"{TOSS}/v1/payments/orders/{order_id}", json=payment_json(order_id, amount))
    with app.app_context():
        order = db.session.execute(db.select(Order).filter_by(order_id=order_id)).scalar_one()
        assert settle_by_lookup(order, Source.RECONCILE) == "PAID"
    assert len(confirm_calls(toss)) == 1


def test_virtual_account_confirm_awaits_deposit(
    app: Flask, client: FlaskClient, toss: responses.RequestsMock, order_id: str, amount: int
) -> None:
    answer = payment_json(
        order_id,
        amount,
        status="WAITING_FOR_DEPOSIT",
        method="가상계좌",
        card=None,
        secret="ps_secret_value_123",
        virtualAccount={
            "accountNumber": "X6505636518308",
            "bankCode": "20",
            "customerName": "김토스",
            "dueDate": "2026-11-25T23:59:59+09:00",
            "refundStatus": "NONE",
            "expired": False,
        },
    )
    toss.post(CONFIRM_URL, json=answer)
    resp = client.get(success_url(order_id, PK, amount))
    page = client.get(resp.headers["Location"]).get_data(as_text=True)

    assert get_order(app, order_id).status == "AWAITING_DEPOSIT"
    assert "X6505636518308" in page
    assert "입금 대기" in page
    assert "우리은행" in page  # bank code 20, shown by name
    assert "2026년 11월 25일 23:59까지" in page
    with app.app_context():
        payment = db.session.execute(db.select(Payment).filter_by(payment_key=PK)).scalar_one()
        assert payment.secret == "ps_secret_value_123"
        assert "secret" not in (payment.raw or {})
