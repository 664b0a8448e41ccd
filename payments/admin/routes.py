"""Operator console: login, dashboard, orders with their timeline, refunds, webhook inbox.

Every route needs the operator login (password checked against ADMIN_PASSWORD_HASH, session
based, idle timeout); without a hash the console does not exist and every route is 404.
Login attempts are rate-limited per client IP with Flask-Limiter. Views stay thin: parse →
one service call (`queries` for reads, `refunds`, the webhook worker's `replay`) → render or
redirect.
"""

from __future__ import annotations

import logging
import secrets
from typing import Any

from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)
from werkzeug.exceptions import TooManyRequests
from werkzeug.security import check_password_hash
from werkzeug.wrappers import Response

from ..access import (
    end_operator_session,
    is_operator,
    operator_session,
    start_operator_session,
    touch_operator_session,
)
from ..core.clock import utcnow
from ..core.errors import ServiceError
from ..core.formats import BANKS_KO
from ..core.states import LABELS_KO, WebhookStatus
from ..webhooks.worker import replay as replay_webhooks
from . import queries, receipts
from .chart import bar_chart
from .fulfilment import advance, parse_step_form
from .refunds import parse_refund_form, parse_restock, refund_request_key, request_refund

logger = logging.getLogger(__name__)

bp = Blueprint("admin", __name__, url_prefix="/admin")

# One shared password, so there is no operator identity beyond "the operator".
OPERATOR = "admin"
_PUBLIC = frozenset({"admin.login", "admin.login_submit"})

STATUS_LABELS = {status.value: label for status, label in LABELS_KO.items()}
SOURCE_LABELS = {
    "shop": "상점",
    "redirect": "결제창 복귀",
    "api": "API",
    "webhook": "웹훅",
    "worker": "워커",
    "reconcile": "대사 작업",
    "admin": "관리자",
}
EVENT_LABELS = {
    "transition": "상태 변경",
    "created": "주문 생성",
    "amount_mismatch": "금액 불일치",
    "toss_error": "Toss 오류",
    "payment_failed": "결제창 실패",
    "payment_mismatch": "결제 정보 불일치",
    "refund_requested": "환불 요청",
    "refund_failed": "환불 실패",
    "other_payment": "다른 결제창의 결제",
    "cash_receipt_requested": "현금영수증 발급 요청",
    "cash_receipt_issued": "현금영수증 발급",
    "cash_receipt_failed": "현금영수증 실패",
    "cash_receipt_cancel": "현금영수증 취소 요청",
    "cash_receipt_canceled": "현금영수증 취소",
    "stock_released": "재고 반환",
    "fulfilment": "배송 단계",
}
WEBHOOK_LABELS = {
    "PENDING": "대기",
    "PROCESSING": "처리 중",
    "DONE": "완료",
    "IGNORED": "무시",
    "REJECTED": "거부",
    "FAILED": "실패",
}
REFUND_LABELS = {"PENDING": "확인 중", "DONE": "완료", "FAILED": "실패"}


# -- session and rate limit ------------------------------------------------------------------------


@bp.errorhandler(TooManyRequests)
def _too_many(exc: TooManyRequests) -> tuple[str, int]:
    logger.warning("security: admin login rate limit hit", extra={"ip": request.remote_addr})
    message = "로그인 시도가 너무 많습니다. 1분 후 다시 시도해주세요. (Too many requests)"
    return render_template("admin/login.html", error=message, next=None), 429


def _safe_next(target: str | None) -> str | None:
    """Only a path inside the console: never an open redirect, never a control character
    (CR/LF would split the Location header)."""
    if not target or not target.startswith("/admin") or "\\" in target or "//" in target:
        return None
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in target):
        return None
    return target[:500]


def _to_login() -> Response:
    target = request.full_path.rstrip("?") if request.method == "GET" else None
    return redirect(url_for(".login", next=_safe_next(target)), 303)


