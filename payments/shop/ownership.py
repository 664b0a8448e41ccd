"""Who may see an order: the browser session that created it, a holder of its signed link, or
an operator."""

from __future__ import annotations

from flask import current_app, request, session
from itsdangerous import BadSignature, URLSafeTimedSerializer

from ..admin.auth import is_operator
from ..core.models import Order
from .catalog import new_customer_key

MAX_REMEMBERED_ORDERS = 50


def _signer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt="order-link")


def order_token(order_id: str) -> str:
    """A signed token that lets whoever holds the link see this one order."""
    return _signer().dumps(order_id)


def remember_order(order_id: str) -> None:
    """Make this browser session the order's owner."""
    owned = [o for o in session.get("orders", []) if o != order_id]
    session["orders"] = (owned + [order_id])[-MAX_REMEMBERED_ORDERS:]


def can_view(order: Order) -> bool:
    """Owner (the creating session or a valid signed link) or an operator."""
    if order.order_id in session.get("orders", []) or is_operator():
        return True
    token = request.args.get("t")
    if not token or len(token) > 300:
        return False
    try:
        signed = _signer().loads(token, max_age=current_app.config["ORDER_LINK_MAX_AGE"])
    except BadSignature:
        return False
    return bool(signed == order.order_id)


def customer_key() -> str:
    """This browser's customerKey for the widget (random, kept in the session)."""
    key = session.get("customer_key")
    if not isinstance(key, str):
        key = new_customer_key()
        session["customer_key"] = key
    return key
