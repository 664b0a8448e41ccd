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
    CARD,
    CONFIRMED,
    DONE,
    EXPIRED,
    IN_PROGRESS,
    VIRTUAL_ACCOUNT,
    WAITING_FOR_DEPOSIT,
    SandboxPayment,
)
from .payments import (
    REFUND_NONE,
    invalid,
    move,
    now,
    parse_amount,
    payment_json,
    require_payment,
)
from .state import state

logger = logging.getLogger(__name__)

VA_BANKS = ("20", "88", "04", "11", "81")  # 우리, 신한, KB국민, NH농협, 하나

# Scenarios whose first confirm fails without doing the work, and the error it answers: Toss's
# PROVIDER_ERROR is a 400 ("일시적인 오류가 발생했습니다. 잠시 후 다시 시도해주세요.",
# https://docs.tosspayments.com/reference/error-codes); server_error keeps a 5xx of the same
# kind. Neither answer is kept under its Idempotency-Key (idempotency.py), so the retry Toss
# asks for can succeed.
FAILING_FIRST_CONFIRM = {
    "provider_error": "PROVIDER_ERROR",
    "server_error": "FAILED_PAYMENT_INTERNAL_SYSTEM_PROCESSING",
}

# The secret key a payment's confirm takes: the widget family's for a widget payment, the API
# family's for a payment-window one (https://docs.tosspayments.com/guides/v2/get-started/migration-guide).
_KEY_FAMILY_HINT = {
    "gsk": "잘못된 시크릿키 연동 정보 입니다. 결제위젯으로 요청한 결제는 결제위젯 연동 키의 "
    "시크릿 키(test_gsk_/live_gsk_)로 승인해주세요.",
    "sk": "잘못된 시크릿키 연동 정보 입니다. 결제창으로 요청한 결제는 API 개별 연동 키의 "
    "시크릿 키(test_sk_/live_sk_)로 승인해주세요.",
}


def _family_for(payment: SandboxPayment) -> str:
    """ "gsk" or "sk": the secret-key family that confirms `payment` (by its client key)."""
    return "sk" if state().keys.client_family(payment.client_key) == "ck" else "gsk"


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
    if secret_family != _family_for(payment):
        raise SandboxError("INVALID_API_KEY", _KEY_FAMILY_HINT[_family_for(payment)])
    if payment.status == EXPIRED:
        raise SandboxError("NOT_FOUND_PAYMENT_SESSION")
    if payment.status in CONFIRMED:
        raise SandboxError("ALREADY_PROCESSED_PAYMENT")
    if payment.status == ABORTED:
        raise SandboxError(payment.failure_code or "PAY_PROCESS_ABORTED", payment.failure_message)
    if payment.status != IN_PROGRESS:
        # READY: the shopper has not authenticated this window (yet).
        raise SandboxError("NOT_FOUND_PAYMENT_SESSION")
    if order_id != payment.order_id:
        # Toss's error tables do not say which code another orderId gets; the sandbox answers
        # as for a payment session it cannot find (404 NOT_FOUND_PAYMENT_SESSION).
        raise SandboxError("NOT_FOUND_PAYMENT_SESSION")
    if amount != payment.total_amount:
        # No code for a different amount is found in Toss's docs: the generic one.
        raise invalid("결제 금액(amount)이 결제 요청 금액과 일치하지 않습니다.")

    scenario = payment.scenario or "approve"
    if scenario in FAILING_FIRST_CONFIRM:
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
            raise SandboxError(FAILING_FIRST_CONFIRM[scenario])

    t = now()
    settings = state().settings
    if scenario == "insufficient_balance":
        # A refused approval: ABORTED with the refusal as its failure, announced like every
        # status change (an ABORTED PAYMENT_STATUS_CHANGED shown on Toss's forum,
        # https://techchat.tosspayments.com/m/1131524149819478036; `failure`: "결제 승인에
        # 실패하면 응답으로 받는 에러 객체", https://docs.tosspayments.com/reference).
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
            "va_refund_status": REFUND_NONE,
            "va_expired": False,
        }
    elif payment.method == CARD:  # a 계좌이체 (TRANSFER) payment has no card
        values |= {
            "card_number": f"4330{digits(4)}****{digits(3)}*",
            "card_approve_no": digits(8),
            "card_issuer_code": "71",
        }
    try:
        # Flushed, not committed: idempotency.run commits it with the answer it stores. An
        # issued virtual account is announced by DEPOSIT_CALLBACK too
        # (https://docs.tosspayments.com/en/webhooks: "when the virtual account is issued").
        won = move(
            payment,
            IN_PROGRESS,
            values,
            deposit_callback=payment.method == VIRTUAL_ACCOUNT,
            commit=False,
        )
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
