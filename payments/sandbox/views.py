"""The browser side of the sandbox (widget script, payment window, receipt) and the test helpers."""

from __future__ import annotations

import logging
import os
from typing import Any

from flask import (
    Blueprint,
    Response,
    redirect,
    render_template,
    request,
    send_from_directory,
    url_for,
)
from werkzeug.exceptions import HTTPException

from . import helpers, windows
from .api import json_response, kick_webhooks
from .clock import KST
from .db import db
from .errors import SandboxError
from .models import CONFIRMED, SandboxPayment
from .payments import METHOD_LABELS, find_payment, payment_json, refresh_deadlines, require_payment

logger = logging.getLogger(__name__)

STATIC_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")

bp = Blueprint(
    "sandbox",
    __name__,
    url_prefix="/sandbox",
    static_folder=STATIC_DIR,
    static_url_path="/static",
)

# Pages a browser shows; everything else under /sandbox answers JSON.
_HTML_PREFIXES = ("/sandbox/window/", "/sandbox/receipt/")


def won(amount: int) -> str:
    """103000 → "103,000원"."""
    return f"{amount:,}원"


def _wants_html() -> bool:
    return request.path.startswith(_HTML_PREFIXES)


# What the stand-in script (static/widget.js) calls from the merchant's page, which may be on
# another origin than the sandbox (a stand-alone sandbox): answered with CORS, errors included.
_CORS_PATHS = ("/sandbox/widget/sessions", "/sandbox/payment/sessions")


def _cors(response: Response) -> Response:
    # The widget script may be served to a shop on another origin (stand-alone sandbox).
    response.headers["Access-Control-Allow-Origin"] = "*"
    response.headers["Access-Control-Allow-Methods"] = "POST, OPTIONS"
    response.headers["Access-Control-Allow-Headers"] = "Content-Type"
    response.headers["Access-Control-Max-Age"] = "600"
    return response


def _page(template: str, status: int = 200, **context: Any) -> Response:
    response = Response(render_template(template, won=won, **context), status=status)
    response.headers["Cache-Control"] = "no-store"
    return response


bp.after_request(kick_webhooks)


@bp.errorhandler(SandboxError)
def _sandbox_error(exc: SandboxError) -> Response:
    db.session.rollback()
    if _wants_html():
        return _page("sandbox/message.html", exc.status, title=exc.code, message=exc.message)
    response = json_response(exc.body(), exc.status)
    return _cors(response) if request.path in _CORS_PATHS else response


@bp.errorhandler(HTTPException)
def _http_error(exc: HTTPException) -> Response:
    status = exc.code or 500
    message = exc.description or exc.name
    if _wants_html():
        return _page("sandbox/message.html", status, title=exc.name, message=message)
    response = json_response({"code": "INVALID_REQUEST", "message": message}, status)
    return _cors(response) if request.path in _CORS_PATHS else response


@bp.errorhandler(Exception)
def _unexpected(exc: Exception) -> Response:
    db.session.rollback()
    logger.exception("sandbox error", extra={"path": request.path})
    err = SandboxError("FAILED_INTERNAL_SYSTEM_PROCESSING")
    if _wants_html():
        return _page("sandbox/message.html", 500, title=err.code, message=err.message)
    response = json_response(err.body(), err.status)
    return _cors(response) if request.path in _CORS_PATHS else response


def _json_body() -> dict[str, Any]:
    data = request.get_json(force=True, silent=True)
    if not isinstance(data, dict):
        raise SandboxError("INVALID_REQUEST", "JSON 객체 본문이 필요합니다.")
    return data


def _origin() -> str:
    return request.host_url.rstrip("/")


# -- widget stand-in -------------------------------------------------------------------------------


@bp.get("/widget/v2/standard")
def widget_script() -> Response:
    """The stand-in for https://js.tosspayments.com/v2/standard."""
    response = send_from_directory(
        STATIC_DIR, "widget.js", mimetype="application/javascript", max_age=0
    )
    response.headers["Cache-Control"] = "no-cache"
    return response


@bp.route("/widget/sessions", methods=["POST", "OPTIONS"])
def widget_session() -> Response:
    """widgets().requestPayment registers the window here, then shows `windowUrl` (in an
    iframe over the page on a PC, by navigating on a phone)."""
    return _open_session(windows.WIDGETS)