@bp.before_request
def _guard() -> Response | None:
    if not current_app.config.get("ADMIN_PASSWORD_HASH"):
        abort(404)
    if request.endpoint in _PUBLIC:
        return None
    state = operator_session()
    if state == "none":
        return _to_login()
    if state == "expired":
        end_operator_session()
        flash("오랫동안 사용하지 않아 로그아웃되었습니다. 다시 로그인해주세요.")
        return _to_login()
    touch_operator_session()
    return None


@bp.after_request
def _no_store(response: Response) -> Response:
    # Orders and payment details must not linger in shared or browser caches.
    response.headers["Cache-Control"] = "no-store"
    return response


def _password_ok(password: str) -> bool:
    stored = current_app.config["ADMIN_PASSWORD_HASH"]
    try:
        return bool(password) and check_password_hash(stored, password)
    except (ValueError, TypeError):
        logger.error("ADMIN_PASSWORD_HASH is not a werkzeug password hash")
        return False


@bp.get("/login")
def login() -> str | Response:
    if is_operator():
        return redirect(url_for(".home"), 303)
    return render_template("admin/login.html", next=_safe_next(request.args.get("next")))


@bp.post("/login")
def login_submit() -> Response | tuple[str, int]:
    next_url = _safe_next(request.form.get("next"))
    if not _password_ok(request.form.get("password", "")):
        # Never log what was typed: it may be the real password with a typo.
        logger.warning("security: admin login failed", extra={"ip": request.remote_addr})
        page = render_template(
            "admin/login.html", error="비밀번호가 올바르지 않습니다.", next=next_url
        )
        return page, 401
    start_operator_session()
    logger.info("admin login", extra={"ip": request.remote_addr})
    return redirect(next_url or url_for(".home"), 303)


@bp.post("/logout")
def logout() -> Response:
    end_operator_session()
    logger.info("admin logout", extra={"ip": request.remote_addr})
    flash("로그아웃되었습니다.")
    return redirect(url_for(".login"), 303)


# -- pages -----------------------------------------------------------------------------------------


@bp.get("/")
def home() -> str:
    summary = queries.dashboard(utcnow())
    return render_template("admin/dashboard.html", d=summary, chart=bar_chart(summary.hours))


@bp.get("/orders")
def orders() -> str | tuple[str, int]:
    try:
        filters = queries.parse_order_filters(request.args)
    except ServiceError as exc:
        return render_template("admin/orders.html", error=exc.message, result=None), 400
    return render_template(
        "admin/orders.html", filters=filters, result=queries.list_orders(filters)
    )


def _detail_page(order_id: str, **ctx: Any) -> str:
    detail = queries.order_detail(order_id)
    if detail is None:
        abort(404)
    # A fresh one-time key per rendered form: a double-clicked submit repeats it and is
    # answered from the first refund instead of refunding again.
    token = secrets.token_urlsafe(16)
    return render_template("admin/order.html", d=detail, banks=BANKS_KO, refund_token=token, **ctx)


@bp.get("/orders/<order_id>")
def order(order_id: str) -> str:
    return _detail_page(order_id, form={})


@bp.post("/orders/<order_id>/refunds")
def refund(order_id: str) -> Response | tuple[str, int]:
    try:
        amount, reason, account = parse_refund_form(request.form)
        done = request_refund(
            order_id, amount, reason, account, OPERATOR,
            request_key=refund_request_key(request.form), restock=parse_restock(request.form),
        )  # fmt: skip
    except ServiceError as exc:
        if exc.code == "ORDER_NOT_FOUND":
            abort(404)
        page = _detail_page(order_id, form=request.form, refund_error=exc)
        return page, exc.http_status
    flash(f"환불되었습니다: {done.amount:,}원")
    try:
        # The order's cash receipt follows the refund (a partial cancel for a partial refund).
        if receipts.follow_refund(order_id, done.amount, OPERATOR) is not None:
            flash(f"현금영수증에서 {done.amount:,}원을 취소했습니다.")
    except ServiceError as exc:
        flash(f"현금영수증 취소가 필요합니다: {exc.message}")
    return redirect(url_for(".order", order_id=order_id), 303)


