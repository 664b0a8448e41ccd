"""Accepting a webhook: verify what can be verified, store the raw event once, answer 200.

Nothing slow happens before the answer: the event waits in the inbox (`webhook_events`) for the
worker (`worker.py`), which re-checks it with Toss. A retry or duplicate delivery lands on the
same unique dedupe key and is stored once.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from flask import current_app
from sqlalchemy.exc import IntegrityError

from ..core import metrics
from ..core.clock import utcnow
from ..core.errors import ServiceError, invalid
from ..core.models import WebhookEvent
from ..core.orders import ORDER_ID_RE, PAYMENT_KEY_RE
from ..core.states import WebhookStatus
from ..extensions import db
from .worker import wake_embedded_worker

logger = logging.getLogger(__name__)

MAX_BODY = 64 * 1024
SIGNED_KINDS = frozenset({"payout.changed", "seller.changed"})
_TID_RE = re.compile(r"^[\x21-\x7e]{1,100}$")


@dataclass(frozen=True)
class Accepted:
    event_id: int | None
    duplicate: bool
    kind: str


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
    event = WebhookEvent(
        dedupe_key=f"tid:{transmission_id}" if transmission_id else f"sha256:{digest}",
        kind=kind,
        transmission_id=transmission_id,
        transmission_time=transmission_time,
        retried_count=int(retried) if retried.isdigit() and len(retried) < 6 else 0,
        order_id=order_id,
        payment_key=payment_key,
        body=raw.decode("utf-8"),
        body_sha256=digest,
        status=WebhookStatus.PENDING,
        next_attempt_at=now,
        received_at=now,
    )
    db.session.add(event)
    try:
        db.session.flush()  # the unique dedupe key turns a duplicate away here
        event_id = event.id
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        metrics.WEBHOOKS_RECEIVED.labels(metrics.kind_label(kind), "yes").inc()
        logger.info("duplicate webhook ignored", extra={"kind": kind, "order_id": order_id})
        return Accepted(None, True, kind)
    metrics.WEBHOOKS_RECEIVED.labels(metrics.kind_label(kind), "no").inc()
    logger.info("webhook stored", extra={"event_id": event_id, "kind": kind, "order_id": order_id})
    wake_embedded_worker()
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
        payment_key if isinstance(payment_key, str) and PAYMENT_KEY_RE.match(payment_key) else None,
    )
