"""The Toss widget page and the redirects Toss sends the shopper back with."""

from __future__ import annotations

import re
from typing import Any

from flask import Blueprint, abort, current_app, redirect, render_template, request, url_for
from sqlalchemy import select
from werkzeug.wrappers import Response

from ..access import (
    can_view,
    customer_key,
    may_hold_link,
    order_token,
    owns_order,
    pays_in_flight,
)
from ..core.errors import ServiceError, message_for
from ..core.models import Order, Product
from ..core.orders import find_order
from ..core.states import OrderStatus, Source
from ..extensions import db
from .confirm import confirm_payment, parse_confirm_request, window_failed

bp = Blueprint("checkout", __name__, url_prefix="/checkout")

FAIL_CODE_RE = re.compile(r"^[A-Z0-9_]{1,64}$")
# Refusals after which the order page says more than the fail page: a payment in flight or done.
_TO_ORDER = frozenset({"PAYMENT_PENDING", "ORDER_NOT_PAYABLE"})


@bp.after_request
def _no_store(response: Response) -> Response:
    # Order details and the shopper's way back from Toss: never kept by a shared cache or the
    # browser's history cache.
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/<order_id>")
def page(order_id: str) -> Response | str:
    order = find_order(order_id)
    if order is None or not can_view(order):
        abort(404)
    if order.status != OrderStatus.PENDING:
        return redirect(url_for("shop.order", order_id=order.order_id), 303)
    return render_template(
        "checkout/page.html",
        order=order,
        client_key=current_app.config["TOSS_CLIENT_KEY"],
        widget_script=current_app.config["TOSS_WIDGET_SCRIPT_URL"],
        customer_key=order.customer_key or customer_key(),
        success_url=public_url("checkout.success"),
        fail_url=public_url("checkout.fail"),
        sandbox=current_app.config["TOSS_SANDBOX"],
        escrow_products=escrow_products(order) if current_app.config["TOSS_ESCROW"] else None,
    )


def escrow_products(order: Order) -> list[dict[str, Any]]:
    """The order's lines as the SDK's `escrowProducts` ({id, name, code, unitPrice, quantity},
    one per line): the product's id and its slug as the shop's product code; a line whose product
    was deleted keeps its own id and no code."""
    ids = {line.product_id for line in order.lines if line.product_id is not None}
    rows = db.session.execute(select(Product.id, Product.slug).where(Product.id.in_(ids)))
    slugs: dict[int | None, str] = {product_id: slug for product_id, slug in rows}
    return [
        {
            "id": str(line.product_id) if line.product_id is not None else f"line-{line.id}",
            "name": line.product_name,
            "code": slugs.get(line.product_id),
            "unitPrice": line.unit_price,
            "quantity": line.quantity,
        }
        for line in order.lines
    ]


@bp.get("/success")
def success() -> Response | tuple[str, int]:
    """Confirm server-side, then redirect (PRG) to the order page.

    A refresh or second tab never confirms twice: the service returns the stored result. The
    signed link goes only where `access.may_hold_link` allows: this URL is public.
    """
    req = parse_confirm_request(request.args)
    try:
        order = confirm_payment(req, Source.REDIRECT)
    except ServiceError as exc:
        if exc.code in ("INVALID_REQUEST", "ORDER_NOT_FOUND", "AMOUNT_MISMATCH"):
            raise
        found = find_order(req.order_id) if exc.code in _TO_ORDER else None
        if (
            found is not None
            and exc.code == "PAYMENT_PENDING"
            and not (owns_order(found.order_id) and pays_in_flight(found, req.payment_key))
        ):
            # Another attempt is in flight, or this one for a browser that did not order: ask
            # again shortly (this URL confirms once the other attempt is released, and hands
            # out the link once Toss confirmed this one).
            return render_template("checkout/pending.html"), 202
        if found is not None and may_hold_link(found, req.payment_key):
            return redirect(_order_url(found, req.payment_key), 303)
        return redirect(url_for("checkout.fail", code=exc.code, orderId=req.order_id), 303)
    return redirect(_order_url(order, req.payment_key), 303)


def _order_url(order: Order, payment_key: str) -> str:
    # The redirect may land in another browser than the one that ordered (e.g. an app's
    # webview); the signed link keeps the order page reachable there for the payer.
    if may_hold_link(order, payment_key):
        return url_for("shop.order", order_id=order.order_id, t=order_token(order.order_id))
    return url_for("shop.order", order_id=order.order_id)


@bp.get("/fail")
def fail() -> str:
    code = request.args.get("code", "")
    order_id = request.args.get("orderId", "")
    if not FAIL_CODE_RE.match(code):
        code = "UNKNOWN_ERROR"
    order = window_failed(order_id, code, by_owner=owns_order(order_id))
    visible = order is not None and can_view(order)
    return render_template(
        "checkout/fail.html",
        code=code,
        message=message_for(code),
        order=order if visible else None,
    )


def public_url(endpoint: str, **values: Any) -> str:
    """Absolute URL for Toss redirects: PUBLIC_BASE_URL when set, else the request's origin."""
    base = current_app.config.get("PUBLIC_BASE_URL")
    if base:
        return str(base) + url_for(endpoint, **values)
    return url_for(endpoint, _external=True, **values)
