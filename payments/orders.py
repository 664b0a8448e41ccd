"""Orders: creation from a cart, and the only code that writes an order's status."""

from __future__ import annotations

import logging
import re
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

from flask import current_app
from sqlalchemy import Table, bindparam, func, insert, select
from sqlalchemy.orm import joinedload
from sqlalchemy.orm.attributes import set_committed_value

from .errors import ServiceError, invalid
from .extensions import bound, db, status_params, status_update, update_if_status
from .models import AuditEntry, Order, OrderLine, Payment, Product, utcnow
from .states import OrderStatus, Source, can_move

logger = logging.getLogger(__name__)

ORDER_ID_RE = re.compile(r"^[A-Za-z0-9_-]{6,64}$")
MAX_QUANTITY = 99
MAX_CART_LINES = 30
# Far above any real basket; keeps arithmetic and Toss's own limits out of reach of abuse.
MAX_ORDER_AMOUNT = 100_000_000


ORDERS: Table = Order.__table__  # type: ignore[assignment]
AUDIT: Table = AuditEntry.__table__  # type: ignore[assignment]
PAYMENTS: Table = Payment.__table__  # type: ignore[assignment]
_AUDIT_INSERT = insert(AUDIT)


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
    """Move `order` to `to` if it is still in the status we read; False when another writer won.

    The conditional UPDATE lets the database decide races between tabs, the API, webhooks and
    workers. The caller commits; the audit row joins the same transaction (inserted here, after
    any pending `record` rows, so the timeline keeps its order).
    """
    src = OrderStatus(order.status)
    _check_move(order.order_id, src, to)
    now = utcnow()
    fields: dict[str, Any] = {"status": to.value, "updated_at": now, **(values or {})}
    audit_key = payment_key or fields.get("payment_key", order.payment_key)
    audit = _audit_values(src, to, source, now, audit_key, transaction_key, code, detail)
    if _audit_in_statement():
        db.session.flush()  # pending `record` rows first
        params = status_params(order.id, src.value, fields) | bound("a_", audit)
        moved = db.session.execute(_move_with_audit(tuple(fields)), params).scalar_one() == 1
    else:
        moved = update_if_status(ORDERS, order.id, src.value, fields)
        if moved:
            db.session.execute(_AUDIT_INSERT, {"order_pk": order.id, **audit})
    if not moved:
        db.session.expire(order)
        return False
    for name, value in fields.items():
        # Mirror the UPDATE in memory without marking the object dirty.
        set_committed_value(order, name, value)
    _log_move(order.order_id, src, to, source)
    return True


def claim_pending(
    order_id: str,
    to: OrderStatus,
    source: Source,
    *,
    amount: int,
    payment_key: str,
    values: Mapping[str, Any],
) -> Order | None:
    """Move the PENDING order `order_id` of this `amount` to `to` without reading it first, and
    return it loaded; None when there is no such order (another status, amount or orderId):
    the caller then reads it and decides, moving it with `transition`.

    UPDATE … WHERE status = 'PENDING' … RETURNING: the conditional write that decides a race
    is also the read, a statement fewer for the common case (a first confirmation). A PENDING
    order has no payment row, and the WHERE checks that too, so none is looked up later.
    """
    src = OrderStatus.PENDING
    _check_move(order_id, src, to)
    now = utcnow()
    fields: dict[str, Any] = {"status": to.value, "updated_at": now, **values}
    audit = _audit_values(src, to, source, now, payment_key, None, None, None)
    in_statement = _audit_in_statement()
    params = {"w_order_id": order_id, "w_amount": amount, **bound("v_", fields)}
    if in_statement:
        params |= bound("a_", audit)
    claim = _claim_pending(tuple(fields), in_statement)
    order: Order | None = db.session.scalars(claim, params).one_or_none()
    if order is None:
        return None
    set_committed_value(order, "payment", None)
    if not in_statement:
        db.session.execute(_AUDIT_INSERT, {"order_pk": order.id, **audit})
    _log_move(order_id, src, to, source)
    return order


def _audit_in_statement() -> bool:
    """Whether a state change and its audit row go to the database as one statement: on
    PostgreSQL, a data-modifying WITH saves a round trip per change (two per confirmation);
    SQLite has no such WITH, and runs the UPDATE and then the INSERT."""
    return bool(db.engine.dialect.name == "postgresql")


# The audit row's columns after order_pk, bound as :a_<column> when the row is inserted from a
# WITH (the order_pk comes from the UPDATE's RETURNING there).
_AUDIT_NAMES = ("event", "from_status", "to_status", "source", "payment_key",
                "transaction_key", "code", "detail", "created_at")  # fmt: skip


def _audit_from(moved: Any) -> Any:
    """INSERT INTO audit_entries SELECT the moved row's id and the :a_ parameters FROM `moved`
    (a CTE): no row when the UPDATE matched none."""
    row = select(moved.c.id, *(bindparam(f"a_{n}", type_=AUDIT.c[n].type) for n in _AUDIT_NAMES))
    return insert(AUDIT).from_select(["order_pk", *_AUDIT_NAMES], row).cte("audited")


