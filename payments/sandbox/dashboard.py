"""The sandbox's developer tools over HTTP: the dashboard page, the helper routes
`toss-sandbox trigger` calls for a cancel or a refused approval, and the webhook destination
`toss-sandbox listen` takes over.

The dashboard is to the sandbox what Toss's developer centre is to its test environment: the
test payments, with buttons that cancel one or make a virtual account's deposit
(https://docs.tosspayments.com/resources/faq). Its forms carry no CSRF token: the sandbox is a
development tool that never runs in production (`app.create_app` refuses APP_ENV=production),
and the page says so.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from flask import Blueprint, Response, redirect, render_template, request, url_for
from werkzeug.exceptions import HTTPException

from . import helpers, windows
from .api import json_response, kick_webhooks
from .clock import KST
from .db import db
from .errors import SandboxError
from .models import (
    ABORTED,
    CANCELED,
    DONE,
    EXPIRED,
    IN_PROGRESS,
    PARTIAL_CANCELED,
    READY,
    VIRTUAL_ACCOUNT,
    WAITING_FOR_DEPOSIT,
    SandboxPayment,
)
from .payments import METHOD_LABELS, find_payment, parse_amount
from .views import won

logger = logging.getLogger(__name__)

bp = Blueprint("sandbox_tools", __name__, url_prefix="/sandbox")
bp.after_request(kick_webhooks)


@bp.app_context_processor
def _test_cards() -> dict[str, Any]:
    """The payment window lists the test cards its card field takes."""
    return {"sandbox_test_cards": windows.TEST_CARDS}


PER_PAGE = 20
MAX_PAGE = 100_000
STATUS_LABELS = {
    READY: "결제창 열림",
    IN_PROGRESS: "인증 완료 · 승인 대기",
    WAITING_FOR_DEPOSIT: "입금 대기",
    DONE: "결제 완료",
    CANCELED: "취소",
    PARTIAL_CANCELED: "부분 취소",
    ABORTED: "승인 실패",
    EXPIRED: "만료",
}
ACTION_LABELS = {
    "deposit": "입금하기",
    "deposit-error": "입금 오류 (입금 대기로)",
    "expire": "만료시키기",
    "cancel": "결제 취소",
    "abort": "승인 실패 (ABORTED)",
}
REFUND_LABELS = {"NONE": "없음", "PENDING": "환불 진행 중", "COMPLETED": "환불 완료"}


def _label(action: str, payment: SandboxPayment) -> str:
    if action == "expire" and payment.status == WAITING_FOR_DEPOSIT:
        return "입금 기한 지나게 하기"
    return ACTION_LABELS[action]


def _kst(value: datetime | None) -> str:
    return value.astimezone(KST).strftime("%Y-%m-%d %H:%M") if value else "-"


def _is_page() -> bool:
    return request.path.startswith("/sandbox/dashboard")


@bp.errorhandler(SandboxError)
def _sandbox_error(exc: SandboxError) -> Response:
    db.session.rollback()
    if _is_page():
        try:
            page = request.values.get("page")
        except HTTPException:  # a form too large to read: the error is shown on page 1
            page = None
        return _dashboard(_page_number(page), error=exc)
    return json_response(exc.body(), exc.status)


@bp.errorhandler(HTTPException)
def _http_error(exc: HTTPException) -> Response:
    return json_response(
        {"code": "INVALID_REQUEST", "message": exc.description or exc.name}, exc.code or 500
    )


# -- the dashboard ---------------------------------------------------------------------------------


def _page_number(raw: str | None) -> int:
    try:
        # Bounded: an OFFSET beyond 64 bits is a database error, not an empty page.
        return min(max(1, int(raw or 1)), MAX_PAGE)
    except ValueError:
        return 1


@bp.get("/dashboard")
def dashboard() -> Response:
    """The sandbox's payments, newest first, PER_PAGE a page, with a form per action."""
    page = _page_number(request.args.get("page"))
    done = None
    action, key = request.args.get("done"), request.args.get("key")
    if action in ACTION_LABELS and key:
        payment = find_payment(key)
        if payment is not None:
            done = {"action": _label(action, payment), "key": key, "status": payment.status}
    return _dashboard(page, done=done)


