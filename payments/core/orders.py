"""The one order state machine: the table of allowed moves, and `transition()`, through which
every status write goes.

A move is a conditional UPDATE on the status we read, so the database decides races between
tabs, the JSON API, webhooks and workers: the loser's UPDATE matches no row and changes nothing.
A move that ends an unpaid order gives its stock back (`stock.py`). Callers (the services)
commit.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import joinedload

from ..extensions import db
from . import stock
from .clock import utcnow
from .models import AuditEntry, Order, Payment, Refund
from .states import OrderStatus, Source

logger = logging.getLogger(__name__)

S = OrderStatus

ALLOWED: dict[OrderStatus, frozenset[OrderStatus]] = {
    # CONFIRMING → PENDING: Toss refused the card, the shopper may pay again.
    S.PENDING: frozenset({S.CONFIRMING, S.EXPIRED, S.CANCELED, S.FAILED}),
    S.CONFIRMING: frozenset(
        {S.PAID, S.AWAITING_DEPOSIT, S.FAILED, S.NEEDS_RECONCILE, S.PENDING, S.EXPIRED}
    ),
    S.NEEDS_RECONCILE: frozenset({S.PAID, S.AWAITING_DEPOSIT, S.FAILED, S.PENDING, S.EXPIRED}),
    S.AWAITING_DEPOSIT: frozenset({S.PAID, S.EXPIRED, S.CANCELED}),
    # A failed deposit can move a virtual-account payment from DONE back to WAITING_FOR_DEPOSIT.
    S.PAID: frozenset({S.PARTIALLY_REFUNDED, S.REFUNDED, S.AWAITING_DEPOSIT}),
    S.PARTIALLY_REFUNDED: frozenset({S.PARTIALLY_REFUNDED, S.REFUNDED}),
    # Terminal: nothing moves an order out of these.
    S.REFUNDED: frozenset(),
    S.FAILED: frozenset(),
    S.EXPIRED: frozenset(),
    S.CANCELED: frozenset(),
}


def can_move(src: OrderStatus, dst: OrderStatus) -> bool:
    return dst in ALLOWED[src]


def path(src: OrderStatus, dst: OrderStatus) -> list[OrderStatus]:
    """The shortest chain of allowed moves from `src` to `dst` (excluding `src`); [] if none.

    Lets one Toss answer move an order several steps (CONFIRMING → PAID → REFUNDED) while every
    step still passes the table and gets its own audit row.
    """
    if src == dst:
        return []
    frontier: list[list[OrderStatus]] = [[src]]
    seen = {src}
    while frontier:
        nxt: list[list[OrderStatus]] = []
        for chain in frontier:
            for step in sorted(ALLOWED[chain[-1]]):
                if step == dst:
                    return [*chain[1:], step]
                if step not in seen:
                    seen.add(step)
                    nxt.append([*chain, step])
        frontier = nxt
    return []


ORDER_ID_RE = re.compile(r"^[A-Za-z0-9_-]{6,64}$")
PAYMENT_KEY_RE = re.compile(r"^[A-Za-z0-9_\-.:]{1,200}$")


class InvalidTransition(RuntimeError):
    """A write the state machine forbids: a bug in the caller, never user input."""


def transition(
    order: Order,
    to: OrderStatus,
    source: Source,
    *,
    payment_key: str | None = None,
    transaction_key: str | None = None,
    code: str | None = None,
    detail: str | None = None,
    values: Mapping[str, Any] | None = None,
) -> bool:
    """Move `order` to `to` if it is still in the status we read; False when another writer won
    (the order is then expired, so the next read sees the winner's write).

    The audit row joins the caller's transaction, so a move never commits without it.
    """
    src = order.status
    if not can_move(src, to):
        raise InvalidTransition(f"{order.order_id}: {src} → {to} is not allowed")
    fields: dict[str, Any] = {"status": to, "updated_at": utcnow(), **(values or {})}
    moved = db.session.execute(
        update(Order).where(Order.id == order.id, Order.status == src).values(fields)
    )
    if moved.rowcount != 1:  # type: ignore[attr-defined]
        db.session.expire(order)
        return False
    db.session.add(
        AuditEntry(
            order_pk=order.id,
            from_status=src,
            to_status=to,
            source=source,
            payment_key=payment_key or fields.get("payment_key", order.payment_key),
            transaction_key=transaction_key,
            code=code,
            detail=detail,
        )
    )
    logger.info(
        "order status changed",
        extra={"order_id": order.order_id, "from": src.value, "to": to.value, "source": source},
    )
    if to in stock.UNPAID_ENDS:
        # Every path that ends an unpaid order (expiry, a failure, a cancelled virtual account)
        # comes through here, so its units go back with the move, in the same transaction.
        stock.release(order, source, to.value)
    return True


def record(
    order: Order,
    event: str,
    source: Source,
    *,
    payment_key: str | None = None,
    code: str | None = None,
    detail: str | None = None,
) -> None:
    """An audit row for something notable that did not change the status; the caller commits."""
    db.session.add(
        AuditEntry(
            order_pk=order.id,
            event=event,
            from_status=order.status,
            to_status=order.status,
            source=source,
            payment_key=payment_key,
            code=code,
            detail=(detail or "")[:500] or None,
        )
    )


def find_order(order_id: object) -> Order | None:
    """The order with this orderId (its payment row loaded in the same query), or None for an
    unknown or ill-formed orderId."""
    if not isinstance(order_id, str) or not ORDER_ID_RE.match(order_id):
        return None
    query = select(Order).where(Order.order_id == order_id).options(joinedload(Order.payment))
    return db.session.execute(query).scalar_one_or_none()


def find_order_by_payment_key(payment_key: object) -> Order | None:
    """The order whose confirmation carries this paymentKey, or whose stored payment has it."""
    if not isinstance(payment_key, str) or not PAYMENT_KEY_RE.match(payment_key):
        return None
    in_flight = select(Order).where(Order.payment_key == payment_key)
    order = db.session.execute(in_flight).scalar_one_or_none()
    if order is None:
        stored = select(Order).join(Payment).where(Payment.payment_key == payment_key)
        order = db.session.execute(stored).scalar_one_or_none()
    return order


def find_order_by_transaction_key(transaction_key: object) -> Order | None:
    """The order one of whose refunds, or whose stored payment's latest transaction, has this
    Toss transaction key (a cancel's `transactionKey`), or None."""
    if not isinstance(transaction_key, str) or not 0 < len(transaction_key) <= 64:
        return None
    refunded = select(Order).join(Refund).where(Refund.transaction_key == transaction_key)
    order = db.session.execute(refunded.limit(1)).scalar_one_or_none()
    if order is None:
        stored = select(Order).join(Payment).where(Payment.last_transaction_key == transaction_key)
        order = db.session.execute(stored.limit(1)).scalar_one_or_none()
    return order
