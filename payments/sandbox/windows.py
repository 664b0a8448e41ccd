"""Payment windows: what the widget's requestPayment opens and the shopper finishes.

The window stands in for Toss's payment page: the shopper picks an outcome (a scenario) instead
of entering a card, and is sent back to the shop's successUrl or failUrl as Toss would.

Every window is a payment with its own paymentKey from the moment it opens (READY), as at Toss,
so one order may have several (one per window). A window the shopper closes or abandons, or
whose card the card company refuses, stays READY and changes nothing; 30 minutes after it
opened it expires (EXPIRED, with a webhook) like any window nobody finished.

Two products of Toss's SDK open windows: the payment widget (`widgets().requestPayment`, a
widget client key) and the payment window (`payment().requestPayment`, an API-family client key
and a method the merchant fixes: CARD, TRANSFER or VIRTUAL_ACCOUNT). On a PC the stand-in
(static/widget.js) shows the window in an iframe over the merchant's page, as the SDK's
`windowTarget: "iframe"` does; a shopper who closes it there (cancel_by_user) never reaches this
module: static/window.js tells the stand-in, which rejects requestPayment with USER_CANCEL.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

from sqlalchemy import select, update

from .confirm import FAILING_FIRST_CONFIRM
from .db import db
from .errors import ERRORS, SandboxError
from .ids import new_payment_key, new_session_token
from .models import (
    CARD,
    CONFIRMED,
    IN_PROGRESS,
    READY,
    TRANSFER,
    VIRTUAL_ACCOUNT,
    SandboxPayment,
)
from .payments import WINDOW_LIFETIME, expire, invalid, now, overdue, parse_amount
from .state import state

# Outcomes the shopper can pick in the payment window (and POST /sandbox/api/sessions).
SCENARIOS: dict[str, str] = {
    "approve": "카드 결제 승인",
    "reject_card": "카드사 승인 거절",
    "insufficient_balance": "잔액 부족 (승인 요청에서 거절)",
    "cancel_by_user": "결제 취소 (결제창 닫기)",
    "virtual_account": "가상계좌 발급",
    "provider_error": "일시적 오류 (첫 승인 요청 실패 후 재시도 성공)",
    "server_error": "서버 오류 (첫 승인 요청 500, 재시도 성공)",
    "slow_confirm": "느린 승인 응답 (승인은 완료)",
}
SCENARIO_HINTS: dict[str, str] = {
    "approve": "성공 페이지로 이동하고, 승인 요청이 DONE으로 완료됩니다.",
    "reject_card": "실패 페이지로 이동합니다 (REJECT_CARD_COMPANY). 결제는 READY로 남습니다.",
    "insufficient_balance": (
        "성공 페이지로 이동하지만 승인 요청이 403 REJECT_CARD_PAYMENT로 거절되고 결제는 ABORTED가 "
        "됩니다."
    ),
    "cancel_by_user": (
        "결제창을 닫습니다: 상점 화면 위에 열린 결제창(PC)이면 requestPayment가 USER_CANCEL로 "
        "거절되고, 이동해 온 결제창(모바일)이면 실패 페이지로 이동합니다 (PAY_PROCESS_CANCELED). "
        "결제는 READY로 남아 30분 뒤 만료됩니다."
    ),
    "virtual_account": "승인 시 입금 대기(WAITING_FOR_DEPOSIT) 가상계좌가 발급됩니다.",
    "provider_error": (
        "첫 승인 요청은 400 PROVIDER_ERROR, 같은 멱등키로 다시 요청하면 승인됩니다."
    ),
    "server_error": "첫 승인 요청은 500 오류, 같은 멱등키로 다시 요청하면 승인됩니다.",
    "slow_confirm": "승인은 완료되지만 응답이 늦게 도착합니다 (타임아웃 재현).",
}
_METHOD_ALIASES = {
    "CARD": CARD,
    "카드": CARD,
    "VIRTUAL_ACCOUNT": VIRTUAL_ACCOUNT,
    "가상계좌": VIRTUAL_ACCOUNT,
    "TRANSFER": TRANSFER,
    "계좌이체": TRANSFER,
}
# Toss: a card from 100 won, an account (virtual account, transfer) from 200 (BELOW_MINIMUM_AMOUNT,
# https://docs.tosspayments.com/reference/error-codes).
MIN_AMOUNT = {CARD: 100, VIRTUAL_ACCOUNT: 200, TRANSFER: 200}
# The SDK's rule for orderId: "영문 대소문자, 숫자, 특수문자 `-`, `_`, `=`로 이루어진 6자 이상 64자
# 이하의 문자열" (@tosspayments/tosspayments-sdk 2.8.1, types/index.d.ts, PaymentRequest.orderId).
ORDER_ID_RE = re.compile(r"^[A-Za-z0-9_=-]{6,64}$")
CUSTOMER_KEY_RE = re.compile(r"^[A-Za-z0-9\-_=.@]{2,50}$")
ANONYMOUS = "@@ANONYMOUS"
URL_RE = re.compile(r"^https?://[^/\s?#]+[^\s]*$")
# "`-` 없이 숫자로만 구성된 최소 8자, 최대 15자의 문자열" (types/index.d.ts, customerMobilePhone).
PHONE_RE = re.compile(r"^[0-9]{8,15}$")

# The two products of Toss's SDK that open a payment window, and the client-key family each
# takes: the payment widget (`widgets()`, 결제위젯 연동 키 `…_gck_…`) and the payment window
# (`payment()`, API 개별 연동 키 `…_ck_…`) (https://docs.tosspayments.com/guides/v2/get-started/
# migration-guide; the SDK's types name NotSupportedAPIIndividualKeyError for widgets() and
# NotSupportedWidgetKeyError for payment()). A payment window's payment is then confirmed with the
# API family's secret key (confirm.py).
WIDGETS = "widgets"
PAYMENT = "payment"
_PRODUCT_FAMILY = {WIDGETS: "gck", PAYMENT: "ck"}
_WRONG_FAMILY = {
    WIDGETS: "결제위젯 연동 키의 클라이언트 키로 SDK를 연동해주세요. API 개별 연동 키는 지원하지 "
    "않습니다.",
    PAYMENT: "API 개별 연동 키의 클라이언트 키로 SDK를 연동해주세요. 결제위젯 연동 키는 지원하지 "
    "않습니다.",
}
# The methods each product's window serves here. Toss's widget and payment window know more
# (MOBILE_PHONE, gift certificates, easy pays…); the sandbox's widget offers a card and a virtual
# account, its payment window a card, a transfer (계좌이체) and a virtual account.
PRODUCT_METHODS = {WIDGETS: (CARD, VIRTUAL_ACCOUNT), PAYMENT: (CARD, TRANSFER, VIRTUAL_ACCOUNT)}
# What a payment window (payment()) offers: its method is the merchant's choice, so only that
# method's outcomes. A transfer has no card company to refuse it and is never refused at confirm
# for a card's reason.
_PAYMENT_WINDOW_SCENARIOS = {
    CARD: (
        "approve",
        "reject_card",
        "insufficient_balance",
        "cancel_by_user",
        "provider_error",
        "server_error",
        "slow_confirm",
    ),
    TRANSFER: ("approve", "cancel_by_user", "provider_error", "server_error", "slow_confirm"),
    VIRTUAL_ACCOUNT: (
        "virtual_account",
        "cancel_by_user",
        "provider_error",
        "server_error",
        "slow_confirm",
    ),
}
_TRANSFER_LABELS = {"approve": "계좌이체 승인"}


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
    # The methods whose options said `useEscrow: true` (with their escrowProducts).
    escrow_methods: tuple[str, ...] = ()


def _opt_str(data: Mapping[str, Any], name: str, max_len: int) -> str | None:
    value = data.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > max_len:
        raise invalid(f"{name}는 {max_len}자 이하의 문자열이어야 합니다.")
    return value


# Escrow (구매안전서비스) options by product, as the SDK's types give them: the widget's
# `transfer` and `virtualAccount` (WidgetPaymentRequest), the payment window's `card`, `transfer`
# and `virtualAccount` (Card/Transfer/VirtualAccountPaymentRequest). Each takes `useEscrow?:
# boolean | null` and `escrowProducts?: Array<{id, name, code: string | null; unitPrice, quantity:
# number | null}> | null`, "에스크로를 사용하는 상점이라면 필수 파라미터" (@tosspayments/
# tosspayments-sdk 2.8.1, types/index.d.ts).
ESCROW_OPTIONS = {
    WIDGETS: {"transfer": TRANSFER, "virtualAccount": VIRTUAL_ACCOUNT},
    PAYMENT: {"card": CARD, "transfer": TRANSFER, "virtualAccount": VIRTUAL_ACCOUNT},
}
_ESCROW_TEXT = ("id", "name", "code")
_ESCROW_NUMBERS = ("unitPrice", "quantity")


def _escrow_product(item: object, where: str) -> None:
    """One of escrowProducts: only the five fields the types name, each of its type. Amounts
    and counts are whole numbers here (KRW has no fractions; the types say only `number`)."""
    if not isinstance(item, Mapping):
        raise invalid(f"{where}는 객체여야 합니다.")
    unknown = set(item) - {*_ESCROW_TEXT, *_ESCROW_NUMBERS}
    if unknown:
        raise invalid(f"{where}에 정의되지 않은 필드가 있습니다: {', '.join(sorted(unknown))}")
    for name in _ESCROW_TEXT:
        value = item.get(name)
        if value is not None and not isinstance(value, str):
            raise invalid(f"{where}.{name}은 문자열이어야 합니다.")
    for name in _ESCROW_NUMBERS:
        value = item.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise invalid(f"{where}.{name}은 0 이상의 정수여야 합니다.")


def parse_escrow(data: Mapping[str, Any], product: str, method: str | None) -> tuple[str, ...]:
    """The methods whose options ask for escrow (`useEscrow: true`); SandboxError when an
    option breaks the SDK's types. The payment window's options count for its own method only.
    `useEscrow: true` without escrowProducts is refused: the types call them required for a
    merchant using escrow (what Toss answers then is not found in its docs)."""
    chosen: list[str] = []
    for option, option_method in ESCROW_OPTIONS[product].items():
        given = data.get(option)
        if given is None:
            continue
        if not isinstance(given, Mapping):
            raise invalid(f"{option}는 객체여야 합니다.")
        use = given.get("useEscrow")
        if use is not None and not isinstance(use, bool):
            raise invalid(f"{option}.useEscrow는 true 또는 false여야 합니다.")
        items = given.get("escrowProducts")
        if items is not None:
            if not isinstance(items, list):
                raise invalid(f"{option}.escrowProducts는 배열이어야 합니다.")
            for i, item in enumerate(items):
                _escrow_product(item, f"{option}.escrowProducts[{i}]")
        if use and not items:
            raise invalid(f"{option}.escrowProducts는 에스크로를 사용하는 상점이라면 필수입니다.")
        if use and (product == WIDGETS or option_method == method):
            chosen.append(option_method)
    return tuple(chosen)


def _check_family(client_key: str, product: str) -> None:
    """A client key of the other family than `product` takes → 400 INVALID_CLIENT_KEY with the
    SDK's words; a key this merchant does not have → 401 UNAUTHORIZED_KEY."""
    family = state().keys.client_family(client_key)
    shape = re.match(r"^(?:test|live)_(gck|ck)_", client_key)
    kind = family or (shape.group(1) if shape else None)
    if kind is not None and kind != _PRODUCT_FAMILY[product]:
        raise SandboxError("INVALID_CLIENT_KEY", _WRONG_FAMILY[product])
    if family is None:
        raise SandboxError("UNAUTHORIZED_KEY")


