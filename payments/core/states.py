"""Every status the shop stores, and the groups of order statuses the services ask about.

Each list of statuses is written once, here: the models' CHECK constraints, the admin filters and
the state machine (`orders.py`) all read these enums.
"""

from __future__ import annotations

from enum import StrEnum


class OrderStatus(StrEnum):
    PENDING = "PENDING"  # created, amount fixed, waiting for the shopper to pay
    CONFIRMING = "CONFIRMING"  # intent committed, confirm call to Toss in flight
    NEEDS_RECONCILE = "NEEDS_RECONCILE"  # confirm outcome unknown: settle by lookup
    AWAITING_DEPOSIT = "AWAITING_DEPOSIT"  # virtual account issued
    PAID = "PAID"
    PARTIALLY_REFUNDED = "PARTIALLY_REFUNDED"
    REFUNDED = "REFUNDED"
    FAILED = "FAILED"
    EXPIRED = "EXPIRED"
    CANCELED = "CANCELED"


class WebhookStatus(StrEnum):
    """Where an inbox event stands."""

    PENDING = "PENDING"  # stored, waiting for a worker (again, after a failed attempt)
    PROCESSING = "PROCESSING"  # leased by a worker
    DONE = "DONE"  # applied
    IGNORED = "IGNORED"  # nothing to do (an order or event kind this shop does not know)
    REJECTED = "REJECTED"  # not to be believed (wrong secret, a payment Toss does not know)
    FAILED = "FAILED"  # out of retries; an operator may replay it


class RefundStatus(StrEnum):
    PENDING = "PENDING"  # written before the Toss cancel call; outcome not known yet
    DONE = "DONE"
    FAILED = "FAILED"


class Source(StrEnum):
    """Who moved an order; recorded on every audit row."""

    SHOP = "shop"
    REDIRECT = "redirect"
    API = "api"
    WEBHOOK = "webhook"
    WORKER = "worker"
    RECONCILE = "reconcile"
    ADMIN = "admin"


class FulfilmentStatus(StrEnum):
    """Where a paid order's delivery stands; the operator moves it one step at a time."""

    NONE = "NONE"  # nothing done yet (every order starts here)
    PREPARING = "PREPARING"  # 배송 준비
    SHIPPED = "SHIPPED"  # 배송 중: carrier and tracking number known
    DELIVERED = "DELIVERED"  # 배송 완료


FULFILMENT_LABELS_KO: dict[FulfilmentStatus, str] = {
    FulfilmentStatus.NONE: "배송 전",
    FulfilmentStatus.PREPARING: "배송 준비",
    FulfilmentStatus.SHIPPED: "배송 중",
    FulfilmentStatus.DELIVERED: "배송 완료",
}


S = OrderStatus

# The payment went through with Toss (money moved or a virtual account awaits it).
SETTLED = frozenset({S.PAID, S.PARTIALLY_REFUNDED, S.REFUNDED, S.AWAITING_DEPOSIT})
# A confirmation is running or its outcome is being found out.
IN_FLIGHT = frozenset({S.CONFIRMING, S.NEEDS_RECONCILE})
REFUNDABLE = frozenset({S.PAID, S.PARTIALLY_REFUNDED})
REFUNDED = frozenset({S.PARTIALLY_REFUNDED, S.REFUNDED})
# Orders whose delivery may move: the money is in (what a partial refund left still ships).
SHIPPABLE = frozenset({S.PAID, S.PARTIALLY_REFUNDED})
# The one way through delivery: each step and the step it follows (none is skipped or repeated).
FULFILMENT_NEXT: dict[FulfilmentStatus, FulfilmentStatus] = {
    FulfilmentStatus.NONE: FulfilmentStatus.PREPARING,
    FulfilmentStatus.PREPARING: FulfilmentStatus.SHIPPED,
    FulfilmentStatus.SHIPPED: FulfilmentStatus.DELIVERED,
}

LABELS_KO: dict[OrderStatus, str] = {
    S.PENDING: "결제 대기",
    S.CONFIRMING: "결제 확인 중",
    S.NEEDS_RECONCILE: "결제 확인 중",
    S.AWAITING_DEPOSIT: "입금 대기",
    S.PAID: "결제 완료",
    S.PARTIALLY_REFUNDED: "부분 환불",
    S.REFUNDED: "환불 완료",
    S.FAILED: "결제 실패",
    S.EXPIRED: "기한 만료",
    S.CANCELED: "취소됨",
}


def check_constraint(enum: type[StrEnum], column: str = "status") -> str:
    """The SQL of a `<column> IN (…)` CHECK listing every member of `enum`."""
    return f"{column} IN (" + ",".join(f"'{member.value}'" for member in enum) + ")"
