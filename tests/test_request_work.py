"""Per-request database work that bench/run.py showed to matter, pinned by counting statements.

Nothing here is timed: the benchmark measures speed; these tests keep the fixes it led to (the
catalog read once per cache period, the webhook ack as a single INSERT) from quietly coming back.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import event

import payments.orders
from payments.extensions import db
from payments.models import Order, Product, WebhookEvent


@contextmanager
def statements(app: Flask) -> Iterator[list[str]]:
    """The SQL statements the app's engine runs inside the block (first word upper-cased)."""
    seen: list[str] = []

    def before(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        seen.append(statement.strip())

    with app.app_context():
        engine = db.engine
    event.listen(engine, "before_cursor_execute", before)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", before)


def test_catalog_views_within_the_cache_period_read_nothing(
    app: Flask, client: FlaskClient
) -> None:
    assert client.get("/").status_code == 200  # fills this app's catalog cache
    with statements(app) as seen:
        html = client.get("/").get_data(as_text=True)
    assert seen == []
    assert html.count('class="product card"') >= 6
    assert "39,000원" in html


def test_catalog_shows_an_edit_once_the_cache_period_passed(
    app: Flask, client: FlaskClient, products: list[Product], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(payments.orders, "CATALOG_CACHE_SECONDS", 0.0)
    client.get("/")
    with app.app_context():
        db.session.get(Product, products[0].id).price = 41_000
        db.session.get(Product, products[1].id).active = False
        db.session.commit()
    html = client.get("/").get_data(as_text=True)
    assert "41,000원" in html
    assert products[1].name not in html


def test_an_order_is_priced_from_the_database_not_the_cached_catalog(
    app: Flask, client: FlaskClient, products: list[Product]
) -> None:
    assert "39,000원" in client.get("/").get_data(as_text=True)  # cached at the old price
    with app.app_context():
        db.session.get(Product, products[0].id).price = 41_000
        db.session.commit()
    client.post("/cart", data={"product_id": products[0].id, "quantity": "2"})
    order_id = client.post("/orders").headers["Location"].rsplit("/", 1)[-1]
    with app.app_context():
        order = db.session.scalars(db.select(Order).filter_by(order_id=order_id)).one()
        assert order.amount == 82_000


def test_webhook_ack_is_one_insert(app: Flask, client: FlaskClient) -> None:
    body = {
        "eventType": "PAYMENT_STATUS_CHANGED",
        "createdAt": "2026-11-22T10:00:00.000000",
        "data": {"paymentKey": "tpk_work_0001", "orderId": "order-work-0001", "status": "DONE"},
    }
    headers = {"tosspayments-webhook-transmission-id": "whtrans_work_0001"}
    with statements(app) as seen:
        resp = client.post(
            "/api/payment/webhook", data=json.dumps(body), headers=headers,
            content_type="application/json",
        )  # fmt: skip
    assert resp.status_code == 200
    assert resp.get_json() == {"received": True, "duplicate": False}
    assert len(seen) == 1
    assert seen[0].upper().startswith("INSERT INTO WEBHOOK_EVENTS")
    with app.app_context():
        assert db.session.scalars(db.select(WebhookEvent.order_id)).all() == ["order-work-0001"]