def parse_session_request(data: Mapping[str, Any], product: str = WIDGETS) -> SessionRequest:
    """Validate a session by Toss's field rules; SandboxError (400/401) when it breaks one.

    `product`: WIDGETS (widgets().requestPayment, a widget client key) or PAYMENT
    (payment().requestPayment, an API-family client key and a `method`)."""
    client_key = data.get("clientKey")
    if not isinstance(client_key, str) or not client_key:
        raise invalid("clientKey가 필요합니다.")
    _check_family(client_key, product)

    order_id = data.get("orderId")
    if not isinstance(order_id, str) or not ORDER_ID_RE.match(order_id):
        raise invalid(
            "orderId는 영문 대소문자, 숫자, -, _, = 로 이루어진 6자 이상 64자 이하여야 합니다."
        )
    order_name = data.get("orderName")
    if not isinstance(order_name, str) or not order_name.strip() or len(order_name) > 100:
        raise invalid("orderName은 1자 이상 100자 이하여야 합니다.")
    amount = parse_amount(data.get("amount"))
    for name in ("successUrl", "failUrl"):
        url = data.get(name)
        if not isinstance(url, str) or len(url) > 2048 or not URL_RE.match(url):
            raise invalid(f"{name}은 http:// 또는 https:// 로 시작하는 절대 URL이어야 합니다.")

    methods = PRODUCT_METHODS[product]
    method_raw = data.get("method")
    method: str | None = None
    if method_raw not in (None, ""):
        if not isinstance(method_raw, str) or _METHOD_ALIASES.get(method_raw) not in methods:
            raise invalid(f"method는 {', '.join(methods)} 중 하나여야 합니다.")
        method = _METHOD_ALIASES[method_raw]
    scenario = data.get("scenario")
    if scenario in (None, ""):
        scenario = None
    elif not isinstance(scenario, str) or scenario not in SCENARIOS:
        raise invalid(f"scenario는 {', '.join(SCENARIOS)} 중 하나여야 합니다.")
    if product == PAYMENT:
        # The merchant names the method (the SDK's `method`); the helper may let the scenario.
        if method is None and scenario is not None:
            method = VIRTUAL_ACCOUNT if scenario == "virtual_account" else CARD
        if method == VIRTUAL_ACCOUNT and scenario == "approve":
            scenario = "virtual_account"  # the helper's default: the window finished well
        if method is None:
            raise invalid(f"method는 {', '.join(methods)} 중 하나여야 합니다.")
        if scenario is not None and scenario not in _PAYMENT_WINDOW_SCENARIOS[method]:
            raise invalid(f"{method} 결제창에는 {scenario} 결과가 없습니다.")
    elif scenario is not None:
        method = VIRTUAL_ACCOUNT if scenario == "virtual_account" else CARD
    if amount < MIN_AMOUNT[method or CARD]:
        raise SandboxError("BELOW_MINIMUM_AMOUNT")

    customer_key = data.get("customerKey")
    if customer_key in (None, ""):
        customer_key = None
    elif not isinstance(customer_key, str) or not (
        customer_key == ANONYMOUS or CUSTOMER_KEY_RE.match(customer_key)
    ):
        raise invalid(
            "customerKey는 영문 대소문자, 숫자, 특수문자 -, _, =, ., @ 로 "
            "2자 이상 50자 이하여야 합니다."
        )
    phone = _opt_str(data, "customerMobilePhone", 20)
    if phone is not None and not PHONE_RE.match(phone):
        raise invalid("customerMobilePhone은 - 없이 숫자로만 8자 이상 15자 이하여야 합니다.")
    escrow_methods = parse_escrow(data, product, method)
    tax_free_raw = data.get("taxFreeAmount")
    tax_free = 0
    if tax_free_raw not in (None, 0, "0"):
        tax_free = parse_amount(tax_free_raw, "taxFreeAmount")
        if tax_free > amount:
            raise invalid("taxFreeAmount는 결제 금액보다 클 수 없습니다.")

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
        escrow_methods=escrow_methods,
    )


