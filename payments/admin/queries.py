"""Read-only queries behind the operator console: the order list, an order's timeline, the
webhook inbox and the dashboard figures.

Nothing here writes or commits. Times are stored in UTC; operators think in Korean days, so
date filters and "today" are Korean calendar days. Functions that depend on the clock take
`now` so tests can pin it.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal

from sqlalchemy import case, func, or_, select
from sqlalchemy.sql.elements import ColumnElement

from ..core.clock import KST
from ..core.errors import invalid
from ..core.models import AuditEntry, Order, Payment, Refund, WebhookEvent
from ..core.orders import find_order
from ..core.states import (
    FULFILMENT_NEXT,
    IN_FLIGHT,
    REFUNDABLE,
    REFUNDED,
    SHIPPABLE,
    FulfilmentStatus,
    OrderStatus,
    RefundStatus,
    WebhookStatus,
)
from ..extensions import db

S = OrderStatus
PER_PAGE = 50
MAX_PAGE = 100_000
MAX_QUERY = 200
CONFIRM_SUCCESS = frozenset({S.PAID, S.AWAITING_DEPOSIT})
_DATE_RE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")
_PAGE_RE = re.compile(r"^[0-9]{1,6}$")


# -- shared parsing --------------------------------------------------------------------------------


def parse_page(raw: str | None) -> int:
    """A 1-based page number from a query string; INVALID_REQUEST when it is not one."""
    text = (raw or "").strip()
    if not text:
        return 1
    if not _PAGE_RE.match(text) or not 1 <= int(text) <= MAX_PAGE:
        raise invalid("페이지 번호는 1 이상의 숫자여야 합니다. (page must be a positive integer)")
    return int(text)


def _parse_date(raw: str | None, label: str) -> date | None:
    text = (raw or "").strip()
    if not text:
        return None
    try:
        if not _DATE_RE.match(text):
            raise ValueError(text)
        value = date.fromisoformat(text)
    except ValueError:
        raise invalid(
            f"{label} 날짜는 YYYY-MM-DD 형식이어야 합니다. (dates are YYYY-MM-DD)"
        ) from None
    if not 2000 <= value.year <= 2999:
        raise invalid(f"{label} 날짜가 범위를 벗어났습니다. (date out of range)")
    return value


def kst_day_start(day: date) -> datetime:
    """The UTC instant at which `day` begins in Korea."""
    return datetime.combine(day, time.min, tzinfo=KST).astimezone(UTC)


# -- orders ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OrderFilters:
    status: OrderStatus | None = None
    date_from: date | None = None
    date_to: date | None = None
    q: str = ""
    page: int = 1

    def args(self, **changes: object) -> dict[str, str]:
        """Query-string values for a link that keeps these filters (e.g. another page)."""
        values: dict[str, object] = {
            "status": self.status.value if self.status else "",
            "from": self.date_from.isoformat() if self.date_from else "",
            "to": self.date_to.isoformat() if self.date_to else "",
            "q": self.q,
            "page": self.page,
        }
        values.update(changes)
        return {k: str(v) for k, v in values.items() if v not in ("", None, 1)}

    @property
    def active(self) -> bool:
        return bool(self.status or self.date_from or self.date_to or self.q)


def parse_order_filters(args: Mapping[str, str]) -> OrderFilters:
    """Filters for the order list from a query string; INVALID_REQUEST with a Korean message
    naming the bad field."""
    raw_status = (args.get("status") or "").strip()
    status = None
    if raw_status:
        try:
            status = OrderStatus(raw_status)
        except ValueError:
            raise invalid("알 수 없는 주문 상태입니다. (unknown status)") from None
    date_from = _parse_date(args.get("from"), "시작")
    date_to = _parse_date(args.get("to"), "종료")
    if date_from and date_to and date_from > date_to:
        raise invalid("시작 날짜가 종료 날짜보다 늦습니다. (from is after to)")
    q = (args.get("q") or "").strip()
    if len(q) > MAX_QUERY:
        raise invalid(f"검색어는 {MAX_QUERY}자 이내로 입력해주세요. (search is too long)")
    return OrderFilters(status, date_from, date_to, q, parse_page(args.get("page")))


@dataclass(frozen=True)
class OrderRow:
    order_id: str
    order_name: str
    amount: int
    status: str
    status_label: str
    created_at: datetime
    payment_key: str | None
    method: str | None
    refunded: int
    buyer_name: str | None = None
    buyer_email: str | None = None
    fulfilment_label: str = ""


@dataclass(frozen=True)
class OrderPage:
    rows: list[OrderRow]
    page: int
    per_page: int
    count: int
    amount: int
    refunded: int

    @property
    def pages(self) -> int:
        return max(1, math.ceil(self.count / self.per_page))


def _refunded_amount() -> ColumnElement[int]:
    # Toss's balance tracks every cancel, including ones made outside this console; only
    # refunded orders count (a virtual account cancelled before deposit gave nothing back).
    return case(
        (
            Order.status.in_(REFUNDED),
            Payment.total_amount - Payment.balance_amount,
        ),
        else_=0,
    )


def _order_conditions(f: OrderFilters) -> list[ColumnElement[bool]]:
    conds: list[ColumnElement[bool]] = []
    if f.status:
        conds.append(Order.status == f.status)
    if f.date_from:
        conds.append(Order.created_at >= kst_day_start(f.date_from))
    if f.date_to:
        conds.append(Order.created_at < kst_day_start(f.date_to + timedelta(days=1)))
    if f.q:
        matches = [
            Order.order_id.startswith(f.q, autoescape=True),
            Order.payment_key == f.q,
            Payment.payment_key == f.q,
            Order.order_name.icontains(f.q, autoescape=True),
            # The buyer: the whole e-mail (any case), or a phone number with or without hyphens.
            func.lower(Order.buyer_email) == f.q.lower(),
        ]
        phone = re.sub(r"[\s-]", "", f.q)
        if re.fullmatch(r"[0-9]{8,15}", phone):
            matches.append(Order.buyer_phone == phone)
        conds.append(or_(*matches))
    return conds


def list_orders(f: OrderFilters, per_page: int = PER_PAGE) -> OrderPage:
    """One page of orders matching `f`, newest first, with totals over the whole filtered set."""
    conds = _order_conditions(f)
    count, amount, refunded = db.session.execute(
        select(
            func.count(Order.id),
            func.coalesce(func.sum(Order.amount), 0),
            func.coalesce(func.sum(_refunded_amount()), 0),
        )
        .select_from(Order)
        .outerjoin(Payment, Payment.order_pk == Order.id)
        .where(*conds)
    ).one()
    result = db.session.execute(
        select(Order, Payment, _refunded_amount())
        .outerjoin(Payment, Payment.order_pk == Order.id)
        .where(*conds)
        .order_by(Order.created_at.desc(), Order.id.desc())
        .limit(per_page)
        .offset((f.page - 1) * per_page)
    )
    rows = [
        OrderRow(
            order_id=order.order_id,
            order_name=order.order_name,
            amount=order.amount,
            status=order.status,
            status_label=order.status_label,
            created_at=order.created_at,
            payment_key=payment.payment_key if payment else order.payment_key,
            method=payment.method if payment else None,
            refunded=int(row_refunded or 0),
            buyer_name=order.buyer_name,
            buyer_email=order.buyer_email,
            fulfilment_label=order.fulfilment_label,
        )
        for order, payment, row_refunded in result
    ]
    return OrderPage(rows, f.page, per_page, int(count), int(amount), int(refunded))


# -- one order -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TimelineEntry:
    """An audit row or a webhook about the order, placed by when it happened."""

    at: datetime
    audit: AuditEntry | None = None
    webhook: WebhookEvent | None = None


@dataclass(frozen=True)
class OrderDetail:
    order: Order
    payment: Payment | None
    refunds: list[Refund]
    timeline: list[TimelineEntry]

    @property
    def refunded(self) -> int:
        if self.payment is None or self.order.status not in REFUNDED:
            return 0
        return self.payment.total_amount - self.payment.balance_amount

    @property
    def refundable(self) -> bool:
        return self.payment is not None and self.order.status in REFUNDABLE

    @property
    def virtual_account(self) -> bool:
        return self.payment is not None and self.payment.is_virtual_account

    @property
    def next_step(self) -> FulfilmentStatus | None:
        """The delivery step an operator may take now (None: not paid, or delivered)."""
        if self.order.status not in SHIPPABLE:
            return None
        return FULFILMENT_NEXT.get(self.order.fulfilment)


def order_detail(order_id: str) -> OrderDetail | None:
    """The order with its payment, refunds and timeline; None when there is no such order."""
    order = find_order(order_id)
    if order is None:
        return None
    audit = db.session.scalars(
        select(AuditEntry).where(AuditEntry.order_pk == order.id).order_by(AuditEntry.id)
    ).all()
    webhooks = db.session.scalars(
        select(WebhookEvent)
        .where(WebhookEvent.order_id == order.order_id)
        .order_by(WebhookEvent.id)
    ).all()
    refunds = db.session.scalars(
        select(Refund).where(Refund.order_pk == order.id).order_by(Refund.id)
    ).all()
    entries = [TimelineEntry(a.created_at, audit=a) for a in audit] + [
        TimelineEntry(w.received_at, webhook=w) for w in webhooks
    ]
    # A stable sort: within one instant audit rows come first, each kind in id order.
    entries.sort(key=lambda e: (e.at, e.audit is None))
    return OrderDetail(order, order.payment, list(refunds), entries)


# -- webhook inbox ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class WebhookFilters:
    status: WebhookStatus | None = None
    page: int = 1

    def args(self, **changes: object) -> dict[str, str]:
        values: dict[str, object] = {"status": self.status or "", "page": self.page}
        values.update(changes)
        return {k: str(v) for k, v in values.items() if v not in ("", None, 1)}


def parse_webhook_filters(args: Mapping[str, str]) -> WebhookFilters:
    raw = (args.get("status") or "").strip()
    try:
        status = WebhookStatus(raw) if raw else None
    except ValueError:
        raise invalid("알 수 없는 웹훅 상태입니다. (unknown webhook status)") from None
    return WebhookFilters(status, parse_page(args.get("page")))


@dataclass(frozen=True)
class WebhookPage:
    rows: list[WebhookEvent]
    page: int
    per_page: int
    count: int
    counts: dict[str, int]

    @property
    def pages(self) -> int:
        return max(1, math.ceil(self.count / self.per_page))


def webhook_counts() -> dict[str, int]:
    """Inbox size by status, every status present (0 when empty)."""
    counts: dict[str, int] = dict.fromkeys(WebhookStatus, 0)
    for status, n in db.session.execute(
        select(WebhookEvent.status, func.count()).group_by(WebhookEvent.status)
    ):
        counts[status] = int(n)
    return counts


def list_webhooks(f: WebhookFilters, per_page: int = PER_PAGE) -> WebhookPage:
    """One page of the inbox, newest first."""
    conds = [WebhookEvent.status == f.status] if f.status else []
    count = db.session.scalar(select(func.count(WebhookEvent.id)).where(*conds)) or 0
    rows = db.session.scalars(
        select(WebhookEvent)
        .where(*conds)
        .order_by(WebhookEvent.received_at.desc(), WebhookEvent.id.desc())
        .limit(per_page)
        .offset((f.page - 1) * per_page)
    ).all()
    return WebhookPage(list(rows), f.page, per_page, int(count), webhook_counts())


# -- dashboard -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HourBucket:
    start: datetime  # UTC, on the hour
    success: int
    failure: int


@dataclass(frozen=True)
class CodeCount:
    code: str
    count: int


@dataclass(frozen=True)
class Dashboard:
    now: datetime
    day_start: datetime  # today's Korean midnight, in UTC
    confirmed: int
    failed: int
    failures_by_code: list[CodeCount]
    paid_count: int
    paid_amount: int
    refund_count: int
    refunded_amount: int
    needs_reconcile: int
    refunds_pending: int
    webhooks: dict[str, int]
    hours: list[HourBucket] = field(default_factory=list)

    @property
    def attempts(self) -> int:
        return self.confirmed + self.failed

    @property
    def success_rate(self) -> float | None:
        """Share of finished confirmation attempts that succeeded; None with no attempts."""
        return self.confirmed / self.attempts if self.attempts else None


def confirm_outcome(
    event: str, from_status: str | None, to_status: str | None, code: str | None
) -> Literal["success", "failure"] | None:
    """Whether one audit row ends a confirmation attempt, and how.

    An attempt ends when the order leaves CONFIRMING/NEEDS_RECONCILE: for PAID or
    AWAITING_DEPOSIT it succeeded; for FAILED, or back to PENDING with a Toss code (card
    refused, Toss busy, window aborted), it failed. CONFIRMING → NEEDS_RECONCILE is not an end.
    """
    if event != "transition" or from_status not in IN_FLIGHT:
        return None
    if to_status in CONFIRM_SUCCESS:
        return "success"
    if to_status == S.FAILED or (to_status == S.PENDING and code):
        return "failure"
    return None


def dashboard(now: datetime) -> Dashboard:
    """Today's (Korean day) confirmation outcomes, money in and out, the inbox, and the last
    24 hours of confirmations by hour."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    now = now.astimezone(UTC)
    day_start = kst_day_start(now.astimezone(KST).date())
    hour = now.replace(minute=0, second=0, microsecond=0)
    chart_start = hour - timedelta(hours=23)
    since = min(day_start, chart_start)

    rows = db.session.execute(
        select(
            AuditEntry.event,
            AuditEntry.from_status,
            AuditEntry.to_status,
            AuditEntry.code,
            AuditEntry.created_at,
        ).where(
            AuditEntry.created_at >= since,
            AuditEntry.created_at <= now,
            or_(
                (AuditEntry.event == "transition") & AuditEntry.from_status.in_(IN_FLIGHT),
                AuditEntry.event == "amount_mismatch",
            ),
        )
    ).all()

    confirmed = failed = 0
    codes: Counter[str] = Counter()
    success_by_hour = [0] * 24
    failure_by_hour = [0] * 24
    for event, src, dst, code, at in rows:
        outcome = confirm_outcome(event, src, dst, code)
        today = at >= day_start
        if event == "amount_mismatch":
            if today:
                codes[code or "AMOUNT_MISMATCH"] += 1
            continue
        if outcome is None:
            continue
        if today:
            if outcome == "success":
                confirmed += 1
            else:
                failed += 1
                codes[code or "UNKNOWN"] += 1
        if at >= chart_start:
            slot = int((at - chart_start) // timedelta(hours=1))
            (success_by_hour if outcome == "success" else failure_by_hour)[slot] += 1

    paid = db.session.execute(
        select(Order.id, Order.amount)
        .join(AuditEntry, AuditEntry.order_pk == Order.id)
        .where(
            AuditEntry.event == "transition",
            AuditEntry.to_status == S.PAID,
            AuditEntry.created_at >= day_start,
            AuditEntry.created_at <= now,
        )
        .distinct()
    ).all()
    refund_count, refunded = db.session.execute(
        select(func.count(Refund.id), func.coalesce(func.sum(Refund.amount), 0)).where(
            Refund.status == RefundStatus.DONE,
            Refund.completed_at >= day_start,
            Refund.completed_at <= now,
        )
    ).one()
    needs_reconcile = db.session.scalar(
        select(func.count(Order.id)).where(Order.status == S.NEEDS_RECONCILE)
    )
    refunds_pending = db.session.scalar(
        select(func.count(Refund.id)).where(Refund.status == RefundStatus.PENDING)
    )
    return Dashboard(
        now=now,
        day_start=day_start,
        confirmed=confirmed,
        failed=failed,
        failures_by_code=[CodeCount(c, n) for c, n in codes.most_common()],
        paid_count=len(paid),
        paid_amount=sum(amount for _, amount in paid),
        refund_count=int(refund_count),
        refunded_amount=int(refunded),
        needs_reconcile=int(needs_reconcile or 0),
        refunds_pending=int(refunds_pending or 0),
        webhooks=webhook_counts(),
        hours=[
            HourBucket(chart_start + timedelta(hours=i), success_by_hour[i], failure_by_hour[i])
            for i in range(24)
        ],
    )