@lru_cache(maxsize=32)
def _move_with_audit(names: tuple[str, ...]) -> Any:
    # WITH moved AS (UPDATE … WHERE id AND status … RETURNING id), audited AS (INSERT … FROM
    # moved) SELECT count(*) FROM moved: 1 when the move won, 0 (and no audit row) when not.
    moved = status_update(ORDERS, names, ()).returning(ORDERS.c.id).cte("moved")
    return select(func.count()).select_from(moved).add_cte(_audit_from(moved))


@lru_cache(maxsize=16)
def _claim_pending(names: tuple[str, ...], with_audit: bool) -> Any:
    # Built once per set of columns: building it per call cost as much as running it.
    payment_rows = select(PAYMENTS.c.id).where(PAYMENTS.c.order_pk == ORDERS.c.id)
    claim = (
        ORDERS.update()
        .where(
            ORDERS.c.order_id == bindparam("w_order_id"),
            ORDERS.c.status == OrderStatus.PENDING.value,
            ORDERS.c.amount == bindparam("w_amount"),
            ~payment_rows.exists(),
        )
        .values({n: bindparam(f"v_{n}", type_=ORDERS.c[n].type) for n in names})
        .returning(*ORDERS.c)
    )
    statement: Any = claim
    if with_audit:
        claimed = claim.cte("claimed")
        statement = select(claimed).add_cte(_audit_from(claimed))
    # The RETURNING row loaded as the Order (fresh even if the session held an older copy).
    return select(Order).from_statement(statement).execution_options(populate_existing=True)


def _check_move(order_id: str, src: OrderStatus, to: OrderStatus) -> None:
    if not can_move(src, to):
        raise InvalidTransition(f"{order_id}: {src} → {to} is not allowed")


def _audit_values(
    src: OrderStatus,
    to: OrderStatus,
    source: Source,
    now: datetime,
    payment_key: str | None,
    transaction_key: str | None,
    code: str | None,
    detail: str | None,
) -> dict[str, Any]:
    return {
        "event": "transition",
        "from_status": src.value,
        "to_status": to.value,
        "source": source.value,
        "payment_key": payment_key,
        "transaction_key": transaction_key,
        "code": code,
        "detail": detail,
        "created_at": now,
    }


def _log_move(order_id: str, src: OrderStatus, to: OrderStatus, source: Source) -> None:
    logger.info(
        "order status changed",
        extra={"order_id": order_id, "from": src.value, "to": to.value, "source": source},
    )


def record(
    order: Order,
    event: str,
    source: Source,
    *,
    payment_key: str | None = None,
    code: str | None = None,
    detail: str | None = None,
) -> None:
    """An audit row for something notable that did not change the status."""
    db.session.add(
        AuditEntry(
            order_pk=order.id,
            event=event,
            from_status=order.status,
            to_status=order.status,
            source=source.value,
            payment_key=payment_key,
            code=code,
            detail=(detail or "")[:500] or None,
        )
    )


def find_order(order_id: str, *, with_payment: bool = False) -> Order | None:
    """The order with this orderId; `with_payment` loads its payment row in the same query."""
    if not isinstance(order_id, str) or not ORDER_ID_RE.match(order_id):
        return None
    query = _BY_ORDER_ID_WITH_PAYMENT if with_payment else _BY_ORDER_ID
    return db.session.execute(query, {"order_id": order_id}).scalar_one_or_none()


# Built once: the order pages, the checkout page and every confirmation look orders up so.
_BY_ORDER_ID = select(Order).where(Order.order_id == bindparam("order_id"))
_BY_ORDER_ID_WITH_PAYMENT = _BY_ORDER_ID.options(joinedload(Order.payment))


# -- catalog --------------------------------------------------------------------------------

# How long a worker shows the catalog it last read. The catalog is the most-viewed page and
# changes only when products are seeded or edited; reading it per view (pool checkout, query,
# rollback, ORM rows) cost more than the rest of the page together (bench/run.py).
CATALOG_CACHE_SECONDS = 5.0


@dataclass(frozen=True)
class CatalogItem:
    id: int
    name: str
    description: str
    price: int
    emoji: str
    color: str


def catalog_items() -> list[CatalogItem]:
    """The active products for the catalog page, read at most every CATALOG_CACHE_SECONDS.

    A shown price may lag an edit by that long; what an order costs never does (`create_order`
    prices the cart from the database).
    """
    cached: tuple[float, list[CatalogItem]] | None = current_app.extensions.get("catalog_cache")
    now = time.monotonic()
    if cached is not None and now < cached[0]:
        return cached[1]
    items = [
        CatalogItem(p.id, p.name, p.description, p.price, p.emoji, p.color)
        for p in db.session.execute(
            select(Product).where(Product.active.is_(True)).order_by(Product.id)
        ).scalars()
    ]
    current_app.extensions["catalog_cache"] = (now + CATALOG_CACHE_SECONDS, items)
    return items


# -- cart -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class CartLine:
    product: Product
    quantity: int

    @property
    def total(self) -> int:
        return self.product.price * self.quantity


