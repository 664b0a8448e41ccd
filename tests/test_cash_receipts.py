"""Cash receipts (현금영수증): the sandbox's cash-receipt API answers as Toss's does; operators
issue one per order for a transfer or virtual-account payment, cancel it all or in part, and a
partial refund cancels its amount; a receipt Toss issued with the payment is stored."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import responses
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from werkzeug.security import generate_password_hash

from payments.admin.receipts import (
    cancel_receipt,
    follow_refund,
    issue_receipt,
    parse_cancel_form,
    parse_receipt_form,
)
from payments.admin.refunds import request_refund
from payments.core.errors import ServiceError
from payments.core.models import CashReceipt, Order, OrderLine
from payments.extensions import db
from payments.sandbox.receipts import SandboxCashReceipt
from payments.sandbox.testing import SandboxDriver, new_order_id
from payments.toss import RefundAccount, TossError
from payments.webhooks.worker import run_once
from tests.helpers import CONFIRM_URL, dispose, get_order, payment_json, sandbox_app, sandbox_rows

PASSWORD = "correct horse battery"
AMOUNT = 30_000


@pytest.fixture
def shop(database_url: str) -> Iterator[Flask]:
    app = sandbox_app(database_url, ADMIN_PASSWORD_HASH=generate_password_hash(PASSWORD))
    yield app
    dispose(app)


def new_order(app: Flask, amount: int = AMOUNT) -> str:
    order_id = new_order_id()
    with app.app_context():
        order = Order(
            order_id=order_id,
            order_name="현금영수증 테스트",
            customer_key="cust_receipt_test",
            amount=amount,
            buyer_email="buyer@example.kr",
        )
        order.lines.append(
            OrderLine(product_name="상품", unit_price=amount, quantity=1, line_total=amount)
        )
        db.session.add(order)
        db.session.commit()
    return order_id


def pay(app: Flask, scenario: str = "virtual_account") -> str:
    """A paid order: a deposited virtual account (default) or a card."""
    order_id = new_order(app)
    client = app.test_client()
    driver = SandboxDriver.in_process(client)
    window = driver.open_window(
        order_id,
        AMOUNT,
        scenario=scenario,
        success_url="http://localhost/checkout/success",
        fail_url="http://localhost/checkout/fail",
    )
    client.get(window.redirect_url.removeprefix("http://localhost"))
    if scenario == "virtual_account":
        assert driver.deposit(order_id).status == 200
        hint = {
            "eventType": "PAYMENT_STATUS_CHANGED",
            "createdAt": "2026-11-22T10:05:00.000000",
            "data": {"paymentKey": window.payment_key, "orderId": order_id},
        }
        client.post("/api/payment/webhook", data=json.dumps(hint), content_type="application/json")
        with app.app_context():
            while run_once("test"):
                pass
    assert get_order(app, order_id).status == "PAID"
    return order_id


def receipt_of(app: Flask, order_id: str) -> CashReceipt:
    with app.app_context():
        row = db.session.scalars(
            select(CashReceipt).join(Order).where(Order.order_id == order_id)
        ).one()
        db.session.expunge(row)
        return row


def operator(app: Flask) -> FlaskClient:
    client = app.test_client()
    assert client.post("/admin/login", data={"password": PASSWORD}).status_code == 303
    return client


# -- the sandbox's API -----------------------------------------------------------------------------


def test_sandbox_issues_and_cancels_like_toss(shop: Flask) -> None:
    driver = SandboxDriver.in_process(shop.test_client())
    auth = {**driver.auth(), "Idempotency-Key": "cr-test-1"}
    client = shop.test_client()
    body = {
        "amount": 10_000,
        "orderId": "order-receipt-1",
        "orderName": "생수 외 1건",
        "customerIdentityNumber": "01012345678",
        "type": "소득공제",
    }
    issued = client.post("/sandbox/v1/cash-receipts", json=body, headers=auth)
    assert issued.status_code == 200
    data = issued.get_json()
    assert data["transactionType"] == "CONFIRM"
    assert data["type"] == "소득공제"
    assert data["amount"] == 10_000
    assert data["taxFreeAmount"] == 0
    assert data["orderId"] == "order-receipt-1"
    assert data["issueStatus"] == "IN_PROGRESS"
    assert data["receiptKey"]
    assert len(data["issueNumber"]) == 9
    # The same Idempotency-Key answers the first issue again, without a second receipt.
    again = client.post("/sandbox/v1/cash-receipts", json=body, headers=auth)
    assert again.get_json()["receiptKey"] == data["receiptKey"]
    assert len(sandbox_rows(shop.extensions["sandbox_app"], SandboxCashReceipt)) == 1

    key = data["receiptKey"]
    cancel = f"/sandbox/v1/cash-receipts/{key}/cancel"
    partial = client.post(cancel, json={"amount": 3_000}, headers={**auth, "Idempotency-Key": "c1"})
    assert partial.status_code == 200
    assert (partial.get_json()["transactionType"], partial.get_json()["amount"]) == (
        "CANCEL",
        3_000,
    )
    over = client.post(cancel, json={"amount": 8_000}, headers={**auth, "Idempotency-Key": "c2"})
    assert (over.status_code, over.get_json()["code"]) == (400, "INVALID_REQUEST")
    rest = client.post(cancel, json={}, headers={**auth, "Idempotency-Key": "c3"})
    assert rest.get_json()["amount"] == 7_000
    done = client.post(cancel, json={}, headers={**auth, "Idempotency-Key": "c4"})
    assert done.status_code == 400
    unknown = client.post(
        "/sandbox/v1/cash-receipts/cr_nope/cancel",
        json={},
        headers={**auth, "Idempotency-Key": "c5"},
    )
    assert (unknown.status_code, unknown.get_json()["code"]) == (404, "NOT_FOUND")


@pytest.mark.parametrize(
    "change",
    [
        {"type": "현금"},
        {"type": None},
        {"customerIdentityNumber": "010-1234-5678"},
        {"customerIdentityNumber": "1" * 31},
        {"amount": 0},
        {"amount": "열"},
        {"orderId": "abc"},
        {"orderName": ""},
        {"orderName": "가" * 101},
        {"taxFreeAmount": 20_000},
    ],
)
def test_sandbox_refuses_what_toss_refuses(shop: Flask, change: dict[str, Any]) -> None:
    driver = SandboxDriver.in_process(shop.test_client())
    body = {
        "amount": 10_000,
        "orderId": "order-receipt-2",
        "orderName": "생수",
        "customerIdentityNumber": "01012345678",
        "type": "지출증빙",
        **change,
    }
    resp = shop.test_client().post(
        "/sandbox/v1/cash-receipts", json=body, headers={**driver.auth(), "Idempotency-Key": "x1"}
    )
    assert resp.status_code == 400
    assert resp.get_json()["code"] == "INVALID_REQUEST"


def test_sandbox_needs_the_secret_key(shop: Flask) -> None:
    resp = shop.test_client().post("/sandbox/v1/cash-receipts", json={})
    assert resp.status_code in (401, 403)


# -- the shop --------------------------------------------------------------------------------------


def test_operator_issues_one_receipt_and_a_partial_refund_cancels_its_amount(shop: Flask) -> None:
    order_id = pay(shop)
    with shop.app_context():
        issue_receipt(order_id, "소득공제", "01012345678", "admin")
    receipt = receipt_of(shop, order_id)
    assert (receipt.status, receipt.amount, receipt.origin) == ("ISSUED", AMOUNT, "api")
    assert receipt.receipt_key
    assert receipt.identity_number == "*******5678"  # never kept whole once Toss answered
    sandbox_receipt = sandbox_rows(shop.extensions["sandbox_app"], SandboxCashReceipt)[0]
    assert (sandbox_receipt.order_id, sandbox_receipt.amount) == (order_id, AMOUNT)
    assert sandbox_receipt.identity_number == "01012345678"

    with shop.app_context(), pytest.raises(ServiceError) as again:
        issue_receipt(order_id, "소득공제", "01012345678", "admin")
    assert (again.value.code, again.value.http_status) == ("RECEIPT_EXISTS", 409)

    account = RefundAccount("88", "1234567890", "김토스")
    with shop.app_context():
        request_refund(order_id, 10_000, "부분 환불", account, "admin")
    with shop.app_context():
        follow_refund(order_id, 10_000, "admin")
    receipt = receipt_of(shop, order_id)
    assert (receipt.status, receipt.canceled_amount, receipt.remaining) == (
        "ISSUED",
        10_000,
        20_000,
    )
    sandbox_receipt = sandbox_rows(shop.extensions["sandbox_app"], SandboxCashReceipt)[0]
    assert sandbox_receipt.canceled_amount == 10_000

    with shop.app_context(), pytest.raises(ServiceError) as over:
        cancel_receipt(order_id, 25_000, "admin")
    assert over.value.code == "RECEIPT_CANCEL_EXCEEDS"
    with shop.app_context():
        cancel_receipt(order_id, None, "admin")
    receipt = receipt_of(shop, order_id)
    assert (receipt.status, receipt.canceled_amount) == ("CANCELED", AMOUNT)
    assert (
        sandbox_rows(shop.extensions["sandbox_app"], SandboxCashReceipt)[0].canceled_amount
        == AMOUNT
    )


def test_the_database_holds_one_receipt_per_order(shop: Flask) -> None:
    order_id = pay(shop)
    with shop.app_context():
        issue_receipt(order_id, "지출증빙", "1234567890", "admin")
        order = db.session.scalars(select(Order).where(Order.order_id == order_id)).one()
        db.session.add(
            CashReceipt(
                order_pk=order.id,
                origin="api",
                receipt_type="소득공제",
                amount=1,
                tax_free_amount=0,
                canceled_amount=0,
                status="ISSUED",
            )
        )
        with pytest.raises(IntegrityError):
            db.session.commit()
        db.session.rollback()


def test_no_receipt_for_a_card_payment(shop: Flask) -> None:
    order_id = pay(shop, scenario="approve")
    with shop.app_context(), pytest.raises(ServiceError) as refused:
        issue_receipt(order_id, "소득공제", "01012345678", "admin")
    assert (refused.value.code, refused.value.http_status) == ("RECEIPT_NOT_ALLOWED", 409)


def test_a_toss_refusal_fails_the_receipt_and_another_may_be_tried(
    shop: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    order_id = pay(shop)
    client = shop.extensions["toss"]
    real = client.issue_cash_receipt
    keys: list[str] = []

    def refuse(**kwargs: Any) -> Any:
        keys.append(kwargs["idempotency_key"])
        raise TossError("INVALID_REQUEST", "잘못된 요청입니다.", 400)

    monkeypatch.setattr(client, "issue_cash_receipt", refuse)
    with shop.app_context(), pytest.raises(ServiceError) as refused:
        issue_receipt(order_id, "소득공제", "01012345678", "admin")
    assert refused.value.http_status == 409
    failed = receipt_of(shop, order_id)
    assert (failed.status, failed.failure_code) == ("FAILED", "INVALID_REQUEST")
    assert failed.identity_number == "*******5678"

    def unknown(**kwargs: Any) -> Any:
        keys.append(kwargs["idempotency_key"])
        raise TossError("READ_TIMEOUT", "no answer", 0, retryable=True, outcome_unknown=True)

    monkeypatch.setattr(client, "issue_cash_receipt", unknown)
    with shop.app_context(), pytest.raises(ServiceError) as pending:
        issue_receipt(order_id, "지출증빙", "1234567890", "admin")
    assert (pending.value.code, pending.value.http_status) == ("RECEIPT_PENDING", 202)
    assert receipt_of(shop, order_id).status == "PENDING"

    def record(**kwargs: Any) -> Any:
        keys.append(kwargs["idempotency_key"])
        return real(**kwargs)

    monkeypatch.setattr(client, "issue_cash_receipt", record)
    # The unknown outcome is settled by repeating the same call with the same key.
    with shop.app_context():
        issue_receipt(order_id, "소득공제", "01099999999", "admin")
    receipt = receipt_of(shop, order_id)
    assert (receipt.status, receipt.receipt_type) == ("ISSUED", "지출증빙")
    assert keys == [
        f"cash-receipt-{order_id}-1",
        f"cash-receipt-{order_id}-2",
        f"cash-receipt-{order_id}-2",
    ]


def test_operator_routes(shop: Flask) -> None:
    order_id = pay(shop)
    client = operator(shop)
    page = client.get(f"/admin/orders/{order_id}").get_data(as_text=True)
    assert 'data-testid="receipt-issue-form"' in page
    bad = client.post(
        f"/admin/orders/{order_id}/cash-receipt",
        data={"receipt_type": "소득공제", "identity_number": "12"},
    )
    assert bad.status_code == 400
    assert "휴대폰 번호" in bad.get_data(as_text=True)
    junk = client.post(
        f"/admin/orders/{order_id}/cash-receipt",
        data={"receipt_type": "\u0000", "identity_number": ""},
    )
    assert junk.status_code == 400
    ok = client.post(
        f"/admin/orders/{order_id}/cash-receipt",
        data={"receipt_type": "소득공제", "identity_number": "010-1234-5678"},
    )
    assert ok.status_code == 303
    page = client.get(f"/admin/orders/{order_id}").get_data(as_text=True)
    assert "발급됨" in page
    assert 'data-testid="receipt-cancel-form"' in page
    too_much = client.post(
        f"/admin/orders/{order_id}/cash-receipt/cancel", data={"amount": "99999999"}
    )
    assert too_much.status_code == 400
    assert "초과" in too_much.get_data(as_text=True)
    nonsense = client.post(f"/admin/orders/{order_id}/cash-receipt/cancel", data={"amount": "-1"})
    assert nonsense.status_code == 400
    part = client.post(f"/admin/orders/{order_id}/cash-receipt/cancel", data={"amount": "5,000"})
    assert part.status_code == 303
    assert receipt_of(shop, order_id).canceled_amount == 5_000
    missing = client.post("/admin/orders/order-unknown-1/cash-receipt", data={})
    assert missing.status_code in (400, 404)


@pytest.mark.parametrize(
    ("form", "needle"),
    [
        ({}, "용도"),
        ({"receipt_type": "소득공제", "identity_number": "0212345678"}, "휴대폰"),
        ({"receipt_type": "지출증빙", "identity_number": "123"}, "사업자등록번호"),
    ],
)
def test_receipt_form_messages(form: dict[str, str], needle: str) -> None:
    with pytest.raises(ServiceError) as refused:
        parse_receipt_form(form)
    assert needle in refused.value.message
    assert refused.value.http_status == 400


def test_receipt_form_accepts_numbers_as_people_write_them() -> None:
    assert parse_receipt_form({"receipt_type": "소득공제", "identity_number": "010-1234-5678"}) == (
        "소득공제",
        "01012345678",
    )
    assert parse_receipt_form({"receipt_type": "지출증빙", "identity_number": "123-45-67890"}) == (
        "지출증빙",
        "1234567890",
    )
    assert parse_cancel_form({"amount": ""}) is None
    assert parse_cancel_form({"amount": "1,000"}) == 1_000


# -- a receipt Toss issued with the payment --------------------------------------------------------


def test_a_receipt_issued_with_the_payment_is_stored(
    app: Flask, toss: responses.RequestsMock
) -> None:
    order_id = new_order(app, 15_000)
    issued = {
        "type": "소득공제",
        "receiptKey": "cr_with_payment_1",
        "issueNumber": "123456789",
        "receiptUrl": "https://dashboard.tosspayments.com/receipt/cash/1",
        "amount": 15_000,
        "taxFreeAmount": 0,
    }
    answer = payment_json(
        order_id, 15_000, "tpk_cash_1", method="계좌이체", card=None, cashReceipt=issued
    )
    toss.add(responses.POST, CONFIRM_URL, json=answer)
    resp = app.test_client().get(
        f"/checkout/success?paymentType=NORMAL&orderId={order_id}&paymentKey=tpk_cash_1&amount=15000"
    )
    assert resp.status_code in (200, 202, 303)
    receipt = receipt_of(app, order_id)
    assert (receipt.origin, receipt.status, receipt.receipt_key) == (
        "payment",
        "ISSUED",
        "cr_with_payment_1",
    )
    assert (receipt.issue_number, receipt.amount) == ("123456789", 15_000)
    # Not cancellable here: Toss cancels it with the payment's own cancels.
    with app.app_context(), pytest.raises(ServiceError):
        cancel_receipt(order_id, None, "admin")