@bp.route("/payment/sessions", methods=["POST", "OPTIONS"])
def payment_session() -> Response:
    """payment().requestPayment (the payment window: an API-family client key and a `method`)
    registers the window here, then shows `windowUrl` as the widget's does."""
    return _open_session(windows.PAYMENT)


def _open_session(product: str) -> Response:
    if request.method == "OPTIONS":
        return _cors(Response(status=204))
    data = {k: v for k, v in _json_body().items() if k != "scenario"}
    payment = windows.create_session(windows.parse_session_request(data, product), _origin())
    window_url = url_for("sandbox.window", token=payment.session_token, _external=True)
    return _cors(json_response({"windowUrl": window_url, "paymentKey": payment.payment_key}, 201))


# -- payment window --------------------------------------------------------------------------------


def _session_or_404(token: str) -> SandboxPayment:
    payment = windows.find_session(token)
    if payment is None:
        raise SandboxError("NOT_FOUND_PAYMENT_SESSION")
    return payment


@bp.get("/window/<token>")
def window(token: str) -> Response:
    """The payment window: order, amount and one button per outcome."""
    payment = _session_or_404(token)
    refresh_deadlines(payment)
    return _page(
        "sandbox/window.html",
        payment=payment,
        open=windows.window_open(payment),
        scenarios=windows.window_scenarios(payment),
        hints=windows.SCENARIO_HINTS,
        method_label=METHOD_LABELS.get(payment.method, "카드"),
        expires_at=payment.window_expires_at.astimezone(KST).strftime("%Y-%m-%d %H:%M"),
    )


@bp.post("/window/<token>")
def window_submit(token: str) -> Response:
    """The shopper picked an outcome: back to the shop's successUrl or failUrl."""
    payment = _session_or_404(token)
    scenario = request.form.get("scenario", "")
    if "card_number" in request.form:  # a test card number picks the outcome instead
        scenario = windows.scenario_for_card(request.form["card_number"])
    target = windows.finish_session(payment, scenario)
    return redirect(target, 303)  # type: ignore[return-value]


@bp.get("/receipt/<payment_key>")
def receipt(payment_key: str) -> Response:
    payment = find_payment(payment_key)
    if payment is None or payment.status not in CONFIRMED:
        raise SandboxError("NOT_FOUND_PAYMENT")
    return _page(
        "sandbox/receipt.html",
        payment=payment,
        data=payment_json(payment),
        method_label=METHOD_LABELS.get(payment.method, "카드"),
    )


# -- test helpers ----------------------------------------------------------------------------------


@bp.post("/api/sessions")
def api_session() -> Response:
    """What the widget (or, with "product": "payment", payment()) and the window do for a
    shopper who picks `scenario` → {"redirectUrl", "paymentKey"} (the window's paymentKey, which
    the redirect carries only on success)."""
    data = _json_body()
    data.setdefault("scenario", "approve")
    # The widget's flow unless the body asks for the payment window ("product": "payment").
    product = windows.PAYMENT if data.pop("product", None) == windows.PAYMENT else windows.WIDGETS
    req = windows.parse_session_request(data, product)
    payment = windows.create_session(req, _origin())
    redirect_url = windows.finish_session(payment, req.scenario or "approve")
    return json_response({"redirectUrl": redirect_url, "paymentKey": payment.payment_key})


@bp.post("/api/virtual-accounts/<order_id>/deposit")
def api_deposit(order_id: str) -> Response:
    """The buyer pays the virtual account: WAITING_FOR_DEPOSIT → DONE, with webhooks."""
    body = request.get_json(force=True, silent=True)
    return json_response(helpers.deposit(order_id, body))


@bp.post("/api/virtual-accounts/<order_id>/deposit-error")
def api_deposit_error(order_id: str) -> Response:
    """The bank reports an error on the deposit: DONE → WAITING_FOR_DEPOSIT, with webhooks."""
    return json_response(helpers.deposit_error(order_id))


@bp.get("/api/payments/<payment_key>")
def api_payment(payment_key: str) -> Response:
    """The Payment plus {"sandbox": {"confirmRequests", "webhooksSent", …}}; no auth."""
    return json_response(helpers.sandbox_view(require_payment(payment_key)))


@bp.post("/api/payments/<payment_key>/expire")
def api_expire(payment_key: str) -> Response:
    """Expire the payment as if its window or confirm deadline (or deposit due date) passed."""
    return json_response(helpers.expire(payment_key))
