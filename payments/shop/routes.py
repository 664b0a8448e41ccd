"""Shopper pages: catalog, cart, order creation, order status."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, flash, redirect, render_template, request, session, url_for
from werkzeug.wrappers import Response

from ..access import can_view, customer_key, remember_order
from ..checkout.confirm import settle_by_lookup
from ..core.errors import ServiceError
from ..core.orders import find_order
from ..core.states import OrderStatus, Source
from .catalog import cart_lines, catalog_items, change_cart, create_order

bp = Blueprint("shop", __name__)


def _cart() -> dict[str, int]:
    cart = session.get("cart")
    return cart if isinstance(cart, dict) else {}


@bp.app_context_processor
def _cart_count() -> dict[str, Any]:
    return {"cart_count": sum(v for v in _cart().values() if isinstance(v, int))}


@bp.get("/")
def catalog() -> str:
    return render_template("shop/catalog.html", products=catalog_items())


@bp.get("/cart")
def cart() -> str:
    lines = cart_lines(_cart())
    return render_template("shop/cart.html", lines=lines, total=sum(line.total for line in lines))


@bp.post("/cart")
def update_cart() -> Response | tuple[str, int]:
    action = request.form.get("action", "add")
    try:
        session["cart"] = change_cart(
            _cart(), action, request.form.get("product_id"), request.form.get("quantity")
        )
    except ServiceError as exc:
        lines = cart_lines(_cart())
        page = render_template(
            "shop/cart.html",
            lines=lines,
            total=sum(line.total for line in lines),
            error=exc.message,
            error_code=exc.code,
        )
        return page, exc.http_status
    flash(
        {
            "add": "장바구니에 담았습니다.",
            "update": "수량을 변경했습니다.",
            "remove": "상품을 뺐습니다.",
        }[action]
    )
    # Adding from the catalog keeps the shopper browsing; everything else shows the cart.
    back = "shop.catalog" if request.form.get("return_to") == "catalog" else "shop.cart"
    return redirect(url_for(back), 303)


@bp.post("/orders")
def create() -> Response:
    order = create_order(_cart(), customer_key())
    remember_order(order.order_id)
    session["cart"] = {}
    return redirect(url_for("checkout.page", order_id=order.order_id), 303)


@bp.get("/orders/<order_id>")
def order(order_id: str) -> tuple[str, int, dict[str, str]]:
    found = find_order(order_id)
    if found is None or not can_view(found):
        abort(404)
    if found.status == OrderStatus.NEEDS_RECONCILE:
        # The self-refreshing "결제 확인 중" page asks Toss again on each visit.
        settle_by_lookup(found, Source.REDIRECT)
    page = render_template("shop/order.html", order=found, payment=found.payment)
    # A shopper's order and payment details: never kept by a shared cache or the back button.
    return page, 200, {"Cache-Control": "no-store"}