def create_session(req: SessionRequest, origin: str) -> SandboxPayment:
    """Open a payment window and commit it: a READY payment with its own paymentKey.

    Toss's Payment has a paymentKey whatever its status, READY included ("결제를 생성하면
    가지게 되는 초기 상태", https://docs.tosspayments.com/reference, Payment 객체), and an
    expired window's payment keeps one (https://techchat.tosspayments.com/m/1410526054635933798).
    Nothing is sent: opening a window is not a status change.
    """
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
        payment_key=new_payment_key(),
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
        escrow_methods=",".join(req.escrow_methods) or None,
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


# Window outcomes that send the shopper to failUrl: the shopper closed the window, or the card
# company refused the card while the shopper authenticated.
WINDOW_FAILURES = {
    "reject_card": "REJECT_CARD_COMPANY",
    "cancel_by_user": "PAY_PROCESS_CANCELED",
}


def finish_session(payment: SandboxPayment, scenario: str) -> str:
    """The shopper picked `scenario` in the window: record it; the URL the browser goes to next.

    A window finished once keeps its outcome: a resubmitted form gets the same redirect.

    - Authenticated (approve and the confirm-time scenarios): READY → IN_PROGRESS, the success
      redirect carries the window's paymentKey. Not announced: Toss shows which statuses it
      announces only in a diagram (https://docs.tosspayments.com/en/webhooks); the sandbox sends
      nothing for opening or authenticating a window.
    - Closed by the shopper (cancel_by_user) or refused by the card company (reject_card): the
      payment stays READY and nothing is sent; it expires 30 minutes after the window opened.
      Toss keeps a payment READY until the shopper authenticates and calls ABORTED a failed
      approval (https://docs.tosspayments.com/reference, Payment 객체); what a card refusal
      inside the window does to the status is not found in Toss's docs, so the sandbox treats
      it like any window left without authentication.

    The widget's window authenticates a card unless the shopper picks the virtual account; a
    payment window (payment()) keeps the method the merchant asked for. Its success redirect
    carries amount, orderId and paymentKey, the widget's paymentType too (the redirect URLs the
    SDK's types show for each: `{successUrl}?amount&orderId&paymentKey` for payment(),
    `{successUrl}?paymentType&amount&orderId&paymentKey` for widgets()).
    """
    allowed = window_scenarios(payment)
    if scenario not in allowed:
        raise invalid(f"scenario는 {', '.join(allowed)} 중 하나여야 합니다.")
    if payment.redirect_url:
        return payment.redirect_url
    t = now()
    if payment.status == READY and overdue(payment, t):
        expire(payment)
    if payment.status != READY:
        # Expired (or moved by the test helpers) before the shopper chose.
        return _close(payment, scenario, _fail_url(payment, "PAY_PROCESS_ABORTED"))
    if scenario in WINDOW_FAILURES:
        return _close(payment, scenario, _fail_url(payment, WINDOW_FAILURES[scenario]))
    if scenario == "virtual_account" and payment.total_amount < MIN_AMOUNT[VIRTUAL_ACCOUNT]:
        return _close(payment, scenario, _fail_url(payment, "BELOW_MINIMUM_AMOUNT"))
    fixed = payment_window(payment)
    params = [
        ("orderId", payment.order_id),
        ("paymentKey", payment.payment_key or ""),
        ("amount", str(payment.total_amount)),
    ]
    redirect = with_query(
        payment.success_url, params if fixed else [("paymentType", "NORMAL"), *params]
    )
    authenticated = {
        "status": IN_PROGRESS,
        "method": payment.method
        if fixed
        else (VIRTUAL_ACCOUNT if scenario == "virtual_account" else CARD),
        "authenticated_at": t,
        "provider_errors_left": 1 if scenario in FAILING_FIRST_CONFIRM else 0,
    }
    return _close(payment, scenario, redirect, authenticated)


