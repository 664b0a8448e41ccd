"""Per-request database work that bench/run.py showed to matter, pinned by counting statements.

Nothing here is timed: the benchmark measures speed; these tests keep the fixes it led to (the
catalog read once per cache period, the webhook ack as a single INSERT, a confirmation that never
reads back what it wrote) from quietly coming back.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import responses
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import event

import payments.orders
from payments.extensions import db
from payments.models import Order, Product, WebhookEvent
from tests.conftest import CONFIRM_URL, payment_json
from tests.test_sandbox_api import basic, dispose, open_payment, sandbox_app


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


def verbs(seen: list[str]) -> list[str]:
    """Each statement as its verb and, for writes, its table ("UPDATE orders")."""
    out = []
    for sql in seen:
        words = sql.replace('"', "").split()
        table = {"SELECT": "", "UPDATE": words[1], "INSERT": words[2]}.get(words[0].upper(), "")
        out.append(f"{words[0].upper()} {table}".strip())
    return out


def test_confirmation_claims_the_order_without_a_read_and_never_reads_back_its_writes(
    app: Flask,
    client: FlaskClient,
    place_order: Any,
    toss: responses.RequestsMock,
) -> None:
    order_id = place_order()
    with app.app_context():
        amount = db.session.scalars(db.select(Order.amount).filter_by(order_id=order_id)).one()
    toss.add(responses.POST, CONFIRM_URL, json=payment_json(order_id, amount, "tpk_work_0001"))
    url = (
        f"/checkout/success?paymentType=NORMAL&orderId={order_id}"
        f"&paymentKey=tpk_work_0001&amount={amount}"
    )
    with statements(app) as seen:
        resp = client.get(url)
    assert resp.status_code == 303
    assert f"/orders/{order_id}" in resp.headers["Location"]
    # The intent (CONFIRMING) and Toss's answer (PAID + payment row) in two transactions; the
    # claim's UPDATE … RETURNING is the only read of the order.
    assert verbs(seen) == [
        "UPDATE orders",
        "INSERT audit_entries",
        "UPDATE orders",
        "INSERT audit_entries",
        "INSERT payments",
    ]
    with app.app_context():
        order = db.session.scalars(db.select(Order).filter_by(order_id=order_id)).one()
        assert order.status == "PAID"
        assert order.payment is not None
        assert order.payment.payment_key == "tpk_work_0001"


def test_sandbox_approval_is_one_read_and_commits_with_its_stored_answer(
    database_url: str,
) -> None:
    app = sandbox_app(database_url)
    try:
        client = app.test_client()
        payment_key, order_id, amount = open_payment(client)
        with statements(app) as seen:
            resp = client.post(
                "/sandbox/v1/payments/confirm",
                json={"paymentKey": payment_key, "orderId": order_id, "amount": amount},
                headers={**basic(), "Idempotency-Key": "work-1"},
            )
        assert resp.status_code == 200
        assert resp.get_json()["status"] == "DONE"
        # Reserve the key; then the approval (which also counts the request), its webhook and
        # the stored answer commit together.
        assert verbs(seen) == [
            "INSERT sandbox_idempotency_keys",
            "SELECT",
            "UPDATE sandbox_payments",
            "INSERT sandbox_webhooks",
            "UPDATE sandbox_idempotency_keys",
        ]
        view = client.get(f"/sandbox/api/payments/{payment_key}").get_json()
        assert view["sandbox"]["confirmRequests"] == 1
        replay = client.post(
            "/sandbox/v1/payments/confirm",
            json={"paymentKey": payment_key, "orderId": order_id, "amount": amount},
            headers={**basic(), "Idempotency-Key": "work-1"},
        )
        assert replay.get_data() == resp.get_data()
    finally:
        dispose(app)
