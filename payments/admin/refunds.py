"""Operator refunds (Toss cancel): full or partial, never more than was paid.

Phases: validate → write a PENDING Refund with its own Idempotency-Key (at most one in flight
per order, enforced by a partial unique index) → call Toss with `refundableAmount` as a guard →
commit Toss's answer. An unknown outcome leaves the refund PENDING; `reconcile` repeats the call
with the same key, which Toss answers from its record instead of cancelling twice.
"""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Mapping
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from ..checkout.settle import apply_payment
from ..core import metrics, stock
from ..core.clock import utcnow
from ..core.errors import ServiceError, invalid, message_for
from ..core.models import Payment, Refund
from ..core.orders import find_order, record
from ..core.states import REFUNDABLE, OrderStatus, RefundStatus, Source
from ..extensions import db, toss
from ..toss import Payment as TossPayment
from ..toss import RefundAccount, TossError

logger = logging.getLogger(__name__)

_BANK_RE = re.compile(r"^[0-9A-Z]{2,20}$")
_ACCOUNT_RE = re.compile(r"^[0-9]{6,20}$")
_TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]{16,43}$")


def parse_refund_form(
    form: Mapping[str, str],
) -> tuple[int | None, str, RefundAccount | None]:
    """(amount or None for the whole balance, reason, refund account or None) from a form."""
    raw_amount = (form.get("amount") or "").strip().replace(",", "")
    amount: int | None = None
    if raw_amount:
        if not re.fullmatch(r"[0-9]{1,12}", raw_amount) or int(raw_amount) <= 0:
            raise invalid(
                "환불 금액은 1원 이상의 정수여야 합니다. (amount must be a positive integer)"
            )
        amount = int(raw_amount)
    reason = (form.get("reason") or "").strip()
    if not reason:
        raise invalid("환불 사유를 입력해주세요. (a reason is required)")
    if len(reason) > 200:
        raise invalid(
            "환불 사유는 200자 이내로 입력해주세요. (reason is limited to 200 characters)"
        )
    bank = (form.get("bank") or "").strip()
    number = (form.get("account_number") or "").strip().replace("-", "")
    holder = (form.get("holder_name") or "").strip()
    account = None
    if bank or number or holder:
        if not _BANK_RE.match(bank):
            raise invalid("환불 받을 은행을 선택해주세요. (choose the refund bank)")
        if not _ACCOUNT_RE.match(number):
            raise invalid("계좌번호는 숫자 6~20자리여야 합니다. (account number: 6-20 digits)")
        if not 1 <= len(holder) <= 60:
            raise invalid("예금주 이름을 60자 이내로 입력해주세요. (holder name: 1-60 characters)")
        account = RefundAccount(bank, number, holder)
    return amount, reason, account


def parse_restock(form: Mapping[str, str]) -> bool:
    """Whether the operator ticked "재입고" (return the order's units to stock)."""
    return form.get("restock") in ("1", "on", "true")


def refund_request_key(form: Mapping[str, str]) -> str | None:
    """The one-time key a refund form carries (None when absent or malformed)."""
    token = (form.get("refund_token") or "").strip()
    return token if _TOKEN_RE.match(token) else None


def request_refund(
    order_id: str,
    amount: int | None,
    reason: str,
    account: RefundAccount | None,
    operator: str,
    *,
    request_key: str | None = None,
    restock: bool = False,
) -> Refund:
    """Refund `amount` (None: the whole remaining balance) of a paid order through Toss.

    `request_key` identifies one submitted form: a repeat (double click, resubmit) gets the
    first refund's result instead of a second refund. `restock` (a refund of the whole
    remaining balance only) returns the order's units to stock once the refund is done.
    """
    if request_key is not None:
        earlier = db.session.execute(
            select(Refund).where(Refund.refund_key == f"refund-{request_key}")
        ).scalar_one_or_none()
        if earlier is not None:
            return _repeat(earlier, order_id)
    refund = _open_refund(order_id, amount, reason, account, operator, request_key, restock)
    return _call_toss(refund)


def _repeat(refund: Refund, order_id: str) -> Refund:
    if refund.order.order_id != order_id:
        raise invalid("이 환불 요청은 다른 주문의 것입니다. (refund token of another order)")
    if refund.status == RefundStatus.DONE:
        return refund
    if refund.status == RefundStatus.PENDING:
        raise ServiceError("REFUND_PENDING", http_status=202)
    code = refund.failure_code or "REFUND_FAILED"
    raise ServiceError(code, refund.failure_message or message_for(code), 409)


