"""Shop tables. Money is integer KRW in BigInteger columns with CHECK constraints."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    DateTime,
    Enum,
    ForeignKey,
    Index,
    Integer,
    SmallInteger,
    String,
    Text,
    TypeDecorator,
    false,
    text,
)
from sqlalchemy.orm import Mapped, backref, mapped_column, relationship

from ..extensions import Base
from ..toss import RefundAccount
from .clock import utcnow
from .states import (
    FULFILMENT_LABELS_KO,
    LABELS_KO,
    SETTLED,
    FulfilmentStatus,
    OrderStatus,
    RefundStatus,
    Source,
    WebhookStatus,
    check_constraint,
)


def str_enum(enum: type[StrEnum], length: int) -> Enum:
    """A column of `enum` values: plain VARCHAR in the database (CHECK constraints list them),
    the enum's members in Python."""
    return Enum(
        enum,
        native_enum=False,
        create_constraint=False,
        length=length,
        values_callable=lambda members: [m.value for m in members],
    )


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on both SQLite (which drops tzinfo) and PostgreSQL."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime")
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


class Product(Base):
    __tablename__ = "products"
    __table_args__ = (
        CheckConstraint("price > 0", name="price_positive"),
        CheckConstraint("stock >= 0", name="stock_not_negative"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    description: Mapped[str] = mapped_column(Text, default="")
    price: Mapped[int] = mapped_column(BigInteger)
    # Placeholder drawing: an emoji on a colour, so the demo needs no image files.
    emoji: Mapped[str] = mapped_column(String(16), default="🛍️")
    color: Mapped[str] = mapped_column(String(7), default="#e8eefc")
    active: Mapped[bool] = mapped_column(default=True)
    # Units left to sell. Orders take theirs with a conditional UPDATE (`shop/catalog.py`), so
    # the CHECK is a backstop; products made before stock existed start sold out.
    stock: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    @property
    def sold_out(self) -> bool:
        return self.stock <= 0


class Order(Base):
    __tablename__ = "orders"
    __table_args__ = (
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint(check_constraint(OrderStatus), name="status_known"),
        CheckConstraint(check_constraint(FulfilmentStatus, "fulfilment"), name="fulfilment_known"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    order_id: Mapped[str] = mapped_column(String(64), unique=True)
    order_name: Mapped[str] = mapped_column(String(100))
    customer_key: Mapped[str] = mapped_column(String(50))
    amount: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[OrderStatus] = mapped_column(
        str_enum(OrderStatus, 24), default=OrderStatus.PENDING, index=True
    )
    # The payment being confirmed (set with the intent, before the Toss call).
    payment_key: Mapped[str | None] = mapped_column(String(200))
    confirm_idempotency_key: Mapped[str | None] = mapped_column(String(300))
    confirm_started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    failure_code: Mapped[str | None] = mapped_column(String(64))
    failure_message: Mapped[str | None] = mapped_column(String(255))
    # The buyer and where to deliver. Required for every new order (`shop/catalog.py`); empty
    # on orders placed before they were asked for.
    buyer_name: Mapped[str | None] = mapped_column(String(50))
    buyer_email: Mapped[str | None] = mapped_column(String(254))
    buyer_phone: Mapped[str | None] = mapped_column(String(15))  # digits only
    postcode: Mapped[str | None] = mapped_column(String(10))
    address: Mapped[str | None] = mapped_column(String(200))
    address_detail: Mapped[str | None] = mapped_column(String(200))
    # True while this order's quantities are taken out of product stock. Whoever flips it back
    # to false (conditionally) returns them, so stock is released once whatever path comes
    # first. Orders placed before stock existed took nothing (server default false).
    stock_reserved: Mapped[bool] = mapped_column(default=False, server_default=false())
    fulfilment: Mapped[FulfilmentStatus] = mapped_column(
        str_enum(FulfilmentStatus, 16),
        default=FulfilmentStatus.NONE,
        server_default=FulfilmentStatus.NONE.value,
    )
    carrier: Mapped[str | None] = mapped_column(String(40))
    tracking_number: Mapped[str | None] = mapped_column(String(40))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    lines: Mapped[list[OrderLine]] = relationship(
        back_populates="order", cascade="all, delete-orphan", order_by="OrderLine.id"
    )
    payment: Mapped[Payment | None] = relationship(back_populates="order", uselist=False)
    audit: Mapped[list[AuditEntry]] = relationship(
        back_populates="order", order_by="AuditEntry.id", cascade="all, delete-orphan"
    )
    refunds: Mapped[list[Refund]] = relationship(back_populates="order", order_by="Refund.id")

    @property
    def status_label(self) -> str:
        return LABELS_KO[self.status]

    @property
    def is_settled(self) -> bool:
        return self.status in SETTLED

    @property
    def is_payable(self) -> bool:
        return self.status == OrderStatus.PENDING

    @property
    def fulfilment_label(self) -> str:
        return FULFILMENT_LABELS_KO[self.fulfilment]


class OrderLine(Base):
    __tablename__ = "order_lines"
    __table_args__ = (
        CheckConstraint("unit_price > 0", name="unit_price_positive"),
        CheckConstraint("quantity BETWEEN 1 AND 99", name="quantity_range"),
        CheckConstraint("line_total = unit_price * quantity", name="line_total_product"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    order_pk: Mapped[int] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"), index=True)
    product_id: Mapped[int | None] = mapped_column(ForeignKey("products.id", ondelete="SET NULL"))
    # Snapshots: a later price or name change never alters a placed order.
    product_name: Mapped[str] = mapped_column(String(100))
    unit_price: Mapped[int] = mapped_column(BigInteger)
    quantity: Mapped[int] = mapped_column(Integer)
    line_total: Mapped[int] = mapped_column(BigInteger)

    order: Mapped[Order] = relationship(back_populates="lines")


# Toss's `method` label of a virtual-account payment.
VIRTUAL_ACCOUNT = "가상계좌"


class Payment(Base):
    """Our copy of Toss's Payment for an order (one per order)."""

    __tablename__ = "payments"
    __table_args__ = (
        CheckConstraint("total_amount > 0", name="total_positive"),
        CheckConstraint("balance_amount >= 0", name="balance_not_negative"),
        CheckConstraint("balance_amount <= total_amount", name="balance_within_total"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    order_pk: Mapped[int] = mapped_column(ForeignKey("orders.id"), unique=True)
    payment_key: Mapped[str] = mapped_column(String(200), unique=True)
    status: Mapped[str] = mapped_column(String(32))
    method: Mapped[str | None] = mapped_column(String(32))
    total_amount: Mapped[int] = mapped_column(BigInteger)
    balance_amount: Mapped[int] = mapped_column(BigInteger)
    approved_at: Mapped[str | None] = mapped_column(String(40))
    last_transaction_key: Mapped[str | None] = mapped_column(String(64))
    receipt_url: Mapped[str | None] = mapped_column(String(500))
    card_number: Mapped[str | None] = mapped_column(String(32))  # masked by Toss
    card_approve_no: Mapped[str | None] = mapped_column(String(16))
    va_bank_code: Mapped[str | None] = mapped_column(String(8))
    va_account_number: Mapped[str | None] = mapped_column(String(32))
    va_customer_name: Mapped[str | None] = mapped_column(String(100))
    va_due_date: Mapped[str | None] = mapped_column(String(40))
    # Compared in constant time with DEPOSIT_CALLBACK webhooks; never logged.
    secret: Mapped[str | None] = mapped_column(String(100))
    raw: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    order: Mapped[Order] = relationship(back_populates="payment")

    @property
    def is_virtual_account(self) -> bool:
        return self.method == VIRTUAL_ACCOUNT


class AuditEntry(Base):
    """One row per state change or notable event on an order, with who caused it."""

    __tablename__ = "audit_entries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    order_pk: Mapped[int] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"), index=True)
    event: Mapped[str] = mapped_column(String(32), default="transition")
    from_status: Mapped[OrderStatus | None] = mapped_column(str_enum(OrderStatus, 24))
    to_status: Mapped[OrderStatus | None] = mapped_column(str_enum(OrderStatus, 24))
    source: Mapped[Source] = mapped_column(str_enum(Source, 16))
    payment_key: Mapped[str | None] = mapped_column(String(200))
    transaction_key: Mapped[str | None] = mapped_column(String(64))
    code: Mapped[str | None] = mapped_column(String(64))
    detail: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    order: Mapped[Order] = relationship(back_populates="audit")


# Webhook lanes: the worker claims due events lane by lane (lower first), oldest first within
# a lane, so events about this shop's own payments never wait behind events naming nothing of
# ours. The inbox sets the lane when it stores the event; it only orders work, and every event
# is still checked with Toss or against the stored secret before anything changes.
LANE_OWN_PAYMENT = 0  # names an order of ours and the payment it is paying with
LANE_OUR_ORDER = 1  # names an order of ours (another window, or a paymentKey we never saw)
LANE_NOT_OURS = 2  # names no order of ours


class WebhookEvent(Base):
    """The durable inbox: every accepted webhook, then what the worker made of it."""

    __tablename__ = "webhook_events"
    __table_args__ = (
        CheckConstraint(check_constraint(WebhookStatus), name="status_known"),
        CheckConstraint("lane BETWEEN 0 AND 2", name="lane_known"),
        # What the worker's claim reads: the due events, lane by lane, oldest first.
        Index(
            "ix_webhook_events_due_lane",
            "lane",
            "id",
            sqlite_where=text("status IN ('PENDING', 'PROCESSING')"),
            postgresql_where=text("status IN ('PENDING', 'PROCESSING')"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # Transmission id when Toss sent one, else a hash of the body: a retry or a duplicate
    # delivery of the same event lands on this unique key and is stored once.
    dedupe_key: Mapped[str] = mapped_column(String(128), unique=True)
    kind: Mapped[str] = mapped_column(String(40), index=True)
    transmission_id: Mapped[str | None] = mapped_column(String(100))
    transmission_time: Mapped[str | None] = mapped_column(String(40))
    retried_count: Mapped[int] = mapped_column(Integer, default=0)
    order_id: Mapped[str | None] = mapped_column(String(64), index=True)
    # Indexed: the worker settles every pending event of one payment with one Toss lookup.
    payment_key: Mapped[str | None] = mapped_column(String(200), index=True)
    # Events stored before lanes existed count as an order of ours (server default).
    lane: Mapped[int] = mapped_column(
        SmallInteger, default=LANE_NOT_OURS, server_default=text(str(LANE_OUR_ORDER))
    )
    body: Mapped[str | None] = mapped_column(Text)  # pruned after the retention period
    body_sha256: Mapped[str] = mapped_column(String(64))
    status: Mapped[WebhookStatus] = mapped_column(
        str_enum(WebhookStatus, 16), default=WebhookStatus.PENDING, index=True
    )
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    locked_by: Mapped[str | None] = mapped_column(String(64))
    last_error: Mapped[str | None] = mapped_column(String(500))
    result: Mapped[str | None] = mapped_column(String(200))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    processed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    pruned_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Refund(Base):
    """One operator refund (a Toss cancel), written PENDING before Toss is called."""

    __tablename__ = "refunds"
    __table_args__ = (
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint("amount <= balance_before", name="amount_within_balance"),
        CheckConstraint(check_constraint(RefundStatus), name="status_known"),
        # One refund in flight per order: Toss's refundableAmount guard then always holds.
        Index(
            "uq_refunds_one_pending_per_order",
            "order_pk",
            unique=True,
            sqlite_where=text("status = 'PENDING'"),
            postgresql_where=text("status = 'PENDING'"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    order_pk: Mapped[int] = mapped_column(ForeignKey("orders.id"), index=True)
    # The Idempotency-Key of this refund's cancel call: every retry reuses it.
    refund_key: Mapped[str] = mapped_column(String(64), unique=True)
    amount: Mapped[int] = mapped_column(BigInteger)
    full: Mapped[bool] = mapped_column(default=False)
    # The operator asked for the order's units back on the shelf (a full refund only).
    restock: Mapped[bool] = mapped_column(default=False, server_default=false())
    balance_before: Mapped[int] = mapped_column(BigInteger)
    reason: Mapped[str] = mapped_column(String(200))
    status: Mapped[RefundStatus] = mapped_column(
        str_enum(RefundStatus, 16), default=RefundStatus.PENDING, index=True
    )
    requested_by: Mapped[str] = mapped_column(String(64))
    # Where a deposited virtual account is refunded to (needed again if the call is retried).
    refund_bank: Mapped[str | None] = mapped_column(String(20))
    refund_account_number: Mapped[str | None] = mapped_column(String(20))
    refund_holder_name: Mapped[str | None] = mapped_column(String(60))
    transaction_key: Mapped[str | None] = mapped_column(String(64))
    failure_code: Mapped[str | None] = mapped_column(String(64))
    failure_message: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    order: Mapped[Order] = relationship(back_populates="refunds")

    @property
    def refund_account(self) -> RefundAccount | None:
        """Where a deposited virtual account's money goes back to (kept for a retried call)."""
        if self.refund_bank and self.refund_account_number and self.refund_holder_name:
            return RefundAccount(
                self.refund_bank, self.refund_account_number, self.refund_holder_name
            )
        return None

    @property
    def masked_account(self) -> str | None:
        n = self.refund_account_number
        return None if not n else "*" * max(0, len(n) - 4) + n[-4:]


class OperatorSession(Base):
    """One operator login. The signed cookie carries its token; logging out revokes the row, so
    a copy of the cookie stops working too (the cookie alone cannot be taken back)."""

    __tablename__ = "operator_sessions"

    # SHA-256 of the cookie's random token: reading this table opens no session.
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class MailStatus(StrEnum):
    PENDING = "PENDING"  # waiting for the worker (again, after a refused attempt)
    SENDING = "SENDING"  # leased by a worker; a lease that runs out makes it due again
    SENT = "SENT"  # the SMTP server accepted it
    KEPT = "KEPT"  # no mail server (development, testing): kept here, listed at /dev/mail
    FAILED = "FAILED"  # refused for good, or out of retries


class MailMessage(Base):
    """The e-mail outbox: one row per event worth telling the buyer, written in the same
    transaction as the change it reports and sent later by the worker. The dedupe key (order,
    kind, the Toss transaction or payment it is about) makes each event mail at most once."""

    __tablename__ = "mail_outbox"
    __table_args__ = (
        CheckConstraint(check_constraint(MailStatus), name="status_known"),
        Index("ix_mail_outbox_due", "status", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    order_pk: Mapped[int] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(24))
    dedupe_key: Mapped[str] = mapped_column(String(200), unique=True)
    to_address: Mapped[str] = mapped_column(String(254))
    subject: Mapped[str] = mapped_column(String(200))
    text: Mapped[str] = mapped_column(Text)
    html: Mapped[str] = mapped_column(Text)
    status: Mapped[MailStatus] = mapped_column(str_enum(MailStatus, 16), default=MailStatus.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class CashReceiptStatus(StrEnum):
    PENDING = "PENDING"  # written before Toss's issue call; outcome not known yet
    ISSUED = "ISSUED"  # Toss issued it (all or part of it still stands)
    CANCELED = "CANCELED"  # cancelled to zero
    FAILED = "FAILED"  # Toss refused to issue it; the operator may try again


class CashReceipt(Base):
    """The order's cash receipt (현금영수증): issued with the payment (Toss's Payment
    `cashReceipt`) or later by an operator through Toss's cash-receipt API. One per order,
    enforced by the unique order_pk."""

    __tablename__ = "cash_receipts"
    __table_args__ = (
        CheckConstraint(check_constraint(CashReceiptStatus), name="status_known"),
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint("canceled_amount BETWEEN 0 AND amount", name="canceled_within_amount"),
        CheckConstraint("pending_cancel_amount > 0", name="pending_cancel_positive"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    order_pk: Mapped[int] = mapped_column(ForeignKey("orders.id"), unique=True)
    # "payment": issued by Toss with the payment; "api": issued by an operator here.
    origin: Mapped[str] = mapped_column(String(8))
    receipt_type: Mapped[str] = mapped_column(String(8))  # 소득공제 | 지출증빙
    receipt_key: Mapped[str | None] = mapped_column(String(200), unique=True)
    issue_number: Mapped[str | None] = mapped_column(String(20))
    receipt_url: Mapped[str | None] = mapped_column(String(500))
    issue_status: Mapped[str | None] = mapped_column(String(16))  # Toss's issueStatus
    amount: Mapped[int] = mapped_column(BigInteger)
    tax_free_amount: Mapped[int] = mapped_column(BigInteger, default=0)
    canceled_amount: Mapped[int] = mapped_column(BigInteger, default=0)
    # The number the receipt is issued to: whole only while the issue call may need repeating,
    # masked once Toss has answered.
    identity_number: Mapped[str | None] = mapped_column(String(30))
    status: Mapped[CashReceiptStatus] = mapped_column(
        str_enum(CashReceiptStatus, 16), default=CashReceiptStatus.PENDING
    )
    # Idempotency-Keys of the issue call and of the cancel in flight (repeated with the same key
    # after an unknown outcome, so Toss acts once).
    issue_key: Mapped[str | None] = mapped_column(String(100))
    cancel_key: Mapped[str | None] = mapped_column(String(100))
    pending_cancel_amount: Mapped[int | None] = mapped_column(BigInteger)
    failure_code: Mapped[str | None] = mapped_column(String(64))
    failure_message: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    # `order.cash_receipt` on the Order side, for the order pages.
    order: Mapped[Order] = relationship(backref=backref("cash_receipt", uselist=False))

    @property
    def remaining(self) -> int:
        return self.amount - self.canceled_amount
