"""Sandbox tables: everything the offline Toss knows lives here, so every worker sees one Toss.

They live in the sandbox's own database (`db.py`); the `sandbox_` prefix keeps them recognisable
should someone point it at a shared one.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from .db import SandboxBase, UTCDateTime, utcnow

# Payment statuses, as Toss names them.
READY = "READY"
IN_PROGRESS = "IN_PROGRESS"
WAITING_FOR_DEPOSIT = "WAITING_FOR_DEPOSIT"
DONE = "DONE"
CANCELED = "CANCELED"
PARTIAL_CANCELED = "PARTIAL_CANCELED"
ABORTED = "ABORTED"
EXPIRED = "EXPIRED"
STATUSES = (
    READY,
    IN_PROGRESS,
    WAITING_FOR_DEPOSIT,
    DONE,
    CANCELED,
    PARTIAL_CANCELED,
    ABORTED,
    EXPIRED,
)
# Confirmed at least once: money moved or a virtual account was issued.
CONFIRMED = frozenset({WAITING_FOR_DEPOSIT, DONE, CANCELED, PARTIAL_CANCELED})

CARD = "CARD"
VIRTUAL_ACCOUNT = "VIRTUAL_ACCOUNT"
TRANSFER = "TRANSFER"  # 계좌이체: served to the payment-window integration (payment())


class SandboxPayment(SandboxBase):
    """One payment window session and, once the shopper finished it, the payment."""

    __tablename__ = "sandbox_payments"
    __table_args__ = (
        CheckConstraint("total_amount > 0", name="total_positive"),
        CheckConstraint("balance_amount >= 0", name="balance_not_negative"),
        CheckConstraint("balance_amount <= total_amount", name="balance_within_total"),
        CheckConstraint(
            "status IN ('READY','IN_PROGRESS','WAITING_FOR_DEPOSIT','DONE','CANCELED',"
            "'PARTIAL_CANCELED','ABORTED','EXPIRED')",
            name="status_known",
        ),
        CheckConstraint("method IN ('CARD','VIRTUAL_ACCOUNT','TRANSFER')", name="method_known"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # Names the payment window page; unguessable, never shown to the merchant's server.
    session_token: Mapped[str] = mapped_column(String(64), unique=True)
    # Issued when the shopper finishes the window (READY sessions have none).
    payment_key: Mapped[str | None] = mapped_column(String(200), unique=True)
    # Set by the confirm that wins: the unique constraint lets only one payment per orderId
    # ever be confirmed, even when two windows for the same order race.
    confirmed_order_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    order_id: Mapped[str] = mapped_column(String(64), index=True)
    order_name: Mapped[str] = mapped_column(String(100))
    client_key: Mapped[str] = mapped_column(String(200))
    customer_key: Mapped[str | None] = mapped_column(String(50))
    customer_name: Mapped[str | None] = mapped_column(String(100))
    customer_email: Mapped[str | None] = mapped_column(String(100))
    customer_mobile_phone: Mapped[str | None] = mapped_column(String(20))
    method: Mapped[str] = mapped_column(String(20), default=CARD)
    scenario: Mapped[str | None] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(24), default=READY, index=True)
    total_amount: Mapped[int] = mapped_column(BigInteger)
    balance_amount: Mapped[int] = mapped_column(BigInteger)
    tax_free_amount: Mapped[int] = mapped_column(BigInteger, default=0)
    # Methods whose requestPayment options asked for escrow, comma-separated (windows.py).
    escrow_methods: Mapped[str | None] = mapped_column(String(64))
    success_url: Mapped[str] = mapped_column(Text)
    fail_url: Mapped[str] = mapped_column(Text)
    # Origin the shopper's browser reached the sandbox on: receipt and window links use it.
    origin: Mapped[str] = mapped_column(String(255))
    # Where the window sent the shopper; a resubmitted window form goes there again.
    redirect_url: Mapped[str | None] = mapped_column(Text)
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime)
    window_expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    authenticated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    approved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_transaction_key: Mapped[str | None] = mapped_column(String(64))
    secret: Mapped[str | None] = mapped_column(String(64))
    card_number: Mapped[str | None] = mapped_column(String(32))
    card_approve_no: Mapped[str | None] = mapped_column(String(16))
    card_issuer_code: Mapped[str | None] = mapped_column(String(4))
    va_account_number: Mapped[str | None] = mapped_column(String(32))
    va_bank_code: Mapped[str | None] = mapped_column(String(4))
    va_customer_name: Mapped[str | None] = mapped_column(String(100))
    va_due_date: Mapped[datetime | None] = mapped_column(UTCDateTime)
    va_refund_status: Mapped[str | None] = mapped_column(String(24))
    va_expired: Mapped[bool] = mapped_column(Boolean, default=False)
    deposited_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    failure_code: Mapped[str | None] = mapped_column(String(64))
    failure_message: Mapped[str | None] = mapped_column(String(255))
    # provider_error scenario: how many confirms still fail before one succeeds.
    provider_errors_left: Mapped[int] = mapped_column(Integer, default=0)
    # Test-helper counter: confirm requests that reached the sandbox for this payment.
    confirm_requests: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    cancels: Mapped[list[SandboxCancel]] = relationship(
        back_populates="payment", order_by="SandboxCancel.id", cascade="all, delete-orphan"
    )


class SandboxCancel(SandboxBase):
    """One entry of a payment's `cancels[]`."""

    __tablename__ = "sandbox_cancels"
    __table_args__ = (
        CheckConstraint("cancel_amount > 0", name="amount_positive"),
        CheckConstraint("refundable_amount >= 0", name="refundable_not_negative"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    payment_id: Mapped[int] = mapped_column(
        ForeignKey("sandbox_payments.id", ondelete="CASCADE"), index=True
    )
    transaction_key: Mapped[str] = mapped_column(String(64), unique=True)
    cancel_amount: Mapped[int] = mapped_column(BigInteger)
    cancel_reason: Mapped[str] = mapped_column(String(200))
    tax_free_amount: Mapped[int] = mapped_column(BigInteger, default=0)
    # The balance left after this cancel (Toss's name for it).
    refundable_amount: Mapped[int] = mapped_column(BigInteger)
    cancel_status: Mapped[str] = mapped_column(String(16), default="DONE")
    refund_bank: Mapped[str | None] = mapped_column(String(20))
    refund_holder_name: Mapped[str | None] = mapped_column(String(60))
    canceled_at: Mapped[datetime] = mapped_column(UTCDateTime)

    payment: Mapped[SandboxPayment] = relationship(back_populates="cancels")


class SandboxIdempotencyKey(SandboxBase):
    """An Idempotency-Key in use: inserted (PROCESSING) under the unique identity before the
    work runs, so a concurrent repeat in any worker sees it; then the answer to replay."""

    __tablename__ = "sandbox_idempotency_keys"
    __table_args__ = (CheckConstraint("state IN ('PROCESSING','DONE')", name="state_known"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # sha256 of (key, secret key, method, URL): the body is deliberately not part of it.
    identity: Mapped[str] = mapped_column(String(64), unique=True)
    state: Mapped[str] = mapped_column(String(16), default="PROCESSING")
    response_status: Mapped[int | None] = mapped_column(Integer)
    response_body: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class SandboxWebhook(SandboxBase):
    """Durable outbox of webhook deliveries (one row per delivery, duplicates included)."""

    __tablename__ = "sandbox_webhooks"
    __table_args__ = (
        UniqueConstraint("transmission_id", "copy", name="uq_sandbox_webhooks_transmission"),
        CheckConstraint("status IN ('PENDING','DELIVERED','FAILED')", name="status_known"),
        Index("ix_sandbox_webhooks_due", "status", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    transmission_id: Mapped[str] = mapped_column(String(64))
    # 0 for the delivery itself, 1.. for the copies SANDBOX_WEBHOOK_DUPLICATES asks for.
    copy: Mapped[int] = mapped_column(Integer, default=0)
    event_type: Mapped[str] = mapped_column(String(40))
    payment_key: Mapped[str | None] = mapped_column(String(200), index=True)
    order_id: Mapped[str | None] = mapped_column(String(64))
    url: Mapped[str] = mapped_column(Text)
    # Serialized once, so every retry sends the very same bytes.
    body: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="PENDING")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


# Bump when a table changes: a sandbox database made by another version starts afresh.
SCHEMA_VERSION = 3


class SandboxSchema(SandboxBase):
    """The version of the tables this database was made with (one row)."""

    __tablename__ = "sandbox_schema"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[int] = mapped_column(Integer)
