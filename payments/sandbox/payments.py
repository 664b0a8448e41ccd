"""A sandbox payment: finding it, moving its status (with its webhooks), its deadlines, and the
Payment object Toss answers with.

Every status change is a conditional UPDATE on the status we read (rowcount decides who won),
in the same transaction as the webhook rows it causes, so concurrent requests can never confirm
or cancel one payment twice and a change is never committed without its webhooks.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import or_, select, update

from . import outbox
from .clock import toss_time
from .db import db
from .errors import SandboxError
from .ids import vat_of
from .models import (
    CANCELED,
    CARD,
    CONFIRMED,
    EXPIRED,
    IN_PROGRESS,
    READY,
    VIRTUAL_ACCOUNT,
    WAITING_FOR_DEPOSIT,
    SandboxPayment,
)
from .state import state

MID = "tvivarepublica"
API_VERSION = "2022-11-16"
METHOD_LABELS = {CARD: "카드", VIRTUAL_ACCOUNT: "가상계좌"}
MAX_AMOUNT = 10**12 - 1
# Confirm must follow the shopper's authentication within this.
CONFIRM_WINDOW = timedelta(minutes=10)
# The payment window itself lives this long.
WINDOW_LIFETIME = timedelta(minutes=30)


def now() -> datetime:
    """Sandbox time."""
    return state().now()


def invalid(message: str) -> SandboxError:
    return SandboxError("INVALID_REQUEST", message, 400)


def parse_amount(value: Any, name: str = "amount") -> int:
    """An integer KRW amount given as a number or a numeric string (Toss accepts both)."""
    parsed: int | None = None
    if isinstance(value, bool):
        parsed = None
    elif isinstance(value, int):
        parsed = value
    elif (isinstance(value, float) and value.is_integer()) or (
        isinstance(value, str) and re.fullmatch(r"[0-9]{1,13}", value)
    ):
        parsed = int(value)
    if parsed is None or not 0 < parsed <= MAX_AMOUNT:
        raise invalid(f"{name}는 양의 정수여야 합니다.")
    return parsed


def find_payment(payment_key: str) -> SandboxPayment | None:
    """The payment with this paymentKey (windows not finished yet have none)."""
    if not payment_key or len(payment_key) > 200:
        return None
    payment: SandboxPayment | None = db.session.scalar(
        select(SandboxPayment).where(SandboxPayment.payment_key == payment_key)
    )
    return payment


def find_payment_by_order(order_id: str) -> SandboxPayment | None:
    """The payment of an orderId: the confirmed one if any, else the latest finished window."""
    if not order_id or len(order_id) > 64:
        return None
    confirmed: SandboxPayment | None = db.session.scalar(
        select(SandboxPayment).where(SandboxPayment.confirmed_order_id == order_id)
    )
    if confirmed is not None:
        return confirmed
    latest: SandboxPayment | None = db.session.scalar(
        select(SandboxPayment)
        .where(SandboxPayment.order_id == order_id, SandboxPayment.payment_key.is_not(None))
        .order_by(SandboxPayment.id.desc())
        .limit(1)
    )
    return latest


def require_payment(payment_key: str) -> SandboxPayment:
    payment = find_payment(payment_key)
    if payment is None:
        raise SandboxError("NOT_FOUND_PAYMENT")
    refresh_deadlines(payment)
    return payment


def move(
    payment: SandboxPayment,
    from_status: str,
    values: Mapping[str, Any],
    *,
    deposit_callback: bool = False,
    commit: bool = True,
) -> bool:
    """Conditionally move `payment` out of `from_status` (setting `values`), with the webhooks
    Toss sends for it, and commit unless told not to (the caller's transaction then carries it).

    False (and nothing written) when another request moved it first.
    """
    fields = {"updated_at": now(), **values}
    moved = db.session.execute(
        update(SandboxPayment)
        .where(SandboxPayment.id == payment.id, SandboxPayment.status == from_status)
        .values(fields)
    )
    if moved.rowcount != 1:  # type: ignore[attr-defined]
        db.session.rollback()
        db.session.refresh(payment)
        return False
    if payment.payment_key:
        outbox.status_changed(payment, payment_json(payment))
        if deposit_callback:
            outbox.deposit_callback(payment)
    if commit:
        db.session.commit()
    else:
        db.session.flush()
    return True


def refresh_deadlines(payment: SandboxPayment) -> None:
    """Apply a deadline that passed (10-minute confirm, window, deposit due date) → EXPIRED."""
    t = now()
    if (
        payment.status == IN_PROGRESS
        and payment.authenticated_at is not None
        and t >= payment.authenticated_at + CONFIRM_WINDOW
    ) or (payment.status == READY and t >= payment.window_expires_at):
        move(payment, payment.status, {"status": EXPIRED})
    elif (
        payment.status == WAITING_FOR_DEPOSIT
        and payment.va_due_date is not None
        and t >= payment.va_due_date
    ):
        move(payment, WAITING_FOR_DEPOSIT, {"status": EXPIRED, "va_expired": True})


def sweep_expired(limit: int = 100) -> int:
    """Expire what is overdue without waiting for someone to look (so EXPIRED webhooks go out)."""
    t = now()
    ids = list(
        db.session.scalars(
            select(SandboxPayment.id)
            .where(
                or_(
                    (SandboxPayment.status == IN_PROGRESS)
                    & (SandboxPayment.authenticated_at <= t - CONFIRM_WINDOW),
                    (SandboxPayment.status == READY) & (SandboxPayment.window_expires_at <= t),
                    (SandboxPayment.status == WAITING_FOR_DEPOSIT)
                    & (SandboxPayment.va_due_date <= t),
                )
            )
            .limit(limit)
        )
    )
    db.session.commit()
    for pid in ids:
        payment = db.session.get(SandboxPayment, pid)
        if payment is not None:
            refresh_deadlines(payment)
    return len(ids)


def payment_json(p: SandboxPayment) -> dict[str, Any]:
    """Toss's Payment object (version 2022-11-16) for `p`."""
    confirmed = p.status in CONFIRMED
    vat = vat_of(p.total_amount, p.tax_free_amount)
    card = None
    if p.card_number:
        card = {
            "issuerCode": p.card_issuer_code,
            "acquirerCode": p.card_issuer_code,
            "number": p.card_number,
            "installmentPlanMonths": 0,
            "isInterestFree": False,
            "interestPayer": None,
            "approveNo": p.card_approve_no,
            "useCardPoint": False,
            "cardType": "신용",
            "ownerType": "개인",
            "acquireStatus": "CANCELED" if p.status == CANCELED else "READY",
            "amount": p.total_amount,
        }
    virtual_account = None
    if p.va_account_number:
        virtual_account = {
            "accountType": "일반",
            "accountNumber": p.va_account_number,
            "bankCode": p.va_bank_code,
            "customerName": p.va_customer_name,
            "dueDate": toss_time(p.va_due_date),
            "refundStatus": p.va_refund_status or "NONE",
            "expired": bool(p.va_expired),
            "settlementStatus": "COMPLETED" if p.deposited_at else "INCOMPLETED",
            "refundReceiveAccount": None,
            "depositorName": None,
        }
    cancels = [
        {
            "transactionKey": c.transaction_key,
            "cancelReason": c.cancel_reason,
            "taxExemptionAmount": 0,
            "canceledAt": toss_time(c.canceled_at),
            "transferDiscountAmount": 0,
            "easyPayDiscountAmount": 0,
            "receiptKey": None,
            "cancelAmount": c.cancel_amount,
            "taxFreeAmount": c.tax_free_amount,
            "refundableAmount": c.refundable_amount,
            "cancelStatus": c.cancel_status,
            "cancelRequestId": None,
        }
        for c in p.cancels
    ]
    key = p.payment_key
    return {
        "mId": MID,
        "lastTransactionKey": p.last_transaction_key,
        "paymentKey": key,
        "orderId": p.order_id,
        "orderName": p.order_name,
        "taxExemptionAmount": 0,
        "status": p.status,
        "requestedAt": toss_time(p.requested_at),
        "approvedAt": toss_time(p.approved_at),
        "useEscrow": False,
        "cultureExpense": False,
        "card": card,
        "virtualAccount": virtual_account,
        "transfer": None,
        "mobilePhone": None,
        "giftCertificate": None,
        "cashReceipt": None,
        "cashReceipts": None,
        "discount": None,
        "cancels": cancels or None,
        "secret": p.secret,
        "type": "NORMAL",
        "easyPay": None,
        "country": "KR",
        "failure": (
            {"code": p.failure_code, "message": p.failure_message} if p.failure_code else None
        ),
        "isPartialCancelable": True,
        "receipt": {"url": f"{p.origin}/sandbox/receipt/{key}"} if confirmed and key else None,
        "checkout": {"url": f"{p.origin}/sandbox/window/{p.session_token}"},
        "currency": "KRW",
        "totalAmount": p.total_amount,
        "balanceAmount": p.balance_amount,
        "suppliedAmount": p.total_amount - p.tax_free_amount - vat,
        "vat": vat,
        "taxFreeAmount": p.tax_free_amount,
        "metadata": None,
        "method": METHOD_LABELS.get(p.method) if p.status != READY else None,
        "version": API_VERSION,
    }
