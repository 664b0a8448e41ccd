"""What the offline Toss does: window sessions, confirm, lookups, cancels, deposits, expiry.

Every state change is a conditional UPDATE on the status we read (rowcount decides who won), in
the same transaction as the webhook rows it causes, so concurrent workers can never confirm or
cancel one payment twice and a change is never committed without its webhooks.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

from sqlalchemy import Table, bindparam, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm.attributes import set_committed_value

from ..extensions import commit_as_written, db, update_if_status
from . import webhooks
from .core import (
    API_VERSION,
    CONFIRM_WINDOW,
    ERRORS,
    MID,
    VIRTUAL_ACCOUNT_DAYS,
    WINDOW_LIFETIME,
    SandboxError,
    digits,
    merchant_keys,
    new_payment_key,
    new_secret,
    new_session_token,
    new_transaction_key,
    now,
    toss_time,
    vat_of,
)
from .models import (
    ABORTED,
    CANCELED,
    CARD,
    CONFIRMED,
    DONE,
    EXPIRED,
    IN_PROGRESS,
    PARTIAL_CANCELED,
    READY,
    VIRTUAL_ACCOUNT,
    WAITING_FOR_DEPOSIT,
    SandboxCancel,
    SandboxPayment,
    SandboxWebhook,
)

logger = logging.getLogger(__name__)

# Outcomes the shopper can pick in the payment window (and POST /sandbox/api/sessions).
SCENARIOS: dict[str, str] = {
    "approve": "카드 결제 승인",
    "reject_card": "카드사 승인 거절",
    "insufficient_balance": "잔액 부족 (승인 요청에서 거절)",
    "cancel_by_user": "결제 취소 (결제창 닫기)",
    "virtual_account": "가상계좌 발급",
    "provider_error": "일시적 오류 (첫 승인 요청 실패 후 재시도 성공)",
    "slow_confirm": "느린 승인 응답 (승인은 완료)",
}
SCENARIO_HINTS: dict[str, str] = {
    "approve": "성공 페이지로 이동하고, 승인 요청이 DONE으로 완료됩니다.",
    "reject_card": "실패 페이지로 이동합니다 (REJECT_CARD_COMPANY).",
    "insufficient_balance": (
        "성공 페이지로 이동하지만 승인 요청이 403 REJECT_CARD_PAYMENT로 거절됩니다."
    ),
    "cancel_by_user": "실패 페이지로 이동합니다 (PAY_PROCESS_CANCELED).",
    "virtual_account": "승인 시 입금 대기(WAITING_FOR_DEPOSIT) 가상계좌가 발급됩니다.",
    "provider_error": "첫 승인 요청은 500 오류, 같은 멱등키로 다시 요청하면 승인됩니다.",
    "slow_confirm": "승인은 완료되지만 응답이 늦게 도착합니다 (타임아웃 재현).",
}
PAYMENTS: Table = SandboxPayment.__table__  # type: ignore[assignment]
METHOD_LABELS = {CARD: "카드", VIRTUAL_ACCOUNT: "가상계좌"}
_METHOD_ALIASES = {
    "CARD": CARD,
    "카드": CARD,
    "VIRTUAL_ACCOUNT": VIRTUAL_ACCOUNT,
    "가상계좌": VIRTUAL_ACCOUNT,
}
MIN_AMOUNT = {CARD: 100, VIRTUAL_ACCOUNT: 200}
MAX_AMOUNT = 10**12 - 1

ORDER_ID_RE = re.compile(r"^[A-Za-z0-9_-]{6,64}$")
CUSTOMER_KEY_RE = re.compile(r"^[A-Za-z0-9\-_=.@]{2,50}$")
ANONYMOUS = "@@ANONYMOUS"
URL_RE = re.compile(r"^https?://[^/\s?#]+[^\s]*$")
PHONE_RE = re.compile(r"^[0-9]{8,15}$")
ACCOUNT_NUMBER_RE = re.compile(r"^[0-9-]{6,20}$")
VA_BANKS = ("20", "88", "04", "11", "81")  # 우리, 신한, KB국민, NH농협, 하나


def _invalid(message: str) -> SandboxError:
    return SandboxError("INVALID_REQUEST", message, 400)


# -- window sessions -------------------------------------------------------------------------------


@dataclass(frozen=True)
class SessionRequest:
    """What the widget's requestPayment sends (plus the helper's scenario and taxFreeAmount)."""

    client_key: str
    order_id: str
    order_name: str
    amount: int
    success_url: str
    fail_url: str
    method: str | None = None
    scenario: str | None = None
    customer_key: str | None = None
    customer_email: str | None = None
    customer_name: str | None = None
    customer_mobile_phone: str | None = None
    tax_free_amount: int = 0


def _opt_str(data: Mapping[str, Any], name: str, max_len: int) -> str | None:
    value = data.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > max_len:
        raise _invalid(f"{name}는 {max_len}자 이하의 문자열이어야 합니다.")
    return value


def parse_amount(value: Any, name: str = "amount") -> int:
    """An integer KRW amount given as a number or a numeric string (Toss accepts both)."""
    parsed: int | None = None
    if isinstance(value, bool):
        parsed = None
    elif isinstance(value, int):
        parsed = value
    elif (isinstance(value, float) and value.is_integer()) or (
        isinstance(value, str) and re.fullmatch(r"[0-9]{1,13}", value)
    ):
        parsed = int(value)
    if parsed is None or not 0 < parsed <= MAX_AMOUNT:
        raise _invalid(f"{name}는 양의 정수여야 합니다.")
    return parsed


def parse_session_request(data: Mapping[str, Any]) -> SessionRequest:
    """Validate a session per TOSS.md "Field rules"; SandboxError (400/401) when it breaks one."""
    client_key = data.get("clientKey")
    if not isinstance(client_key, str) or not client_key:
        raise _invalid("clientKey가 필요합니다.")
    family = merchant_keys().client_family(client_key)
    if family == "ck" or re.match(r"^(test|live)_ck_", client_key):
        raise SandboxError("INVALID_CLIENT_KEY")
    if family != "gck":
        raise SandboxError("UNAUTHORIZED_KEY")

    order_id = data.get("orderId")
    if not isinstance(order_id, str) or not ORDER_ID_RE.match(order_id):
        raise _invalid(
            "orderId는 영문 대소문자, 숫자, -, _ 로 이루어진 6자 이상 64자 이하여야 합니다."
        )
    order_name = data.get("orderName")
    if not isinstance(order_name, str) or not order_name.strip() or len(order_name) > 100:
        raise _invalid("orderName은 1자 이상 100자 이하여야 합니다.")
    amount = parse_amount(data.get("amount"))
    for name in ("successUrl", "failUrl"):
        url = data.get(name)
        if not isinstance(url, str) or len(url) > 2048 or not URL_RE.match(url):
            raise _invalid(f"{name}은 http:// 또는 https:// 로 시작하는 절대 URL이어야 합니다.")

    method_raw = data.get("method")
    method: str | None = None
    if method_raw not in (None, ""):
        if not isinstance(method_raw, str) or method_raw not in _METHOD_ALIASES:
            raise _invalid("method는 CARD(카드) 또는 VIRTUAL_ACCOUNT(가상계좌)여야 합니다.")
        method = _METHOD_ALIASES[method_raw]
    scenario = data.get("scenario")
    if scenario in (None, ""):
        scenario = None
    elif not isinstance(scenario, str) or scenario not in SCENARIOS:
        raise _invalid(f"scenario는 {', '.join(SCENARIOS)} 중 하나여야 합니다.")
    if scenario is not None:
        method = VIRTUAL_ACCOUNT if scenario == "virtual_account" else CARD
    if amount < MIN_AMOUNT[method or CARD]:
        raise SandboxError("BELOW_MINIMUM_AMOUNT")

    customer_key = data.get("customerKey")
    if customer_key in (None, ""):
        customer_key = None
    elif not isinstance(customer_key, str) or not (
        customer_key == ANONYMOUS or CUSTOMER_KEY_RE.match(customer_key)
    ):
        raise _invalid(
            "customerKey는 영문 대소문자, 숫자, 특수문자 -, _, =, ., @ 로 "
            "2자 이상 50자 이하여야 합니다."
        )
    phone = _opt_str(data, "customerMobilePhone", 20)
    if phone is not None:
        phone = phone.replace("-", "")
        if not PHONE_RE.match(phone):
            raise _invalid("customerMobilePhone은 숫자만 8~15자여야 합니다.")
    tax_free_raw = data.get("taxFreeAmount")
    tax_free = 0
    if tax_free_raw not in (None, 0, "0"):
        tax_free = parse_amount(tax_free_raw, "taxFreeAmount")
        if tax_free > amount:
            raise _invalid("taxFreeAmount는 결제 금액보다 클 수 없습니다.")

    return SessionRequest(
        client_key=client_key,
        order_id=order_id,
        order_name=order_name,
        amount=amount,
        success_url=data["successUrl"],
        fail_url=data["failUrl"],
        method=method,
        scenario=scenario,
        customer_key=customer_key,
        customer_email=_opt_str(data, "customerEmail", 100),
        customer_name=_opt_str(data, "customerName", 100),
        customer_mobile_phone=phone,
        tax_free_amount=tax_free,
    )


def create_session(req: SessionRequest, origin: str) -> SandboxPayment:
    """Open a payment window (status READY, no paymentKey yet) and commit it."""
    taken = db.session.scalar(
        select(SandboxPayment.id).where(
            SandboxPayment.order_id == req.order_id, SandboxPayment.status.in_(CONFIRMED)
        )
    )
    if taken is not None:
        raise SandboxError("DUPLICATED_ORDER_ID")
    t = now()
    payment = SandboxPayment(
        session_token=new_session_token(),
        order_id=req.order_id,
        order_name=req.order_name,
        client_key=req.client_key,
        customer_key=req.customer_key,
        customer_name=req.customer_name,
        customer_email=req.customer_email,
        customer_mobile_phone=req.customer_mobile_phone,
        method=req.method or CARD,
        status=READY,
        total_amount=req.amount,
        balance_amount=req.amount,
        tax_free_amount=req.tax_free_amount,
        success_url=req.success_url,
        fail_url=req.fail_url,
        origin=origin.rstrip("/"),
        requested_at=t,
        window_expires_at=t + WINDOW_LIFETIME,
    )
    db.session.add(payment)
    db.session.commit()
    return payment


def with_query(url: str, params: list[tuple[str, str]]) -> str:
    """`url` with `params` appended to its query string (keeping any it already has)."""
    parts = urlsplit(url)
    query = urlencode(params)
    if parts.query:
        query = parts.query + "&" + query
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))


def _fail_url(payment: SandboxPayment, code: str) -> str:
    return with_query(
        payment.fail_url,
        [("code", code), ("message", ERRORS[code][1]), ("orderId", payment.order_id)],
    )


def finish_session(payment: SandboxPayment, scenario: str) -> str:
    """The shopper picked `scenario` in the window: record it; the URL the browser goes to next.

    A window finished once keeps its outcome: a resubmitted form gets the same redirect.
    """
    if scenario not in SCENARIOS:
        raise _invalid(f"scenario는 {', '.join(SCENARIOS)} 중 하나여야 합니다.")
    if payment.status != READY:
        if payment.redirect_url:
            return payment.redirect_url
        return _fail_url(payment, "PAY_PROCESS_ABORTED")
    t = now()
    values: dict[str, Any] = {"scenario": scenario, "updated_at": t}
    if t >= payment.window_expires_at:
        values |= {"status": EXPIRED}
        redirect = _fail_url(payment, "PAY_PROCESS_ABORTED")
    elif scenario in ("reject_card", "cancel_by_user") or (
        scenario == "virtual_account" and payment.total_amount < MIN_AMOUNT[VIRTUAL_ACCOUNT]
    ):
        code = {
            "reject_card": "REJECT_CARD_COMPANY",
            "cancel_by_user": "PAY_PROCESS_CANCELED",
        }.get(scenario, "BELOW_MINIMUM_AMOUNT")
        values |= {
            "status": ABORTED,
            "failure_code": code,
            "failure_message": ERRORS[code][1],
        }
        redirect = _fail_url(payment, code)
    else:
        key = new_payment_key()
        values |= {
            "status": IN_PROGRESS,
            "payment_key": key,
            "method": VIRTUAL_ACCOUNT if scenario == "virtual_account" else CARD,
            "authenticated_at": t,
            "provider_errors_left": 1 if scenario == "provider_error" else 0,
        }
        redirect = with_query(
            payment.success_url,
            [
                ("paymentType", "NORMAL"),
                ("orderId", payment.order_id),
                ("paymentKey", key),
                ("amount", str(payment.total_amount)),
            ],
        )
    values["redirect_url"] = redirect
    result = db.session.execute(
        update(SandboxPayment)
        .where(SandboxPayment.id == payment.id, SandboxPayment.status == READY)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    db.session.commit()
    db.session.refresh(payment)
    if result.rowcount != 1:  # type: ignore[attr-defined]
        # Another tab finished this window first: send this one where that one went.
        return payment.redirect_url or _fail_url(payment, "PAY_PROCESS_ABORTED")
    return redirect


def find_session(token: str) -> SandboxPayment | None:
    if not token or len(token) > 64:
        return None
    return db.session.scalar(select(SandboxPayment).where(SandboxPayment.session_token == token))


# -- lookups and deadlines -------------------------------------------------------------------------


def find_payment(payment_key: str) -> SandboxPayment | None:
    """The payment with this paymentKey (windows not finished yet have none)."""
    if not payment_key or len(payment_key) > 200:
        return None
    # Its cancels are read by payment_json, and only when it has any.
    payment: SandboxPayment | None = db.session.scalar(_BY_PAYMENT_KEY, {"key": payment_key})
    return payment


# Built once: every Toss call the sandbox answers starts with this lookup.
_BY_PAYMENT_KEY = select(SandboxPayment).where(SandboxPayment.payment_key == bindparam("key"))


def find_payment_by_order(order_id: str) -> SandboxPayment | None:
    """The payment of an orderId: the confirmed one if any, else the latest finished window."""
    if not order_id or len(order_id) > 64:
        return None
    confirmed: SandboxPayment | None = db.session.scalar(
        select(SandboxPayment).where(SandboxPayment.confirmed_order_id == order_id)
    )
    if confirmed is not None:
        return confirmed
    latest: SandboxPayment | None = db.session.scalar(
        select(SandboxPayment)
        .where(SandboxPayment.order_id == order_id, SandboxPayment.payment_key.is_not(None))
        .order_by(SandboxPayment.id.desc())
        .limit(1)
    )
    return latest


def require_payment(payment_key: str) -> SandboxPayment:
    payment = find_payment(payment_key)
    if payment is None:
        raise SandboxError("NOT_FOUND_PAYMENT")
    refresh_deadlines(payment)
    return payment


def _move(
    payment: SandboxPayment,
    from_status: str,
    values: Mapping[str, Any],
    *,
    increment: tuple[str, ...] = (),
    deposit_callback: bool = False,
    commit: bool = True,
) -> bool:
    """Conditionally move `payment` out of `from_status` (setting `values`, adding 1 to the
    `increment` columns), with its webhooks; commit unless told not to (the caller's
    transaction then carries the move).

    False (and nothing written) when another request moved it first.
    """
    fields = {"updated_at": now(), **values}
    if not update_if_status(PAYMENTS, payment.id, from_status, fields, increment=increment):
        db.session.rollback()
        db.session.refresh(payment)
        return False
    for name, value in fields.items():
        # Mirror the UPDATE instead of reading the row back.
        set_committed_value(payment, name, value)
    if increment:
        db.session.expire(payment, list(increment))  # read on first use
    if payment.payment_key:
        webhooks.enqueue_status_changed(payment, payment_json(payment))
        if deposit_callback:
            webhooks.enqueue_deposit_callback(payment)
    if commit:
        commit_as_written()
    else:
        db.session.flush()
    return True


def refresh_deadlines(payment: SandboxPayment) -> None:
    """Apply a deadline that passed (10-minute confirm, window, deposit due date) → EXPIRED."""
    t = now()
    if (
        payment.status == IN_PROGRESS
        and payment.authenticated_at is not None
        and t >= payment.authenticated_at + CONFIRM_WINDOW
    ) or (payment.status == READY and t >= payment.window_expires_at):
        _move(payment, payment.status, {"status": EXPIRED})
    elif (
        payment.status == WAITING_FOR_DEPOSIT
        and payment.va_due_date is not None
        and t >= payment.va_due_date
    ):
        _move(payment, WAITING_FOR_DEPOSIT, {"status": EXPIRED, "va_expired": True})


def sweep_expired(limit: int = 100) -> int:
    """Expire what is overdue without waiting for someone to look (so EXPIRED webhooks go out)."""
    t = now()
    ids = list(
        db.session.scalars(
            select(SandboxPayment.id)
            .where(
                or_(
                    (SandboxPayment.status == IN_PROGRESS)
                    & (SandboxPayment.authenticated_at <= t - CONFIRM_WINDOW),
                    (SandboxPayment.status == READY) & (SandboxPayment.window_expires_at <= t),
                    (SandboxPayment.status == WAITING_FOR_DEPOSIT)
                    & (SandboxPayment.va_due_date <= t),
                )
            )
            .limit(limit)
        )
    )
    db.session.commit()
    for pid in ids:
        payment = db.session.get(SandboxPayment, pid)
        if payment is not None:
            refresh_deadlines(payment)
    return len(ids)


# -- confirm ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ConfirmResult:
    payment: dict[str, Any]
    # slow_confirm: seconds to wait before answering (the work is already committed).
    delay: float = 0.0
    # The approval's UPDATE counted this request in confirm_requests.
    counted: bool = False


def confirm(body: Any, secret_family: str, slow_seconds: float) -> ConfirmResult:
    """POST /v1/payments/confirm: approve an authenticated payment, at most once.

    The approval is flushed, not committed: the caller (idempotency.run) commits it together
    with the answer it stores."""
    if not isinstance(body, dict):
        raise _invalid("JSON 본문이 필요합니다.")
    payment_key = body.get("paymentKey")
    order_id = body.get("orderId")
    if not isinstance(payment_key, str) or not payment_key or len(payment_key) > 200:
        raise _invalid("paymentKey가 필요합니다.")
    if not isinstance(order_id, str) or not order_id or len(order_id) > 64:
        raise _invalid("orderId가 필요합니다.")
    amount = parse_amount(body.get("amount"))

    payment = require_payment(payment_key)
    if secret_family != "gsk":
        raise SandboxError(
            "FORBIDDEN_REQUEST",
            "결제위젯으로 생성된 결제는 결제위젯 연동 키의 시크릿 키(test_gsk_/live_gsk_)로 "
            "승인해야 합니다. API 개별 연동 키(test_sk_/live_sk_)는 사용할 수 없습니다.",
            403,
        )
    if payment.status == EXPIRED:
        raise SandboxError("NOT_FOUND_PAYMENT_SESSION")
    if payment.status in CONFIRMED:
        raise SandboxError("ALREADY_PROCESSED_PAYMENT")
    if payment.status == ABORTED:
        raise SandboxError(payment.failure_code or "PAY_PROCESS_ABORTED", payment.failure_message)
    if payment.status != IN_PROGRESS:
        raise SandboxError("NOT_FOUND_PAYMENT_SESSION")
    if order_id != payment.order_id:
        raise _invalid("orderId가 결제 정보와 일치하지 않습니다.")
    if amount != payment.total_amount:
        raise _invalid("결제 금액(amount)이 결제 요청 금액과 일치하지 않습니다.")

    scenario = payment.scenario or "approve"
    if scenario == "provider_error":
        # Fails without doing anything; a retry (same key or not) goes through.
        result = db.session.execute(
            update(SandboxPayment)
            .where(
                SandboxPayment.id == payment.id,
                SandboxPayment.status == IN_PROGRESS,
                SandboxPayment.provider_errors_left > 0,
            )
            .values(provider_errors_left=SandboxPayment.provider_errors_left - 1)
            .execution_options(synchronize_session=False)
        )
        db.session.commit()
        if result.rowcount == 1:  # type: ignore[attr-defined]
            raise SandboxError("FAILED_PAYMENT_INTERNAL_SYSTEM_PROCESSING")

    t = now()
    if scenario == "insufficient_balance":
        code = "REJECT_CARD_PAYMENT"
        values: dict[str, Any] = {
            "status": ABORTED,
            "failure_code": code,
            "failure_message": ERRORS[code][1],
        }
        if _move(payment, IN_PROGRESS, values):
            raise SandboxError(code)
        return _confirm_lost_race(payment)

    values = {
        "status": DONE,
        "approved_at": t,
        "confirmed_order_id": payment.order_id,
        "last_transaction_key": new_transaction_key(),
    }
    if payment.method == VIRTUAL_ACCOUNT:
        values |= {
            "status": WAITING_FOR_DEPOSIT,
            "approved_at": None,
            "secret": new_secret(),
            "va_account_number": digits(14),
            "va_bank_code": VA_BANKS[int(digits(1)) % len(VA_BANKS)],
            "va_customer_name": payment.customer_name or "김토스",
            "va_due_date": t + timedelta(days=VIRTUAL_ACCOUNT_DAYS),
            "va_refund_status": "NONE",
            "va_expired": False,
        }
    else:
        values |= {
            "card_number": f"4330{digits(4)}****{digits(3)}*",
            "card_approve_no": digits(8),
            "card_issuer_code": "71",
        }
    try:
        # Counts this request; left for idempotency.run to commit with the stored answer.
        won = _move(payment, IN_PROGRESS, values, increment=("confirm_requests",), commit=False)
    except IntegrityError:
        # Another window of this orderId was confirmed first (confirmed_order_id is unique).
        db.session.rollback()
        raise SandboxError("DUPLICATED_ORDER_ID") from None
    if not won:
        return _confirm_lost_race(payment)
    # Detail: the shop logs the order's own move; this would double every confirmation's lines.
    logger.debug(
        "sandbox payment confirmed",
        extra={"payment_key": payment.payment_key, "status": payment.status},
    )
    delay = slow_seconds if scenario == "slow_confirm" else 0.0
    return ConfirmResult(payment_json(payment), delay, counted=True)


def _confirm_lost_race(payment: SandboxPayment) -> ConfirmResult:
    # A concurrent confirm moved the payment first: answer what a later call would get.
    if payment.status in CONFIRMED:
        raise SandboxError("ALREADY_PROCESSED_PAYMENT")
    if payment.status == ABORTED:
        raise SandboxError(payment.failure_code or "PAY_PROCESS_ABORTED", payment.failure_message)
    raise SandboxError("NOT_FOUND_PAYMENT_SESSION")


# -- cancel ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RefundAccount:
    bank: str
    account_number: str
    holder_name: str


def _parse_refund_account(value: Any) -> RefundAccount | None:
    if value is None:
        return None
    bad = SandboxError(
        "INVALID_REFUND_ACCOUNT_INFO",
        "환불 계좌 정보(refundReceiveAccount: bank, accountNumber, holderName)가 올바르지 "
        "않습니다.",
    )
    if not isinstance(value, dict):
        raise bad
    bank, number, holder = value.get("bank"), value.get("accountNumber"), value.get("holderName")
    if not (isinstance(bank, str) and 0 < len(bank) <= 20):
        raise bad
    if not (isinstance(number, str) and ACCOUNT_NUMBER_RE.match(number)):
        raise bad
    if not (isinstance(holder, str) and 0 < len(holder.strip()) <= 60):
        raise bad
    return RefundAccount(bank, number, holder.strip())


def cancel(payment_key: str, body: Any) -> dict[str, Any]:
    """POST /v1/payments/{paymentKey}/cancel: full (no cancelAmount) or partial."""
    if not isinstance(body, dict):
        raise _invalid("JSON 본문이 필요합니다.")
    reason = body.get("cancelReason")
    if not isinstance(reason, str) or not reason.strip() or len(reason) > 200:
        raise _invalid("cancelReason은 1자 이상 200자 이하로 입력해주세요.")
    cancel_amount = None
    if body.get("cancelAmount") is not None:
        cancel_amount = parse_amount(body["cancelAmount"], "cancelAmount")
    refundable: int | None = None
    if body.get("refundableAmount") is not None:
        raw = body["refundableAmount"]
        refundable = 0 if raw in (0, "0") else parse_amount(raw, "refundableAmount")
    account = _parse_refund_account(body.get("refundReceiveAccount"))

    payment = require_payment(payment_key)
    status = payment.status
    if status == CANCELED:
        raise SandboxError("ALREADY_CANCELED_PAYMENT")
    if status not in (DONE, PARTIAL_CANCELED, WAITING_FOR_DEPOSIT):
        raise SandboxError("NOT_CANCELABLE_PAYMENT")
    balance = payment.balance_amount
    if refundable is not None and refundable != balance:
        raise SandboxError("NOT_MATCHES_REFUNDABLE_AMOUNT")
    amount = balance if cancel_amount is None else cancel_amount
    if amount > balance:
        raise SandboxError("NOT_CANCELABLE_AMOUNT")
    if status == WAITING_FOR_DEPOSIT and amount != balance:
        raise SandboxError(
            "NOT_CANCELABLE_AMOUNT", "입금 전 가상계좌 결제는 전액만 취소할 수 있습니다.", 403
        )
    deposited_va = payment.method == VIRTUAL_ACCOUNT and payment.deposited_at is not None
    if deposited_va and account is None:
        raise SandboxError(
            "INVALID_REFUND_ACCOUNT_INFO",
            "입금이 완료된 가상계좌 결제를 취소하려면 환불 받을 계좌 정보"
            "(refundReceiveAccount)가 필요합니다.",
        )

    t = now()
    new_balance = balance - amount
    tkey = new_transaction_key()
    values: dict[str, Any] = {
        "status": CANCELED if new_balance == 0 else PARTIAL_CANCELED,
        "balance_amount": new_balance,
        "last_transaction_key": tkey,
    }
    if deposited_va:
        values["va_refund_status"] = "COMPLETED"
    result = db.session.execute(
        update(SandboxPayment)
        .where(
            SandboxPayment.id == payment.id,
            SandboxPayment.status == status,
            SandboxPayment.balance_amount == balance,
        )
        .values(updated_at=t, **values)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        db.session.rollback()
        raise SandboxError("FORBIDDEN_CONSECUTIVE_REQUEST")
    db.session.add(
        SandboxCancel(
            payment_id=payment.id,
            transaction_key=tkey,
            cancel_amount=amount,
            cancel_reason=reason.strip(),
            tax_free_amount=0,
            refundable_amount=new_balance,
            cancel_status="DONE",
            refund_bank=account.bank if account else None,
            refund_holder_name=account.holder_name if account else None,
            canceled_at=t,
        )
    )
    db.session.flush()
    db.session.refresh(payment)
    data = payment_json(payment)
    webhooks.enqueue_status_changed(payment, data)
    db.session.commit()
    return data


# -- helpers' operations ---------------------------------------------------------------------------


def deposit(order_id: str, body: Any) -> dict[str, Any]:
    """The buyer pays the virtual account of `order_id`: WAITING_FOR_DEPOSIT → DONE."""
    payment = find_payment_by_order(order_id)
    if payment is None:
        raise SandboxError("NOT_FOUND_PAYMENT")
    refresh_deadlines(payment)
    if payment.method != VIRTUAL_ACCOUNT or payment.status != WAITING_FOR_DEPOSIT:
        raise SandboxError(
            "NOT_WAITING_FOR_DEPOSIT",
            f"입금 대기 중인 가상계좌가 아닙니다. (현재 상태: {payment.status})",
            409,
        )
    paid = body.get("amount") if isinstance(body, dict) else None
    if paid is not None and parse_amount(paid) != payment.total_amount:
        raise _invalid("가상계좌에는 결제 금액과 같은 금액만 한 번에 입금할 수 있습니다.")
    t = now()
    values = {
        "status": DONE,
        "approved_at": t,
        "deposited_at": t,
        "last_transaction_key": new_transaction_key(),
    }
    if not _move(payment, WAITING_FOR_DEPOSIT, values, deposit_callback=True):
        raise SandboxError(
            "NOT_WAITING_FOR_DEPOSIT",
            f"입금 대기 중인 가상계좌가 아닙니다. (현재 상태: {payment.status})",
            409,
        )
    return payment_json(payment)


def expire(payment_key: str) -> dict[str, Any]:
    """Expire a payment as if its confirm deadline or deposit due date had passed."""
    payment = require_payment(payment_key)
    if payment.status == IN_PROGRESS:
        moved = _move(payment, IN_PROGRESS, {"status": EXPIRED})
    elif payment.status == WAITING_FOR_DEPOSIT:
        moved = _move(payment, WAITING_FOR_DEPOSIT, {"status": EXPIRED, "va_expired": True})
    else:
        moved = payment.status == EXPIRED
    if not moved:
        raise SandboxError(
            "NOT_EXPIRABLE",
            f"승인 전(IN_PROGRESS) 또는 입금 대기(WAITING_FOR_DEPOSIT) 결제만 만료시킬 수 "
            f"있습니다. (현재 상태: {payment.status})",
            409,
        )
    return payment_json(payment)


def sandbox_view(payment: SandboxPayment) -> dict[str, Any]:
    """GET /sandbox/api/payments/<key>: the Payment plus what reached the sandbox for it."""
    counts = dict(
        db.session.execute(
            select(SandboxWebhook.status, func.count())
            .where(SandboxWebhook.payment_key == payment.payment_key)
            .group_by(SandboxWebhook.status)
        ).all()
    )
    data = payment_json(payment)
    data["sandbox"] = {
        "confirmRequests": payment.confirm_requests,
        "webhooksSent": int(counts.get("DELIVERED", 0)),
        "webhooksPending": int(counts.get("PENDING", 0)),
        "webhooksFailed": int(counts.get("FAILED", 0)),
        "scenario": payment.scenario,
    }
    return data


def count_confirm_request(payment_key: Any) -> None:
    """Count a confirm request that reached the sandbox for `payment_key` (if it exists), in
    its own transaction: for every request the approval's UPDATE did not count."""
    if not isinstance(payment_key, str) or not payment_key or len(payment_key) > 200:
        return
    db.session.execute(
        update(SandboxPayment)
        .where(SandboxPayment.payment_key == payment_key)
        .values(confirm_requests=SandboxPayment.confirm_requests + 1)
        .execution_options(synchronize_session=False)
    )
    db.session.commit()