def parse_quantity(raw: object) -> int:
    """A quantity from a form: an integer 1–99, else INVALID_REQUEST."""
    if isinstance(raw, bool):
        raise invalid("수량은 1~99 사이의 숫자여야 합니다.")
    if isinstance(raw, int):
        qty = raw
    elif isinstance(raw, str) and re.fullmatch(r"\s*[0-9]{1,3}\s*", raw):
        qty = int(raw)
    else:
        raise invalid("수량은 1~99 사이의 숫자여야 합니다.")
    if not 1 <= qty <= MAX_QUANTITY:
        raise invalid("수량은 1~99 사이의 숫자여야 합니다.")
    return qty


def get_product(raw_id: object) -> Product:
    """An active product by id from a form, else INVALID_REQUEST (nothing changes)."""
    if not isinstance(raw_id, str | int) or isinstance(raw_id, bool):
        raise invalid("상품을 선택해주세요.")
    text = str(raw_id).strip()
    if not re.fullmatch(r"[0-9]{1,9}", text):
        raise invalid("존재하지 않는 상품입니다.")
    product = db.session.get(Product, int(text))
    if product is None or not product.active:
        raise ServiceError("PRODUCT_NOT_FOUND", "존재하지 않는 상품입니다.", 404)
    return product


def change_cart(
    cart: Mapping[str, int], action: str, product_id: object, quantity: object
) -> dict[str, int]:
    """Return the new cart after `action` (add, update, remove); the input is never mutated."""
    new = {k: v for k, v in cart.items()}
    if action not in ("add", "update", "remove"):
        raise invalid("알 수 없는 장바구니 동작입니다.")
    product = get_product(product_id)
    key = str(product.id)
    if action == "remove":
        if key not in new:
            raise ServiceError("NOT_IN_CART", "장바구니에 없는 상품입니다.", 404)
        del new[key]
        return new
    qty = parse_quantity(quantity if quantity not in (None, "") or action == "update" else "1")
    if action == "add":
        qty = new.get(key, 0) + qty
        if qty > MAX_QUANTITY:
            raise invalid(f"한 상품은 최대 {MAX_QUANTITY}개까지 담을 수 있습니다.")
    if key not in new and len(new) >= MAX_CART_LINES:
        raise invalid(f"장바구니에는 최대 {MAX_CART_LINES}종류까지 담을 수 있습니다.")
    new[key] = qty
    return new


def cart_lines(cart: Mapping[str, int]) -> list[CartLine]:
    """The cart's lines with current catalog prices; vanished products are dropped."""
    ids = [int(k) for k in cart if k.isdigit()]
    if not ids:
        return []
    products = {
        p.id: p
        for p in db.session.execute(
            select(Product).where(Product.id.in_(ids), Product.active.is_(True))
        ).scalars()
    }
    lines = []
    for key, qty in cart.items():
        product = products.get(int(key)) if key.isdigit() else None
        if product is not None and isinstance(qty, int) and 1 <= qty <= MAX_QUANTITY:
            lines.append(CartLine(product, qty))
    return lines


def order_name_for(names: list[str]) -> str:
    """ "무선 키보드 외 2건" style, within Toss's 100-character limit."""
    first = names[0]
    suffix = f" 외 {len(names) - 1}건" if len(names) > 1 else ""
    if len(first) + len(suffix) > 100:
        first = first[: 100 - len(suffix) - 1] + "…"
    return first + suffix


def create_order(cart: Mapping[str, int], customer_key: str) -> Order:
    """Create a PENDING order from the cart with the amount summed here from catalog prices.

    The amount is fixed before the widget opens; the browser never supplies it.
    """
    lines = cart_lines(cart)
    if not lines:
        raise ServiceError("CART_EMPTY", "장바구니가 비어 있습니다.", 400)
    amount = sum(line.total for line in lines)
    if amount > MAX_ORDER_AMOUNT:
        raise invalid("한 번에 결제할 수 있는 금액을 초과했습니다.")
    order = Order(
        order_id=new_order_id(),
        order_name=order_name_for([line.product.name for line in lines]),
        customer_key=customer_key,
        amount=amount,
        status=OrderStatus.PENDING.value,
        lines=[
            OrderLine(
                product_id=line.product.id,
                product_name=line.product.name,
                unit_price=line.product.price,
                quantity=line.quantity,
                line_total=line.total,
            )
            for line in lines
        ],
    )
    db.session.add(order)
    db.session.flush()
    db.session.add(
        AuditEntry(
            order_pk=order.id,
            event="created",
            to_status=OrderStatus.PENDING.value,
            source=Source.SHOP.value,
            detail=f"amount={amount}",
        )
    )
    db.session.commit()
    logger.info("order created", extra={"order_id": order.order_id, "amount": amount})
    return order


def new_order_id() -> str:
    """32 random URL-safe characters: unique and unguessable (Toss allows 6–64 of [A-Za-z0-9_-])."""
    return secrets.token_urlsafe(24)


def new_customer_key() -> str:
    """A random customerKey; never an email or phone number (TOSS.md)."""
    return "cust_" + secrets.token_urlsafe(18)
