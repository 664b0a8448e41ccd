"""Bring an order in line with Toss's own record of its payment.

Every path that learns something from Toss (the confirm answer, a lookup after an unknown
outcome, a webhook re-check, reconciliation, a refund) ends in `apply_payment`, so there is one
reading of a Payment and every move goes through the order state machine. Callers commit.
"""

from __future__ import annotations

import logging

from ..core.errors import message_for
from ..core.models import Order, Payment
from ..core.orders import path, record, transition
from ..core.states import OrderStatus, Source
from ..extensions import db, toss
from ..toss import Payment as TossPayment
from ..toss import TossError

logger = logging.getLogger(__name__)

S = OrderStatus
NOT_FOUND_CODES = frozenset({"NOT_FOUND_PAYMENT", "NOT_FOUND"})


def lookup(order_id: str) -> tuple[bool, TossPayment | None]:
    """(answered, payment): Toss's payment for `order_id`, None when Toss has none. `answered`
    is False when Toss could not be asked, which must never be read as "no payment"."""
    try:
        return True, toss.client.get_payment_by_order(order_id)
    except TossError as exc:
        logger.info(
            "lookup did not settle order", extra={"order_id": order_id, "toss_code": exc.code}
        )
        return exc.code in NOT_FOUND_CODES, None


def target_status(order: Order, payment: TossPayment) -> OrderStatus | None:
    """The order status Toss's payment implies, or None when Toss has not decided yet."""
    st = payment.status
    if st == "DONE":
        return S.PAID
    if st == "WAITING_FOR_DEPOSIT":
        return S.AWAITING_DEPOSIT
    if st == "PARTIAL_CANCELED":
        return S.PARTIALLY_REFUNDED
    if st == "CANCELED":
        # A virtual account cancelled before any deposit gave nothing back: it was never paid.
        never_paid = order.status == S.AWAITING_DEPOSIT or (
            payment.virtual_account is not None
            and order.status != S.PAID
            and order.status != S.PARTIALLY_REFUNDED
        )
        return S.CANCELED if never_paid else S.REFUNDED
    if st in ("ABORTED", "EXPIRED"):
        if order.status == S.AWAITING_DEPOSIT:
            return S.EXPIRED
        if order.status in (S.CONFIRMING, S.NEEDS_RECONCILE):
            return S.PENDING  # the attempt died; the shopper may pay again
    return None  # READY / IN_PROGRESS: undecided


def apply_payment(
    order: Order, payment: TossPayment, source: Source, *, answer_to_confirm: bool = False
) -> None:
    """Move the order to what Toss's Payment says, step by allowed step; the caller commits.

    A Payment for another order or amount is never accepted and the order fails. It is
    cancelled at Toss when it is provably ours (our orderId, or the answer to our own confirm
    call); a payment of someone else's order found by a lookup is left alone, so a forged
    paymentKey can never refund another shopper. A stale or backward status is a no-op.
    """
    if payment.order_id != order.order_id or payment.total_amount != order.amount:
        ours = answer_to_confirm or payment.order_id == order.order_id
        _reject_mismatch(order, payment, source, cancel=ours)
        return
    target = target_status(order, payment)
    if target is None:
        return
    current = order.status
    if target == S.PENDING:
        code = payment.failure_code or f"PAYMENT_{payment.status}"
        transition(
            order,
            S.PENDING,
            source,
            code=code,
            values={
                "payment_key": None,
                "failure_code": code,
                "failure_message": message_for(payment.failure_code),
            },
        )
        return

    steps = path(current, target)
    if not steps and current != target:
        logger.info(
            "stale or impossible status ignored",
            extra={"order_id": order.order_id, "from": current, "toss_status": payment.status},
        )
        return
    if (
        current == target == S.PARTIALLY_REFUNDED
        and order.payment is not None
        and order.payment.balance_amount != payment.balance_amount
    ):
        # Another partial cancel: same status, new balance, still worth a timeline row.
        steps = [current]
    # The conditional transitions decide a race first (redirect vs webhook vs reconcile); only
    # the winner, or a writer refreshing an order already there, records the payment.
    for step in steps:
        moved = transition(
            order,
            step,
            source,
            payment_key=payment.payment_key,
            transaction_key=payment.last_transaction_key,
            values={"payment_key": payment.payment_key}
            if step in (S.PAID, S.AWAITING_DEPOSIT)
            else None,
        )
        if not moved:
            return  # someone else moved it meanwhile; their write stands
    _store_payment(order, payment)


def _store_payment(order: Order, p: TossPayment) -> Payment:
    row = order.payment or Payment(order_pk=order.id)
    row.payment_key = p.payment_key
    row.status = p.status
    row.method = p.method
    row.total_amount = p.total_amount
    row.balance_amount = p.balance_amount if p.balance_amount is not None else p.total_amount
    row.approved_at = p.approved_at
    row.last_transaction_key = p.last_transaction_key
    row.receipt_url = p.receipt_url
    if p.card:
        row.card_number = p.card.number
        row.card_approve_no = p.card.approve_no
    if p.virtual_account:
        row.va_bank_code = p.virtual_account.bank_code
        row.va_account_number = p.virtual_account.account_number
        row.va_customer_name = p.virtual_account.customer_name
        row.va_due_date = p.virtual_account.due_date
    if p.secret:
        row.secret = p.secret
    # The deposit-callback secret lives in its own column only.
    row.raw = {k: v for k, v in p.raw.items() if k != "secret"}
    if order.payment is None:
        db.session.add(row)
        order.payment = row
    return row


def _reject_mismatch(order: Order, payment: TossPayment, source: Source, *, cancel: bool) -> None:
    logger.critical(
        "ALERT: Toss payment does not match the order; cancelling",
        extra={
            "order_id": order.order_id,
            "toss_order_id": payment.order_id,
            "expected": order.amount,
            "toss_amount": payment.total_amount,
        },
    )
    detail = f"toss orderId={payment.order_id} totalAmount={payment.total_amount}"
    if cancel and payment.status in ("DONE", "WAITING_FOR_DEPOSIT"):
        try:
            toss.client.cancel(
                payment.payment_key,
                "주문 정보 불일치로 자동 취소",
                idempotency_key=f"mismatch-cancel-{payment.payment_key}"[:300],
            )
            detail += " cancelled at Toss"
        except TossError as exc:
            logger.critical(
                "ALERT: cancelling a mismatched payment failed",
                extra={"order_id": order.order_id, "toss_code": exc.code},
            )
            detail += f" cancel failed: {exc.code}"
    if order.status in (S.CONFIRMING, S.NEEDS_RECONCILE, S.PENDING):
        transition(
            order,
            S.FAILED,
            source,
            payment_key=payment.payment_key,
            code="PAYMENT_MISMATCH",
            detail=detail,
            values={
                "failure_code": "PAYMENT_MISMATCH",
                "failure_message": message_for("PAYMENT_MISMATCH"),
            },
        )
    else:
        record(order, "payment_mismatch", source, payment_key=payment.payment_key, detail=detail)
