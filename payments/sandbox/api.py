"""Toss's core API under /sandbox/v1: same paths, bodies, statuses, codes and key rules."""

from __future__ import annotations

import base64
import binascii
import json
import logging
import time
from dataclasses import dataclass
from typing import Any

from flask import Blueprint, Response, current_app, request
from werkzeug.exceptions import HTTPException

from ..extensions import db
from . import idempotency, service
from .core import CODE_RE, SandboxError, merchant_keys, sandbox_state

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
    family = merchant_keys().secret_family(key)
    if family is None:
        raise SandboxError("UNAUTHORIZED_KEY")
    return Auth(key, family)


def raise_test_code() -> None:
    """`TossPayments-Test-Code: <CODE>` makes a test key answer that error (TOSS.md)."""
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
    sandbox_state().worker.kick()
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
    """Approve a payment the shopper authenticated in the window.

    Every request that gets this far counts in the payment's confirm_requests: an approval in
    its own UPDATE, anything else (a refusal, a replay, a 409) on its own afterwards.
    """
    auth = authenticate()
    key = request.headers.get("Idempotency-Key")
    idempotency.check_key(key)
    body = _body()
    counted = False
    response: Response | None = None
    try:
        raise_test_code()
        slow = float(current_app.config.get("SANDBOX_SLOW_CONFIRM_SECONDS", 35))

        def work() -> Response:
            nonlocal counted
            result = service.confirm(body, auth.family, slow)
            counted = result.counted
            answer = json_response(result.payment)
            if result.delay > 0:
                # The payment is DONE and committed; only the answer is late (client
                # timeouts). The key stays PROCESSING meanwhile: a repeat gets 409, as from
                # Toss.
                db.session.commit()
                db.session.close()
                time.sleep(result.delay)
            return answer

        response = idempotency.run(key, auth.secret_key, "POST", _url(), work)
        return response
    finally:
        if not (counted and response is not None and response.status_code < 500):
            service.count_confirm_request(
                body.get("paymentKey") if isinstance(body, dict) else None
            )


@bp.get("/payments/<payment_key>")
def get_payment(payment_key: str) -> Response:
    authenticate()
    raise_test_code()
    return json_response(service.payment_json(service.require_payment(payment_key)))


@bp.get("/payments/orders/<order_id>")
def get_payment_by_order(order_id: str) -> Response:
    authenticate()
    raise_test_code()
    payment = service.find_payment_by_order(order_id)
    if payment is None:
        raise SandboxError("NOT_FOUND_PAYMENT")
    service.refresh_deadlines(payment)
    return json_response(service.payment_json(payment))


@bp.post("/payments/<payment_key>/cancel")
def cancel(payment_key: str) -> Response:
    """Cancel all or part of a payment."""
    auth = authenticate()
    key = request.headers.get("Idempotency-Key")
    idempotency.check_key(key)
    raise_test_code()
    body = _body()
    return idempotency.run(
        key,
        auth.secret_key,
        "POST",
        _url(),
        lambda: json_response(service.cancel(payment_key, body)),
    )
