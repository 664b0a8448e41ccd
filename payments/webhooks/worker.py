"""The webhook worker: lease due inbox events, re-check each with Toss, apply Toss's answer.

Payment webhooks are unsigned, so their bodies are only hints: the worker fetches the payment
from Toss and applies Toss's answer through the order state machine. Every effect is idempotent,
so duplicates, retries and any order of arrival end in the same state. Many workers may share
the inbox: leases, FOR UPDATE SKIP LOCKED and conditional updates keep them apart.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import socket
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from flask import Flask, current_app
from sqlalchemy import (
    ColumnElement,
    Integer,
    case,
    func,
    literal_column,
    or_,
    select,
    union_all,
    update,
)

from ..checkout.settle import NOT_FOUND_CODES, apply_payment
from ..core import metrics
from ..core.clock import utcnow
from ..core.models import (
    LANE_NOT_OURS,
    LANE_OUR_ORDER,
    LANE_OWN_PAYMENT,
    Order,
    Payment,
    WebhookEvent,
)
from ..core.orders import ORDER_ID_RE, PAYMENT_KEY_RE, find_order, find_order_by_transaction_key
from ..core.states import Source, WebhookStatus
from ..extensions import db, toss
from ..mail import sender as mail_sender
from ..toss import Payment as TossPayment
from ..toss import TossError

logger = logging.getLogger(__name__)

# Backoff between processing attempts (seconds); after the last one the event parks as FAILED.
RETRY_DELAYS = (10, 60, 300, 1800, 7200)
W = WebhookStatus
# Kinds whose processing is "look the payment up by its key, apply Toss's answer": one lookup
# answers for every such event of that payment received before it was made.
COALESCED_KINDS = ("PAYMENT_STATUS_CHANGED", "CANCEL_STATUS_CHANGED")


@dataclass(frozen=True)
class Lookup:
    """A Toss lookup of one payment; every event up to `horizon` (the newest id when Toss was
    asked) was received before Toss answered, so that answer settles it too."""

    payment_key: str
    horizon: int


@dataclass(frozen=True)
class Verdict:
    """What processing made of an event; written only while the worker holds its lease."""

    result: str
    order_id: str | None = None
    payment_key: str | None = None
    settled: Lookup | None = None


class Outcome(Exception):
    """A final verdict on an event that is not DONE (ignored or rejected)."""

    def __init__(self, status: WebhookStatus, result: str, settled: Lookup | None = None) -> None:
        super().__init__(result)
        self.status = status
        self.result = result
        self.settled = settled


def lane_of(kind: str, body: Mapping[str, Any]) -> int:
    """How much an event concerns this shop, from what its body names (one indexed query).

    Only a priority: the worker still asks Toss (or checks the stored secret) before anything
    changes. LANE_NOT_OURS means no order of ours could be affected, so no lookup is needed.
    """
    if kind == "DEPOSIT_CALLBACK":
        order = find_order(body.get("orderId"))
        if order is None:
            return LANE_NOT_OURS
        expected = order.payment.secret if order.payment else None
        given = body.get("secret")
        if expected and isinstance(given, str) and _same(given, expected):
            return LANE_OWN_PAYMENT
        return LANE_OUR_ORDER
    if kind not in COALESCED_KINDS:
        return LANE_NOT_OURS
    data = body.get("data")
    data = data if isinstance(data, Mapping) else {}
    order_id, payment_key = data.get("orderId"), data.get("paymentKey")
    order_id = order_id if isinstance(order_id, str) and ORDER_ID_RE.match(order_id) else None
    if not (isinstance(payment_key, str) and PAYMENT_KEY_RE.match(payment_key)):
        payment_key = None
    if kind == "CANCEL_STATUS_CHANGED" and payment_key is None:
        # Traced by its transactionKey in the worker (without asking Toss when unknown).
        return LANE_OUR_ORDER
    return _payment_lane(order_id, payment_key)


def _payment_lane(order_id: str | None, payment_key: str | None) -> int:
    """Own payment: the order named and the payment it is paying with (in flight or stored).
    Our order: the order is ours (another window's payment carries our orderId, with a key we
    may never have seen), or the key is a stored payment of ours. Else nothing of ours."""
    own = literal_column(str(LANE_OWN_PAYMENT), Integer)
    ours = literal_column(str(LANE_OUR_ORDER), Integer)
    branches = []
    if order_id is not None:
        lane: ColumnElement[int] = ours
        if payment_key is not None:
            mine = or_(Order.payment_key == payment_key, Payment.payment_key == payment_key)
            lane = case((mine, own), else_=ours)
        branches.append(
            select(lane.label("lane"))
            .select_from(Order)
            .outerjoin(Payment, Payment.order_pk == Order.id)
            .where(Order.order_id == order_id)
        )
    if payment_key is not None:
        branches.append(select(ours.label("lane")).where(Payment.payment_key == payment_key))
    if not branches:
        return LANE_NOT_OURS
    lanes = db.session.scalars(union_all(*branches)).all()
    return min((int(lane) for lane in lanes), default=LANE_NOT_OURS)


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(
        given.encode("utf-8", "surrogatepass"), expected.encode("utf-8", "surrogatepass")
    )


def claim(worker_id: str, limit: int = 10, now: datetime | None = None) -> list[int]:
    """Lease up to `limit` due events to this worker.

    FOR UPDATE SKIP LOCKED lets workers on many machines share the inbox on PostgreSQL; the
    conditional UPDATE decides any remaining race (and is all SQLite needs, having one writer).
    An event whose lease expired (its worker died) is due again. Events about this shop's own
    payments are taken first, so a flood naming nothing of ours never delays them.
    """
    now = now or utcnow()
    lease = timedelta(seconds=current_app.config["WEBHOOK_LEASE_SECONDS"])
    due = or_(
        (WebhookEvent.status == W.PENDING) & (WebhookEvent.next_attempt_at <= now),
        (WebhookEvent.status == W.PROCESSING) & (WebhookEvent.locked_until < now),
    )
    ids = list(
        db.session.scalars(
            select(WebhookEvent.id)
            .where(due)
            # Lane by lane (an event about our own payment first), oldest first within one.
            .order_by(WebhookEvent.lane, WebhookEvent.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
    )
    claimed = []
    for event_id in ids:
        result = db.session.execute(
            update(WebhookEvent)
            .where(WebhookEvent.id == event_id, due)
            .values(
                status=W.PROCESSING,
                locked_by=worker_id,
                locked_until=now + lease,
                attempts=WebhookEvent.attempts + 1,
            )
            .execution_options(synchronize_session=False)
        )
        if result.rowcount == 1:  # type: ignore[attr-defined]
            claimed.append(event_id)
    db.session.commit()
    return claimed


def process(event_id: int, worker_id: str) -> str:
    """Process one claimed event; the effect and the verdict commit together, and only while
    this worker still holds the lease (else both are rolled back and another worker's stands)."""
    event = db.session.get(WebhookEvent, event_id)
    if event is None or event.locked_by != worker_id or event.status != W.PROCESSING:
        db.session.rollback()
        return "LOST"
    kind, body, received_at = event.kind, event.body, event.received_at
    try:
        handler = HANDLERS.get(kind, _ignore_kind)
        verdict = handler(event_id, kind, json.loads(body or "{}"))
        status = W.DONE
    except Outcome as refused:
        status, verdict = refused.status, Verdict(refused.result, settled=refused.settled)
    except Exception as exc:  # noqa: BLE001 — any failure is retried, then parked
        db.session.rollback()
        return _retry_later(event_id, worker_id, exc)
    values: dict[str, Any] = {
        "status": status,
        "result": verdict.result[:200],
        "processed_at": utcnow(),
        "locked_by": None,
        "locked_until": None,
        "last_error": None,
    }
    if verdict.order_id:
        values["order_id"] = verdict.order_id
    if verdict.payment_key:
        values["payment_key"] = verdict.payment_key
    if not _write_if_held(event_id, worker_id, values):
        db.session.rollback()
        logger.warning("webhook lease lost; result discarded", extra={"event_id": event_id})
        return "LOST"
    coalesced = _coalesce(verdict.settled, event_id, worker_id, status) if verdict.settled else []
    db.session.commit()
    _observe(kind, status, received_at)
    for other_kind in coalesced:
        metrics.WEBHOOKS_PROCESSED.labels(metrics.kind_label(other_kind), status).inc()
    return status


def _coalesce(settled: Lookup, event_id: int, worker_id: str, status: WebhookStatus) -> list[str]:
    """Close every other event of the looked-up payment received before Toss was asked: the
    answer just applied already says what each would have learnt. Events pending, or leased to
    this worker and not yet processed; rows another worker is claiming are skipped, not waited
    for. Returns the kinds closed."""
    settles = (
        (WebhookEvent.payment_key == settled.payment_key)
        & WebhookEvent.kind.in_(COALESCED_KINDS)
        & (WebhookEvent.id != event_id)
        & (WebhookEvent.id <= settled.horizon)
        & or_(
            WebhookEvent.status == W.PENDING,
            (WebhookEvent.status == W.PROCESSING) & (WebhookEvent.locked_by == worker_id),
        )
    )
    rows = db.session.execute(
        select(WebhookEvent.id, WebhookEvent.kind)
        .where(settles)
        .order_by(WebhookEvent.id)
        .with_for_update(skip_locked=True)
    ).all()
    if not rows:
        return []
    db.session.execute(
        update(WebhookEvent)
        .where(WebhookEvent.id.in_([row.id for row in rows]), settles)
        .values(
            status=status,
            result=f"coalesced into #{event_id}",
            processed_at=utcnow(),
            locked_by=None,
            locked_until=None,
            last_error=None,
        )
        .execution_options(synchronize_session=False)
    )
    return [row.kind for row in rows]


def _observe(kind: str, status: str, received_at: datetime) -> None:
    metrics.WEBHOOKS_PROCESSED.labels(metrics.kind_label(kind), status).inc()
    metrics.WEBHOOK_LAG.observe(max(0.0, (utcnow() - received_at).total_seconds()))


def _write_if_held(event_id: int, worker_id: str, values: dict[str, Any]) -> bool:
    result = db.session.execute(
        update(WebhookEvent)
        .where(
            WebhookEvent.id == event_id,
            WebhookEvent.locked_by == worker_id,
            WebhookEvent.status == W.PROCESSING,
        )
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


def _retry_later(event_id: int, worker_id: str, exc: Exception) -> str:
    event = db.session.get(WebhookEvent, event_id)
    if event is None:
        return "LOST"
    attempts, kind = event.attempts, event.kind
    message = f"{type(exc).__name__}: {exc}"[:500]
    if isinstance(exc, TossError) and not exc.retryable and not exc.outcome_unknown:
        delays: tuple[int, ...] = ()  # Toss's definitive answer will not change by asking again
    else:
        delays = RETRY_DELAYS
    values: dict[str, Any] = {"last_error": message, "locked_by": None, "locked_until": None}
    if attempts > len(delays):
        values["status"] = W.FAILED
    else:
        values["status"] = W.PENDING
        values["next_attempt_at"] = utcnow() + timedelta(seconds=delays[attempts - 1])
    if not _write_if_held(event_id, worker_id, values):
        db.session.rollback()
        return "LOST"
    db.session.commit()
    if values["status"] == W.FAILED:
        _observe(kind, W.FAILED, event.received_at)
        logger.error(
            "webhook parked as FAILED", extra={"event_id": event_id, "kind": kind, "error": message}
        )
    else:
        logger.warning(
            "webhook processing failed; will retry",
            extra={"event_id": event_id, "attempt": attempts, "error": message},
        )
    return str(values["status"])


def _payment_status_changed(event_id: int, kind: str, body: dict[str, Any]) -> Verdict:
    data = body.get("data")
    payment_key = data.get("paymentKey") if isinstance(data, dict) else None
    if not isinstance(payment_key, str) or not PAYMENT_KEY_RE.match(payment_key):
        raise Outcome(W.REJECTED, "no usable paymentKey")
    if lane_of(kind, body) == LANE_NOT_OURS:
        # Neither the orderId nor the paymentKey is ours: whatever Toss would answer, no order
        # of ours could move, so Toss is not asked.
        raise Outcome(W.IGNORED, "names no order of ours; Toss not asked")
    return _recheck(payment_key)


def _recheck(payment_key: str) -> Verdict:
    """Toss's record of the payment, applied; the lookup also settles the payment's older
    pending events (see `_coalesce`)."""
    asked = Lookup(payment_key, db.session.scalar(select(func.max(WebhookEvent.id))) or 0)
    try:
        payment = toss.client.get_payment(payment_key)
    except TossError as exc:
        if exc.code in NOT_FOUND_CODES:
            logger.warning("security: webhook names a payment Toss does not know")
            raise Outcome(W.REJECTED, f"Toss: {exc.code}", asked) from None
        raise
    try:
        return replace(_apply(payment), settled=asked)
    except Outcome as outcome:
        outcome.settled = asked
        raise


def _cancel_status_changed(event_id: int, kind: str, body: dict[str, Any]) -> Verdict:
    """A cancel of a foreign easy-pay payment went through or failed. Its `data` is a Cancel
    object (transactionKey, cancelStatus, cancelAmount, …), which names no payment: the order
    is found by the cancel's transaction key among this shop's refunds and payments, and that
    payment is re-fetched from Toss. A cancel naming nothing of ours is ignored.
    https://docs.tosspayments.com/reference/using-api/webhook-events (CANCEL_STATUS_CHANGED)
    """
    data = body.get("data")
    data = data if isinstance(data, dict) else {}
    payment_key = data.get("paymentKey")
    if (
        isinstance(payment_key, str)
        and PAYMENT_KEY_RE.match(payment_key)
        and lane_of(kind, body) != LANE_NOT_OURS
    ):
        return _recheck(payment_key)  # not in Toss's Cancel object, but usable when present
    transaction_key = data.get("transactionKey")
    order = find_order_by_transaction_key(transaction_key)
    if order is None or order.payment is None:
        raise Outcome(W.IGNORED, "cancel of a transaction this shop does not know")
    return _recheck(order.payment.payment_key)


class Deferred(Exception):
    """Not decidable yet: processed again later on the usual retry schedule."""


def _deposit_callback(event_id: int, kind: str, body: dict[str, Any]) -> Verdict:
    """DEPOSIT_CALLBACK: sent when a virtual account is issued, paid or cancelled; it carries
    the payment's `secret`, which must equal the one Toss gave for that payment.
    https://docs.tosspayments.com/reference/using-api/webhook-events (DEPOSIT_CALLBACK)

    Issuance can be announced before the shop has stored its confirm answer (and with it the
    secret): then the secret is compared with Toss's own record of the order, fetched by
    orderId, or the event waits for a retry when that record has no secret yet.
    """
    order = find_order(str(body.get("orderId", "")))
    if order is None:
        raise Outcome(W.IGNORED, "unknown order")
    given = body.get("secret")
    stored = order.payment
    if stored is None:
        try:
            payment = toss.client.get_payment_by_order(order.order_id)
        except TossError as exc:
            if exc.code in NOT_FOUND_CODES:
                raise Deferred("Toss shows no payment of this order yet") from None
            raise
        if not payment.secret:
            # Another window's payment (a card has no secret), or Toss's record lags.
            raise Deferred("no virtual-account secret known yet for this order")
        _check_secret(order.order_id, event_id, given, payment.secret)
        return _apply(payment, by_order=True)
    _check_secret(order.order_id, event_id, given, stored.secret)
    payment = toss.client.get_payment_by_order(order.order_id)
    verdict = _apply(payment, by_order=True)
    if payment.payment_key == stored.payment_key:
        return verdict
    # By orderId Toss answered about another window: the account is the stored payment.
    return _apply(toss.client.get_payment(stored.payment_key))


def _check_secret(order_id: str, event_id: int, given: object, expected: str | None) -> None:
    if (
        not expected
        or not isinstance(given, str)
        or not hmac.compare_digest(given.encode(), expected.encode())
    ):
        logger.warning(
            "security: deposit callback with a wrong secret rejected",
            extra={"order_id": order_id, "event_id": event_id},
        )
        raise Outcome(W.REJECTED, "secret mismatch")


def _apply(payment: TossPayment, *, by_order: bool = False) -> Verdict:
    # Act on Toss's orderId, never on what the webhook body claimed.
    order = find_order(payment.order_id)
    if order is None:
        raise Outcome(W.IGNORED, "payment of an order this shop does not know")
    before = order.status
    apply_payment(order, payment, Source.WEBHOOK, by_order=by_order)
    return Verdict(
        f"Toss {payment.status}: {before} → {order.status}", order.order_id, payment.payment_key
    )


def _ignore_kind(event_id: int, kind: str, body: dict[str, Any]) -> Verdict:
    raise Outcome(W.IGNORED, f"{kind} is not used by this shop")


HANDLERS: dict[str, Callable[[int, str, dict[str, Any]], Verdict]] = {
    "PAYMENT_STATUS_CHANGED": _payment_status_changed,
    "CANCEL_STATUS_CHANGED": _cancel_status_changed,
    "DEPOSIT_CALLBACK": _deposit_callback,
}


def run_once(worker_id: str, limit: int = 10) -> int:
    """Claim and process one batch; the number of events handled."""
    ids = claim(worker_id, limit)
    for event_id in ids:
        process(event_id, worker_id)
    return len(ids)


def replay(event_id: int | None = None, failed: bool = False) -> int:
    """Queue events again (one by id, or every FAILED one); the number queued."""
    stmt = update(WebhookEvent).values(
        status=W.PENDING, next_attempt_at=utcnow(), attempts=0, locked_by=None, locked_until=None
    )
    # A pruned event has no body left to process.
    stmt = stmt.where(WebhookEvent.body.is_not(None))
    if event_id is not None:
        stmt = stmt.where(WebhookEvent.id == event_id, WebhookEvent.status != W.PROCESSING)
    elif failed:
        stmt = stmt.where(WebhookEvent.status == W.FAILED)
    else:
        return 0
    count = db.session.execute(stmt.execution_options(synchronize_session=False)).rowcount  # type: ignore[attr-defined]
    db.session.commit()
    return int(count)


def prune(days: int, now: datetime | None = None) -> int:
    """Drop raw bodies of processed events older than `days`; the metadata stays."""
    cutoff = (now or utcnow()) - timedelta(days=days)
    count = db.session.execute(
        update(WebhookEvent)
        .where(
            WebhookEvent.received_at < cutoff,
            WebhookEvent.body.is_not(None),
            # FAILED events keep their body: an operator may replay them.
            WebhookEvent.status.in_((W.DONE, W.IGNORED, W.REJECTED)),
        )
        .values(body=None, pruned_at=utcnow())
        .execution_options(synchronize_session=False)
    ).rowcount  # type: ignore[attr-defined]
    db.session.commit()
    return int(count)


def worker_name() -> str:
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{threading.get_ident() % 100000}"


def work(
    app: Flask, stop: threading.Event, poll: float = 1.0, wake: threading.Event | None = None
) -> None:
    """Process the inbox and send the mail outbox until `stop` is set; an event in hand is
    always finished first."""
    name = worker_name()
    logger.info("webhook worker started", extra={"worker": name})
    while not stop.is_set():
        try:
            with app.app_context():
                handled = run_once(name)
                # The buyers' e-mail goes out from the same loop (never from a request).
                handled += mail_sender.drain()
                db.session.remove()
        except Exception:  # noqa: BLE001 — keep the worker alive through a database hiccup
            logger.exception("webhook worker iteration failed")
            handled = 0
        if not handled:
            (wake or stop).wait(poll)
            if wake is not None:
                wake.clear()
    logger.info("webhook worker stopped", extra={"worker": name})


# -- embedded worker (SQLite / development default) ------------------------------------------------

_embedded: dict[int, tuple[threading.Thread, threading.Event, threading.Event]] = {}
_embedded_lock = threading.Lock()


def start_embedded_worker(app: Flask) -> None:
    """One background worker thread per process, started on the first request (never at
    import, so `flask db …` and forking servers are unaffected)."""
    with _embedded_lock:
        key = id(app)
        if key in _embedded and _embedded[key][0].is_alive():
            return
        stop, wake = threading.Event(), threading.Event()
        thread = threading.Thread(
            target=work, args=(app, stop), kwargs={"wake": wake}, daemon=True, name="webhooks"
        )
        _embedded[key] = (thread, stop, wake)
        thread.start()


def wake_embedded_worker() -> None:
    """Let this process's embedded worker (if any) look at the inbox now."""
    entry = _embedded.get(id(current_app._get_current_object()))  # type: ignore[attr-defined]
    if entry:
        entry[2].set()
