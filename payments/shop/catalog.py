"""The shop's side of an order: the catalog, the cart, and creating an order from a cart.

The amount of an order is summed here from catalog prices and stored before the widget opens;
the browser never supplies it. Creating the order takes its units out of stock in the same
transaction (`core/stock.py`), all or nothing.
"""

from __future__ import annotations

import hmac
import logging
import re
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass

from flask import current_app
from sqlalchemy import select

from ..core import stock
from ..core.errors import ServiceError, invalid
from ..core.models import AuditEntry, Order, OrderLine, Product
from ..core.orders import find_order
from ..core.states import OrderStatus, Source
from ..extensions import db

logger = logging.getLogger(__name__)

MAX_QUANTITY = 99
MAX_CART_LINES = 30
# Far above any real basket; keeps arithmetic and Toss's own limits out of reach of abuse.
MAX_ORDER_AMOUNT = 100_000_000


# How long a worker shows the catalog it last read: the catalog is the most-viewed page and
# changes only when products are seeded or edited, so it need not cost a query per view.
CATALOG_CACHE_SECONDS = 5.0


@dataclass(frozen=True)
class CatalogItem:
    id: int
    name: str
    description: str
    price: int
    emoji: str
    color: str
    stock: int

    @property
    def sold_out(self) -> bool:
        return self.stock <= 0


def catalog_items() -> list[CatalogItem]:
    """The active products for the catalog page, read at most every CATALOG_CACHE_SECONDS.

    A shown price or stock count may lag by that long; what an order costs and whether its
    units are there never do (`create_order` reads and takes them in the database).
    """
    cached: tuple[float, list[CatalogItem]] | None = current_app.extensions.get("catalog_cache")
    now = time.monotonic()
    if cached is not None and now < cached[0]:
        return cached[1]
    items = [
        CatalogItem(p.id, p.name, p.description, p.price, p.emoji, p.color, p.stock)
        for p in db.session.execute(
            select(Product).where(Product.active.is_(True)).order_by(Product.id)
        ).scalars()
    ]
    current_app.extensions["catalog_cache"] = (now + CATALOG_CACHE_SECONDS, items)
    return items


# -- cart ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CartLine:
    product: Product
    quantity: int

    @property
    def total(self) -> int:
        return self.product.price * self.quantity

    @property
    def short(self) -> bool:
        """Fewer units left than the cart holds (the order would be refused)."""
        return self.quantity > self.product.stock


def sold_out(product: Product) -> ServiceError:
    """The cart's message for a product with too few units left (409: nothing changed)."""
    if product.stock <= 0:
        message = f"{product.name}은(는) 품절되었습니다. 장바구니에서 빼고 주문해주세요."
    else:
        message = (
            f"{product.name}의 남은 수량은 {product.stock}개입니다. 수량을 줄여 다시 주문해주세요."
        )
    return ServiceError("SOLD_OUT", message, 409)


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
    if action == "add" and product.sold_out:
        raise sold_out(product)
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


@dataclass(frozen=True)
class Buyer:
    """Who pays and where the order goes, already validated (`shop/forms.py: OrderForm`)."""

    name: str
    email: str
    phone: str  # digits only, 8–15 (Toss's customerMobilePhone)
    postcode: str
    address: str
    address_detail: str = ""


