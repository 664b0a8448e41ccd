"""Operator cash receipts (현금영수증) through Toss's cash-receipt API: issue one for a transfer
or virtual-account payment, cancel all or part of it (a partial refund cancels its amount).

One receipt per order, enforced by the database (cash_receipts.order_pk is unique). As with
refunds, the intent (with its Idempotency-Key) is committed before Toss is called and Toss's
answer after; an unknown outcome leaves the intent in place, and the operator's next try repeats
the call with the same key, which Toss answers without acting twice.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from ..core.errors import ServiceError, invalid, message_for
from ..core.models import CashReceipt, CashReceiptStatus, Order, Payment
from ..core.orders import find_order, record
from ..core.states import REFUNDABLE, Source
from ..extensions import db, toss
from ..toss import CashReceipt as TossCashReceipt
from ..toss import TossError

logger = logging.getLogger(__name__)

R = CashReceiptStatus
# Toss's method labels of the cash-like payments a receipt may be issued for.
CASH_METHODS = frozenset({"계좌이체", "가상계좌"})
INCOME_DEDUCTION, PROOF_OF_EXPENSE = "소득공제", "지출증빙"
_PHONE = re.compile(r"^01[0-9]{8,9}$")
_CARD = re.compile(r"^[0-9]{13,19}$")
_BUSINESS = re.compile(r"^[0-9]{10}$")


def parse_receipt_form(form: Mapping[str, str]) -> tuple[str, str]:
    """(type, identity number) from the operator's form, or a Korean 400."""
    kind = (form.get("receipt_type") or "").strip()
    if kind not in (INCOME_DEDUCTION, PROOF_OF_EXPENSE):
        raise invalid("현금영수증 용도(소득공제 또는 지출증빙)를 선택해주세요.")
    number = re.sub(r"[\s-]", "", form.get("identity_number") or "")
    if kind == INCOME_DEDUCTION and not (_PHONE.match(number) or _CARD.match(number)):
        raise invalid(
            "소득공제용은 휴대폰 번호(01로 시작하는 10~11자리) 또는 현금영수증 카드 번호"
            "(13~19자리)를 입력해주세요."
        )
    if kind == PROOF_OF_EXPENSE and not (_BUSINESS.match(number) or _CARD.match(number)):
        raise invalid(
            "지출증빙용은 사업자등록번호(10자리) 또는 현금영수증 카드 번호(13~19자리)를 "
            "입력해주세요."
        )
    return kind, number


def parse_cancel_form(form: Mapping[str, str]) -> int | None:
    """The amount to cancel, or None for everything left."""
    raw = (form.get("amount") or "").strip().replace(",", "")
    if not raw:
        return None
    if not re.fullmatch(r"[0-9]{1,12}", raw) or int(raw) <= 0:
        raise invalid("취소 금액은 1원 이상의 정수여야 합니다.")
    return int(raw)


def masked(number: str) -> str:
    return "*" * max(0, len(number) - 4) + number[-4:]


def issue_receipt(order_id: str, kind: str, number: str, operator: str) -> CashReceipt:
    """Issue the order's cash receipt for what the buyer paid and still holds paid."""
    order, payment = _order_and_payment(order_id)
    if payment.method not in CASH_METHODS or order.status not in REFUNDABLE:
        raise ServiceError(
            "RECEIPT_NOT_ALLOWED",
            "현금영수증은 결제가 완료된 계좌이체·가상계좌 주문에만 발급할 수 있습니다.",
            409,
        )
    receipt = _receipt_of(order)
    if receipt is not None and receipt.status != R.FAILED:
        if receipt.status != R.PENDING:
            raise ServiceError("RECEIPT_EXISTS", "이 주문에는 이미 현금영수증이 있습니다.", 409)
        # An earlier issue whose outcome is unknown: repeat it with its own key and number.
        return _call_issue(order, receipt)
    attempt = 1 if receipt is None else int((receipt.issue_key or "-0").rsplit("-", 1)[1]) + 1
    if receipt is None:
        receipt = CashReceipt(order_pk=order.id, origin="api", canceled_amount=0)
        db.session.add(receipt)
    receipt.receipt_type = kind
    receipt.identity_number = number
    receipt.amount = payment.balance_amount
    receipt.tax_free_amount = 0
    receipt.status = R.PENDING
    receipt.issue_key = f"cash-receipt-{order.order_id}-{attempt}"
    receipt.failure_code = receipt.failure_message = None
    record(order, "cash_receipt_requested", Source.ADMIN, detail=f"{kind} by {operator}")
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        raise ServiceError(
            "RECEIPT_EXISTS", "이 주문에는 이미 현금영수증이 있습니다.", 409
        ) from None
    return _call_issue(order, receipt)


