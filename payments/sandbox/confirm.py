"""POST /v1/payments/confirm: approve a payment the shopper authenticated, at most once."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError

from .db import db
from .errors import ERRORS, SandboxError
from .ids import digits, new_secret, new_transaction_key
from .models import (
    ABORTED,
    CONFIRMED,
    DONE,
    EXPIRED,
    IN_PROGRESS,
    VIRTUAL_ACCOUNT,
    WAITING_FOR_DEPOSIT,
    SandboxPayment,
)
from .payments import invalid, move, now, parse_amount, payment_json, require_payment
from .state import state

logger = logging.getLogger(__name__)

VA_BANKS = ("20", "88", "04", "11", "81")  # 우리, 신한, KB국민, NH농협, 하나


@dataclass(frozen=True)
class ConfirmResult:
    payment: dict[str, Any]
    # slow_confirm: seconds to wait before answering (the work is already committed).
    delay: float = 0.0


def confirm(body: Any, secret_family: str) -> ConfirmResult:
    """POST /v1/payments/confirm: approve an authenticated payment, at most once.

    The approval is flushed, not committed: the caller (idempotency.run) commits it together
    with the answer it stores."""
    if not isinstance(body, dict):
        raise invalid("JSON 본문이 필요합니다.")
    payment_key = body.get("paymentKey")
    order_id = body.get("orderId")
    if not isinstance(payment_key, str) or not payment_key or len(payment_key) > 200:
        raise invalid("paymentKey가 필요합니다.")
    if not isinstance(order_id, str) or not order_id or len(order_id) > 64:
        raise invalid("orderId가 필요합니다.")
    amount = parse_amount(body.get("amount"))

    payment = require_payment(payment_key)
    if secret_family != "gsk":
        raise SandboxError(
            "FORBIDDEN_REQUEST",
            "결제위젯으로 생성된 결제는 결제위젯 연동 키의 시크릿 키(test_gsk_/live_gsk_)로 "
            "승인해야 합니다. API 개별 연동 키(test_sk_/live_sk_)는 사용할 수 없습니다.",
            403,
        )
    if payment.status == EXPIRED:
        raise SandboxError("NOT_FOUND_PAYMENT_SESSION")
    if payment.status in CONFIRMED:
        raise SandboxError("ALREADY_PROCESSED_PAYMENT")
    if payment.status == ABORTED:
        raise SandboxError(payment.failure_code or "PAY_PROCESS_ABORTED", payment.failure_message)
    if payment.status != IN_PROGRESS:
        raise SandboxError("NOT_FOUND_PAYMENT_SESSION")
    if order_id != payment.order_id:
        raise invalid("orderId가 결제 정보와 일치하지 않습니다.")
    if amount != payment.total_amount:
        raise invalid("결제 금액(amount)이 결제 요청 금액과 일치하지 않습니다.")

    scenario = payment.scenario or "approve"
    if scenario == "provider_error":
        # Fails without doing anything; a retry (same key or not) goes through.
        result = db.session.execute(
            update(SandboxPayment)
            .where(
                SandboxPayment.id == payment.id,
                SandboxPayment.status == IN_PROGRESS,
                SandboxPayment.provider_errors_left > 0,
            )
            .values(provider_errors_left=SandboxPayment.provider_errors_left - 1)
            .execution_options(synchronize_session=False)
        )
        db.session.commit()
        if result.rowcount == 1:  # type: ignore[attr-defined]
            raise SandboxError("FAILED_PAYMENT_INTERNAL_SYSTEM_PROCESSING")

    t = now()
    settings = state().settings
    if scenario == "insufficient_balance":
        code = "REJECT_CARD_PAYMENT"
        values: dict[str, Any] = {
            "status": ABORTED,
            "failure_code": code,
            "failure_message": ERRORS[code][1],
        }
        if move(payment, IN_PROGRESS, values):
            raise SandboxError(code)
        return _confirm_lost_race(payment)

    values = {
        "status": DONE,
        "approved_at": t,
        "confirmed_order_id": payment.order_id,
        "last_transaction_key": new_transaction_key(),
    }
    if payment.method == VIRTUAL_ACCOUNT:
        values |= {
            "status": WAITING_FOR_DEPOSIT,
            "approved_at": None,
            "secret": new_secret(),
            "va_account_number": digits(14),
            "va_bank_code": VA_BANKS[int(digits(1)) % len(VA_BANKS)],
            "va_customer_name": payment.customer_name or "김토스",
            "va_due_date": t + timedelta(days=settings.virtual_account_days),
            "va_refund_status": "NONE",
            "va_expired": False,
        }
    else:
        values |= {
            "card_number": f"4330{digits(4)}****{digits(3)}*",
            "card_approve_no": digits(8),
            "card_issuer_code": "71",
        }
    try:
        # Flushed, not committed: idempotency.run commits it with the answer it stores.
        won = move(payment, IN_PROGRESS, values, commit=False)
    except IntegrityError:
        # Another window of this orderId was confirmed first (confirmed_order_id is unique).
        db.session.rollback()
        raise SandboxError("DUPLICATED_ORDER_ID") from None
    if not won:
        return _confirm_lost_race(payment)
    logger.debug(
        "sandbox payment confirmed",
        extra={"payment_key": payment.payment_key, "status": payment.status},
    )
    delay = settings.slow_confirm_seconds if scenario == "slow_confirm" else 0.0
    return ConfirmResult(payment_json(payment), delay)


def _confirm_lost_race(payment: SandboxPayment) -> ConfirmResult:
    # A concurrent confirm moved the payment first: answer what a later call would get.
    if payment.status in CONFIRMED:
        raise SandboxError("ALREADY_PROCESSED_PAYMENT")
    if payment.status == ABORTED:
        raise SandboxError(payment.failure_code or "PAY_PROCESS_ABORTED", payment.failure_message)
    raise SandboxError("NOT_FOUND_PAYMENT_SESSION")
