"""Write the buyer's e-mail into the outbox, in the caller's transaction.

The row commits with the state change it reports or not at all, so a rolled-back change mails
nothing and a committed one always has its message. Sending is the worker's job (`sender.py`),
never a request's. The dedupe key (orderId, kind, the Toss transaction or payment it is about)
is unique: the second writer of the same event inserts nothing, so every path that learns of a
payment (success URL, API, webhook, reconcile) mails it at most once.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import current_app, has_request_context, request
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from ..core.models import MailMessage, MailStatus, Order
from ..extensions import db

logger = logging.getLogger(__name__)

# Each kind has templates/mail/<kind>.txt and .html.
SUBJECTS: dict[str, str] = {
    "paid": "결제가 완료되었습니다",
    "va_issued": "가상계좌가 발급되었습니다 — 입금을 기다립니다",
    "deposit": "입금이 확인되어 결제가 완료되었습니다",
    "refund": "환불이 처리되었습니다",
    "shipped": "주문하신 상품이 발송되었습니다",
}
SHOP_NAME = "토스 체크아웃 데모"


def enqueue(order: Order, kind: str, *, ref: str | None = None, **context: Any) -> bool:
    """Queue the `kind` e-mail about `order` (the caller commits); False when the order has no
    buyer e-mail or this event was queued before. `ref` names the event within the order and
    kind (a transaction key, a paymentKey); `context` reaches the templates."""
    if kind not in SUBJECTS:
        raise ValueError(f"unknown mail kind {kind!r}")
    to = order.buyer_email
    if not to:
        return False
    values = {
        "order": order,
        "payment": order.payment,
        "shop_name": SHOP_NAME,
        "lookup_url": _lookup_url(),
        **context,
    }
    subject = f"[{SHOP_NAME}] {SUBJECTS[kind]} (주문번호 {order.order_id})"
    row = {
        "order_pk": order.id,
        "kind": kind,
        "dedupe_key": f"{order.order_id}:{kind}:{ref or '-'}"[:200],
        "to_address": to,
        "subject": subject[:200],
        "text": _render(f"mail/{kind}.txt", values),
        "html": _render(f"mail/{kind}.html", {**values, "subject": subject}),
        "status": MailStatus.PENDING,
        "attempts": 0,
    }
    insert = pg_insert if db.session.get_bind().dialect.name == "postgresql" else sqlite_insert
    stmt = (
        insert(MailMessage)
        .values(row)
        .on_conflict_do_nothing(index_elements=["dedupe_key"])
        .returning(MailMessage.id)
    )
    added = db.session.execute(stmt).scalar_one_or_none() is not None
    if added:
        logger.info("mail queued", extra={"order_id": order.order_id, "kind": kind})
    return added


def _render(name: str, values: dict[str, Any]) -> str:
    # The app's Jinja environment (its filters, HTML autoescaping) without the page context
    # processors, which read the browser session: the webhook worker and reconcile have none.
    return current_app.jinja_env.get_template(name).render(**values)


def _lookup_url() -> str | None:
    """Where a guest finds the order again (orderId + e-mail): the shop's public origin, or the
    origin of the request that caused the mail."""
    base = current_app.config.get("PUBLIC_BASE_URL")
    if not base and has_request_context():
        base = request.host_url.rstrip("/")
    return f"{base}/orders/lookup" if base else None