def _call_issue(order: Order, receipt: CashReceipt) -> CashReceipt:
    assert receipt.issue_key
    assert receipt.identity_number
    try:
        answer = toss.client.issue_cash_receipt(
            amount=receipt.amount,
            order_id=order.order_id,
            order_name=order.order_name,
            customer_identity_number=receipt.identity_number,
            receipt_type=receipt.receipt_type,
            tax_free_amount=receipt.tax_free_amount,
            idempotency_key=receipt.issue_key,
        )
    except TossError as exc:
        if exc.outcome_unknown or exc.retryable:
            raise ServiceError(
                "RECEIPT_PENDING", "발급 결과를 아직 모릅니다. 잠시 후 다시 시도해주세요.", 202
            ) from None
        receipt.status = R.FAILED
        receipt.failure_code = exc.code
        receipt.failure_message = message_for(exc.code)[:255]
        receipt.identity_number = masked(receipt.identity_number)
        record(order, "cash_receipt_failed", Source.ADMIN, code=exc.code)
        db.session.commit()
        raise ServiceError(exc.code, exc.message or message_for(exc.code), 409) from None
    _apply_issue(receipt, answer)
    record(
        order,
        "cash_receipt_issued",
        Source.ADMIN,
        detail=f"{receipt.amount}원 {receipt.receipt_type}",
    )
    db.session.commit()
    logger.info("cash receipt issued", extra={"order_id": order.order_id})
    return receipt


def _apply_issue(receipt: CashReceipt, answer: TossCashReceipt) -> None:
    receipt.status = R.ISSUED
    receipt.receipt_key = answer.receipt_key
    receipt.issue_number = answer.issue_number
    receipt.receipt_url = answer.receipt_url
    receipt.issue_status = answer.issue_status
    # Kept whole only while the call might need repeating.
    receipt.identity_number = masked(receipt.identity_number or "")


def cancel_receipt(order_id: str, amount: int | None, operator: str) -> CashReceipt:
    """Cancel `amount` (None: all that is left) of the order's issued receipt."""
    order, _ = _order_and_payment(order_id)
    receipt = _receipt_of(order, lock=True)
    if receipt is None or receipt.origin != "api" or receipt.status != R.ISSUED:
        raise ServiceError(
            "RECEIPT_NOT_CANCELABLE", "이 주문에는 취소할 수 있는 현금영수증이 없습니다.", 409
        )
    if receipt.cancel_key is None:
        wanted = receipt.remaining if amount is None else amount
        if not 0 < wanted <= receipt.remaining:
            raise ServiceError(
                "RECEIPT_CANCEL_EXCEEDS",
                f"취소할 수 있는 금액({receipt.remaining:,}원)을 초과했습니다.",
                400,
            )
        receipt.pending_cancel_amount = wanted
        receipt.cancel_key = f"cash-receipt-cancel-{order.order_id}-{receipt.canceled_amount}"
        record(order, "cash_receipt_cancel", Source.ADMIN, detail=f"{wanted}원 by {operator}")
        db.session.commit()
    # else: a cancel whose outcome is unknown comes first, repeated with its own key.
    return _call_cancel(order, receipt)


def _call_cancel(order: Order, receipt: CashReceipt) -> CashReceipt:
    assert receipt.receipt_key
    assert receipt.cancel_key
    assert receipt.pending_cancel_amount
    wanted = receipt.pending_cancel_amount
    try:
        toss.client.cancel_cash_receipt(
            receipt.receipt_key,
            amount=None if wanted == receipt.remaining else wanted,
            idempotency_key=receipt.cancel_key,
        )
    except TossError as exc:
        if exc.outcome_unknown or exc.retryable:
            raise ServiceError(
                "RECEIPT_PENDING", "취소 결과를 아직 모릅니다. 잠시 후 다시 시도해주세요.", 202
            ) from None
        receipt.cancel_key = None
        receipt.pending_cancel_amount = None
        record(order, "cash_receipt_failed", Source.ADMIN, code=exc.code)
        db.session.commit()
        raise ServiceError(exc.code, exc.message or message_for(exc.code), 409) from None
    receipt.canceled_amount += wanted
    receipt.cancel_key = None
    receipt.pending_cancel_amount = None
    if receipt.remaining == 0:
        receipt.status = R.CANCELED
    record(order, "cash_receipt_canceled", Source.ADMIN, detail=f"{wanted}원")
    db.session.commit()
    logger.info("cash receipt cancelled", extra={"order_id": order.order_id, "amount": wanted})
    return receipt


def follow_refund(order_id: str, refunded: int, operator: str) -> CashReceipt | None:
    """After a refund: cancel the same amount of the order's issued receipt (a partial cancel
    for a partial refund), so the receipt never states more than the buyer paid."""
    order = find_order(order_id)
    receipt = _receipt_of(order) if order is not None else None
    if receipt is None or receipt.origin != "api" or receipt.status != R.ISSUED:
        return None
    return cancel_receipt(order_id, min(refunded, receipt.remaining), operator)


def _order_and_payment(order_id: str) -> tuple[Order, Payment]:
    order = find_order(order_id)
    if order is None:
        raise ServiceError("ORDER_NOT_FOUND", http_status=404)
    if order.payment is None:
        raise ServiceError(
            "RECEIPT_NOT_ALLOWED", "결제가 완료된 주문에만 현금영수증을 발급할 수 있습니다.", 409
        )
    return order, order.payment


def _receipt_of(order: Order, *, lock: bool = False) -> CashReceipt | None:
    query = select(CashReceipt).where(CashReceipt.order_pk == order.id)
    if lock:
        query = query.with_for_update()
    return db.session.scalars(query).one_or_none()
