"""Toss webhooks: verify → persist → acknowledge, then a worker re-checks with Toss and acts.

Payment webhooks are unsigned (TOSS.md), so their bodies are only hints: the worker fetches the
payment from Toss and applies Toss's answer through the order state machine. Nothing slow
happens before the 200, and every effect is idempotent, so duplicates, retries and any order
of arrival end in the same state.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
import re
import socket
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from flask import Flask, current_app
from sqlalchemy import Table, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from . import metrics, toss_client
from .errors import ServiceError, invalid
from .extensions import db, execute_alone
from .models import WebhookEvent, utcnow
from .orders import ORDER_ID_RE, find_order
from .states import Source
from .sync import apply_payment
from .toss import TossError

logger = logging.getLogger(__name__)

MAX_BODY = 64 * 1024
SIGNED_KINDS = frozenset({"payout.changed", "seller.changed"})
PAYMENT_KINDS = frozenset({"PAYMENT_STATUS_CHANGED", "CANCEL_STATUS_CHANGED"})
# Backoff between processing attempts (seconds); after the last one the event parks as FAILED.
RETRY_DELAYS = (10, 60, 300, 1800, 7200)
_TID_RE = re.compile(r"^[\x21-\x7e]{1,100}$")
_KEY_RE = re.compile(r"^[A-Za-z0-9_\-.:]{1,200}$")
_INBOX: Table = WebhookEvent.__table__  # type: ignore[assignment]
_INBOX_INSERT = insert(_INBOX).returning(_INBOX.c.id)


@dataclass(frozen=True)
class Accepted:
    event_id: int | None
    duplicate: bool
    kind: str


# -- accepting ------------------------------------------------------------------------------


def parse_body(raw: bytes) -> dict[str, Any]:
    """A JSON object of at most 64 KiB, else a 4xx ServiceError."""
    if len(raw) > MAX_BODY:
        raise ServiceError("PAYLOAD_TOO_LARGE", "요청이 너무 큽니다. (Payload too large)", 413)
    try:
        body = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise invalid("본문이 올바른 JSON이 아닙니다. (body is not valid JSON)") from None
    if not isinstance(body, dict):
        raise invalid("본문은 JSON 객체여야 합니다. (body must be a JSON object)")
    return body


def classify(body: Mapping[str, Any]) -> str:
    """The event kind; a body with secret, status and orderId but no eventType is a deposit."""
    event_type = body.get("eventType")
    if isinstance(event_type, str) and 0 < len(event_type) <= 40:
        return event_type
    if event_type is None and all(
        isinstance(body.get(k), str) for k in ("secret", "status", "orderId")
    ):
        return "DEPOSIT_CALLBACK"
    return "UNKNOWN"


def signature_valid(
    raw: bytes, transmission_time: str | None, header: str | None, key: str
) -> bool:
    """HMAC-SHA256 over "<raw body>:<transmission-time>"; the header lists `v1:<base64>` values
    separated by commas and any one may match (Toss rotates keys)."""
    if not header or not transmission_time:
        return False
    expected = hmac.new(
        key.encode(), raw + b":" + transmission_time.encode(), hashlib.sha256
    ).digest()
    for part in header.split(","):
        scheme, _, value = part.strip().partition(":")
        if scheme != "v1" or not value:
            continue
        try:
            given = base64.b64decode(value, validate=True)
        except ValueError:
            continue
        if hmac.compare_digest(given, expected):
            return True
    return False


def accept_webhook(raw: bytes, headers: Mapping[str, str]) -> Accepted:
    """Store the raw event once (unique dedupe key) and return; processing happens later."""
    body = parse_body(raw)
    kind = classify(body)
    transmission_time = _header(headers, "tosspayments-webhook-transmission-time", 40)
    if kind in SIGNED_KINDS:
        key = current_app.config.get("TOSS_WEBHOOK_SECURITY_KEY")
        signature = headers.get("tosspayments-webhook-signature")
        if not key or not signature_valid(raw, transmission_time, signature, key):
            logger.warning("security: webhook signature rejected", extra={"kind": kind})
            raise ServiceError(
                "INVALID_SIGNATURE", "웹훅 서명이 올바르지 않습니다. (invalid signature)", 401
            )

    transmission_id = _header(headers, "tosspayments-webhook-transmission-id", 100)
    digest = hashlib.sha256(raw).hexdigest()
    order_id, payment_key = _ids(body)
    retried = headers.get("tosspayments-webhook-transmission-retried-count", "0")
    now = utcnow()
    row = {
        "dedupe_key": f"tid:{transmission_id}" if transmission_id else f"sha256:{digest}",
        "kind": kind,
        "transmission_id": transmission_id,
        "transmission_time": transmission_time,
        "retried_count": int(retried) if retried.isdigit() and len(retried) < 6 else 0,
        "order_id": order_id,
        "payment_key": payment_key,
        "body": raw.decode("utf-8"),
        "body_sha256": digest,
        "status": "PENDING",
        "next_attempt_at": now,
        "received_at": now,
    }
    try:
        # One autocommitted Core INSERT that returns the id: a single round trip, where the
        # ORM's flush, the commit and reading the id back cost several.
        ((event_id,),) = execute_alone(_INBOX_INSERT, row)
    except IntegrityError:
        metrics.WEBHOOKS_RECEIVED.labels(metrics.kind_label(kind), "yes").inc()
        logger.info("duplicate webhook ignored", extra={"kind": kind, "order_id": order_id})
        return Accepted(None, True, kind)
    metrics.WEBHOOKS_RECEIVED.labels(metrics.kind_label(kind), "no").inc()
    logger.info("webhook stored", extra={"event_id": event_id, "kind": kind, "order_id": order_id})
    _wake_embedded_worker()
    return Accepted(event_id, False, kind)


def _header(headers: Mapping[str, str], name: str, limit: int) -> str | None:
    value = headers.get(name)
    if value and _TID_RE.match(value) and len(value) <= limit:
        return value
    return None


def _ids(body: Mapping[str, Any]) -> tuple[str | None, str | None]:
    data = body.get("data") if isinstance(body.get("data"), dict) else body
    order_id = data.get("orderId") if isinstance(data, dict) else None
    payment_key = data.get("paymentKey") if isinstance(data, dict) else None
    return (
        order_id if isinstance(order_id, str) and ORDER_ID_RE.match(order_id) else None,
        payment_key if isinstance(payment_key, str) and _KEY_RE.match(payment_key) else None,
    )


# -- processing -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    """What processing made of an event; written only while the worker holds its lease."""

    result: str
    order_id: str | None = None
    payment_key: str | None = None


class Outcome(Exception):
    """A final verdict on an event that is not DONE (ignored or rejected)."""

    def __init__(self, status: str, result: str) -> None:
        super().__init__(result)
        self.status = status
        self.result = result


def claim(worker_id: str, limit: int = 10, now: datetime | None = None) -> list[int]:
    """Lease up to `limit` due events to this worker.

    FOR UPDATE SKIP LOCKED lets workers on many machines share the inbox on PostgreSQL; the
    conditional UPDATE decides any remaining race (and is all SQLite needs, having one writer).
    An event whose lease expired (its worker died) is due again.
    """
    now = now or utcnow()
    lease = timedelta(seconds=current_app.config["WEBHOOK_LEASE_SECONDS"])
    due = or_(
        (WebhookEvent.status == "PENDING") & (WebhookEvent.next_attempt_at <= now),
        (WebhookEvent.status == "PROCESSING") & (WebhookEvent.locked_until < now),
    )
    ids = list(
        db.session.scalars(
            select(WebhookEvent.id)
            .where(due)
            .order_by(WebhookEvent.id)
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
                status="PROCESSING",
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
    if event is None or event.locked_by != worker_id or event.status != "PROCESSING":
        db.session.rollback()
        return "LOST"
    kind, body, received_at = event.kind, event.body, event.received_at
    try:
        handler = HANDLERS.get(kind, _ignore_kind)
        verdict = handler(event_id, kind, json.loads(body or "{}"))
        status = "DONE"
    except Outcome as refused:
        status, verdict = refused.status, Verdict(refused.result)
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
    db.session.commit()
    _observe(kind, status, received_at)
    return status


def _observe(kind: str, status: str, received_at: datetime) -> None:
    metrics.WEBHOOKS_PROCESSED.labels(metrics.kind_label(kind), status).inc()
    metrics.WEBHOOK_LAG.observe(max(0.0, (utcnow() - received_at).total_seconds()))


def _write_if_held(event_id: int, worker_id: str, values: dict[str, Any]) -> bool:
    result = db.session.execute(
        update(WebhookEvent)
        .where(
            WebhookEvent.id == event_id,
            WebhookEvent.locked_by == worker_id,
            WebhookEvent.status == "PROCESSING",
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
        values["status"] = "FAILED"
    else:
        values["status"] = "PENDING"
        values["next_attempt_at"] = utcnow() + timedelta(seconds=delays[attempts - 1])
    if not _write_if_held(event_id, worker_id, values):
        db.session.rollback()
        return "LOST"
    db.session.commit()
    if values["status"] == "FAILED":
        _observe(kind, "FAILED", event.received_at)
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
    if not isinstance(payment_key, str) or not _KEY_RE.match(payment_key):
        raise Outcome("REJECTED", "no usable paymentKey")
    try:
        payment = toss_client().get_payment(payment_key)
    except TossError as exc:
        if exc.code in ("NOT_FOUND_PAYMENT", "NOT_FOUND"):
            logger.warning("security: webhook names a payment Toss does not know")
            raise Outcome("REJECTED", f"Toss: {exc.code}") from None
        raise
    return _apply(payment)


def _deposit_callback(event_id: int, kind: str, body: dict[str, Any]) -> Verdict:
    order = find_order(str(body.get("orderId", "")))
    if order is None:
        raise Outcome("IGNORED", "unknown order")
    stored = order.payment.secret if order.payment else None
    given = body.get("secret")
    if (
        not stored
        or not isinstance(given, str)
        or not hmac.compare_digest(given.encode(), stored.encode())
    ):
        logger.warning(
            "security: deposit callback with a wrong secret rejected",
            extra={"order_id": order.order_id, "event_id": event_id},
        )
        raise Outcome("REJECTED", "secret mismatch")
    payment = toss_client().get_payment_by_order(order.order_id)
    return _apply(payment)


def _apply(payment: Any) -> Verdict:
    # Act on Toss's orderId, never on what the webhook body claimed.
    order = find_order(payment.order_id)
    if order is None:
        raise Outcome("IGNORED", "payment of an order this shop does not know")
    before = order.status
    apply_payment(order, payment, Source.WEBHOOK)
    return Verdict(
        f"Toss {payment.status}: {before} → {order.status}", order.order_id, payment.payment_key
    )


def _ignore_kind(event_id: int, kind: str, body: dict[str, Any]) -> Verdict:
    raise Outcome("IGNORED", f"{kind} is not used by this shop")


HANDLERS: dict[str, Callable[[int, str, dict[str, Any]], Verdict]] = {
    "PAYMENT_STATUS_CHANGED": _payment_status_changed,
    "CANCEL_STATUS_CHANGED": _payment_status_changed,
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
        status="PENDING", next_attempt_at=utcnow(), attempts=0, locked_by=None, locked_until=None
    )
    # A pruned event has no body left to process.
    stmt = stmt.where(WebhookEvent.body.is_not(None))
    if event_id is not None:
        stmt = stmt.where(WebhookEvent.id == event_id, WebhookEvent.status != "PROCESSING")
    elif failed:
        stmt = stmt.where(WebhookEvent.status == "FAILED")
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
            WebhookEvent.status.in_(("DONE", "IGNORED", "REJECTED")),
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
    """Process the inbox until `stop` is set; an event in hand is always finished first."""
    name = worker_name()
    logger.info("webhook worker started", extra={"worker": name})
    while not stop.is_set():
        try:
            with app.app_context():
                handled = run_once(name)
                db.session.remove()
        except Exception:  # noqa: BLE001 — keep the worker alive through a database hiccup
            logger.exception("webhook worker iteration failed")
            handled = 0
        if not handled:
            (wake or stop).wait(poll)
            if wake is not None:
                wake.clear()
    logger.info("webhook worker stopped", extra={"worker": name})


# -- embedded worker (SQLite / development default) -----------------------------------------

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


def _wake_embedded_worker() -> None:
    entry = _embedded.get(id(current_app._get_current_object()))  # type: ignore[attr-defined]
    if entry:
        entry[2].set()
