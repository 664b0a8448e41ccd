"""Shopper pages: catalog, cart, order creation (with the buyer and delivery address), order
status, and a guest's order lookup."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, flash, redirect, render_template, request, session, url_for
from werkzeug.wrappers import Response

from ..access import can_view, customer_key, remember_order
from ..checkout.confirm import settle_by_lookup
from ..core.errors import ServiceError
from ..core.orders import find_order
from ..core.states import OrderStatus, Source
from .catalog import cart_lines, catalog_items, change_cart, create_order, find_for_guest
from .forms import LookupForm, OrderForm

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


def _cart_page(form: OrderForm | None = None, error: ServiceError | None = None) -> str:
    lines = cart_lines(_cart())
    return render_template(
        "shop/cart.html",
        lines=lines,
        total=sum(line.total for line in lines),
        form=form or OrderForm(formdata=None),
        error=error.message if error else None,
        error_code=error.code if error else None,
    )


@bp.get("/cart")
def cart() -> str:
    return _cart_page()


@bp.post("/cart")
def update_cart() -> Response | tuple[str, int]:
    action = request.form.get("action", "add")
    try:
        session["cart"] = change_cart(
            _cart(), action, request.form.get("product_id"), request.form.get("quantity")
        )
    except ServiceError as exc:
        return _cart_page(error=exc), exc.http_status
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
def create() -> Response | tuple[str, int]:
    """The cart and the buyer's details become an order; a mistake shows the cart again with
    what was typed and a message per field, and the cart stays as it was."""
    # The posted form only (Flask-WTF would read a JSON body too).
    form = OrderForm(formdata=request.form)
    if not form.validate():
        return _cart_page(form, ServiceError("INVALID_REQUEST", "입력한 내용을 확인해주세요.")), 400
    try:
        order = create_order(_cart(), customer_key(), form.buyer())
    except ServiceError as exc:
        return _cart_page(form, exc), exc.http_status
    remember_order(order.order_id)
    session["cart"] = {}
    return redirect(url_for("checkout.page", order_id=order.order_id), 303)


# One answer for an unknown orderId and a wrong e-mail: nothing tells which it was.
LOOKUP_MISS = "주문을 찾을 수 없습니다. 주문번호와 이메일을 확인해주세요."


@bp.get("/orders/lookup")
def lookup() -> str:
    return render_template("shop/lookup.html", form=LookupForm(formdata=None))


@bp.post("/orders/lookup")
def lookup_submit() -> Response | tuple[str, int]:
    form = LookupForm(formdata=request.form)
    if not form.validate():
        return render_template("shop/lookup.html", form=form), 400
    found = find_for_guest(form.order_id.data, form.email.data)
    if found is None:
        return render_template("shop/lookup.html", form=form, error=LOOKUP_MISS), 404
    remember_order(found.order_id)
    return redirect(url_for("shop.order", order_id=found.order_id), 303)


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
