"""Settle what nobody settled: unknown confirm outcomes, stale orders, overdue deposits.

Safe to run from cron on many machines at once: every move is a conditional transition, a
lookup is a read, and a repeated confirm reuses the stored Idempotency-Key, so Toss runs it once.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import select

from . import toss_client
from .extensions import db
from .models import Order, Payment, utcnow
from .orders import transition
from .states import OrderStatus, Source
from .sync import apply_payment, settle_by_lookup
from .toss import TossError
from .webhooks import prune

logger = logging.getLogger(__name__)

S = OrderStatus
CONFIRM_WINDOW = timedelta(minutes=10)  # Toss refuses confirm 10 minutes after authentication


@dataclass
class Report:
    settled: dict[str, int] = field(default_factory=dict)
    expired: int = 0
    pruned: int = 0
    still_unknown: int = 0

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


def _unknown_outcomes(now: datetime, limit: int, report: Report) -> None:
    quiet = now - timedelta(minutes=1)  # leave in-flight confirmations alone
    stuck = Order.status.in_((S.CONFIRMING.value, S.NEEDS_RECONCILE.value)) & (
        Order.updated_at < quiet
    )
    for order in _orders(stuck, limit):
        status = settle_by_lookup(order, Source.RECONCILE)
        if status in (S.CONFIRMING, S.NEEDS_RECONCILE):
            status = _confirm_again(order, now)
        if status in (S.CONFIRMING, S.NEEDS_RECONCILE):
            report.still_unknown += 1
        else:
            report.count(status.value)


def _confirm_again(order: Order, now: datetime) -> OrderStatus:
    """Toss has no decided payment for the order: finish the confirmation we started (same
    Idempotency-Key) while Toss still allows it; after the window no money can have moved."""
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
            if exc.retryable or exc.outcome_unknown:
                return S(order.status)
            _attempt_over(order, exc.code)
            return S(order.status)
        apply_payment(order, payment, Source.RECONCILE, answer_to_confirm=True)
        db.session.commit()
        return S(order.status)
    if now - started >= CONFIRM_WINDOW + timedelta(minutes=1):
        _attempt_over(order, "NOT_FOUND_PAYMENT_SESSION")
    return S(order.status)


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
        try:
            payment = toss_client().get_payment_by_order(order.order_id)
        except TossError as exc:
            if exc.code not in ("NOT_FOUND_PAYMENT", "NOT_FOUND"):
                continue
            payment = None
        if payment is not None and payment.status in ("DONE", "WAITING_FOR_DEPOSIT"):
            apply_payment(order, payment, Source.RECONCILE)
            db.session.commit()
            report.count(order.status)
            continue
        if transition(order, S.EXPIRED, Source.RECONCILE, code="ORDER_EXPIRED"):
            report.expired += 1
        db.session.commit()


def _overdue_deposits(now: datetime, limit: int, report: Report) -> None:
    awaiting = _orders(Order.status == S.AWAITING_DEPOSIT.value, limit)
    for order in awaiting:
        due = _parse_due(order.payment)
        if due is None or due > now:
            continue
        status = settle_by_lookup(order, Source.RECONCILE)
        if status is S.AWAITING_DEPOSIT:
            # Toss still waits, but the due date has passed: no deposit can arrive any more.
            if transition(order, S.EXPIRED, Source.RECONCILE, code="DEPOSIT_DUE_PASSED"):
                report.expired += 1
            db.session.commit()
        else:
            report.count(status.value)


def _parse_due(payment: Payment | None) -> datetime | None:
    if payment is None or not payment.va_due_date:
        return None
    try:
        return datetime.fromisoformat(payment.va_due_date)
    except ValueError:
        return None
