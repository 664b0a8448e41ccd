"""Toss's core API under /sandbox/v1: same paths, bodies, statuses, codes and key rules."""

from __future__ import annotations

import base64
import binascii
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flask import Blueprint, Response, request
from werkzeug.exceptions import HTTPException

from . import confirm as confirming
from . import helpers, idempotency, receipts
from .cancel import cancel as cancel_payment
from .db import db
from .errors import CODE_RE, SandboxError
from .payments import find_payment_by_order, payment_json, refresh_deadlines, require_payment
from .state import state

logger = logging.getLogger(__name__)

bp = Blueprint("sandbox_api", __name__, url_prefix="/sandbox/v1")


def json_response(data: Any, status: int = 200) -> Response:
    """JSON in Toss's field order (Flask's jsonify would sort the keys)."""
    return Response(
        json.dumps(data, ensure_ascii=False), status=status, mimetype="application/json"
    )


@dataclass(frozen=True)
class Auth:
    secret_key: str
    family: str  # "gsk" (widget) or "sk" (API)


def authenticate() -> Auth:
    """Basic auth as Toss checks it: `Basic base64("<secretKey>:")`."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    token = token.strip()
    if scheme.lower() != "basic" or not token:
        raise SandboxError("INCORRECT_BASIC_AUTH_FORMAT")
    try:
        decoded = base64.b64decode(token, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise SandboxError("INCORRECT_BASIC_AUTH_FORMAT") from None
    if ":" not in decoded:
        raise SandboxError("INCORRECT_BASIC_AUTH_FORMAT")
    key = decoded.split(":", 1)[0]
    family = state().keys.secret_family(key)
    if family is None:
        raise SandboxError("UNAUTHORIZED_KEY")
    return Auth(key, family)


def raise_test_code() -> None:
    """`TossPayments-Test-Code: <CODE>` makes a test key answer that error, as at Toss."""
    code = request.headers.get("TossPayments-Test-Code")
    if code is None:
        return
    code = code.strip()
    if not CODE_RE.match(code):
        raise SandboxError("INVALID_REQUEST", "TossPayments-Test-Code 값이 올바르지 않습니다.")
    raise SandboxError(code)


def _body() -> Any:
    return request.get_json(force=True, silent=True)


def _url() -> str:
    query = request.query_string.decode("latin-1")
    return request.path + (f"?{query}" if query else "")


@bp.after_request
def kick_webhooks(response: Response) -> Response:
    """Wake the webhook sender: a request may have queued deliveries."""
    state().sender.kick()
    return response


@bp.after_request
def hold_answer(response: Response) -> Response:
    """Hold every answer `latency_ms`, as a remote Toss's network and card networks would."""
    latency = state().settings.latency_ms
    if latency:
        time.sleep(latency / 1000)
    return response


@bp.errorhandler(SandboxError)
def _sandbox_error(exc: SandboxError) -> Response:
    db.session.rollback()
    return json_response(exc.body(), exc.status)


@bp.errorhandler(HTTPException)
def _http_error(exc: HTTPException) -> Response:
    status = exc.code or 500
    code = "INVALID_REQUEST" if status < 500 else "FAILED_INTERNAL_SYSTEM_PROCESSING"
    return json_response({"code": code, "message": exc.description or exc.name}, status)


@bp.errorhandler(Exception)
def _unexpected(exc: Exception) -> Response:
    db.session.rollback()
    logger.exception("sandbox API error", extra={"path": request.path})
    err = SandboxError("FAILED_INTERNAL_SYSTEM_PROCESSING")
    return json_response(err.body(), err.status)


@bp.post("/payments/confirm")
def confirm() -> Response:
    """Approve a payment the shopper authenticated in the window."""
    auth = authenticate()
    key = request.headers.get("Idempotency-Key")
    idempotency.check_key(key)
    body = _body()
    # Counted for the test helpers' view, whatever the answer turns out to be.
    helpers.count_confirm_request(body.get("paymentKey") if isinstance(body, dict) else None)
    raise_test_code()

    def work() -> Response:
        result = confirming.confirm(body, auth.family)
        answer = json_response(result.payment)
        if result.delay > 0:
            # The payment is DONE and committed; only the answer is late (client timeouts).
            # The key stays PROCESSING meanwhile: a repeat gets 409, as from Toss.
            db.session.commit()
            db.session.close()
            time.sleep(result.delay)
        return answer

    return idempotency.run(key, auth.secret_key, "POST", _url(), work)


@bp.get("/payments/<payment_key>")
def get_payment(payment_key: str) -> Response:
    authenticate()
    raise_test_code()
    return json_response(payment_json(require_payment(payment_key)))


@bp.get("/payments/orders/<order_id>")
def get_payment_by_order(order_id: str) -> Response:
    authenticate()
    raise_test_code()
    payment = find_payment_by_order(order_id)
    if payment is None:
        raise SandboxError("NOT_FOUND_PAYMENT")
    refresh_deadlines(payment)
    return json_response(payment_json(payment))


def _idempotent_post(answer: Callable[[Any], dict[str, Any]]) -> Response:
    """An authenticated POST run once per Idempotency-Key: `answer(body)` makes the answer."""
    auth = authenticate()
    key = request.headers.get("Idempotency-Key")
    idempotency.check_key(key)
    raise_test_code()
    body = _body()
    return idempotency.run(
        key, auth.secret_key, "POST", _url(), lambda: json_response(answer(body))
    )


@bp.post("/payments/<payment_key>/cancel")
def cancel(payment_key: str) -> Response:
    """Cancel all or part of a payment."""
    return _idempotent_post(lambda body: cancel_payment(payment_key, body))


@bp.post("/cash-receipts")
def issue_cash_receipt() -> Response:
    """Issue a cash receipt."""
    origin = request.host_url.rstrip("/")
    return _idempotent_post(lambda body: receipts.issue(body, origin))


@bp.post("/cash-receipts/<receipt_key>/cancel")
def cancel_cash_receipt(receipt_key: str) -> Response:
    """Cancel a cash receipt, all of it or `amount` of it."""
    return _idempotent_post(lambda body: receipts.cancel(receipt_key, body))
