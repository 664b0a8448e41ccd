"""Bring an order in line with Toss's own record of its payment.

Every path that learns something from Toss (the confirm answer, a lookup after an unknown
outcome, a webhook re-check, reconciliation, a refund) ends in `apply_payment`, so there is one
reading of a Payment and every move goes through the order state machine. Callers commit.

Toss creates a paymentKey for every payment window, so one order can have several payments: a
window the shopper abandoned (it expires after 30 minutes, announced by webhook), a refused
confirm (ABORTED, announced too), the one being confirmed. Only the payment in hand decides the
order (`payment_in_hand`); another window's payment is noted on the timeline and otherwise
ignored, except that money Toss holds (DONE, or a virtual account awaiting it) settles an order
that is not settled yet.
"""

from __future__ import annotations

import logging

from sqlalchemy import select

from ..core.errors import message_for
from ..core.models import AuditEntry, CashReceipt, CashReceiptStatus, Order, Payment
from ..core.orders import path, record, transition
from ..core.states import OrderStatus, Source
from ..extensions import db, toss
from ..mail import outbox
from ..toss import CashReceipt as TossCashReceipt
from ..toss import Payment as TossPayment
from ..toss import TossError

logger = logging.getLogger(__name__)

S = OrderStatus
NOT_FOUND_CODES = frozenset({"NOT_FOUND_PAYMENT", "NOT_FOUND"})
# Toss's word that a payment ended without money: a window left to expire, a refused approval.
# https://docs.tosspayments.com/reference/using-api/webhook-events (PAYMENT_STATUS_CHANGED)
ENDED_UNPAID = frozenset({"EXPIRED", "ABORTED"})
# Money Toss holds for the order, or a virtual account waiting for it: the only answers that may
# settle an order whose own attempt is another payment (or that has none).
SETTLING = frozenset({"DONE", "WAITING_FOR_DEPOSIT"})
UNDECIDED = frozenset({"READY", "IN_PROGRESS"})
UNSETTLED = frozenset({S.PENDING, S.CONFIRMING, S.NEEDS_RECONCILE})
OTHER_PAYMENT = "other_payment"


def lookup(order_id: str) -> tuple[bool, TossPayment | None]:
    """(answered, payment): Toss's payment for `order_id` (GET /v1/payments/orders/{orderId}),
    None when Toss has none. `answered` is False when Toss could not be asked, which must never
    be read as "no payment". With several windows Toss may answer with any of the order's
    payments, so callers pass the answer on with `by_order=True`."""
    try:
        return True, toss.client.get_payment_by_order(order_id)
    except TossError as exc:
        logger.info(
            "lookup did not settle order", extra={"order_id": order_id, "toss_code": exc.code}
        )
        return exc.code in NOT_FOUND_CODES, None


def fetch(payment_key: str) -> tuple[bool, TossPayment | None]:
    """(answered, payment): Toss's record of one payment (GET /v1/payments/{paymentKey}), None
    when Toss does not know the key; `answered` as in `lookup`."""
    try:
        return True, toss.client.get_payment(payment_key)
    except TossError as exc:
        logger.info("payment lookup failed", extra={"toss_code": exc.code})
        return exc.code in NOT_FOUND_CODES, None


def payment_in_hand(order: Order) -> str | None:
    """The paymentKey whose status decides the order: the attempt being confirmed (or the one
    that settled it), else the stored payment's; None for an order nobody is paying."""
    if order.payment_key:
        return order.payment_key
    return order.payment.payment_key if order.payment is not None else None


def target_status(order: Order, payment: TossPayment) -> OrderStatus | None:
    """The order status the payment in hand implies, or None when it implies no move."""
    st = payment.status
    if st == "DONE":
        return S.PAID
    if st == "WAITING_FOR_DEPOSIT":
        return S.AWAITING_DEPOSIT
    if st == "PARTIAL_CANCELED" and payment.balance_amount != 0:
        return S.PARTIALLY_REFUNDED
    if st in ("CANCELED", "PARTIAL_CANCELED"):
        # Nothing left: refunded if money was ever paid, else the order was cancelled unpaid.
        return S.REFUNDED if _was_paid(order, payment) else S.CANCELED
    if st in ENDED_UNPAID and order.status == S.AWAITING_DEPOSIT:
        return S.EXPIRED
    if st == "EXPIRED" and order.status in (S.CONFIRMING, S.NEEDS_RECONCILE):
        # Toss expired the attempt: it can no longer be approved, the shopper may pay again.
        return S.PENDING
    # READY / IN_PROGRESS: undecided. ABORTED while confirming: the confirm call in flight, or
    # reconcile after Toss's confirm window, decides (a retry with the same Idempotency-Key
    # may still be approved), never a status report.
    return None


def _was_paid(order: Order, payment: TossPayment) -> bool:
    if order.status in (S.PAID, S.PARTIALLY_REFUNDED, S.REFUNDED):
        return True
    va = payment.virtual_account
    if va is None:
        return True  # a card or transfer payment is cancelled only after its approval
    # A virtual account cancelled before any deposit gave nothing back. A deposited one is
    # refunded to the buyer's bank account, and its `virtualAccount.refundStatus` leaves NONE
    # ("no refund requested") for PENDING, COMPLETED, FAILED or PARTIAL_FAILED (Payment object,
    # https://docs.tosspayments.com/reference).
    return va.refund_status not in (None, "NONE")