def _dashboard(
    page: int, *, done: dict[str, str] | None = None, error: SandboxError | None = None
) -> Response:
    payments, total = helpers.recent_payments(page, PER_PAGE)
    counts = helpers.webhook_counts([p.payment_key for p in payments if p.payment_key])
    rows: list[dict[str, Any]] = []
    for p in payments:
        sent = counts.get(p.payment_key or "", {})
        actions = helpers.available_actions(p)
        rows.append(
            {
                "payment": p,
                "status_label": STATUS_LABELS.get(p.status, p.status),
                "method": "-" if p.status == READY else METHOD_LABELS.get(p.method, p.method),
                "virtual_account": p.method == VIRTUAL_ACCOUNT and p.va_account_number,
                "due": _kst(p.va_due_date),
                "refund": REFUND_LABELS.get(p.va_refund_status or "NONE", p.va_refund_status),
                "requested": _kst(p.requested_at),
                "sent": sent.get("DELIVERED", 0),
                "pending": sent.get("PENDING", 0),
                "failed": sent.get("FAILED", 0),
                "actions": [(name, _label(name, p)) for name in actions],
            }
        )
    db.session.commit()
    pages = max(1, -(-total // PER_PAGE))
    response = Response(
        render_template(
            "sandbox/dashboard.html",
            rows=rows,
            page=page,
            pages=pages,
            total=total,
            done=done,
            error=error,
            webhook_url=helpers.webhook_url(),
            won=won,
        ),
        status=error.status if error else 200,
    )
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.post("/dashboard/payments/<payment_key>/<action>")
def dashboard_action(payment_key: str, action: str) -> Response:
    """A dashboard button: run the action, then back to the page (303) showing its result."""
    run = helpers.ACTIONS.get(action)
    if run is None:
        raise SandboxError("INVALID_REQUEST", f"알 수 없는 작업입니다: {action}", 404)
    if find_payment(payment_key) is None:
        raise SandboxError("NOT_FOUND_PAYMENT")
    run(payment_key)
    page = _page_number(request.form.get("page"))
    target = url_for("sandbox_tools.dashboard", page=page, done=action, key=payment_key)
    return redirect(target, 303)  # type: ignore[return-value]


# -- helper routes for toss-sandbox trigger --------------------------------------------------------


def _json_object() -> dict[str, Any]:
    data = request.get_json(force=True, silent=True)
    return data if isinstance(data, dict) else {}


@bp.post("/api/payments/<ref>/cancel")
def api_cancel(ref: str) -> Response:
    """Cancel the payment (paymentKey or orderId) as the merchant's console would: all of it,
    or {"cancelAmount"}; Toss's cancel with its webhooks. Not Toss's API (that is
    /sandbox/v1/payments/{paymentKey}/cancel)."""
    raw = _json_object().get("cancelAmount")
    amount = None if raw is None else parse_amount(raw, "cancelAmount")
    return json_response(helpers.cancel(ref, amount))


@bp.post("/api/payments/<ref>/abort")
def api_abort(ref: str) -> Response:
    """The approval of an authenticated payment fails: ABORTED with {"code"} (default
    REJECT_CARD_PAYMENT) as its failure, with its webhook."""
    code = _json_object().get("code")
    if code is not None and not isinstance(code, str):
        raise SandboxError("INVALID_REQUEST", "code는 문자열이어야 합니다.")
    return json_response(helpers.abort(ref, code))


# -- the webhook destination (toss-sandbox listen) -----------------------------------------------


@bp.get("/api/webhook-url")
def api_webhook_url() -> Response:
    """{"webhookUrl"}: where this sandbox sends the webhooks it queues from now on."""
    return json_response({"webhookUrl": helpers.webhook_url()})


@bp.put("/api/webhook-url")
def api_set_webhook_url() -> Response:
    """{"webhookUrl": URL or null, "expected"?: URL or null} → {"webhookUrl", "previous"}.
    With "expected", only while the current URL is that one (else 409 WEBHOOK_URL_CHANGED)."""
    body = _json_object()
    url = body.get("webhookUrl")
    expected = body.get("expected")
    for name, value in (("webhookUrl", url), ("expected", expected)):
        if value is not None and not isinstance(value, str):
            raise SandboxError("INVALID_REQUEST", f"{name}는 URL 문자열 또는 null이어야 합니다.")
    previous = helpers.set_webhook_url(url, expected=expected, check_expected="expected" in body)
    logger.info("sandbox webhook url", extra={"webhook_url": url, "previous": previous})
    return json_response({"webhookUrl": helpers.webhook_url(), "previous": previous})
