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
from .errors import ERRORS, SandboxError
from .ids import vat_of
from .models import (
    CANCELED,
    CARD,
    CONFIRMED,
    EXPIRED,
    IN_PROGRESS,
    READY,
    TRANSFER,
    VIRTUAL_ACCOUNT,
    WAITING_FOR_DEPOSIT,
    SandboxPayment,
)
from .state import state

MID = "tvivarepublica"
API_VERSION = "2022-11-16"
METHOD_LABELS = {CARD: "카드", VIRTUAL_ACCOUNT: "가상계좌", TRANSFER: "계좌이체"}
# Banks a sandbox transfer (계좌이체) is paid from: 우리, 신한, KB국민, NH농협, 하나.
TRANSFER_BANKS = ("20", "88", "04", "11", "81")
MAX_AMOUNT = 10**12 - 1
# Confirm must follow the shopper's authentication within this.
CONFIRM_WINDOW = timedelta(minutes=10)
# The payment window itself lives this long.
WINDOW_LIFETIME = timedelta(minutes=30)
# virtualAccount.refundStatus values (https://docs.tosspayments.com/reference, Payment 객체).
REFUND_NONE = "NONE"
REFUND_PENDING = "PENDING"
REFUND_COMPLETED = "COMPLETED"


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
    """The payment with this paymentKey (every window has one from the moment it opens)."""
    if not payment_key or len(payment_key) > 200:
        return None
    payment: SandboxPayment | None = db.session.scalar(
        select(SandboxPayment).where(SandboxPayment.payment_key == payment_key)
    )
    return payment


