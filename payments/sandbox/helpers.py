"""What the test helpers and the dashboard do that Toss's API does not: a buyer's deposit, an
expiry on demand, the sandbox's own view of a payment."""

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
    VIRTUAL_ACCOUNT,
    WAITING_FOR_DEPOSIT,
    SandboxPayment,
    SandboxWebhook,
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


def deposit(order_id: str, body: Any) -> dict[str, Any]:
    """The buyer pays the virtual account of `order_id`: WAITING_FOR_DEPOSIT → DONE."""
    payment = find_payment_by_order(order_id)
    if payment is None:
        raise SandboxError("NOT_FOUND_PAYMENT")
    refresh_deadlines(payment)
    if payment.method != VIRTUAL_ACCOUNT or payment.status != WAITING_FOR_DEPOSIT:
        raise SandboxError(
            "NOT_WAITING_FOR_DEPOSIT",
            f"입금 대기 중인 가상계좌가 아닙니다. (현재 상태: {payment.status})",
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
        raise SandboxError(
            "NOT_WAITING_FOR_DEPOSIT",
            f"입금 대기 중인 가상계좌가 아닙니다. (현재 상태: {payment.status})",
            409,
        )
    return payment_json(payment)


def expire(payment_key: str) -> dict[str, Any]:
    """Expire a payment as if its confirm deadline or deposit due date had passed."""
    payment = require_payment(payment_key)
    if payment.status == IN_PROGRESS:
        moved = move(payment, IN_PROGRESS, {"status": EXPIRED})
    elif payment.status == WAITING_FOR_DEPOSIT:
        moved = move(payment, WAITING_FOR_DEPOSIT, {"status": EXPIRED, "va_expired": True})
    else:
        moved = payment.status == EXPIRED
    if not moved:
        raise SandboxError(
            "NOT_EXPIRABLE",
            f"승인 전(IN_PROGRESS) 또는 입금 대기(WAITING_FOR_DEPOSIT) 결제만 만료시킬 수 "
            f"있습니다. (현재 상태: {payment.status})",
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
