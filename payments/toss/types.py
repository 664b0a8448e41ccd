"""Typed views of Toss's Payment object (version 2022-11-16); unknown fields are ignored."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


def _str(d: dict[str, Any], key: str) -> str | None:
    v = d.get(key)
    return v if isinstance(v, str) else None


def _int(d: dict[str, Any], key: str) -> int | None:
    v = d.get(key)
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return v
    if isinstance(v, float) and v.is_integer():
        return int(v)
    return None


def _bool(d: dict[str, Any], key: str) -> bool | None:
    v = d.get(key)
    return v if isinstance(v, bool) else None


def _dict(d: dict[str, Any], key: str) -> dict[str, Any] | None:
    v = d.get(key)
    return v if isinstance(v, dict) else None


@dataclass(frozen=True)
class Card:
    number: str | None
    approve_no: str | None
    card_type: str | None
    owner_type: str | None
    issuer_code: str | None
    installment_plan_months: int | None

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Card:
        return cls(
            number=_str(d, "number"),
            approve_no=_str(d, "approveNo"),
            card_type=_str(d, "cardType"),
            owner_type=_str(d, "ownerType"),
            issuer_code=_str(d, "issuerCode"),
            installment_plan_months=_int(d, "installmentPlanMonths"),
        )


@dataclass(frozen=True)
class VirtualAccount:
    account_number: str | None
    bank_code: str | None
    customer_name: str | None
    due_date: str | None
    refund_status: str | None
    expired: bool | None

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> VirtualAccount:
        return cls(
            account_number=_str(d, "accountNumber"),
            bank_code=_str(d, "bankCode"),
            customer_name=_str(d, "customerName"),
            due_date=_str(d, "dueDate"),
            refund_status=_str(d, "refundStatus"),
            expired=_bool(d, "expired"),
        )


@dataclass(frozen=True)
class Cancel:
    cancel_amount: int | None
    cancel_reason: str | None
    canceled_at: str | None
    transaction_key: str | None
    cancel_status: str | None
    refundable_amount: int | None

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Cancel:
        return cls(
            cancel_amount=_int(d, "cancelAmount"),
            cancel_reason=_str(d, "cancelReason"),
            canceled_at=_str(d, "canceledAt"),
            transaction_key=_str(d, "transactionKey"),
            cancel_status=_str(d, "cancelStatus"),
            refundable_amount=_int(d, "refundableAmount"),
        )


@dataclass(frozen=True)
class CashReceipt:
    """A cash receipt (현금영수증): the Payment's `cashReceipt` (type, receiptKey, issueNumber,
    receiptUrl, amount, taxFreeAmount) or the answer of the cash-receipt API, which adds
    orderId, issueStatus (IN_PROGRESS, COMPLETED, FAILED), transactionType (CONFIRM, CANCEL),
    failure and requestedAt."""

    receipt_key: str | None
    type: str | None
    issue_number: str | None
    receipt_url: str | None
    amount: int | None
    tax_free_amount: int | None
    order_id: str | None = None
    issue_status: str | None = None
    transaction_type: str | None = None
    failure_code: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CashReceipt:
        failure = _dict(d, "failure")
        return cls(
            receipt_key=_str(d, "receiptKey"),
            type=_str(d, "type"),
            issue_number=_str(d, "issueNumber"),
            receipt_url=_str(d, "receiptUrl"),
            amount=_int(d, "amount"),
            tax_free_amount=_int(d, "taxFreeAmount"),
            order_id=_str(d, "orderId"),
            issue_status=_str(d, "issueStatus"),
            transaction_type=_str(d, "transactionType"),
            failure_code=_str(failure, "code") if failure else None,
            raw=d,
        )


@dataclass(frozen=True)
class Payment:
    """The fields this shop relies on; `raw` keeps the whole answer for the record."""

    payment_key: str
    order_id: str
    status: str
    total_amount: int
    balance_amount: int | None = None
    order_name: str | None = None
    method: str | None = None
    type: str | None = None
    currency: str | None = None
    m_id: str | None = None
    supplied_amount: int | None = None
    vat: int | None = None
    tax_free_amount: int | None = None
    requested_at: str | None = None
    approved_at: str | None = None
    last_transaction_key: str | None = None
    secret: str | None = None
    receipt_url: str | None = None
    checkout_url: str | None = None
    card: Card | None = None
    virtual_account: VirtualAccount | None = None
    cancels: tuple[Cancel, ...] = ()
    failure_code: str | None = None
    failure_message: str | None = None
    is_partial_cancelable: bool | None = None
    # Issued with the payment (transfer, virtual account); None unless the buyer asked for one.
    cash_receipt: CashReceipt | None = None
    use_escrow: bool | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Payment:
        """Read a Payment; raise ValueError when an essential field is missing or ill-typed."""
        payment_key = _str(d, "paymentKey")
        order_id = _str(d, "orderId")
        status = _str(d, "status")
        total = _int(d, "totalAmount")
        if not payment_key or not order_id or not status or total is None:
            raise ValueError("Payment object lacks paymentKey, orderId, status or totalAmount")
        card = _dict(d, "card")
        va = _dict(d, "virtualAccount")
        receipt = _dict(d, "receipt")
        checkout = _dict(d, "checkout")
        failure = _dict(d, "failure")
        cash_receipt = _dict(d, "cashReceipt")
        cancels_raw = d.get("cancels")
        cancels = (
            tuple(Cancel.from_dict(c) for c in cancels_raw or () if isinstance(c, dict))
            if isinstance(cancels_raw, list)
            else ()
        )
        return cls(
            payment_key=payment_key,
            order_id=order_id,
            status=status,
            total_amount=total,
            balance_amount=_int(d, "balanceAmount"),
            order_name=_str(d, "orderName"),
            method=_str(d, "method"),
            type=_str(d, "type"),
            currency=_str(d, "currency"),
            m_id=_str(d, "mId"),
            supplied_amount=_int(d, "suppliedAmount"),
            vat=_int(d, "vat"),
            tax_free_amount=_int(d, "taxFreeAmount"),
            requested_at=_str(d, "requestedAt"),
            approved_at=_str(d, "approvedAt"),
            last_transaction_key=_str(d, "lastTransactionKey"),
            secret=_str(d, "secret"),
            receipt_url=_str(receipt, "url") if receipt else None,
            checkout_url=_str(checkout, "url") if checkout else None,
            card=Card.from_dict(card) if card else None,
            virtual_account=VirtualAccount.from_dict(va) if va else None,
            cancels=cancels,
            failure_code=_str(failure, "code") if failure else None,
            failure_message=_str(failure, "message") if failure else None,
            is_partial_cancelable=_bool(d, "isPartialCancelable"),
            cash_receipt=CashReceipt.from_dict(cash_receipt) if cash_receipt else None,
            use_escrow=_bool(d, "useEscrow"),
            raw=d,
        )
