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
from datetime import datetime, timedelta
from typing import Any

from flask import current_app
from sqlalchemy.exc import IntegrityError

from ..core import metrics
from ..core.clock import utcnow
from ..core.errors import ServiceError, invalid
from ..core.models import LANE_NOT_OURS, WebhookEvent
from ..core.orders import ORDER_ID_RE, PAYMENT_KEY_RE
from ..core.states import WebhookStatus
from ..extensions import db
from .worker import lane_of, wake_embedded_worker

logger = logging.getLogger(__name__)

MAX_BODY = 64 * 1024
SIGNED_KINDS = frozenset({"payout.changed", "seller.changed"})
_TID_RE = re.compile(r"^[\x21-\x7e]{1,100}$")
_RETRIED_RE = re.compile(r"^[0-9]{1,5}$")
# Neither fits a text column: PostgreSQL refuses NUL, UTF-8 has no lone surrogates.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
# A signed event transmitted longer ago (or further ahead) than this is refused as a replay.
TRANSMISSION_WINDOW = timedelta(minutes=5)


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
    if not _storable(body):
        raise invalid(
            "본문에 NUL 문자나 짝이 없는 서로게이트가 있습니다. "
            "(body contains a NUL character or a lone surrogate)"
        )
    return body


def _storable(body: dict[str, Any]) -> bool:
    """No key or string anywhere holds a NUL or a lone surrogate (walked without recursion:
    json.loads allows nesting deeper than Python's stack would)."""
    stack: list[Any] = [body]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if _UNSTORABLE.search(item):
                return False
        elif isinstance(item, dict):
            stack.extend(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return True


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


def transmission_age(value: str, now: datetime) -> timedelta | None:
    """How long ago Toss says it sent the event (negative: in the future), from the
    `tosspayments-webhook-transmission-time` header, an ISO 8601 time with its offset
    (2024-09-05T12:19:21+09:00); None when it is not one."""
    try:
        sent = datetime.fromisoformat(value)
    except ValueError:
        return None
    if sent.tzinfo is None:
        return None  # no offset: no telling which instant is meant
    return now - sent


def accept_webhook(raw: bytes, headers: Mapping[str, str]) -> Accepted:
    """Store the raw event once (unique dedupe key) and return; processing happens later."""
    body = parse_body(raw)
    kind = classify(body)
    transmission_time = _header(headers, "tosspayments-webhook-transmission-time", 40)
    now = utcnow()
    if kind in SIGNED_KINDS:
        _check_signed(raw, kind, headers, transmission_time, now)
        lane = LANE_NOT_OURS  # payout/seller events name no order
    else:
        lane = lane_of(kind, body)

    transmission_id = _header(headers, "tosspayments-webhook-transmission-id", 100)
    digest = hashlib.sha256(raw).hexdigest()
    order_id, payment_key = _ids(body)
    retried = headers.get("tosspayments-webhook-transmission-retried-count", "0")
    event = WebhookEvent(
        dedupe_key=f"tid:{transmission_id}" if transmission_id else f"sha256:{digest}",
        kind=kind,
        transmission_id=transmission_id,
        transmission_time=transmission_time,
        retried_count=int(retried) if _RETRIED_RE.match(retried) else 0,
        order_id=order_id,
        payment_key=payment_key,
        lane=lane,
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


def _check_signed(
    raw: bytes,
    kind: str,
    headers: Mapping[str, str],
    transmission_time: str | None,
    now: datetime,
) -> None:
    """A payout/seller event must carry a valid signature over a transmission time within
    five minutes of now: a signed event captured once cannot be replayed later."""
    key = current_app.config.get("TOSS_WEBHOOK_SECURITY_KEY")
    signature = headers.get("tosspayments-webhook-signature")
    if not key or not signature_valid(raw, transmission_time, signature, key):
        logger.warning("security: webhook signature rejected", extra={"kind": kind})
        raise ServiceError(
            "INVALID_SIGNATURE", "웹훅 서명이 올바르지 않습니다. (invalid signature)", 401
        )
    age = transmission_age(transmission_time or "", now)
    if age is None:
        logger.warning("security: signed webhook with an unreadable transmission time")
        raise ServiceError(
            "INVALID_TRANSMISSION_TIME",
            "웹훅 전송 시각을 읽을 수 없습니다. (unreadable transmission time)",
            400,
        )
    if abs(age) > TRANSMISSION_WINDOW:
        logger.warning(
            "security: signed webhook outside the transmission window refused",
            extra={"kind": kind, "age_seconds": int(age.total_seconds())},
        )
        raise ServiceError(
            "STALE_TRANSMISSION",
            "웹훅 전송 시각이 현재와 5분 넘게 차이 납니다. "
            "(transmission time more than 5 minutes from now)",
            401,
        )


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
