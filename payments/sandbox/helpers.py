"""What the test helpers, `toss-sandbox trigger` and the dashboard do that Toss's API does not:
a buyer's deposit, a bank's deposit error, an expiry on demand, a cancel or a refused approval
made outside the merchant's server, the sandbox's own view of its payments, and where its
webhooks go.

Toss's test environment offers the same kind of switches: its developer centre lists the test
payments and, in their last column, cancels a payment or makes a virtual account's deposit
("가장 오른쪽 컬럼에서 결제를 취소하거나 가상계좌 입금을 처리할 수 있어요",
https://docs.tosspayments.com/resources/faq).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from sqlalchemy import func, select, update

from .cancel import cancel as cancel_payment
from .db import db
from .errors import ERRORS, SandboxError
from .ids import new_transaction_key
from .models import (
    ABORTED,
    DONE,
    EXPIRED,
    IN_PROGRESS,
    PARTIAL_CANCELED,
    READY,
    VIRTUAL_ACCOUNT,
    WAITING_FOR_DEPOSIT,
    SandboxPayment,
    SandboxWebhook,
)
from .payments import (
    expire as expire_payment,
)
from .payments import (
    find_payment,
    find_payment_by_order,
    invalid,
    move,
    now,
    parse_amount,
    payment_json,
    refresh_deadlines,
)
from .settings import SettingsError
from .state import state


def resolve(ref: str) -> SandboxPayment:
    """The payment `ref` names: the one with that paymentKey, else the one Toss's lookup by
    orderId answers for it (`find_payment_by_order`); its deadlines applied. 404
    NOT_FOUND_PAYMENT when neither exists."""
    payment = find_payment(ref) or find_payment_by_order(ref)
    if payment is None:
        raise SandboxError("NOT_FOUND_PAYMENT")
    refresh_deadlines(payment)
    return payment


def _not_waiting(payment: SandboxPayment) -> SandboxError:
    return SandboxError(
        "NOT_WAITING_FOR_DEPOSIT",
        f"입금 대기 중인 가상계좌가 아닙니다. (현재 상태: {payment.status})",
        409,
    )


def deposit(order_id: str, body: Any) -> dict[str, Any]:
    """The buyer pays the virtual account of `order_id` (or of that paymentKey):
    WAITING_FOR_DEPOSIT → DONE, announced by PAYMENT_STATUS_CHANGED and DEPOSIT_CALLBACK
    (https://docs.tosspayments.com/en/webhooks).

    After the due date the account takes no money: "dueDate이 지난 시점에 입금을 시도하면
    실패합니다" (https://docs.tosspayments.com/reference, "가상계좌 발급 요청").
    """
    payment = resolve(order_id)
    if payment.method != VIRTUAL_ACCOUNT or payment.status != WAITING_FOR_DEPOSIT:
        raise _not_waiting(payment)
    if payment.va_expired:
        raise SandboxError(
            "VIRTUAL_ACCOUNT_EXPIRED",
            "입금 기한이 지난 가상계좌에는 입금할 수 없습니다.",
            409,
        )
    paid = body.get("amount") if isinstance(body, dict) else None
    if paid is not None and parse_amount(paid) != payment.total_amount:
        raise invalid("가상계좌에는 결제 금액과 같은 금액만 한 번에 입금할 수 있습니다.")
    t = now()
    values = {
        "status": DONE,
        "approved_at": t,
        "deposited_at": t,
        "last_transaction_key": new_transaction_key(),
    }
    if not move(payment, WAITING_FOR_DEPOSIT, values, deposit_callback=True):
        raise _not_waiting(payment)
    return payment_json(payment)


def deposit_error(order_id: str) -> dict[str, Any]:
    """The bank reports an error on the deposit of `order_id`'s virtual account (or of that
    paymentKey's): DONE → back to WAITING_FOR_DEPOSIT, announced by PAYMENT_STATUS_CHANGED and
    DEPOSIT_CALLBACK.

    Toss: "In very few cases of network issues, the payment status can change from DONE back to
    WAITING FOR DEPOSIT" (https://docs.tosspayments.com/en/webhooks). The buyer may then deposit
    again, until the due date.
    """
    payment = resolve(order_id)
    if (
        payment.method != VIRTUAL_ACCOUNT
        or payment.status != DONE
        or payment.deposited_at is None
        or payment.cancels
    ):
        raise SandboxError(
            "NOT_DEPOSITED",
            f"입금이 완료된 (취소되지 않은) 가상계좌가 아닙니다. (현재 상태: {payment.status})",
            409,
        )
    values = {
        "status": WAITING_FOR_DEPOSIT,
        "approved_at": None,
        "deposited_at": None,
        "last_transaction_key": new_transaction_key(),
    }
    if not move(payment, DONE, values, deposit_callback=True):
        raise SandboxError("NOT_DEPOSITED", "다른 요청이 먼저 결제 상태를 바꿨습니다.", 409)
    return payment_json(payment)


def expire(payment_key: str) -> dict[str, Any]:
    """What a passed deadline does, now: a window (READY) or an unconfirmed payment
    (IN_PROGRESS) → EXPIRED with its webhook; a virtual account waiting for its deposit → past
    its due date (it stays WAITING_FOR_DEPOSIT, `expired` turns true, nothing is sent).
    `payment_key` may also be an orderId (`resolve`)."""
    payment = resolve(payment_key)
    if payment.status in (READY, IN_PROGRESS):
        moved = expire_payment(payment)
    elif payment.status == WAITING_FOR_DEPOSIT:
        db.session.execute(
            update(SandboxPayment)
            .where(SandboxPayment.id == payment.id)
            .values(va_due_date=now(), updated_at=now())
            .execution_options(synchronize_session=False)
        )
        db.session.commit()
        db.session.refresh(payment)
        refresh_deadlines(payment)
        moved = True
    else:
        moved = payment.status == EXPIRED
    if not moved:
        raise SandboxError(
            "NOT_EXPIRABLE",
            f"결제창(READY), 승인 전(IN_PROGRESS) 또는 입금 대기(WAITING_FOR_DEPOSIT) 결제만 "
            f"만료시킬 수 있습니다. (현재 상태: {payment.status})",
            409,
        )
    return payment_json(payment)


# A refused approval's failure unless the caller names another code: the refusal the sandbox's
# insufficient_balance outcome gives (403, "한도초과 혹은 잔액부족으로 결제에 실패했습니다.").
ABORT_CODE = "REJECT_CARD_PAYMENT"
# Window-only and failure-only codes are not what a refused approval answers.
_NOT_ABORT_CODES = frozenset({"PAY_PROCESS_CANCELED", "PAY_PROCESS_ABORTED", "EXPIRED_PAYMENT"})
# Where a deposited virtual account's money goes back when the sandbox's tools cancel it (Toss
# needs refundReceiveAccount for that cancel; a shop's own cancel gives the buyer's account).
TEST_REFUND_ACCOUNT = {"bank": "88", "accountNumber": "110123456789"}
TOOL_CANCEL_REASON = "샌드박스 도구에서 취소"


def cancel(ref: str, amount: int | None = None) -> dict[str, Any]:
    """Cancel the payment `ref` names (all of its balance, or `amount` of it) as the merchant's
    console would, outside the merchant's server: Toss's cancel with its checks and webhooks
    (`cancel.cancel`); a deposited virtual account is refunded to a test account."""
    payment = resolve(ref)
    body: dict[str, Any] = {"cancelReason": TOOL_CANCEL_REASON}
    if amount is not None:
        body["cancelAmount"] = amount
    if payment.method == VIRTUAL_ACCOUNT and payment.deposited_at is not None:
        holder = payment.va_customer_name or payment.customer_name or "김토스"
        body["refundReceiveAccount"] = {**TEST_REFUND_ACCOUNT, "holderName": holder}
    return cancel_payment(payment.payment_key or "", body)


def abort(ref: str, code: str | None = None) -> dict[str, Any]:
    """The approval of the payment `ref` names fails, as when Toss refuses a confirm: an
    authenticated payment (IN_PROGRESS) → ABORTED with `code` (default REJECT_CARD_PAYMENT) and
    its message as `failure`, announced by PAYMENT_STATUS_CHANGED; a later confirm answers that
    failure (`confirm.confirm`).

    Toss: ABORTED is "결제 승인이 실패한 상태" and `failure` "결제 승인에 실패하면 응답으로 받는
    에러 객체" (https://docs.tosspayments.com/reference, Payment 객체); an ABORTED
    PAYMENT_STATUS_CHANGED is shown on Toss's forum
    (https://techchat.tosspayments.com/m/1131524149819478036). Only a payment the shopper
    authenticated can have its approval fail, so a window still READY is refused (expire it).
    """
    code = code or ABORT_CODE
    if code not in ERRORS or code in _NOT_ABORT_CODES:
        raise invalid(f"{code}는 승인 실패 코드로 쓸 수 없습니다 (errors.py의 Toss 오류 코드).")
    payment = resolve(ref)
    values = {"status": ABORTED, "failure_code": code, "failure_message": ERRORS[code][1]}
    if payment.status != IN_PROGRESS or not move(payment, IN_PROGRESS, values):
        raise SandboxError(
            "NOT_ABORTABLE",
            f"결제창 인증을 마치고 승인을 기다리는(IN_PROGRESS) 결제만 승인 실패로 만들 수 "
            f"있습니다. (현재 상태: {payment.status})",
            409,
        )
    return payment_json(payment)


# What `toss-sandbox trigger` and the dashboard's buttons run, by name.
ACTIONS: dict[str, Callable[[str], dict[str, Any]]] = {
    "deposit": lambda ref: deposit(ref, None),
    "deposit-error": deposit_error,
    "expire": expire,
    "cancel": cancel,
    "abort": abort,
}


def available_actions(payment: SandboxPayment) -> list[str]:
    """The ACTIONS that apply to `payment` as it is (the ones the dashboard offers); each
    action checks again when it runs."""
    status = payment.status
    found: list[str] = []
    if payment.method == VIRTUAL_ACCOUNT and status == WAITING_FOR_DEPOSIT:
        if not payment.va_expired:
            found += ["deposit", "expire"]
    elif status == READY:
        found.append("expire")
    elif status == IN_PROGRESS:
        found += ["abort", "expire"]
    deposited = payment.method == VIRTUAL_ACCOUNT and payment.deposited_at is not None
    if deposited and status == DONE and not payment.cancels:
        found.append("deposit-error")
    if status in (WAITING_FOR_DEPOSIT, DONE, PARTIAL_CANCELED):
        found.append("cancel")
    return found


def recent_payments(page: int, per_page: int) -> tuple[list[SandboxPayment], int]:
    """One page of the sandbox's payments, newest first (deadlines applied), and how many
    there are."""
    total = int(db.session.scalar(select(func.count()).select_from(SandboxPayment)) or 0)
    rows = list(
        db.session.scalars(
            select(SandboxPayment)
            .order_by(SandboxPayment.id.desc())
            .offset((page - 1) * per_page)
            .limit(per_page)
        )
    )
    for payment in rows:
        refresh_deadlines(payment)
    return rows, total


def webhook_counts(payment_keys: list[str]) -> dict[str, dict[str, int]]:
    """paymentKey → {outbox status → deliveries}, for these payments."""
    found: dict[str, dict[str, int]] = {key: {} for key in payment_keys}
    if not payment_keys:
        return found
    rows = db.session.execute(
        select(SandboxWebhook.payment_key, SandboxWebhook.status, func.count())
        .where(SandboxWebhook.payment_key.in_(payment_keys))
        .group_by(SandboxWebhook.payment_key, SandboxWebhook.status)
    ).all()
    for key, status, count in rows:
        if key is not None:
            found.setdefault(key, {})[status] = int(count)
    return found


_destination = threading.Lock()


def webhook_url() -> str | None:
    """Where this sandbox process sends the webhooks it queues from now on (None: nowhere,
    and none are recorded)."""
    return state().settings.webhook_url


def set_webhook_url(
    url: str | None, *, expected: str | None = None, check_expected: bool = False
) -> str | None:
    """Send the webhooks queued from now on to `url` (None: none are queued); the URL it
    replaced. With `check_expected`, only while the current URL is `expected` (else 409
    WEBHOOK_URL_CHANGED), so a listener that stops hands back only what it took.

    Held by this process (as `toss-sandbox serve --webhook-url` sets it): deliveries already
    queued keep the URL they were queued with.
    """
    with _destination:
        sandbox = state()
        previous = sandbox.settings.webhook_url
        if check_expected and previous != expected:
            raise SandboxError(
                "WEBHOOK_URL_CHANGED",
                f"웹훅 URL이 이미 바뀌었습니다. (현재: {previous or '없음'})",
                409,
            )
        try:
            sandbox.settings = sandbox.settings.but(webhook_url=url or None)
        except SettingsError as exc:
            raise invalid(str(exc)) from None
        return previous


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
    its own transaction, whatever its answer turns out to be."""
    if not isinstance(payment_key, str) or not payment_key or len(payment_key) > 200:
        return
    db.session.execute(
        update(SandboxPayment)
        .where(SandboxPayment.payment_key == payment_key)
        .values(confirm_requests=SandboxPayment.confirm_requests + 1)
        .execution_options(synchronize_session=False)
    )
    db.session.commit()