def _close(
    payment: SandboxPayment, scenario: str, redirect: str, values: dict[str, Any] | None = None
) -> str:
    """Record the window's outcome (and `values`) unless another tab finished it first; where
    the browser goes."""
    result = db.session.execute(
        update(SandboxPayment)
        .where(
            SandboxPayment.id == payment.id,
            SandboxPayment.status == payment.status,
            SandboxPayment.redirect_url.is_(None),
        )
        .values(scenario=scenario, redirect_url=redirect, updated_at=now(), **(values or {}))
        .execution_options(synchronize_session=False)
    )
    db.session.commit()
    db.session.refresh(payment)
    if result.rowcount != 1:  # type: ignore[attr-defined]
        # Another tab finished this window first: send this one where that one went.
        return payment.redirect_url or _fail_url(payment, "PAY_PROCESS_ABORTED")
    return redirect


def payment_window(payment: SandboxPayment) -> bool:
    """Opened by payment().requestPayment (an API-family client key), not by the widget."""
    return state().keys.client_family(payment.client_key) == "ck"


def window_scenarios(payment: SandboxPayment) -> dict[str, str]:
    """The outcomes this window offers, with their labels: all of SCENARIOS in the widget's
    window (the shopper picks the method there); in a payment window, its method's."""
    if not payment_window(payment):
        return dict(SCENARIOS)
    labels = {**SCENARIOS, **(_TRANSFER_LABELS if payment.method == TRANSFER else {})}
    return {key: labels[key] for key in _PAYMENT_WINDOW_SCENARIOS.get(payment.method, ())}