def apply_payment(
    order: Order,
    payment: TossPayment,
    source: Source,
    *,
    answer_to_confirm: bool = False,
    by_order: bool = False,
) -> None:
    """Move the order to what Toss's Payment says, step by allowed step; the caller commits.

    Only the payment in hand decides: another window's payment that ended unpaid (EXPIRED,
    ABORTED) never moves the order, and any other payment of the order moves it only when it is
    DONE or WAITING_FOR_DEPOSIT and the order is not settled yet; otherwise it is recorded on the
    timeline (`other_payment`). `by_order` marks an answer to a lookup by orderId, which may be
    about any window: it never makes the order payable again.

    A Payment for another order or amount is never accepted and the order fails. It is
    cancelled at Toss when it is provably ours (our orderId, or the answer to our own confirm
    call); a payment of someone else's order found by a lookup is left alone, so a forged
    paymentKey can never refund another shopper. A stale or backward status is a no-op.
    """
    same_order = payment.order_id == order.order_id
    in_hand = payment.payment_key == payment_in_hand(order)
    if same_order and not in_hand and payment.status in ENDED_UNPAID:
        _other_payment(order, payment, source)  # an older window: no money, no move
        return
    if not same_order or payment.total_amount != order.amount:
        _reject_mismatch(order, payment, source, cancel=answer_to_confirm or same_order)
        return
    if not in_hand and (payment.status not in SETTLING or order.status not in UNSETTLED):
        _other_payment(order, payment, source)
        return
    target = target_status(order, payment)
    if target is None:
        return
    current = order.status
    if target == S.PENDING:
        if by_order:
            return  # only Toss's word about the attempt's own paymentKey reopens the order
        code = payment.failure_code or f"PAYMENT_{payment.status}"
        transition(
            order,
            S.PENDING,
            source,
            payment_key=payment.payment_key,
            code=code,
            values={
                "payment_key": None,
                "failure_code": code,
                "failure_message": message_for(code),
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
    moves: list[tuple[OrderStatus, OrderStatus]] = []
    for step in steps:
        before = order.status
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
        moves.append((before, step))
    _store_payment(order, payment)
    _announce(order, payment, moves)


def _announce(
    order: Order, payment: TossPayment, moves: list[tuple[OrderStatus, OrderStatus]]
) -> None:
    """Queue the buyer's e-mail for each move this writer won, in its transaction: whichever
    path applied Toss's answer first (success URL, API, webhook, reconcile, refund) mails it,
    and the outbox's dedupe key stops a second one."""
    event = payment.last_transaction_key or payment.payment_key
    for before, step in moves:
        if step == S.AWAITING_DEPOSIT:
            outbox.enqueue(order, "va_issued", ref=f"{payment.payment_key}:{event}")
        elif step == S.PAID:
            kind = "deposit" if before == S.AWAITING_DEPOSIT else "paid"
            outbox.enqueue(order, kind, ref=event if kind == "deposit" else payment.payment_key)
        elif step in (S.PARTIALLY_REFUNDED, S.REFUNDED):
            last = payment.cancels[-1] if payment.cancels else None
            balance = payment.balance_amount or 0
            outbox.enqueue(
                order,
                "refund",
                ref=(last.transaction_key if last else None) or event,
                refunded=last.cancel_amount if last and last.cancel_amount else 0,
                balance=balance,
            )


def _other_payment(order: Order, payment: TossPayment, source: Source) -> None:
    """Note a payment of this order that is not the one in hand (once per key and status)."""
    status = payment.status
    if status in UNDECIDED:
        return  # a window still open says nothing yet
    extra = {"order_id": order.order_id, "toss_status": status, "order_status": order.status}
    if status in ("DONE", "PARTIAL_CANCELED"):
        # Money held twice for one order (or for an order closed without it): an operator
        # decides whether to refund; nothing here moves money on its own.
        logger.critical("ALERT: another payment of this order holds money", extra=extra)
    elif status == "WAITING_FOR_DEPOSIT":
        logger.warning("another virtual account was issued for this order", extra=extra)
    else:
        logger.info("payment of another window ignored", extra=extra)
    noted = db.session.scalar(
        select(AuditEntry.id)
        .where(
            AuditEntry.order_pk == order.id,
            AuditEntry.event == OTHER_PAYMENT,
            AuditEntry.payment_key == payment.payment_key,
            AuditEntry.code == status,
        )
        .limit(1)
    )
    if noted is not None:
        return
    failure = f" ({payment.failure_code})" if payment.failure_code else ""
    record(
        order,
        OTHER_PAYMENT,
        source,
        payment_key=payment.payment_key,
        code=status,
        detail=f"Toss {status}{failure} for another payment of this order; "
        f"the order stays {order.status}",
    )


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
    if p.cash_receipt is not None and p.cash_receipt.receipt_key:
        _store_cash_receipt(order, p.cash_receipt)
    return row


def _store_cash_receipt(order: Order, issued: TossCashReceipt) -> None:
    """The receipt Toss issued with the payment (the buyer asked for one in the payment window):
    the order's one receipt, shown to shopper and operator."""
    row = db.session.scalars(select(CashReceipt).where(CashReceipt.order_pk == order.id)).first()
    if row is None:
        row = CashReceipt(order_pk=order.id, origin="payment", canceled_amount=0)
        db.session.add(row)
    elif row.origin != "payment":
        return  # an operator's receipt already stands for this order
    row.receipt_type = (issued.type or "")[:8]
    row.receipt_key = issued.receipt_key
    row.issue_number = issued.issue_number
    row.receipt_url = issued.receipt_url
    row.issue_status = issued.issue_status
    row.amount = issued.amount or order.amount
    row.tax_free_amount = issued.tax_free_amount or 0
    row.status = CashReceiptStatus.ISSUED


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