@bp.post("/orders/<order_id>/fulfilment")
def fulfilment(order_id: str) -> Response | tuple[str, int]:
    try:
        step, carrier, tracking = parse_step_form(request.form)
        done = advance(order_id, step, OPERATOR, carrier=carrier, tracking_number=tracking)
    except ServiceError as exc:
        if exc.code == "ORDER_NOT_FOUND":
            abort(404)
        page = _detail_page(order_id, form=request.form, fulfilment_error=exc)
        return page, exc.http_status
    flash(f"배송 단계를 {done.fulfilment_label}(으)로 바꿨습니다.")
    return redirect(url_for(".order", order_id=order_id), 303)


@bp.post("/orders/<order_id>/cash-receipt")
def issue_cash_receipt(order_id: str) -> Response | tuple[str, int]:
    try:
        kind, number = receipts.parse_receipt_form(request.form)
        receipts.issue_receipt(order_id, kind, number, OPERATOR)
    except ServiceError as exc:
        if exc.code == "ORDER_NOT_FOUND":
            abort(404)
        return _detail_page(order_id, form={}, receipt_error=exc), exc.http_status
    flash("현금영수증을 발급했습니다.")
    return redirect(url_for(".order", order_id=order_id), 303)


@bp.post("/orders/<order_id>/cash-receipt/cancel")
def cancel_cash_receipt(order_id: str) -> Response | tuple[str, int]:
    try:
        amount = receipts.parse_cancel_form(request.form)
        done = receipts.cancel_receipt(order_id, amount, OPERATOR)
    except ServiceError as exc:
        if exc.code == "ORDER_NOT_FOUND":
            abort(404)
        return _detail_page(order_id, form={}, receipt_error=exc), exc.http_status
    flash(f"현금영수증을 취소했습니다. 남은 금액: {done.remaining:,}원")
    return redirect(url_for(".order", order_id=order_id), 303)


@bp.get("/webhooks")
def webhook_inbox() -> str | tuple[str, int]:
    try:
        filters = queries.parse_webhook_filters(request.args)
    except ServiceError as exc:
        page = render_template("admin/webhooks.html", error=exc.message, result=None, filters=None)
        return page, 400
    return render_template(
        "admin/webhooks.html", filters=filters, result=queries.list_webhooks(filters)
    )


def _back_to_inbox() -> Response:
    status = request.form.get("status")
    keep = status if status in set(WebhookStatus) else None
    return redirect(url_for(".webhook_inbox", status=keep), 303)


# Event ids are 32-bit integers: a larger number names no event (404, not a database error).
@bp.post("/webhooks/<int(max=2147483647):event_id>/replay")
def replay(event_id: int) -> Response:
    if replay_webhooks(event_id=event_id):
        logger.info("webhook replay queued by operator", extra={"event_id": event_id})
        flash(f"웹훅 #{event_id}을(를) 다시 처리하도록 대기열에 넣었습니다.")
    else:
        flash(f"웹훅 #{event_id}은(는) 지금 다시 처리할 수 없습니다 (처리 중이거나 본문이 삭제됨).")
    return _back_to_inbox()


@bp.post("/webhooks/replay-failed")
def replay_failed() -> Response:
    count = replay_webhooks(failed=True)
    logger.info("failed webhooks replay queued by operator", extra={"count": count})
    flash(f"실패한 웹훅 {count}건을 다시 처리하도록 대기열에 넣었습니다.")
    return _back_to_inbox()


# -- template helpers ------------------------------------------------------------------------------


@bp.context_processor
def _labels() -> dict[str, Any]:
    return {
        "status_labels": STATUS_LABELS,
        "source_labels": SOURCE_LABELS,
        "event_labels": EVENT_LABELS,
        "webhook_labels": WEBHOOK_LABELS,
        "refund_labels": REFUND_LABELS,
    }
