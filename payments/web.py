"""Request-side helpers shared by the blueprints: order ownership, errors, template filters."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any, TypeVar

from flask import Flask, current_app, jsonify, render_template, request, session, url_for
from flask.sessions import SecureCookieSessionInterface
from itsdangerous import BadSignature, URLSafeTimedSerializer
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response

from .errors import ServiceError
from .models import Order
from .orders import new_customer_key

logger = logging.getLogger(__name__)

MAX_REMEMBERED_ORDERS = 50
T = TypeVar("T")


def per_app(app: Flask, name: str, key: object, build: Callable[[], T]) -> T:
    """`build()`, kept in `app.extensions[name]` until `key` changes: for what a request would
    otherwise rebuild from the same inputs every time."""
    cached = app.extensions.get(name)
    if cached is None or (cached[0] is not key and cached[0] != key):
        cached = (key, build())
        app.extensions[name] = cached
    value: T = cached[1]
    return value


def _signer() -> URLSafeTimedSerializer:
    # One per app and key: every confirmation's redirect signs a link.
    key = current_app.config["SECRET_KEY"]
    return per_app(current_app, "order_link_signer", key,
                   lambda: URLSafeTimedSerializer(key, salt="order-link"))  # fmt: skip


def order_token(order_id: str) -> str:
    """A signed token that lets whoever holds the link see this one order."""
    return _signer().dumps(order_id)


def remember_order(order_id: str) -> None:
    """Make this browser session the order's owner."""
    owned = [o for o in session.get("orders", []) if o != order_id]
    session["orders"] = (owned + [order_id])[-MAX_REMEMBERED_ORDERS:]


OPERATOR_IDLE_MINUTES = 30
OPERATOR_SESSION_HOURS = 12


def operator_session() -> str:
    """ "active", "expired" (idle too long or too old) or "none" for this browser session."""
    if session.get("operator") is not True:
        return "none"
    seen, started = session.get("operator_seen_at"), session.get("operator_login_at")
    idle = current_app.config.get("ADMIN_IDLE_MINUTES", OPERATOR_IDLE_MINUTES) * 60
    longest = current_app.config.get("ADMIN_SESSION_HOURS", OPERATOR_SESSION_HOURS) * 3600
    now = time.time()
    if (
        not isinstance(seen, int | float)
        or not isinstance(started, int | float)
        or now - seen > idle
        or now - started > longest
    ):
        return "expired"
    return "active"


def is_operator() -> bool:
    """An operator whose console session is still live (the idle timeout applies everywhere)."""
    return operator_session() == "active"


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
    key = session.get("customer_key")
    if not isinstance(key, str):
        key = new_customer_key()
        session["customer_key"] = key
    return key


def public_url(endpoint: str, **values: Any) -> str:
    """Absolute URL for Toss redirects: PUBLIC_BASE_URL when set, else the request's origin."""
    base = current_app.config.get("PUBLIC_BASE_URL")
    if base:
        return base + url_for(endpoint, **values)
    return url_for(endpoint, _external=True, **values)


def wants_json() -> bool:
    return request.path.startswith(("/api/", "/sandbox/v1/", "/sandbox/api/"))


def error_response(code: str, message: str, status: int) -> tuple[Response | str, int]:
    if wants_json():
        return jsonify(code=code, message=message), status
    return render_template("error.html", code=code, message=message, status=status), status


HTTP_MESSAGES = {
    400: ("INVALID_REQUEST", "잘못된 요청입니다. (Bad request)"),
    403: ("FORBIDDEN", "접근 권한이 없습니다. (Forbidden)"),
    404: ("NOT_FOUND", "페이지를 찾을 수 없습니다. (Not found)"),
    405: ("METHOD_NOT_ALLOWED", "허용되지 않는 요청 방식입니다. (Method not allowed)"),
    413: ("PAYLOAD_TOO_LARGE", "요청이 너무 큽니다. (Payload too large)"),
    415: ("INVALID_REQUEST", "지원하지 않는 형식입니다. (Unsupported media type)"),
    429: (
        "TOO_MANY_REQUESTS",
        "요청이 너무 많습니다. 잠시 후 다시 시도해주세요. (Too many requests)",
    ),
    500: (
        "INTERNAL_ERROR",
        "일시적인 오류가 발생했습니다. 잠시 후 다시 시도해주세요. (Internal error)",
    ),
}


def format_won(value: int | None) -> str:
    return "-" if value is None else f"{value:,}원"


# Toss's bank codes (virtualAccount.bankCode) → the names shoppers know.
BANKS_KO = {
    "02": "KDB산업은행",
    "03": "IBK기업은행",
    "04": "KB국민은행",
    "07": "Sh수협은행",
    "11": "NH농협은행",
    "12": "지역농축협",
    "20": "우리은행",
    "23": "SC제일은행",
    "27": "씨티은행",
    "31": "iM뱅크(대구)",
    "32": "부산은행",
    "34": "광주은행",
    "35": "제주은행",
    "37": "전북은행",
    "39": "경남은행",
    "45": "새마을금고",
    "48": "신협",
    "50": "저축은행",
    "64": "산림조합",
    "71": "우체국예금보험",
    "81": "하나은행",
    "88": "신한은행",
    "89": "케이뱅크",
    "90": "카카오뱅크",
    "92": "토스뱅크",
}
KST = timezone(timedelta(hours=9))


def format_bank(code: str | None) -> str:
    return "-" if not code else BANKS_KO.get(code, code)


def format_kst(value: str | None) -> str:
    """Toss's ISO-8601 times shown as Korean local time, e.g. 2026년 11월 25일 23:59."""
    if not value:
        return "-"
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return value
    if moment.tzinfo is not None:
        moment = moment.astimezone(KST)
    return f"{moment.year}년 {moment.month}월 {moment.day}일 {moment:%H:%M}"


class SessionInterface(SecureCookieSessionInterface):
    """Flask's signed-cookie session, with its serializer built once per set of keys.

    Flask builds it twice per request (to open and to save the session), a few percent of a
    catalog view.
    """

    def get_signing_serializer(self, app: Flask) -> URLSafeTimedSerializer | None:
        keys = (app.secret_key, *(app.config["SECRET_KEY_FALLBACKS"] or ()))
        build = super().get_signing_serializer
        return per_app(app, "session_serializer", keys, lambda: build(app))


def register_web(app: Flask) -> None:
    app.session_interface = SessionInterface()
    app.add_template_filter(format_won, "won")
    app.add_template_filter(format_bank, "bank")
    app.add_template_filter(format_kst, "kst")

    @app.context_processor
    def _cart_count() -> dict[str, Any]:
        cart = session.get("cart") or {}
        return {"cart_count": sum(v for v in cart.values() if isinstance(v, int))}

    @app.errorhandler(ServiceError)
    def _service_error(exc: ServiceError) -> tuple[Response | str, int]:
        return error_response(exc.code, exc.message, exc.http_status)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> tuple[Response | str, int] | HTTPException:
        status = exc.code or 500
        if status < 400:
            return exc
        from flask_wtf.csrf import CSRFError

        if isinstance(exc, CSRFError):
            return error_response(
                "CSRF_FAILED",
                "보안 토큰이 만료되었거나 올바르지 않습니다. "
                "페이지를 새로고침한 뒤 다시 시도해주세요.",
                400,
            )
        code, message = HTTP_MESSAGES.get(status, (exc.name.upper().replace(" ", "_"), exc.name))
        return error_response(code, message, status)

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> tuple[Response | str, int]:
        logger.exception("unhandled error", extra={"path": request.path})
        code, message = HTTP_MESSAGES[500]
        return error_response(code, message, 500)
