"""Who this browser session is, and what it may see: its customerKey for the widget, the orders it
created (or holds a signed link to), and an operator's login with its timeouts.

The routes of every feature ask here; nothing below the routes reads the session.
"""

from __future__ import annotations

import secrets
import time

from flask import current_app, g, request, session
from itsdangerous import BadSignature, URLSafeTimedSerializer

from .admin import sessions as operator_sessions
from .core.models import Order
from .core.states import IN_FLIGHT, SETTLED

MAX_REMEMBERED_ORDERS = 50
OPERATOR_KEYS = ("operator", "operator_sid", "operator_login_at", "operator_seen_at")


# -- the shopper -----------------------------------------------------------------------------------


def new_customer_key() -> str:
    """A random customerKey: Toss asks that it never be an e-mail address or phone number."""
    return "cust_" + secrets.token_urlsafe(18)


def customer_key() -> str:
    """This browser's customerKey for the widget (random, kept in the session)."""
    key = session.get("customer_key")
    if not isinstance(key, str):
        key = new_customer_key()
        session["customer_key"] = key
    return key


def _signer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt="order-link")


def order_token(order_id: str) -> str:
    """A signed token that lets whoever holds the link see this one order."""
    return _signer().dumps(order_id)


def remember_order(order_id: str) -> None:
    """Make this browser session the order's owner."""
    owned = [o for o in session.get("orders", []) if o != order_id]
    session["orders"] = (owned + [order_id])[-MAX_REMEMBERED_ORDERS:]


def owns_order(order_id: str) -> bool:
    """This browser session created the order (a signed link does not make it the owner)."""
    owned = session.get("orders", [])
    return isinstance(owned, list) and order_id in owned


def _same_key(a: str | None, b: str) -> bool:
    return a is not None and secrets.compare_digest(a.encode(), b.encode())


def may_hold_link(order: Order, payment_key: str) -> bool:
    """Whether the browser back from Toss with `payment_key` may be handed the signed link: the
    order's own session, or the payer whose payment Toss confirmed for this order (the stored
    payment is Toss's record of it). The success URL is public, so knowing an orderId and its
    amount is not enough."""
    if owns_order(order.order_id):
        return True
    stored = order.payment
    return (
        order.status in SETTLED
        and stored is not None
        and _same_key(stored.payment_key, payment_key)
    )


def pays_in_flight(order: Order, payment_key: str) -> bool:
    """The browser holds the paymentKey of the attempt being confirmed: it may wait for Toss's
    answer at the success URL (the link comes once Toss confirmed it)."""
    return order.status in IN_FLIGHT and _same_key(order.payment_key, payment_key)


def can_view(order: Order) -> bool:
    """Owner (the creating session or a valid signed link) or an operator."""
    if owns_order(order.order_id) or is_operator():
        return True
    token = request.args.get("t")
    if not token or len(token) > 300:
        return False
    try:
        signed = _signer().loads(token, max_age=current_app.config["ORDER_LINK_MAX_AGE"])
    except BadSignature:
        return False
    return bool(signed == order.order_id)


# -- the operator ----------------------------------------------------------------------------------
# The cookie names a server-side session (admin/sessions.py) by a random token: a copy of the
# cookie is worth nothing once that session is revoked (logout) or has timed out.


def _server_state(token: str) -> str:
    """The server's word on this token ("live", "expired" or "ended"), asked once a request."""
    cached = g.get("operator_server_state")
    if cached is None or cached[0] != token:
        cached = (token, operator_sessions.state(token))
        g.operator_server_state = cached
    return str(cached[1])


def operator_session() -> str:
    """ "active", "expired" (idle too long or too old) or "none" for this browser session."""
    if session.get("operator") is not True:
        return "none"
    token = session.get("operator_sid")
    server = _server_state(token) if isinstance(token, str) and token else "ended"
    if server == "ended":
        # Logged out (perhaps in another browser) or never recorded: the keys are dead weight.
        for key in OPERATOR_KEYS:
            session.pop(key, None)
        return "none"
    seen, started = session.get("operator_seen_at"), session.get("operator_login_at")
    idle = current_app.config["ADMIN_IDLE_MINUTES"] * 60
    longest = current_app.config["ADMIN_SESSION_HOURS"] * 3600
    now = time.time()
    if (
        server == "expired"
        or not isinstance(seen, int | float)
        or not isinstance(started, int | float)
        or now - seen > idle
        or now - started > longest
    ):
        return "expired"
    return "active"


def is_operator() -> bool:
    """An operator whose console session is still live (the idle timeout applies everywhere)."""
    return operator_session() == "active"


def start_operator_session() -> None:
    """A new server-side session (the one this browser held before, if any, is revoked)."""
    previous = session.get("operator_sid")
    token = operator_sessions.begin(replacing=previous if isinstance(previous, str) else None)
    g.operator_server_state = (token, "live")
    now = int(time.time())
    session.pop("csrf_token", None)  # a fresh CSRF token for the operator session
    session.update(operator=True, operator_sid=token, operator_login_at=now, operator_seen_at=now)


def touch_operator_session() -> None:
    session["operator_seen_at"] = int(time.time())
    token = session.get("operator_sid")
    if isinstance(token, str):
        operator_sessions.touch(token)


def end_operator_session() -> None:
    """Log out: the server-side session is revoked, for every copy of the cookie."""
    token = session.get("operator_sid")
    if isinstance(token, str) and token:
        operator_sessions.revoke(token)
    g.pop("operator_server_state", None)
    for key in OPERATOR_KEYS:
        session.pop(key, None)