def create_order(cart: Mapping[str, int], customer_key: str, buyer: Buyer) -> Order:
    """Create a PENDING order from the cart with the amount summed here from catalog prices,
    and take its units out of stock, all in one transaction.

    The amount is fixed before the widget opens; the browser never supplies it. Too few units
    of any product: SOLD_OUT (409) and nothing is taken or stored.
    """
    if not (buyer.name and buyer.email and buyer.phone and buyer.postcode and buyer.address):
        raise invalid("주문자 정보와 배송지를 입력해주세요.")
    lines = cart_lines(cart)
    if not lines:
        raise ServiceError("CART_EMPTY", "장바구니가 비어 있습니다.", 400)
    amount = sum(line.total for line in lines)
    if amount > MAX_ORDER_AMOUNT:
        raise invalid("한 번에 결제할 수 있는 금액을 초과했습니다.")
    short = stock.take({line.product.id: line.quantity for line in lines})
    if short is not None:
        db.session.rollback()
        product = db.session.get(Product, short)
        if product is None:  # deleted meanwhile: the cart drops it on the next view
            raise ServiceError("PRODUCT_NOT_FOUND", "존재하지 않는 상품입니다.", 404)
        raise sold_out(product)
    order = Order(
        order_id=new_order_id(),
        order_name=order_name_for([line.product.name for line in lines]),
        customer_key=customer_key,
        amount=amount,
        status=OrderStatus.PENDING,
        buyer_name=buyer.name,
        buyer_email=buyer.email,
        buyer_phone=buyer.phone,
        postcode=buyer.postcode,
        address=buyer.address,
        address_detail=buyer.address_detail or None,
        stock_reserved=True,
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
            to_status=OrderStatus.PENDING,
            source=Source.SHOP,
            detail=f"amount={amount}",
        )
    )
    db.session.commit()
    logger.info("order created", extra={"order_id": order.order_id, "amount": amount})
    return order


def find_for_guest(order_id: str, email: str) -> Order | None:
    """The order when `email` is the one its buyer gave (case-insensitive), else None.

    An unknown orderId and a wrong e-mail cost the same comparison and give the same None, so
    the answer (and its timing) does not tell whether the orderId exists.
    """
    order = find_order(order_id)
    stored = order.buyer_email if order is not None and order.buyer_email else ""
    # Never equal to a typed address (no "@" at the end of one), for a miss or an old order.
    expected = stored.casefold() if stored else "\x00unknown@"
    same = hmac.compare_digest(expected.encode(), email.strip().casefold().encode())
    return order if same and order is not None else None


def new_order_id() -> str:
    """32 random URL-safe characters: unique and unguessable (Toss allows 6–64 of [A-Za-z0-9_-])."""
    return secrets.token_urlsafe(24)


# Demo catalog: (slug, name, price KRW, emoji, colour, description)
DEMO_PRODUCTS = [
    ("wireless-keyboard", "무선 키보드", 39_000, "⌨️", "#e8eefc", "조용한 타건감의 블루투스 키보드"),
    ("ergonomic-mouse", "인체공학 마우스", 25_000, "🖱️", "#fde8e8", "손목이 편한 버티컬 마우스"),
    ("usb-c-hub", "USB-C 허브", 32_500, "🔌", "#e6f6ec", "HDMI·USB 3.0·SD 카드 7in1"),
    ("monitor-stand", "원목 모니터 받침대", 48_000, "🖥️", "#fff4dc", "수납 서랍이 있는 원목 받침대"),
    ("desk-lamp", "LED 스탠드", 29_900, "💡", "#fff9c4", "밝기·색온도 조절 LED 스탠드"),
    ("drip-coffee", "드립백 커피 10개입", 12_000, "☕", "#efe3d9", "에티오피아 예가체프 드립백"),
    ("notebook", "하드커버 노트", 8_500, "📓", "#e3ecf5", "도트 그리드 160쪽"),
    ("tumbler", "보온 텀블러 500ml", 19_800, "🥤", "#e0f4f7", "12시간 보온·보냉"),
]
# Units each demo product is stocked to by `flask seed`: plenty for trying the shop and for
# test suites that place many orders; a product below it is refilled, never lowered.
DEMO_STOCK = 10_000


def seed_catalog() -> tuple[int, int]:
    """Insert or update the demo products by slug, refilling stock to DEMO_STOCK;
    (created, updated)."""
    created = updated = 0
    existing = {p.slug: p for p in db.session.execute(select(Product)).scalars()}
    for slug, name, price, emoji, color, description in DEMO_PRODUCTS:
        product = existing.get(slug)
        if product is None:
            product = Product(slug=slug)
            db.session.add(product)
            created += 1
        else:
            updated += 1
        product.name, product.price, product.emoji = name, price, emoji
        product.color, product.description, product.active = color, description, True
        product.stock = max(product.stock or 0, DEMO_STOCK)
    db.session.commit()
    return created, updated
