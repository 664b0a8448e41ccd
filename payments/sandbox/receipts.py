"""Toss's cash-receipt API: issue (POST /v1/cash-receipts) and cancel, all or part
(POST /v1/cash-receipts/{receiptKey}/cancel), with the fields and answers of Toss's CashReceipt
object. Its own table; a receipt names an orderId but is not tied to a payment here, as Toss's
API takes none."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Integer, String, update
from sqlalchemy.orm import Mapped, mapped_column

from .clock import toss_time
from .db import SandboxBase, UTCDateTime, db
from .errors import SandboxError
from .ids import digits
from .payments import invalid, now, parse_amount

# "현금영수증의 종류입니다. 소득공제, 지출증빙 중 하나의 값입니다."
TYPES = ("소득공제", "지출증빙")
ORDER_ID_RE = re.compile(r"^[A-Za-z0-9_=-]{6,64}$")
# customerIdentityNumber: a phone, cash-receipt card, business registration (or resident
# registration) number, digits only, at most 30.
IDENTITY_RE = re.compile(r"^[0-9]{1,30}$")
RECEIPT_KEY_RE = re.compile(r"^[A-Za-z0-9_-]{1,200}$")


class SandboxCashReceipt(SandboxBase):
    __tablename__ = "sandbox_cash_receipts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    receipt_key: Mapped[str] = mapped_column(String(200), unique=True)
    issue_number: Mapped[str] = mapped_column(String(9))
    order_id: Mapped[str] = mapped_column(String(64))
    order_name: Mapped[str] = mapped_column(String(100))
    receipt_type: Mapped[str] = mapped_column(String(8))
    identity_number: Mapped[str] = mapped_column(String(30))
    business_number: Mapped[str] = mapped_column(String(10))
    amount: Mapped[int] = mapped_column(BigInteger)
    tax_free_amount: Mapped[int] = mapped_column(BigInteger)
    canceled_amount: Mapped[int] = mapped_column(BigInteger, default=0)
    origin: Mapped[str] = mapped_column(String(200))
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime)


# The sandbox merchant's own business registration number.
BUSINESS_NUMBER = "1234567890"


def issue(body: Any, origin: str) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise invalid("요청 본문이 올바르지 않습니다.")
    amount = parse_amount(body.get("amount"))
    order_id = body.get("orderId")
    if not isinstance(order_id, str) or not ORDER_ID_RE.match(order_id):
        raise invalid("orderId는 영문 대소문자, 숫자, -, _, =로 이루어진 6자 이상 64자 이하입니다.")
    name = body.get("orderName")
    if not isinstance(name, str) or not name.strip() or len(name) > 100:
        raise invalid("orderName은 1자 이상 100자 이하입니다.")
    kind = body.get("type")
    if kind not in TYPES:
        raise invalid("type은 소득공제, 지출증빙 중 하나입니다.")
    identity = body.get("customerIdentityNumber")
    if not isinstance(identity, str) or not IDENTITY_RE.match(identity):
        raise invalid("customerIdentityNumber는 숫자로만 이루어진 30자 이하입니다.")
    tax_free = body.get("taxFreeAmount", 0)
    if tax_free not in (None, 0):
        tax_free = parse_amount(tax_free, "taxFreeAmount")
        if tax_free > amount:
            raise invalid("taxFreeAmount는 amount보다 클 수 없습니다.")
    receipt = SandboxCashReceipt(
        receipt_key="cr_" + digits(20),
        issue_number=digits(9),
        order_id=order_id,
        order_name=name,
        receipt_type=kind,
        identity_number=identity,
        business_number=BUSINESS_NUMBER,
        amount=amount,
        tax_free_amount=tax_free or 0,
        canceled_amount=0,
        origin=origin,
        requested_at=now(),
    )
    db.session.add(receipt)
    db.session.commit()
    return receipt_json(receipt, "CONFIRM", amount, receipt.tax_free_amount)


def cancel(receipt_key: str, body: Any) -> dict[str, Any]:
    if not RECEIPT_KEY_RE.match(receipt_key):
        raise SandboxError("NOT_FOUND", "존재하지 않는 현금영수증입니다.", 404)
    if body is not None and not isinstance(body, dict):
        raise invalid("요청 본문이 올바르지 않습니다.")
    receipt = db.session.scalars(
        db.select(SandboxCashReceipt).where(SandboxCashReceipt.receipt_key == receipt_key)
    ).one_or_none()
    if receipt is None:
        raise SandboxError("NOT_FOUND", "존재하지 않는 현금영수증입니다.", 404)
    left = receipt.amount - receipt.canceled_amount
    raw = (body or {}).get("amount")
    amount = left if raw is None else parse_amount(raw)
    if left == 0:
        raise invalid("이미 취소된 현금영수증입니다.")
    if amount > left:
        raise invalid(f"취소할 수 있는 금액({left}원)을 초과했습니다.")
    # Conditional on what was read: two cancels racing never take more than is left.
    moved = db.session.execute(
        update(SandboxCashReceipt)
        .where(
            SandboxCashReceipt.id == receipt.id,
            SandboxCashReceipt.canceled_amount == receipt.canceled_amount,
        )
        .values(canceled_amount=receipt.canceled_amount + amount)
    )
    if moved.rowcount != 1:  # type: ignore[attr-defined]
        db.session.rollback()
        raise SandboxError("FORBIDDEN_CONSECUTIVE_REQUEST")
    db.session.commit()
    tax_free = min(receipt.tax_free_amount, amount)
    return receipt_json(receipt, "CANCEL", amount, tax_free)


def receipt_json(
    r: SandboxCashReceipt, transaction: str, amount: int, tax_free: int
) -> dict[str, Any]:
    """Toss's CashReceipt object for one transaction of `r` (its issue or a cancel)."""
    return {
        "receiptKey": r.receipt_key,
        "issueNumber": r.issue_number,
        # Registration with the National Tax Service takes a while at Toss: a new receipt is
        # IN_PROGRESS, never COMPLETED on the spot.
        "issueStatus": "IN_PROGRESS",
        "amount": amount,
        "taxFreeAmount": tax_free,
        "orderId": r.order_id,
        "orderName": r.order_name,
        "type": r.receipt_type,
        "transactionType": transaction,
        "businessNumber": r.business_number,
        "customerIdentityNumber": r.identity_number,
        "failure": None,
        "requestedAt": toss_time(now()),
        "receiptUrl": f"{r.origin}/sandbox/cash-receipt/{r.receipt_key}",
    }
