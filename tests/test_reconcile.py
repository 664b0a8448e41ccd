"""Reconciliation: settle unknown confirm outcomes, expire stale orders and overdue deposits.

Toss is faked with `responses`; rows are aged by writing their timestamps, and `reconcile(now=…)`
runs inside an app context (or through `flask payments reconcile`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest
import requests
import responses
from flask import Flask
from sqlalchemy import select, update

from payments.checkout.confirm import confirm_idempotency_key
from payments.core.clock import KST, utcnow
from payments.core.models import AuditEntry, Order, Payment, WebhookEvent
from payments.extensions import db
from payments.ops.reconcile import Report, reconcile
from payments.shop.catalog import create_order, seed_catalog
from payments.webhooks.worker import run_once
from tests.helpers import (
    BUYER,
    CONFIRM_URL,
    TOSS,
    audit,
    dispose,
    get_order,
    make_app,
    payment_json,
    race,
)

PK = "tgen_20261122121910Rec01"
VA_PK = "tviva20261122130102Rec02"
# A week ahead of the run, like a virtual account issued today: runs "after the due date" pass
# `now=DUE + …`, and the rows the tests age relative to the real clock stay behind that.
VA_DUE = (datetime.now(KST) + timedelta(days=7)).replace(microsecond=0).isoformat()
LATER_DUE = (datetime.now(KST) + timedelta(days=37)).replace(microsecond=0).isoformat()


# -- helpers --------------------------------------------------------------------------------


def lookup_url(order_id: str) -> str:
    return f"{TOSS}/v1/payments/orders/{order_id}"


def key_url(payment_key: str) -> str:
    return f"{TOSS}/v1/payments/{payment_key}"


def not_found(toss: responses.RequestsMock, url: str) -> None:
    toss.upsert(
        responses.GET,
        url,
        status=404,
        json={"code": "NOT_FOUND_PAYMENT", "message": "존재하지 않는 결제 정보 입니다."},
    )


def toss_down(toss: responses.RequestsMock, url: str) -> None:
    toss.upsert(
        responses.GET,
        url,
        status=500,
        json={"code": "FAILED_INTERNAL_SYSTEM_PROCESSING", "message": "내부 오류"},
    )


def va_payment(
    order_id: str, amount: int, status: str = "WAITING_FOR_DEPOSIT", due: str = VA_DUE
) -> dict[str, Any]:
    return payment_json(
        order_id,
        amount,
        VA_PK if due == VA_DUE else f"{VA_PK}x",
        status,
        method="가상계좌",
        card=None,
        secret="ps_ReconcileSecret0000000001",
        virtualAccount={
            "accountNumber": "X6515006029612",
            "bankCode": "20",
            "customerName": "김토스",
            "dueDate": due,
            "refundStatus": "NONE",
            "expired": False,
        },
    )


def last_code(app: Flask, order_id: str) -> str | None:
    """The code (Toss's or ours) on the order's latest audit row."""
    with app.app_context():
        return db.session.scalars(
            select(AuditEntry.code)
            .join(Order, Order.id == AuditEntry.order_pk)
            .where(Order.order_id == order_id, AuditEntry.event != "stock_released")
            .order_by(AuditEntry.id.desc())
            .limit(1)
        ).one()


def moves(app: Flask, order_id: str, since: int) -> list[tuple[str | None, str | None, str]]:
    """The audit rows since `since` (the stock an ended order gives back is test_stock.py's)."""
    return [(a[1], a[2], a[3]) for a in audit(app, order_id)[since:] if a[0] != "stock_released"]


def age(app: Flask, order_id: str, **ago: timedelta) -> None:
    """Move created_at / updated_at / confirm_started_at into the past."""
    now = utcnow()
    with app.app_context():
        db.session.execute(
            update(Order)
            .where(Order.order_id == order_id)
            .values(**{column: now - delta for column, delta in ago.items()})
        )
        db.session.commit()


def run(app: Flask, now: datetime | None = None, **kwargs: Any) -> Report:
    with app.app_context():
        report = reconcile(now=now, **kwargs)
        db.session.remove()
    return report


def confirm_calls(toss: responses.RequestsMock) -> list[Any]:
    return [c for c in toss.calls if c.request.url == CONFIRM_URL]


@pytest.fixture
def order(order_factory: Callable[..., Order]) -> Order:
    return order_factory()


def make_stuck(app: Flask, order: Order, status: str, minutes: float) -> None:
    """The state a crash leaves: the intent committed (paymentKey, key, start), no outcome."""
    ago = utcnow() - timedelta(minutes=minutes)
    with app.app_context():
        db.session.execute(
            update(Order)
            .where(Order.order_id == order.order_id)
            .values(
                status=status,
                payment_key=PK,
                confirm_idempotency_key=confirm_idempotency_key(order.order_id, PK),
                confirm_started_at=ago,
                updated_at=ago,
            )
        )
        db.session.commit()


def time_out_confirm(app: Flask, toss: responses.RequestsMock, order: Order) -> str:
    """Drive a real confirmation whose outcome stays unknown; the stored Idempotency-Key."""
    toss.post(CONFIRM_URL, body=requests.exceptions.ReadTimeout("slow"))
    toss.get(lookup_url(order.order_id), body=requests.exceptions.ReadTimeout("slow"))
    resp = app.test_client().post(
        "/api/payment/verify",
        json={"paymentKey": PK, "orderId": order.order_id, "amount": order.amount},
    )
    assert resp.status_code == 409
    stored = get_order(app, order.order_id)
    assert stored.status == "NEEDS_RECONCILE"
    assert stored.confirm_idempotency_key
    keys = {c.request.headers["Idempotency-Key"] for c in confirm_calls(toss)}
    assert keys == {stored.confirm_idempotency_key}
    toss.remove(responses.POST, CONFIRM_URL)
    toss.remove(responses.GET, lookup_url(order.order_id))
    toss.calls.reset()
    return stored.confirm_idempotency_key


def issue_virtual_account(
    app: Flask, toss: responses.RequestsMock, order: Order, due: str = VA_DUE
) -> None:
    answer = va_payment(order.order_id, order.amount, due=due)
    toss.post(CONFIRM_URL, json=answer)
    resp = app.test_client().post(
        "/api/payment/verify",
        json={
            "paymentKey": answer["paymentKey"],
            "orderId": order.order_id,
            "amount": order.amount,
        },
    )
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert get_order(app, order.order_id).status == "AWAITING_DEPOSIT"
    toss.remove(responses.POST, CONFIRM_URL)
    toss.calls.reset()


# -- unknown confirm outcomes ---------------------------------------------------------------


@pytest.mark.parametrize("stuck", ["CONFIRMING", "NEEDS_RECONCILE"])
@pytest.mark.parametrize(
    ("toss_status", "settled"),
    [("DONE", "PAID"), ("WAITING_FOR_DEPOSIT", "AWAITING_DEPOSIT")],
)
def test_stuck_order_is_settled_by_looking_it_up(
    app: Flask,
    toss: responses.RequestsMock,
    order: Order,
    stuck: str,
    toss_status: str,
    settled: str,
) -> None:
    make_stuck(app, order, stuck, minutes=3)
    toss.get(
        lookup_url(order.order_id), json=payment_json(order.order_id, order.amount, PK, toss_status)
    )
    since = len(audit(app, order.order_id))

    report = run(app)

    assert get_order(app, order.order_id).status == settled
    assert [c.request.url for c in toss.calls] == [lookup_url(order.order_id)]
    assert report.settled == {settled: 1}
    assert report.still_unknown == 0
    trail = moves(app, order.order_id, since)
    assert trail[-1][1] == settled
    assert {m[2] for m in trail} == {"reconcile"}


@pytest.mark.parametrize("minutes", [2, 9])
def test_lookup_404_within_the_window_confirms_again_with_the_same_idempotency_key(
    app: Flask, toss: responses.RequestsMock, order: Order, minutes: int
) -> None:
    key = time_out_confirm(app, toss, order)
    age(
        app,
        order.order_id,
        updated_at=timedelta(minutes=minutes),
        confirm_started_at=timedelta(minutes=minutes),
    )
    not_found(toss, lookup_url(order.order_id))
    toss.post(CONFIRM_URL, json=payment_json(order.order_id, order.amount, PK))

    report = run(app)

    (call,) = confirm_calls(toss)
    assert call.request.headers["Idempotency-Key"] == key
    assert json.loads(call.request.body) == {
        "paymentKey": PK,
        "orderId": order.order_id,
        "amount": order.amount,
    }
    assert get_order(app, order.order_id).status == "PAID"
    assert report.settled == {"PAID": 1}
    assert audit(app, order.order_id)[-1][1:4] == ("NEEDS_RECONCILE", "PAID", "reconcile")


@pytest.mark.parametrize("stuck", ["CONFIRMING", "NEEDS_RECONCILE"])
def test_lookup_404_after_the_window_makes_the_order_payable_again(
    app: Flask, toss: responses.RequestsMock, order: Order, stuck: str
) -> None:
    make_stuck(app, order, stuck, minutes=20)
    not_found(toss, lookup_url(order.order_id))
    not_found(toss, key_url(PK))  # Toss's word about the attempt's own payment
    since = len(audit(app, order.order_id))

    report = run(app)

    assert confirm_calls(toss) == []
    after = get_order(app, order.order_id)
    assert (after.status, after.payment_key) == ("PENDING", None)
    assert after.failure_code == "NOT_FOUND_PAYMENT_SESSION"
    assert report.still_unknown == 0
    expected = [("NEEDS_RECONCILE", "PENDING", "reconcile")]
    if stuck == "CONFIRMING":
        expected.insert(0, ("CONFIRMING", "NEEDS_RECONCILE", "reconcile"))
    assert moves(app, order.order_id, since) == expected

    # The shopper can pay again, with a new payment.
    toss.post(CONFIRM_URL, json=payment_json(order.order_id, order.amount, "tgen_second_try_01"))
    resp = app.test_client().post(
        "/api/payment/verify",
        json={
            "paymentKey": "tgen_second_try_01",
            "orderId": order.order_id,
            "amount": order.amount,
        },
    )
    assert resp.status_code == 200
    assert get_order(app, order.order_id).status == "PAID"


def test_failed_lookup_after_the_window_keeps_the_outcome_unknown(
    app: Flask, toss: responses.RequestsMock, order: Order
) -> None:
    make_stuck(app, order, "NEEDS_RECONCILE", minutes=20)
    toss_down(toss, lookup_url(order.order_id))

    report = run(app)

    after = get_order(app, order.order_id)
    assert (after.status, after.payment_key) == ("NEEDS_RECONCILE", PK)
    assert report.still_unknown == 1


def test_failed_lookup_within_the_window_keeps_the_order_unknown_and_never_cancels(
    app: Flask, toss: responses.RequestsMock, order: Order
) -> None:
    make_stuck(app, order, "NEEDS_RECONCILE", minutes=3)
    toss_down(toss, lookup_url(order.order_id))
    toss.post(
        CONFIRM_URL, status=500, json={"code": "FAILED_INTERNAL_SYSTEM_PROCESSING", "message": "x"}
    )

    report = run(app)

    after = get_order(app, order.order_id)
    assert (after.status, after.payment_key) == ("NEEDS_RECONCILE", PK)
    assert report.still_unknown == 1
    assert {c.request.headers["Idempotency-Key"] for c in confirm_calls(toss)} == {
        confirm_idempotency_key(order.order_id, PK)
    }


# -- the attempt's own payment, by its paymentKey ---------------------------------------------
#
# By orderId Toss may answer with any of the order's payments (one per payment window), so an
# order in doubt is also asked about by the attempt's paymentKey (GET /v1/payments/{paymentKey},
# https://docs.tosspayments.com/guides/apis/get-payment).

OTHER_PK = "tgen_20261122120000Old00"  # an earlier window of the same order


def other_window(order: Order, status: str, **extra: Any) -> dict[str, Any]:
    return payment_json(order.order_id, order.amount, OTHER_PK, status, **extra)


def expired_failure() -> dict[str, Any]:
    # As Toss shows an expired payment: https://techchat.tosspayments.com/m/1410526054635933798
    return {
        "failure": {
            "code": "EXPIRED_PAYMENT",
            "message": "결제가 만료되었습니다. 다시 시도해주세요.",
        }
    }


def others(app: Flask, order_id: str) -> list[tuple[str | None, str | None]]:
    with app.app_context():
        return [
            (a.payment_key, a.code)
            for a in db.session.scalars(
                select(AuditEntry)
                .join(Order, Order.id == AuditEntry.order_pk)
                .where(Order.order_id == order_id, AuditEntry.event == "other_payment")
                .order_by(AuditEntry.id)
            )
        ]


@pytest.mark.parametrize("minutes", [3, 20])
def test_another_windows_expiry_by_order_never_reopens_the_attempt(
    app: Flask, toss: responses.RequestsMock, order: Order, minutes: int
) -> None:
    """By orderId Toss answers with an earlier, expired window; by paymentKey the attempt is
    DONE: the order is paid by the attempt, the other window only noted."""
    make_stuck(app, order, "NEEDS_RECONCILE", minutes=minutes)
    toss.get(lookup_url(order.order_id), json=other_window(order, "EXPIRED", **expired_failure()))
    toss.get(key_url(PK), json=payment_json(order.order_id, order.amount, PK))

    report = run(app)

    after = get_order(app, order.order_id)
    assert (after.status, after.payment_key) == ("PAID", PK)
    assert report.settled == {"PAID": 1}
    assert confirm_calls(toss) == []
    assert others(app, order.order_id) == [(OTHER_PK, "EXPIRED")]


def test_attempt_expired_at_toss_makes_the_order_payable_with_a_korean_message(
    app: Flask, toss: responses.RequestsMock, order: Order
) -> None:
    make_stuck(app, order, "NEEDS_RECONCILE", minutes=12)
    expired = payment_json(order.order_id, order.amount, PK, "EXPIRED", **expired_failure())
    toss.get(lookup_url(order.order_id), json=expired)
    toss.get(key_url(PK), json=expired)

    run(app)

    after = get_order(app, order.order_id)
    assert (after.status, after.payment_key) == ("PENDING", None)
    assert after.failure_code == "EXPIRED_PAYMENT"
    assert after.failure_message == "결제 시간이 만료되었습니다. 다시 결제해주세요."
    assert confirm_calls(toss) == []


def test_lookup_by_order_alone_never_makes_the_order_payable_again(
    app: Flask, toss: responses.RequestsMock, order: Order
) -> None:
    """The by-orderId answer shows the attempt EXPIRED, but Toss cannot be asked by paymentKey:
    nothing is decided on the by-orderId answer alone."""
    make_stuck(app, order, "NEEDS_RECONCILE", minutes=20)
    expired = payment_json(order.order_id, order.amount, PK, "EXPIRED", **expired_failure())
    toss.get(lookup_url(order.order_id), json=expired)
    toss_down(toss, key_url(PK))

    report = run(app)

    after = get_order(app, order.order_id)
    assert (after.status, after.payment_key) == ("NEEDS_RECONCILE", PK)
    assert report.still_unknown == 1


def test_aborted_attempt_within_the_window_is_confirmed_again_and_toss_decides(
    app: Flask, toss: responses.RequestsMock, order: Order
) -> None:
    """ABORTED may not be Toss's last word while its confirm window lasts (a retry with the same
    Idempotency-Key can still be approved): the confirm is repeated; Toss replays the refusal."""
    make_stuck(app, order, "NEEDS_RECONCILE", minutes=3)
    aborted = payment_json(
        order.order_id,
        order.amount,
        PK,
        "ABORTED",
        failure={"code": "REJECT_CARD_COMPANY", "message": "카드사에서 거절했습니다."},
    )
    toss.get(lookup_url(order.order_id), json=aborted)
    toss.get(key_url(PK), json=aborted)
    toss.post(CONFIRM_URL, status=403, json={"code": "REJECT_CARD_COMPANY", "message": "거절"})

    run(app)

    (call,) = confirm_calls(toss)
    assert call.request.headers["Idempotency-Key"] == confirm_idempotency_key(order.order_id, PK)
    after = get_order(app, order.order_id)
    assert (after.status, after.payment_key, after.failure_code) == (
        "PENDING",
        None,
        "REJECT_CARD_COMPANY",
    )


@pytest.mark.parametrize(
    ("attempt", "expected"),
    [("ABORTED", "PENDING"), ("IN_PROGRESS", "NEEDS_RECONCILE"), ("READY", "NEEDS_RECONCILE")],
)
def test_after_the_window_only_an_attempt_toss_did_not_approve_is_given_up(
    app: Flask, toss: responses.RequestsMock, order: Order, attempt: str, expected: str
) -> None:
    """After the confirm window, ABORTED (failure COMMON_ERROR, as in Toss's error-code page,
    https://docs.tosspayments.com/reference/error-codes) is Toss's word the attempt was not
    approved; an IN_PROGRESS payment waits for Toss to expire it."""
    make_stuck(app, order, "NEEDS_RECONCILE", minutes=20)
    failure = {
        "code": "COMMON_ERROR",
        "message": "일시적인 오류가 발생했습니다. 잠시 후 다시 시도해주세요.",
    }
    answer = payment_json(
        order.order_id,
        order.amount,
        PK,
        attempt,
        **({"failure": failure} if attempt == "ABORTED" else {}),
    )
    toss.get(lookup_url(order.order_id), json=answer)
    toss.get(key_url(PK), json=answer)

    report = run(app)

    after = get_order(app, order.order_id)
    assert after.status == expected
    assert confirm_calls(toss) == []
    if expected == "PENDING":
        assert (after.payment_key, after.failure_code) == (None, "COMMON_ERROR")
        assert after.failure_message == "일시적인 오류가 발생했습니다. 잠시 후 다시 결제해주세요."
    else:
        assert after.payment_key == PK
        assert report.still_unknown == 1


def test_money_in_another_window_settles_the_order_and_a_second_charge_is_flagged(
    app: Flask,
    toss: responses.RequestsMock,
    order: Order,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """By orderId Toss shows another window DONE: that payment settles the order. When the
    attempt's own DONE webhook arrives later, the second charge is flagged for an operator and
    never replaces the order's payment."""
    make_stuck(app, order, "NEEDS_RECONCILE", minutes=3)
    toss.get(lookup_url(order.order_id), json=other_window(order, "DONE"))

    run(app)

    after = get_order(app, order.order_id)
    assert (after.status, after.payment_key) == ("PAID", OTHER_PK)
    assert confirm_calls(toss) == []
    toss.get(key_url(PK), json=payment_json(order.order_id, order.amount, PK))
    body = {
        "eventType": "PAYMENT_STATUS_CHANGED",
        "createdAt": "2026-11-22T10:00:06.000000",
        "data": payment_json(order.order_id, order.amount, PK),
    }
    assert app.test_client().post("/api/payment/webhook", json=body).status_code == 200
    with caplog.at_level(logging.CRITICAL), app.app_context():
        run_once("second-charge-test")
        db.session.remove()

    after = get_order(app, order.order_id)
    assert (after.status, after.payment_key) == ("PAID", OTHER_PK)
    with app.app_context():
        assert db.session.scalars(select(Payment.payment_key)).all() == [OTHER_PK]
    assert others(app, order.order_id) == [(PK, "DONE")]
    assert any(r.getMessage().startswith("ALERT") for r in caplog.records)


def test_recently_updated_order_is_left_alone(
    app: Flask, toss: responses.RequestsMock, order: Order
) -> None:
    make_stuck(app, order, "CONFIRMING", minutes=0.5)
    since = len(audit(app, order.order_id))

    report = run(app)

    assert len(toss.calls) == 0
    assert get_order(app, order.order_id).status == "CONFIRMING"
    assert report.settled == {}
    assert report.still_unknown == 0
    assert len(audit(app, order.order_id)) == since


# -- stale unpaid orders --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("toss_answer", "expected", "trail"),
    [
        (None, "EXPIRED", [("PENDING", "EXPIRED", "reconcile")]),
        (
            "DONE",
            "PAID",
            [("PENDING", "CONFIRMING", "reconcile"), ("CONFIRMING", "PAID", "reconcile")],
        ),
        (
            "WAITING_FOR_DEPOSIT",
            "AWAITING_DEPOSIT",
            [
                ("PENDING", "CONFIRMING", "reconcile"),
                ("CONFIRMING", "AWAITING_DEPOSIT", "reconcile"),
            ],
        ),
        ("EXPIRED", "EXPIRED", [("PENDING", "EXPIRED", "reconcile")]),
    ],
)
def test_pending_order_past_the_payable_time_is_expired_unless_toss_has_its_payment(
    app: Flask,
    toss: responses.RequestsMock,
    order: Order,
    toss_answer: str | None,
    expected: str,
    trail: list[tuple[str, str, str]],
) -> None:
    age(app, order.order_id, created_at=timedelta(minutes=61), updated_at=timedelta(minutes=61))
    if toss_answer is None:
        not_found(toss, lookup_url(order.order_id))
    else:
        answer = payment_json(order.order_id, order.amount, PK, toss_answer)
        toss.get(lookup_url(order.order_id), json=answer)
    since = len(audit(app, order.order_id))

    report = run(app)

    assert get_order(app, order.order_id).status == expected
    assert moves(app, order.order_id, since) == trail
    assert [c.request.url for c in toss.calls] == [lookup_url(order.order_id)]
    assert report.expired == (1 if expected == "EXPIRED" else 0)
    if expected == "EXPIRED":
        assert last_code(app, order.order_id) == "ORDER_EXPIRED"
    else:
        assert report.settled == {expected: 1}


def test_pending_order_within_the_payable_time_is_not_looked_up(
    app: Flask, toss: responses.RequestsMock, order: Order
) -> None:
    age(app, order.order_id, created_at=timedelta(minutes=59), updated_at=timedelta(minutes=59))

    report = run(app)

    assert len(toss.calls) == 0
    assert get_order(app, order.order_id).status == "PENDING"
    assert report.expired == 0


def test_payable_time_comes_from_the_config(
    database_url: str, toss: responses.RequestsMock
) -> None:
    app = make_app(database_url, ORDER_PAYABLE_MINUTES=120)
    with app.app_context():
        seed_catalog()
        order_id = create_order({"1": 1}, "cust_config_test", BUYER).order_id
    not_found(toss, lookup_url(order_id))
    age(app, order_id, created_at=timedelta(minutes=90))

    run(app)
    assert get_order(app, order_id).status == "PENDING"
    assert len(toss.calls) == 0

    age(app, order_id, created_at=timedelta(minutes=121))
    run(app)
    assert get_order(app, order_id).status == "EXPIRED"
    dispose(app)


def test_pending_order_is_kept_while_toss_cannot_answer(
    app: Flask, toss: responses.RequestsMock, order: Order
) -> None:
    age(app, order.order_id, created_at=timedelta(minutes=61))
    toss_down(toss, lookup_url(order.order_id))

    report = run(app)

    assert get_order(app, order.order_id).status == "PENDING"
    assert report.expired == 0


# -- overdue virtual-account deposits -------------------------------------------------------


DUE = datetime.fromisoformat(VA_DUE)


@pytest.mark.parametrize(
    ("toss_status", "expected", "code"),
    [
        ("WAITING_FOR_DEPOSIT", "EXPIRED", "DEPOSIT_DUE_PASSED"),
        ("DONE", "PAID", None),
        ("CANCELED", "CANCELED", None),
    ],
)
def test_deposit_past_its_due_date_is_settled_with_toss(
    app: Flask,
    toss: responses.RequestsMock,
    order: Order,
    toss_status: str,
    expected: str,
    code: str | None,
) -> None:
    issue_virtual_account(app, toss, order)
    toss.get(key_url(VA_PK), json=va_payment(order.order_id, order.amount, toss_status))
    since = len(audit(app, order.order_id))

    report = run(app, now=DUE + timedelta(minutes=1))

    assert get_order(app, order.order_id).status == expected
    assert moves(app, order.order_id, since) == [("AWAITING_DEPOSIT", expected, "reconcile")]
    assert last_code(app, order.order_id) == code
    # The account's own payment, by its paymentKey (by orderId Toss may answer about another
    # window of the order).
    assert [c.request.url for c in toss.calls] == [key_url(VA_PK)]
    assert report.expired == (1 if expected == "EXPIRED" else 0)


def test_deposit_not_yet_due_is_left_alone(
    app: Flask, toss: responses.RequestsMock, order: Order
) -> None:
    issue_virtual_account(app, toss, order)

    run(app, now=DUE - timedelta(minutes=1))

    assert len(toss.calls) == 0
    assert get_order(app, order.order_id).status == "AWAITING_DEPOSIT"


def test_overdue_deposit_is_not_expired_when_toss_cannot_be_asked(
    app: Flask, toss: responses.RequestsMock, order: Order
) -> None:
    issue_virtual_account(app, toss, order)
    toss_down(toss, key_url(VA_PK))

    report = run(app, now=DUE + timedelta(minutes=1))

    assert get_order(app, order.order_id).status == "AWAITING_DEPOSIT"
    assert report.expired == 0


def test_overdue_deposits_are_not_starved_by_orders_not_yet_due(
    app: Flask, toss: responses.RequestsMock, order_factory: Callable[..., Order]
) -> None:
    later, overdue = order_factory(), order_factory()
    issue_virtual_account(app, toss, later, due=LATER_DUE)
    issue_virtual_account(app, toss, overdue)
    toss.get(key_url(VA_PK), json=va_payment(overdue.order_id, overdue.amount))

    run(app, now=DUE + timedelta(minutes=1), limit=1)

    assert get_order(app, overdue.order_id).status == "EXPIRED"
    assert get_order(app, later.order_id).status == "AWAITING_DEPOSIT"


# -- concurrency, the command, retention ----------------------------------------------------


def test_two_reconcile_runs_at_once_end_in_one_state_with_one_audit_row_per_move(
    app: Flask, toss: responses.RequestsMock, order_factory: Callable[..., Order]
) -> None:
    stuck, stale, overdue = order_factory(), order_factory(), order_factory()
    make_stuck(app, stuck, "NEEDS_RECONCILE", minutes=3)
    age(app, stale.order_id, created_at=timedelta(minutes=61))
    issue_virtual_account(app, toss, overdue)
    both_inside = threading.Barrier(2)

    def lookup_done(request: Any) -> tuple[int, dict[str, str], str]:
        # Hold both runs inside the same lookup so that their writes race.
        with contextlib.suppress(threading.BrokenBarrierError):
            both_inside.wait(timeout=2)
        return 200, {}, json.dumps(payment_json(stuck.order_id, stuck.amount, PK))

    toss.add_callback(responses.GET, lookup_url(stuck.order_id), callback=lookup_done)
    not_found(toss, lookup_url(stale.order_id))
    toss.get(key_url(VA_PK), json=va_payment(overdue.order_id, overdue.amount))
    now = DUE + timedelta(minutes=1)

    reports = race([lambda: run(app, now=now)] * 2)

    assert get_order(app, stuck.order_id).status == "PAID"
    assert get_order(app, stale.order_id).status == "EXPIRED"
    assert get_order(app, overdue.order_id).status == "EXPIRED"
    for o, to in ((stuck, "PAID"), (stale, "EXPIRED"), (overdue, "EXPIRED")):
        rows = [a for a in audit(app, o.order_id) if a[0] == "transition" and a[2] == to]
        assert len(rows) == 1, (o.order_id, rows)
    with app.app_context():
        assert db.session.scalar(select(db.func.count()).select_from(Payment)) == 2
    assert sum(r.expired for r in reports) == 2


def test_reconcile_command_settles_and_reports(
    app: Flask, toss: responses.RequestsMock, order_factory: Callable[..., Order]
) -> None:
    stuck, stale = order_factory(), order_factory()
    make_stuck(app, stuck, "CONFIRMING", minutes=3)
    age(app, stale.order_id, created_at=timedelta(minutes=61))
    toss.get(lookup_url(stuck.order_id), json=payment_json(stuck.order_id, stuck.amount, PK))
    not_found(toss, lookup_url(stale.order_id))

    result = app.test_cli_runner().invoke(args=["payments", "reconcile"])

    assert result.exit_code == 0, result.output
    assert "settled 1 {'PAID': 1}" in result.output
    assert "expired 1" in result.output
    assert "still unknown 0" in result.output
    assert get_order(app, stuck.order_id).status == "PAID"
    assert get_order(app, stale.order_id).status == "EXPIRED"


def test_reconcile_prunes_webhook_bodies_past_the_retention(
    app: Flask, toss: responses.RequestsMock
) -> None:
    client = app.test_client()
    for tid in ("whtrans_keep_0001", "whtrans_drop_0001"):
        client.post(
            "/api/payment/webhook",
            json={"eventType": "BILLING_DELETED", "createdAt": "2026-11-22T12:00:00.000000"},
            headers={"tosspayments-webhook-transmission-id": tid},
        )
    with app.app_context():
        run_once("pruner-test")
        db.session.execute(
            update(WebhookEvent)
            .where(WebhookEvent.transmission_id == "whtrans_drop_0001")
            .values(received_at=utcnow() - timedelta(days=31))
        )
        db.session.commit()

    report = run(app)

    assert report.pruned == 1
    with app.app_context():
        bodies = dict(
            db.session.execute(select(WebhookEvent.transmission_id, WebhookEvent.body)).all()
        )
    assert bodies["whtrans_drop_0001"] is None
    assert bodies["whtrans_keep_0001"] is not None
