"""Queueing webhooks: a row per delivery in `sandbox_webhooks`, written in the same transaction
as the status change it reports (so a change is never committed without its webhooks).
`sender.py` delivers them."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from sqlalchemy import insert

from .clock import webhook_created_at
from .db import db
from .ids import new_transmission_id
from .models import SandboxPayment, SandboxWebhook
from .state import state


def status_changed(payment: SandboxPayment, data: dict[str, Any]) -> None:
    """Queue PAYMENT_STATUS_CHANGED for `payment` (its Payment object as `data`); caller commits."""
    body = {
        "eventType": "PAYMENT_STATUS_CHANGED",
        "createdAt": webhook_created_at(state().now()),
        "data": data,
    }
    _enqueue("PAYMENT_STATUS_CHANGED", body, payment)


def deposit_callback(payment: SandboxPayment) -> None:
    """Queue DEPOSIT_CALLBACK for a virtual account; caller commits."""
    body = {
        "createdAt": webhook_created_at(state().now()),
        "secret": payment.secret,
        "status": payment.status,
        "transactionKey": payment.last_transaction_key,
        "orderId": payment.order_id,
    }
    _enqueue("DEPOSIT_CALLBACK", body, payment)


def _enqueue(event_type: str, body: dict[str, Any], payment: SandboxPayment) -> None:
    settings = state().settings
    if settings.webhook_url is None:
        return
    t = state().now()
    transmission_id = new_transmission_id()
    raw = json.dumps(body, ensure_ascii=False)  # every retry sends these very bytes
    db.session.execute(
        insert(SandboxWebhook),
        [
            {
                "transmission_id": transmission_id,
                "copy": copy,
                "event_type": event_type,
                "payment_key": payment.payment_key,
                "order_id": payment.order_id,
                "url": settings.webhook_url,
                "body": raw,
                "status": "PENDING",
                "attempts": 0,
                "next_attempt_at": t + timedelta(seconds=settings.webhook_delay),
                "created_at": t,
            }
            for copy in range(1 + settings.webhook_duplicates)
        ],
    )
