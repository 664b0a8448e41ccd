"""Settle what nobody settled: unknown confirm outcomes, stale orders, overdue deposits.

Safe to run from cron on many machines at once: every move is a conditional transition, a
lookup is a read, and a repeated confirm reuses the stored Idempotency-Key, so Toss runs it once.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from flask import current_app
from sqlalchemy import select

from . import toss_client
from .extensions import db
from .models import Order, Payment, utcnow
from .orders import transition
from .refunds import settle_pending
from .states import OrderStatus, Source
from .sync import apply_payment
from .toss import Payment as TossPayment
from .toss import TossError
from .webhooks import prune

logger = logging.getLogger(__name__)

S = OrderStatus
KST = timezone(timedelta(hours=9))
CONFIRM_WINDOW = timedelta(minutes=10)  # Toss refuses confirm 10 minutes after authentication


@dataclass
class Report:
    settled: dict[str, int] = field(default_factory=dict)
    expired: int = 0
    pruned: int = 0
    still_unknown: int = 0
    refunds: dict[str, int] = field(default_factory=dict)  # PENDING refunds settled, by outcome

    def count(self, status: str) -> None:
        self.settled[status] = self.settled.get(status, 0) + 1


def reconcile(now: datetime | None = None, limit: int = 500) -> Report:
    """One pass over everything that needs Toss's word; see the module docstring."""
    now = now or utcnow()
    cfg = current_app.config
    report = Report()
    _unknown_outcomes(now, limit, report)
    _stale_pending(now - timedelta(minutes=cfg["ORDER_PAYABLE_MINUTES"]), limit, report)
    _overdue_deposits(now, limit, report)
    report.refunds = settle_pending(older_than_seconds=60, limit=limit)
    report.pruned = prune(cfg["WEBHOOK_RETENTION_DAYS"], now)
    logger.info(
        "reconcile finished",
        extra={
            "settled": report.settled,
            "expired": report.expired,
            "still_unknown": report.still_unknown,
            "pruned": report.pruned,
        },
    )
    return report


def _orders(where: object, limit: int) -> list[Order]:
    return list(db.session.scalars(select(Order).where(where).order_by(Order.id).limit(limit)))


NOT_FOUND_CODES = frozenset({"NOT_FOUND_PAYMENT", "NOT_FOUND"})


def _lookup(order: Order) -> tuple[bool, TossPayment | None]:
    """(answered, payment): Toss's record of the order, None when Toss has none; answered is
    False when Toss could not be asked, which must never be read as "no payment"."""
    try:
        return True, toss_client().get_payment_by_order(order.order_id)
    except TossError as exc:
        if exc.code in NOT_FOUND_CODES:
            return True, None
        logger.info(
            "reconcile lookup failed", extra={"order_id": order.order_id, "toss_code": exc.code}
        )
        return False, None


def _unknown_outcomes(now: datetime, limit: int, report: Report) -> None:
    quiet = now - timedelta(minutes=1)  # leave in-flight confirmations alone
    stuck = Order.status.in_((S.CONFIRMING.value, S.NEEDS_RECONCILE.value)) & (
        Order.updated_at < quiet
    )
    for order in _orders(stuck, limit):
        answered, payment = _lookup(order)
        if answered and payment is not None:
            apply_payment(order, payment, Source.RECONCILE)
            db.session.commit()
        if S(order.status) in (S.CONFIRMING, S.NEEDS_RECONCILE):
            # Toss has no decided payment, or could not be asked: finishing the confirmation
            # with its own key is safe either way; giving up needs Toss's word that none exists.
            _confirm_again(order, now, toss_has_no_payment=answered and payment is None)
        status = S(order.status)
        if status in (S.CONFIRMING, S.NEEDS_RECONCILE):
            report.still_unknown += 1
        else:
            report.count(status.value)


def _confirm_again(order: Order, now: datetime, *, toss_has_no_payment: bool) -> None:
    """Finish the confirmation we started (same Idempotency-Key) while Toss still allows it.
    After the window, with no payment at Toss, no money can have moved: payable again."""
    started = order.confirm_started_at or order.updated_at
    if order.payment_key and order.confirm_idempotency_key and now - started < CONFIRM_WINDOW:
        try:
            payment = toss_client().confirm(
                order.payment_key,
                order.order_id,
                order.amount,
                idempotency_key=order.confirm_idempotency_key,
            )
        except TossError as exc:
            if not (exc.retryable or exc.outcome_unknown):
                _attempt_over(order, exc.code)
            return
        apply_payment(order, payment, Source.RECONCILE, answer_to_confirm=True)
        db.session.commit()
        return
    if toss_has_no_payment and now - started >= CONFIRM_WINDOW + timedelta(minutes=1):
        _attempt_over(order, "NOT_FOUND_PAYMENT_SESSION")


def _attempt_over(order: Order, code: str) -> None:
    if order.status == S.CONFIRMING:
        transition(order, S.NEEDS_RECONCILE, Source.RECONCILE, code=code)
    transition(
        order,
        S.PENDING,
        Source.RECONCILE,
        code=code,
        values={"payment_key": None, "failure_code": code},
    )
    db.session.commit()


def _stale_pending(cutoff: datetime, limit: int, report: Report) -> None:
    for order in _orders((Order.status == S.PENDING.value) & (Order.created_at < cutoff), limit):
        # A payment may exist that we never heard of (a lost redirect and webhook).
        answered, payment = _lookup(order)
        if not answered:
            continue
        if payment is not None and payment.status in ("DONE", "WAITING_FOR_DEPOSIT"):
            apply_payment(order, payment, Source.RECONCILE)
            db.session.commit()
            report.count(order.status)
            continue
        if transition(order, S.EXPIRED, Source.RECONCILE, code="ORDER_EXPIRED"):
            report.expired += 1
        db.session.commit()


def _overdue_deposits(now: datetime, limit: int, report: Report) -> None:
    handled = 0
    for order in _awaiting_deposit():
        if handled >= limit:
            break
        due = _parse_due(order.payment)
        if due is None or due > now:
            continue
        handled += 1
        answered, payment = _lookup(order)
        if not answered:
            continue  # never expire on silence: a deposit may be on its way
        if payment is not None:
            apply_payment(order, payment, Source.RECONCILE)
            db.session.commit()
        if order.status == S.AWAITING_DEPOSIT:
            # Toss still waits, but the due date has passed: no deposit can arrive any more.
            if transition(order, S.EXPIRED, Source.RECONCILE, code="DEPOSIT_DUE_PASSED"):
                report.expired += 1
            db.session.commit()
        else:
            report.count(order.status)


def _awaiting_deposit(batch: int = 500) -> Iterator[Order]:
    """Every AWAITING_DEPOSIT order, in id batches: the due date lives in Toss's ISO string, so
    it is compared here, and a limit in SQL would starve overdue orders behind future ones."""
    last_id = 0
    while True:
        rows = _orders((Order.status == S.AWAITING_DEPOSIT.value) & (Order.id > last_id), batch)
        if not rows:
            return
        yield from rows
        last_id = rows[-1].id


def _parse_due(payment: Payment | None) -> datetime | None:
    if payment is None or not payment.va_due_date:
        return None
    try:
        due = datetime.fromisoformat(payment.va_due_date)
    except ValueError:
        logger.warning("unreadable virtual-account due date", extra={"value": payment.va_due_date})
        return None
    # Toss writes +09:00; a bare time is Korean time too.
    return due if due.tzinfo else due.replace(tzinfo=KST)
