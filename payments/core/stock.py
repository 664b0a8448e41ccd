"""Product stock: an order takes its quantities when it is created and gives them back once.

Both directions are conditional UPDATEs, so the database settles races without reading first:
- take: `stock = stock - q WHERE stock >= q`, product by product in id order (two orders of the
  same products lock rows in the same order and cannot deadlock); a row that does not match
  means sold out, and the caller rolls back everything this order took;
- give back: the order's `stock_reserved` flips from true to false first; only the writer whose
  flip matched adds the quantities back, so an expiry, a failure and a refund racing for one
  order return its units once.

Callers commit, so stock moves in the same transaction as the order it belongs to.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping

from sqlalchemy import select, update

from ..extensions import db
from .models import AuditEntry, Order, OrderLine, Product
from .states import OrderStatus, Source

logger = logging.getLogger(__name__)

# Statuses in which an order ends without having been paid: its units go back on the shelf.
UNPAID_ENDS = frozenset({OrderStatus.FAILED, OrderStatus.EXPIRED, OrderStatus.CANCELED})


def take(quantities: Mapping[int, int]) -> int | None:
    """Take `quantities` (product id → units) out of stock; None when all were taken, else the
    id of the first product that had too few (what was taken before it is still in the
    caller's transaction, which must roll back)."""
    for product_id in sorted(quantities):
        qty = quantities[product_id]
        taken = db.session.execute(
            update(Product)
            .where(Product.id == product_id, Product.stock >= qty)
            .values(stock=Product.stock - qty)
            .execution_options(synchronize_session=False)
        )
        if taken.rowcount != 1:  # type: ignore[attr-defined]
            return product_id
    return None


def _quantities(lines: Iterable[tuple[int | None, int]]) -> dict[int, int]:
    totals: dict[int, int] = {}
    for product_id, qty in lines:
        if product_id is not None:  # a deleted product has no shelf to return to
            totals[product_id] = totals.get(product_id, 0) + qty
    return totals


def release(order: Order, source: Source, reason: str) -> bool:
    """Give the order's units back if it still holds them; True when this call did.

    The caller commits (with the status change that ended the order, when there is one).
    """
    flipped = db.session.execute(
        update(Order)
        .where(Order.id == order.id, Order.stock_reserved.is_(True))
        .values(stock_reserved=False)
        .execution_options(synchronize_session=False)
    )
    if flipped.rowcount != 1:  # type: ignore[attr-defined]
        return False
    db.session.expire(order, ["stock_reserved"])
    lines = db.session.execute(
        select(OrderLine.product_id, OrderLine.quantity).where(OrderLine.order_pk == order.id)
    ).all()
    quantities = _quantities((row.product_id, row.quantity) for row in lines)
    for product_id in sorted(quantities):
        db.session.execute(
            update(Product)
            .where(Product.id == product_id)
            .values(stock=Product.stock + quantities[product_id])
            .execution_options(synchronize_session=False)
        )
    db.session.add(
        AuditEntry(
            order_pk=order.id,
            event="stock_released",
            from_status=order.status,
            to_status=order.status,
            source=source,
            detail=(
                reason
                + ": "
                + ", ".join(f"#{pid} +{qty}" for pid, qty in sorted(quantities.items()))
            )[:500],
        )
    )
    logger.info("stock released", extra={"order_id": order.order_id, "reason": reason})
    return True
