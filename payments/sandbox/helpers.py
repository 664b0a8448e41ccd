"""What the test helpers and the dashboard do that Toss's API does not: a buyer's deposit, a
bank's deposit error, an expiry on demand, the sandbox's own view of a payment.

Toss's test environment offers the same kind of switches: deposits into (and cancels of) test
virtual accounts are made from its developer centre (https://docs.tosspayments.com/resources/faq).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select, update

from .db import db
from .errors import SandboxError
from .ids import new_transaction_key
from .models import (
    DONE,
    EXPIRED,
    IN_PROGRESS,
    READY,
    VIRTUAL_ACCOUNT,
    WAITING_FOR_DEPOSIT,
    SandboxPayment,
    SandboxWebhook,
)
from .payments import (
    expire as expire_payment,
)
from .payments import (
    find_payment_by_order,
    invalid,
    move,
    now,
    parse_amount,
    payment_json,
    refresh_deadlines,
    require_payment,
)


def _virtual_account(order_id: str) -> SandboxPayment:
    payment = find_payment_by_order(order_id)
    if payment is None:
        raise SandboxError("NOT_FOUND_PAYMENT")
    refresh_deadlines(payment)
    return payment


def _not_waiting(payment: SandboxPayment) -> SandboxError:
    return SandboxError(
        "NOT_WAITING_FOR_DEPOSIT",
        f"입금 대기 중인 가상계좌가 아닙니다. (현재 상태: {payment.status})",
        409,
    )


def deposit(order_id: str, body: Any) -> dict[str, Any]:
    """The buyer pays the virtual account of `order_id`: WAITING_FOR_DEPOSIT → DONE, announced
    by PAYMENT_STATUS_CHANGED and DEPOSIT_CALLBACK (https://docs.tosspayments.com/en/webhooks).

    After the due date the account takes no money: "dueDate이 지난 시점에 입금을 시도하면
    실패합니다" (https://docs.tosspayments.com/reference, "가상계좌 발급 요청").
    """
    payment = _virtual_account(order_id)
    if payment.method != VIRTUAL_ACCOUNT or payment.status != WAITING_FOR_DEPOSIT:
        raise _not_waiting(payment)
    if payment.va_expired:
        raise SandboxError(
            "VIRTUAL_ACCOUNT_EXPIRED",
            "입금 기한이 지난 가상계좌에는 입금할 수 없습니다.",
            409,
        )
    paid = body.get("amount") if isinstance(body, dict) else None
    if paid is not None and parse_amount(paid) != payment.total_amount:
        raise invalid("가상계좌에는 결제 금액과 같은 금액만 한 번에 입금할 수 있습니다.")
    t = now()
    values = {
        "status": DONE,
        "approved_at": t,
        "deposited_at": t,
        "last_transaction_key": new_transaction_key(),
    }
    if not move(payment, WAITING_FOR_DEPOSIT, values, deposit_callback=True):
        raise _not_waiting(payment)
    return payment_json(payment)


def deposit_error(order_id: str) -> dict[str, Any]:
    """The bank reports an error on the deposit of `order_id`'s virtual account: DONE → back to
    WAITING_FOR_DEPOSIT, announced by PAYMENT_STATUS_CHANGED and DEPOSIT_CALLBACK.

    Toss: "In very few cases of network issues, the payment status can change from DONE back to
    WAITING FOR DEPOSIT" (https://docs.tosspayments.com/en/webhooks). The buyer may then deposit
    again, until the due date.
    """
    payment = _virtual_account(order_id)
    if (
        payment.method != VIRTUAL_ACCOUNT
        or payment.status != DONE
        or payment.deposited_at is None
        or payment.cancels
    ):
        raise SandboxError(
            "NOT_DEPOSITED",
            f"입금이 완료된 (취소되지 않은) 가상계좌가 아닙니다. (현재 상태: {payment.status})",
            409,
        )
    values = {
        "status": WAITING_FOR_DEPOSIT,
        "approved_at": None,
        "deposited_at": None,
        "last_transaction_key": new_transaction_key(),
    }
    if not move(payment, DONE, values, deposit_callback=True):
        raise SandboxError("NOT_DEPOSITED", "다른 요청이 먼저 결제 상태를 바꿨습니다.", 409)
    return payment_json(payment)


def expire(payment_key: str) -> dict[str, Any]:
    """What a passed deadline does, now: a window (READY) or an unconfirmed payment
    (IN_PROGRESS) → EXPIRED with its webhook; a virtual account waiting for its deposit → past
    its due date (it stays WAITING_FOR_DEPOSIT, `expired` turns true, nothing is sent)."""
    payment = require_payment(payment_key)
    if payment.status in (READY, IN_PROGRESS):
        moved = expire_payment(payment)
    elif payment.status == WAITING_FOR_DEPOSIT:
        db.session.execute(
            update(SandboxPayment)
            .where(SandboxPayment.id == payment.id)
            .values(va_due_date=now(), updated_at=now())
            .execution_options(synchronize_session=False)
        )
        db.session.commit()
        db.session.refresh(payment)
        refresh_deadlines(payment)
        moved = True
    else:
        moved = payment.status == EXPIRED
    if not moved:
        raise SandboxError(
            "NOT_EXPIRABLE",
            f"결제창(READY), 승인 전(IN_PROGRESS) 또는 입금 대기(WAITING_FOR_DEPOSIT) 결제만 "
            f"만료시킬 수 있습니다. (현재 상태: {payment.status})",
            409,
        )
    return payment_json(payment)


def sandbox_view(payment: SandboxPayment) -> dict[str, Any]:
    """GET /sandbox/api/payments/<key>: the Payment plus what reached the sandbox for it."""
    counts = dict(
        db.session.execute(
            select(SandboxWebhook.status, func.count())
            .where(SandboxWebhook.payment_key == payment.payment_key)
            .group_by(SandboxWebhook.status)
        ).all()
    )
    data = payment_json(payment)
    data["sandbox"] = {
        "confirmRequests": payment.confirm_requests,
        "webhooksSent": int(counts.get("DELIVERED", 0)),
        "webhooksPending": int(counts.get("PENDING", 0)),
        "webhooksFailed": int(counts.get("FAILED", 0)),
        "scenario": payment.scenario,
    }
    return data


def count_confirm_request(payment_key: Any) -> None:
    """Count a confirm request that reached the sandbox for `payment_key` (if it exists), in
    its own transaction, whatever its answer turns out to be."""
    if not isinstance(payment_key, str) or not payment_key or len(payment_key) > 200:
        return
    db.session.execute(
        update(SandboxPayment)
        .where(SandboxPayment.payment_key == payment_key)
        .values(confirm_requests=SandboxPayment.confirm_requests + 1)
        .execution_options(synchronize_session=False)
    )
    db.session.commit()
