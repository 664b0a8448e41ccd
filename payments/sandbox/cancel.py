"""POST /v1/payments/{paymentKey}/cancel: cancel all of a payment, or part of it."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import update

from . import outbox
from .db import db
from .errors import SandboxError
from .ids import new_transaction_key
from .models import (
    CANCELED,
    DONE,
    PARTIAL_CANCELED,
    VIRTUAL_ACCOUNT,
    WAITING_FOR_DEPOSIT,
    SandboxCancel,
    SandboxPayment,
)
from .payments import REFUND_PENDING, invalid, now, parse_amount, payment_json, require_payment

ACCOUNT_NUMBER_RE = re.compile(r"^[0-9-]{6,20}$")


@dataclass(frozen=True)
class RefundAccount:
    bank: str
    account_number: str
    holder_name: str


def _parse_refund_account(value: Any) -> RefundAccount | None:
    if value is None:
        return None
    bad = SandboxError(
        "INVALID_REFUND_ACCOUNT_INFO",
        "환불 계좌 정보(refundReceiveAccount: bank, accountNumber, holderName)가 올바르지 "
        "않습니다.",
    )
    if not isinstance(value, dict):
        raise bad
    bank, number, holder = value.get("bank"), value.get("accountNumber"), value.get("holderName")
    if not (isinstance(bank, str) and 0 < len(bank) <= 20):
        raise bad
    if not (isinstance(number, str) and ACCOUNT_NUMBER_RE.match(number)):
        raise bad
    if not (isinstance(holder, str) and 0 < len(holder.strip()) <= 60):
        raise bad
    return RefundAccount(bank, number, holder.strip())


def cancel(payment_key: str, body: Any) -> dict[str, Any]:
    """POST /v1/payments/{paymentKey}/cancel: full (no cancelAmount) or partial.

    Toss's reference (https://docs.tosspayments.com/reference, "결제 취소"): without
    cancelAmount the whole balance is cancelled; taxFreeAmount is the tax-free part of the cancel
    (default 0); an unpaid virtual account is cancelled only in full and needs no refund account
    (403 NOT_ALLOWED_PARTIAL_REFUND_WAITING_DEPOSIT otherwise, per the error-code reference); a
    deposited one needs refundReceiveAccount, and its refund is made 2 days after the cancel
    (refundStatus PENDING, then COMPLETED: `payments.refresh_deadlines`).
    """
    if not isinstance(body, dict):
        raise invalid("JSON 본문이 필요합니다.")
    reason = body.get("cancelReason")
    if not isinstance(reason, str) or not reason.strip() or len(reason) > 200:
        raise invalid("cancelReason은 1자 이상 200자 이하로 입력해주세요.")
    cancel_amount = None
    if body.get("cancelAmount") is not None:
        cancel_amount = parse_amount(body["cancelAmount"], "cancelAmount")
    refundable = _optional_amount(body, "refundableAmount")
    tax_free_asked = _optional_amount(body, "taxFreeAmount")
    account = _parse_refund_account(body.get("refundReceiveAccount"))

    payment = require_payment(payment_key)
    status = payment.status
    if status == CANCELED:
        raise SandboxError("ALREADY_CANCELED_PAYMENT")
    if status not in (DONE, PARTIAL_CANCELED, WAITING_FOR_DEPOSIT):
        raise SandboxError("NOT_CANCELABLE_PAYMENT")
    balance = payment.balance_amount
    if refundable is not None and refundable != balance:
        raise SandboxError("NOT_MATCHES_REFUNDABLE_AMOUNT")
    amount = balance if cancel_amount is None else cancel_amount
    if amount > balance:
        raise SandboxError("NOT_CANCELABLE_AMOUNT")
    if status == WAITING_FOR_DEPOSIT and amount != balance:
        raise SandboxError("NOT_ALLOWED_PARTIAL_REFUND_WAITING_DEPOSIT")
    deposited_va = payment.method == VIRTUAL_ACCOUNT and payment.deposited_at is not None
    if deposited_va and account is None:
        raise SandboxError(
            "INVALID_REFUND_ACCOUNT_INFO",
            "입금이 완료된 가상계좌 결제를 취소하려면 환불 받을 계좌 정보"
            "(refundReceiveAccount)가 필요합니다.",
        )
    tax_free = _tax_free_part(payment, amount, balance, tax_free_asked)

    t = now()
    new_balance = balance - amount
    tkey = new_transaction_key()
    values: dict[str, Any] = {
        "status": CANCELED if new_balance == 0 else PARTIAL_CANCELED,
        "balance_amount": new_balance,
        "last_transaction_key": tkey,
    }
    if deposited_va:
        values["va_refund_status"] = REFUND_PENDING
    result = db.session.execute(
        update(SandboxPayment)
        .where(
            SandboxPayment.id == payment.id,
            SandboxPayment.status == status,
            SandboxPayment.balance_amount == balance,
        )
        .values(updated_at=t, **values)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        db.session.rollback()
        raise SandboxError("FORBIDDEN_CONSECUTIVE_REQUEST")
    db.session.add(
        SandboxCancel(
            payment_id=payment.id,
            transaction_key=tkey,
            cancel_amount=amount,
            cancel_reason=reason.strip(),
            tax_free_amount=tax_free,
            refundable_amount=new_balance,
            cancel_status="DONE",
            refund_bank=account.bank if account else None,
            refund_holder_name=account.holder_name if account else None,
            canceled_at=t,
        )
    )
    db.session.flush()
    db.session.refresh(payment)
    data = payment_json(payment)
    outbox.status_changed(payment, data)
    if status == WAITING_FOR_DEPOSIT:
        # Toss sends DEPOSIT_CALLBACK "when the payment is canceled" too
        # (https://docs.tosspayments.com/en/webhooks).
        outbox.deposit_callback(payment)
    db.session.commit()
    return data


def _optional_amount(body: dict[str, Any], name: str) -> int | None:
    raw = body.get(name)
    if raw is None:
        return None
    return 0 if raw in (0, "0") else parse_amount(raw, name)


def _tax_free_part(payment: SandboxPayment, amount: int, balance: int, asked: int | None) -> int:
    """The tax-free part of a cancel of `amount`: what was asked (Toss's default 0), all of it
    that is left on a full cancel, and never less than the part the taxable balance cannot
    cover (how Toss splits a cancel the request does not split is not found in its docs)."""
    left = payment.tax_free_amount - sum(c.tax_free_amount for c in payment.cancels)
    if amount == balance:
        return left
    at_least = max(0, amount - (balance - left))
    part = max(asked or 0, at_least)
    if part > min(amount, left):
        raise SandboxError("NOT_CANCELABLE_AMOUNT", "취소할 수 있는 면세 금액을 초과했습니다.")
    return part