def window_open(payment: SandboxPayment) -> bool:
    """The shopper can still pick an outcome in this window."""
    return payment.status == READY and payment.redirect_url is None


def find_session(token: str) -> SandboxPayment | None:
    if not token or len(token) > 64:
        return None
    return db.session.scalar(select(SandboxPayment).where(SandboxPayment.session_token == token))


# Test card numbers the window's card field takes, each picking one of SCENARIOS (the
# sandbox's own, like Stripe's test cards: Toss publishes no such numbers). Luhn-valid, so a
# form that checks card numbers takes them too.
TEST_CARDS: dict[str, str] = {
    "4330000000000003": "approve",
    "4330000000000011": "reject_card",
    "4330000000000029": "insufficient_balance",
    "4330000000000037": "provider_error",
    "4330000000000045": "server_error",
    "4330000000000052": "slow_confirm",
}


def scenario_for_card(number: str) -> str:
    """The outcome a test card number picks (spaces and dashes ignored); any other number is
    400 INVALID_CARD_NUMBER ("카드번호를 다시 확인해주세요.", Toss's error-code reference,
    https://docs.tosspayments.com/reference/error-codes) and the window stays open."""
    digits_only = re.sub(r"[\s-]", "", number or "")
    scenario = TEST_CARDS.get(digits_only)
    if scenario is None:
        raise SandboxError("INVALID_CARD_NUMBER")
    return scenario