def _open_refund(
    order_id: str,
    amount: int | None,
    reason: str,
    account: RefundAccount | None,
    operator: str,
    request_key: str | None,
    restock: bool = False,
) -> Refund:
    order = find_order(order_id)
    if order is None:
        raise ServiceError("ORDER_NOT_FOUND", http_status=404)
    # Row lock on PostgreSQL: concurrent refunds of one order read the balance one at a time.
    payment = db.session.execute(
        select(Payment).where(Payment.order_pk == order.id).with_for_update()
    ).scalar_one_or_none()
    if payment is None or order.status not in REFUNDABLE:
        raise ServiceError("REFUND_NOT_ALLOWED", http_status=409)
    balance = payment.balance_amount
    wanted = balance if amount is None else amount
    if wanted <= 0 or wanted > balance:
        raise ServiceError(
            "REFUND_EXCEEDS_BALANCE",
            f"환불 가능 금액({balance:,}원)을 초과했습니다.",
            http_status=400,
        )
    if restock and wanted != balance:
        raise ServiceError(
            "RESTOCK_NEEDS_FULL_REFUND",
            "재입고는 남은 금액 전액을 환불할 때만 할 수 있습니다.",
            http_status=400,
        )
    # Toss refunds a deposited virtual account only to a bank account the buyer names.
    if payment.is_virtual_account and account is None:
        raise ServiceError("REFUND_ACCOUNT_REQUIRED", http_status=400)
    refund = Refund(
        order_pk=order.id,
        refund_key=f"refund-{request_key or secrets.token_urlsafe(24)}",
        amount=wanted,
        full=wanted == balance,
        restock=restock,
        balance_before=balance,
        reason=reason,
        status=RefundStatus.PENDING,
        requested_by=operator[:64],
        refund_bank=account.bank if account else None,
        refund_account_number=account.account_number if account else None,
        refund_holder_name=account.holder_name if account else None,
    )
    db.session.add(refund)
    record(order, "refund_requested", Source.ADMIN, detail=f"amount={wanted} by {operator}")
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        raise ServiceError("REFUND_IN_PROGRESS", http_status=409) from None
    logger.info(
        "refund requested",
        extra={"order_id": order.order_id, "refund_id": refund.id, "amount": wanted},
    )
    return refund


def _call_toss(refund: Refund) -> Refund:
    order = refund.order
    payment = order.payment
    assert payment is not None
    try:
        answer = toss.client.cancel(
            payment.payment_key,
            refund.reason,
            idempotency_key=refund.refund_key,
            cancel_amount=None if refund.full else refund.amount,
            refundable_amount=refund.balance_before,
            refund_account=refund.refund_account,
        )
    except TossError as exc:
        if exc.outcome_unknown or exc.retryable:
            logger.warning(
                "refund outcome unknown; reconcile will settle it",
                extra={"refund_id": refund.id, "toss_code": exc.code},
            )
            metrics.REFUNDS.labels("pending").inc()
            raise ServiceError("REFUND_PENDING", http_status=202) from None
        _fail(refund, exc.code, message_for(exc.code))
        raise ServiceError(exc.code, message_for(exc.code), http_status=409) from None
    _settle(refund, answer)
    return refund


def _settle(refund: Refund, answer: TossPayment) -> None:
    """Record Toss's answer to this refund's cancel and move the order with it."""
    order = refund.order
    expected_balance = refund.balance_before - refund.amount
    if answer.balance_amount is not None and answer.balance_amount > expected_balance:
        # Toss kept more than we asked to give back: never report a refund that did not happen.
        _fail(refund, "REFUND_NOT_APPLIED", "Toss의 잔액이 환불을 반영하지 않았습니다.")
        raise ServiceError("REFUND_NOT_APPLIED", "환불이 반영되지 않았습니다.", 409)
    apply_payment(order, answer, Source.ADMIN)
    if refund.restock and order.status == OrderStatus.REFUNDED:
        # Once, whoever settles the refund (this request or reconcile's retry).
        stock.release(order, Source.ADMIN, "restock")
    refund.status = RefundStatus.DONE
    refund.completed_at = utcnow()
    refund.transaction_key = answer.cancels[-1].transaction_key if answer.cancels else None
    db.session.commit()
    metrics.REFUNDS.labels("done").inc()
    metrics.REFUNDED_WON.inc(refund.amount)
    logger.info(
        "refund done",
        extra={"order_id": order.order_id, "refund_id": refund.id, "amount": refund.amount},
    )


def _fail(refund: Refund, code: str, message: str) -> None:
    refund.status = RefundStatus.FAILED
    refund.failure_code = code
    refund.failure_message = message[:255]
    refund.completed_at = utcnow()
    record(refund.order, "refund_failed", Source.ADMIN, code=code, detail=f"amount={refund.amount}")
    db.session.commit()
    metrics.REFUNDS.labels("failed").inc()
    logger.warning(
        "refund refused",
        extra={"refund_id": refund.id, "order_id": refund.order.order_id, "toss_code": code},
    )


def settle_pending(older_than_seconds: int = 60, limit: int = 100) -> dict[str, int]:
    """Repeat the cancel of refunds left PENDING (same key: Toss answers from its record)."""
    cutoff = utcnow() - timedelta(seconds=older_than_seconds)
    outcome: dict[str, int] = {}
    pending = db.session.scalars(
        select(Refund)
        .where(Refund.status == RefundStatus.PENDING, Refund.created_at < cutoff)
        .order_by(Refund.id)
        .limit(limit)
    ).all()
    for refund in pending:
        try:
            _call_toss(refund)
        except ServiceError as exc:
            outcome[exc.code] = outcome.get(exc.code, 0) + 1
            continue
        outcome["DONE"] = outcome.get("DONE", 0) + 1
    return outcome