def find_payment_by_order(order_id: str) -> SandboxPayment | None:
    """The payment Toss's lookup by orderId answers with: the confirmed one if any, else the
    latest window of that orderId.

    Toss's reference describes the lookup as finding "the approved payment" by orderId
    (https://docs.tosspayments.com/reference, "orderId로 결제 조회"); which payment it answers
    with while an orderId has several windows and none is approved is not found in Toss's docs.
    The sandbox answers the latest (the one the shopper is most likely still in).
    """
    if not order_id or len(order_id) > 64:
        return None
    confirmed: SandboxPayment | None = db.session.scalar(
        select(SandboxPayment).where(SandboxPayment.confirmed_order_id == order_id)
    )
    if confirmed is not None:
        return confirmed
    latest: SandboxPayment | None = db.session.scalar(
        select(SandboxPayment)
        .where(SandboxPayment.order_id == order_id)
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
    outbox.status_changed(payment, payment_json(payment))
    if deposit_callback:
        outbox.deposit_callback(payment)
    if commit:
        db.session.commit()
    else:
        db.session.flush()
    return True


def expire(payment: SandboxPayment) -> bool:
    """READY or IN_PROGRESS → EXPIRED with Toss's failure, announced by PAYMENT_STATUS_CHANGED.

    The failure object is the one an expired payment shows on Toss's forum
    (https://techchat.tosspayments.com/m/1410526054635933798); the webhook is the expiry Toss's
    reference links to its PAYMENT_STATUS_CHANGED event (https://docs.tosspayments.com/reference,
    "결제 승인").
    """
    if payment.status not in (READY, IN_PROGRESS):
        return False
    return move(
        payment,
        payment.status,
        {
            "status": EXPIRED,
            "failure_code": "EXPIRED_PAYMENT",
            "failure_message": ERRORS["EXPIRED_PAYMENT"][1],
        },
    )


def overdue(payment: SandboxPayment, t: datetime) -> bool:
    """Past its deadline: a window not authenticated within 30 minutes, or an authenticated
    payment not confirmed within 10 (https://docs.tosspayments.com/en/webhooks)."""
    if payment.status == READY:
        return t >= payment.window_expires_at
    return (
        payment.status == IN_PROGRESS
        and payment.authenticated_at is not None
        and t >= payment.authenticated_at + CONFIRM_WINDOW
    )


def refresh_deadlines(payment: SandboxPayment) -> None:
    """Apply what the sandbox clock says has happened to `payment` by now: an overdue window or
    confirm → EXPIRED (with its webhook); a virtual account past its due date → `expired`
    (its status stays WAITING_FOR_DEPOSIT and nothing is sent); a pending refund to a deposited
    virtual account → COMPLETED once its time has come."""
    t = now()
    if overdue(payment, t):
        expire(payment)
    elif (
        payment.status == WAITING_FOR_DEPOSIT
        and not payment.va_expired
        and payment.va_due_date is not None
        and t >= payment.va_due_date
    ):
        # Toss documents `virtualAccount.expired` ("가상계좌의 만료 여부",
        # https://docs.tosspayments.com/reference) and that a deposit after the due date fails
        # (ibid., "가상계좌 발급 요청", dueDate). That the status stays and no webhook is sent is
        # not found in Toss's docs: the conservative reading, so a shop must expire its own
        # order instead of waiting for Toss to say so.
        _quietly(payment, {"va_expired": True}, SandboxPayment.va_expired.is_(False))
    if payment.va_refund_status == REFUND_PENDING:
        done_at = refund_completes_at(payment)
        if done_at is not None and t >= done_at:
            # Only the refund status changes (no payment status): nothing is sent.
            _quietly(
                payment,
                {"va_refund_status": REFUND_COMPLETED},
                SandboxPayment.va_refund_status == REFUND_PENDING,
                SandboxPayment.last_transaction_key == payment.last_transaction_key,
            )


def refund_completes_at(payment: SandboxPayment) -> datetime | None:
    """When the pending refund of a deposited virtual account completes: its last cancel plus
    `virtual_account_refund_hours` (Toss: "환불은 취소 요청 후 2일 후에 진행됩니다",
    https://docs.tosspayments.com/reference, "결제 취소", refundReceiveAccount)."""
    if not payment.cancels:
        return None
    last = max(c.canceled_at for c in payment.cancels)
    return last + timedelta(hours=state().settings.virtual_account_refund_hours)


def _quietly(payment: SandboxPayment, values: Mapping[str, Any], *guards: Any) -> None:
    """A change that is not a status change (so no webhook), if `guards` still hold."""
    db.session.execute(
        update(SandboxPayment)
        .where(SandboxPayment.id == payment.id, *guards)
        .values({"updated_at": now(), **values})
        .execution_options(synchronize_session=False)
    )
    db.session.commit()
    db.session.refresh(payment)


def sweep(limit: int = 100) -> int:
    """Apply every deadline that passed without waiting for someone to look (so EXPIRED webhooks
    go out and refunds complete on the sandbox clock); how many payments it looked at."""
    t = now()
    # A pending refund's payment was last updated by that refund's cancel.
    refund_delay = timedelta(hours=state().settings.virtual_account_refund_hours)
    ids = list(
        db.session.scalars(
            select(SandboxPayment.id)
            .where(
                or_(
                    (SandboxPayment.status == IN_PROGRESS)
                    & (SandboxPayment.authenticated_at <= t - CONFIRM_WINDOW),
                    (SandboxPayment.status == READY) & (SandboxPayment.window_expires_at <= t),
                    (SandboxPayment.status == WAITING_FOR_DEPOSIT)
                    & SandboxPayment.va_expired.is_(False)
                    & (SandboxPayment.va_due_date <= t),
                    (SandboxPayment.va_refund_status == REFUND_PENDING)
                    & (SandboxPayment.updated_at <= t - refund_delay),
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
    tax_free, vat, supplied = amounts(p)
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
            "refundStatus": p.va_refund_status or REFUND_NONE,
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
        "useEscrow": uses_escrow(p),
        "cultureExpense": False,
        "card": card,
        "virtualAccount": virtual_account,
        "transfer": _transfer(p),
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
        "suppliedAmount": supplied,
        "vat": vat,
        "taxFreeAmount": tax_free,
        "metadata": None,
        "method": _method_label(p),
        "version": API_VERSION,
    }


def amounts(p: SandboxPayment) -> tuple[int, int, int]:
    """(taxFreeAmount, vat, suppliedAmount) of what is left of `p` after its cancels.

    Toss's reference: all three change with every cancel and partial cancel, and vat is
    round((amount − taxFreeAmount) / 11) (https://docs.tosspayments.com/reference, Payment
    객체). After a full cancel they are 0, as in Toss's cancel example
    (https://docs.tosspayments.com/common/apis/cancel-payment); after a partial cancel they are
    those of the balance, as a partially cancelled payment shown on Toss's forum has them
    (https://techchat.tosspayments.com/m/1237958998343417856: balance 544.68 → vat 49.52,
    supplied 495.16).
    """
    tax_free = p.tax_free_amount - sum(c.tax_free_amount for c in p.cancels)
    vat = vat_of(p.balance_amount, tax_free)
    return tax_free, vat, p.balance_amount - tax_free - vat


def uses_escrow(p: SandboxPayment) -> bool:
    """The Payment's `useEscrow` (a boolean in Toss's payments, e.g.
    https://techchat.tosspayments.com/m/1444558775297249371): true once the shopper has a method
    whose requestPayment options said `useEscrow: true`. The sandbox's window offers no escrow
    choice of its own, so without `useEscrow: true` a payment never uses escrow."""
    if _method_label(p) is None or not p.escrow_methods:
        return False
    return p.method in p.escrow_methods.split(",")


def _transfer(p: SandboxPayment) -> dict[str, Any] | None:
    """The `transfer` object of an approved 계좌이체 payment: {bankCode, settlementStatus} (Toss's
    Payment object, https://docs.tosspayments.com/reference; the same two fields as the
    tosspayments-rs crate's `Transfer`). The sandbox keeps no bank for it: one of
    TRANSFER_BANKS, fixed by the paymentKey; it never settles (INCOMPLETED)."""
    if p.method != TRANSFER or p.approved_at is None:
        return None
    bank = TRANSFER_BANKS[sum(map(ord, p.payment_key or "")) % len(TRANSFER_BANKS)]
    return {"bankCode": bank, "settlementStatus": "INCOMPLETED"}


def _method_label(p: SandboxPayment) -> str | None:
    # No method before the shopper picked one: READY, or expired without authenticating (as the
    # expired payment on Toss's forum shows it, https://techchat.tosspayments.com/m/1410526054635933798).
    if p.status == READY or (p.status == EXPIRED and p.authenticated_at is None):
        return None
    return METHOD_LABELS.get(p.method)
