"""Shopper pages: catalog, cart, order creation, order status."""

from __future__ import annotations

from typing import Any

from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_wtf.csrf import generate_csrf
from markupsafe import Markup, escape
from werkzeug.wrappers import Response

from ..errors import ServiceError
from ..orders import (
    CatalogItem,
    cart_lines,
    catalog_items,
    change_cart,
    create_order,
    find_order,
)
from ..states import OrderStatus, Source
from ..sync import settle_by_lookup
from ..web import can_view, customer_key, per_app, remember_order

bp = Blueprint("shop", __name__)


def _cart() -> dict[str, int]:
    cart = session.get("cart")
    return cart if isinstance(cart, dict) else {}


@bp.get("/")
def catalog() -> str:
    products = catalog_items()
    # The parts are HTML already (rendered with autoescape); only the token is escaped here.
    token = str(escape(generate_csrf()))
    cards = Markup(token.join(_card_parts(products))) if products else ""
    return render_template("shop/catalog.html", products=products, cards=cards)


def _card_parts(products: list[CatalogItem]) -> list[str]:
    """The catalog's cards as the HTML between their forms' CSRF tokens, rendered once per
    catalog snapshot: a view joins them around its session's token in one step. Rendering the
    cards was two thirds of a view's template work, and putting the parts together in the
    template (an escape and a copy per part) about 6 % of a view's CPU (bench/run.py)."""
    return per_app(current_app, "catalog_cards", products, lambda: _render_parts(products))


def _render_parts(products: list[CatalogItem]) -> list[str]:
    macros: Any = current_app.jinja_env.get_template("shop/_card.html").module
    cart_url = url_for("shop.update_cart")
    heads = [str(macros.card_head(p, cart_url)) for p in products]
    tails = [str(macros.card_tail(p)) for p in products]
    # head₁ | tail₁ head₂ | … | tailₙ: the token goes at each "|".
    return [*heads[:1], *(t + h for t, h in zip(tails, heads[1:], strict=False)), *tails[-1:]]


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
def order(order_id: str) -> str:
    found = find_order(order_id)
    if found is None or not can_view(found):
        abort(404)
    if found.status == OrderStatus.NEEDS_RECONCILE:
        # The self-refreshing "결제 확인 중" page asks Toss again on each visit.
        settle_by_lookup(found, Source.REDIRECT)
    ctx: dict[str, Any] = {"order": found, "payment": found.payment}
    return render_template("shop/order.html", **ctx)
