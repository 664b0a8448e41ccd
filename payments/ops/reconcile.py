"""Settle what nobody settled: unknown confirm outcomes, stale orders, overdue deposits.

Safe to run from cron on many machines at once: every move is a conditional transition, a
lookup is a read, and a repeated confirm reuses the stored Idempotency-Key, so Toss runs it once.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import ColumnElement, select

from ..admin.refunds import settle_pending
from ..checkout.confirm import finish_unknown
from ..checkout.settle import apply_payment, fetch, lookup
from ..core.clock import KST, utcnow
from ..core.models import Order, Payment
from ..core.orders import transition
from ..core.states import IN_FLIGHT, OrderStatus, Source
from ..extensions import db
from ..webhooks.worker import prune

logger = logging.getLogger(__name__)

S = OrderStatus


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


def _orders(where: ColumnElement[bool], limit: int) -> list[Order]:
    return list(db.session.scalars(select(Order).where(where).order_by(Order.id).limit(limit)))


def _unknown_outcomes(now: datetime, limit: int, report: Report) -> None:
    quiet = now - timedelta(minutes=1)  # leave in-flight confirmations alone
    stuck = Order.status.in_(IN_FLIGHT) & (Order.updated_at < quiet)
    for order in _orders(stuck, limit):
        status = finish_unknown(order, now)
        if status in IN_FLIGHT:
            report.still_unknown += 1
        else:
            report.count(status.value)


def _stale_pending(cutoff: datetime, limit: int, report: Report) -> None:
    for order in _orders((Order.status == S.PENDING) & (Order.created_at < cutoff), limit):
        # A payment may exist that we never heard of (a lost redirect and webhook).
        answered, payment = lookup(order.order_id)
        if not answered:
            continue
        if payment is not None and payment.status in ("DONE", "WAITING_FOR_DEPOSIT"):
            apply_payment(order, payment, Source.RECONCILE, by_order=True)
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
        # The account's own payment, by its paymentKey: by orderId Toss may answer about
        # another window of the order, which says nothing about this account.
        answered, payment = fetch(order.payment.payment_key) if order.payment else (False, None)
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
        rows = _orders((Order.status == S.AWAITING_DEPOSIT) & (Order.id > last_id), batch)
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
