"""The one order state machine: every status write goes through `transition()` in services."""

from __future__ import annotations

from enum import StrEnum
from functools import cache


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


S = OrderStatus

ALLOWED: dict[OrderStatus, frozenset[OrderStatus]] = {
    # CONFIRMING → PENDING: Toss refused the card, the shopper may pay again.
    S.PENDING: frozenset({S.CONFIRMING, S.EXPIRED, S.CANCELED, S.FAILED}),
    S.CONFIRMING: frozenset(
        {S.PAID, S.AWAITING_DEPOSIT, S.FAILED, S.NEEDS_RECONCILE, S.PENDING, S.EXPIRED}
    ),
    S.NEEDS_RECONCILE: frozenset({S.PAID, S.AWAITING_DEPOSIT, S.FAILED, S.PENDING, S.EXPIRED}),
    S.AWAITING_DEPOSIT: frozenset({S.PAID, S.EXPIRED, S.CANCELED}),
    # A failed deposit can move a virtual-account DONE back to WAITING_FOR_DEPOSIT (TOSS.md).
    S.PAID: frozenset({S.PARTIALLY_REFUNDED, S.REFUNDED, S.AWAITING_DEPOSIT}),
    S.PARTIALLY_REFUNDED: frozenset({S.PARTIALLY_REFUNDED, S.REFUNDED}),
    S.REFUNDED: frozenset(),
    S.FAILED: frozenset(),
    S.EXPIRED: frozenset(),
    S.CANCELED: frozenset(),
}

TERMINAL = frozenset(s for s, nxt in ALLOWED.items() if not nxt)
# The payment went through with Toss (money moved or a virtual account awaits it).
SETTLED = frozenset({S.PAID, S.PARTIALLY_REFUNDED, S.REFUNDED, S.AWAITING_DEPOSIT})

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


def can_move(src: OrderStatus | str, dst: OrderStatus | str) -> bool:
    return OrderStatus(dst) in ALLOWED[OrderStatus(src)]


class Source(StrEnum):
    """Who moved an order; recorded on every audit row."""

    SHOP = "shop"
    REDIRECT = "redirect"
    API = "api"
    WEBHOOK = "webhook"
    WORKER = "worker"
    RECONCILE = "reconcile"
    ADMIN = "admin"


def path(src: OrderStatus | str, dst: OrderStatus | str) -> list[OrderStatus]:
    """The shortest chain of allowed moves from `src` to `dst` (excluding `src`); [] if none.

    Lets one Toss answer move an order several steps (CONFIRMING → PAID → REFUNDED) while every
    step still passes the table and gets its own audit row.
    """
    return list(_path(OrderStatus(src), OrderStatus(dst)))


@cache
def _path(start: OrderStatus, goal: OrderStatus) -> tuple[OrderStatus, ...]:
    # The table never changes: each pair is searched once per process.
    if start is goal:
        return ()
    frontier: list[list[OrderStatus]] = [[start]]
    seen = {start}
    while frontier:
        nxt: list[list[OrderStatus]] = []
        for chain in frontier:
            for step in sorted(ALLOWED[chain[-1]]):
                if step is goal:
                    return (*chain[1:], step)
                if step not in seen:
                    seen.add(step)
                    nxt.append(chain + [step])
        frontier = nxt
    return ()