# -- the Payment object ----------------------------------------------------------------------------


def payment_json(p: SandboxPayment) -> dict[str, Any]:
    """Toss's Payment object (version 2022-11-16) for `p`."""
    confirmed = p.status in CONFIRMED
    vat = vat_of(p.total_amount, p.tax_free_amount)
    card = None
    if p.card_number:
        card = {
            "issuerCode": p.card_issuer_code,
            "acquirerCode": p.card_issuer_code,
            "number": p.card_number,
            "installmentPlanMonths": 0,
            "isInterestFree": False,
            "interestPayer": None,
            "approveNo": p.card_approve_no,
            "useCardPoint": False,
            "cardType": "신용",
            "ownerType": "개인",
            "acquireStatus": "CANCELED" if p.status == CANCELED else "READY",
            "amount": p.total_amount,
        }
    virtual_account = None
    if p.va_account_number:
        virtual_account = {
            "accountType": "일반",
            "accountNumber": p.va_account_number,
            "bankCode": p.va_bank_code,
            "customerName": p.va_customer_name,
            "dueDate": toss_time(p.va_due_date),
            "refundStatus": p.va_refund_status or "NONE",
            "expired": bool(p.va_expired),
            "settlementStatus": "COMPLETED" if p.deposited_at else "INCOMPLETED",
            "refundReceiveAccount": None,
            "depositorName": None,
        }
    cancels = [
        {
            "transactionKey": c.transaction_key,
            "cancelReason": c.cancel_reason,
            "taxExemptionAmount": 0,
            "canceledAt": toss_time(c.canceled_at),
            "transferDiscountAmount": 0,
            "easyPayDiscountAmount": 0,
            "receiptKey": None,
            "cancelAmount": c.cancel_amount,
            "taxFreeAmount": c.tax_free_amount,
            "refundableAmount": c.refundable_amount,
            "cancelStatus": c.cancel_status,
            "cancelRequestId": None,
        }
        # Every cancel lowers the balance: a payment at its full amount has none to read.
        for c in (p.cancels if p.balance_amount < p.total_amount else ())
    ]
    key = p.payment_key
    return {
        "mId": MID,
        "lastTransactionKey": p.last_transaction_key,
        "paymentKey": key,
        "orderId": p.order_id,
        "orderName": p.order_name,
        "taxExemptionAmount": 0,
        "status": p.status,
        "requestedAt": toss_time(p.requested_at),
        "approvedAt": toss_time(p.approved_at),
        "useEscrow": False,
        "cultureExpense": False,
        "card": card,
        "virtualAccount": virtual_account,
        "transfer": None,
        "mobilePhone": None,
        "giftCertificate": None,
        "cashReceipt": None,
        "cashReceipts": None,
        "discount": None,
        "cancels": cancels or None,
        "secret": p.secret,
        "type": "NORMAL",
        "easyPay": None,
        "country": "KR",
        "failure": (
            {"code": p.failure_code, "message": p.failure_message} if p.failure_code else None
        ),
        "isPartialCancelable": True,
        "receipt": {"url": f"{p.origin}/sandbox/receipt/{key}"} if confirmed and key else None,
        "checkout": {"url": f"{p.origin}/sandbox/window/{p.session_token}"},
        "currency": "KRW",
        "totalAmount": p.total_amount,
        "balanceAmount": p.balance_amount,
        "suppliedAmount": p.total_amount - p.tax_free_amount - vat,
        "vat": vat,
        "taxFreeAmount": p.tax_free_amount,
        "metadata": None,
        "method": METHOD_LABELS.get(p.method) if p.status != READY else None,
        "version": API_VERSION,
    }


def dumps(data: Mapping[str, Any]) -> str:
    """JSON as the sandbox sends it (UTF-8 Korean, no ASCII escapes)."""
    return json.dumps(data, ensure_ascii=False)
