"""How much database work a request does, held to coarse budgets by counting statements.

Nothing here is timed, and no test pins which statements run: a budget only fails when a
request starts doing clearly more work than it needs (a query per catalog view, a read-back
per write, a loop of statements), which is the regression a reader of these pages would notice
under load. Each budget leaves a little headroom over what the code does now.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import responses
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import event, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.orm.attributes import set_committed_value

import payments.shop.catalog
from payments.core.models import AuditEntry, Order, Product, WebhookEvent
from payments.core.orders import transition
from payments.core.states import OrderStatus, Source
from payments.extensions import db
from payments.sandbox.db import db as sandbox_db
from payments.sandbox.testing import SandboxDriver
from tests.helpers import (
    CONFIRM_URL,
    Shopper,
    dispose,
    get_order,
    payment_json,
    sandbox_app,
    transitions,
)

# The webhook endpoint must answer Toss fast (Toss retries what it does not see acknowledged in
# time) and holds a database connection while it works: it stores the raw event and nothing
# else, processing is the worker's. It runs one INSERT now; the budget leaves room for two more
# statements, not for reading orders or processing the event inline.
WEBHOOK_ACK_BUDGET = 3
# A confirmation through the success URL, what every paying shopper waits for: read the order,
# claim it (CONFIRMING and its audit row), call Toss, read it again, move it to PAID with its
# audit row and write the payment row: eight statements now. A read-back of each write, a query
# per order line or per audit row would blow the budget.
CONFIRMATION_BUDGET = 10
# The sandbox approving a payment (its own database): count the request, reserve the
# Idempotency-Key, read and move the payment, read its cancels, queue its webhook and store the
# answer for replays: seven statements now.
SANDBOX_CONFIRM_BUDGET = 9


@contextmanager
def statements(engine: Engine) -> Iterator[list[str]]:
    """Every SQL statement `engine` runs inside the block."""
    seen: list[str] = []

    def before(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        seen.append(statement.strip())

    event.listen(engine, "before_cursor_execute", before)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", before)


def shop_engine(app: Flask) -> Engine:
    with app.app_context():
        return db.engine


def writes(seen: list[str], table: str) -> list[str]:
    """The INSERTs and UPDATEs among `seen` that write `table`."""
    found = []
    for sql in seen:
        words = sql.replace('"', "").upper().split()
        target = {"INSERT": 2, "UPDATE": 1}.get(words[0])
        if target is not None and len(words) > target and words[target] == table.upper():
            found.append(sql)
    return found


# -- the catalog -----------------------------------------------------------------------------------


def test_catalog_views_within_the_cache_period_read_nothing(
    app: Flask, client: FlaskClient
) -> None:
    assert client.get("/").status_code == 200  # fills this app's catalog cache
    with statements(shop_engine(app)) as seen:
        html = client.get("/").get_data(as_text=True)
    assert seen == []
    assert html.count('class="product card"') >= 6
    assert "39,000원" in html


def test_catalog_shows_an_edit_once_the_cache_period_passed(
    app: Flask, client: FlaskClient, products: list[Product], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(payments.shop.catalog, "CATALOG_CACHE_SECONDS", 0.0)
    client.get("/")
    with app.app_context():
        db.session.get(Product, products[0].id).price = 41_000  # type: ignore[union-attr]
        db.session.get(Product, products[1].id).active = False  # type: ignore[union-attr]
        db.session.commit()
    html = client.get("/").get_data(as_text=True)
    assert "41,000원" in html
    assert products[1].name not in html


def test_an_order_is_priced_from_the_database_not_the_cached_catalog(
    app: Flask, client: FlaskClient, shopper: Shopper, products: list[Product]
) -> None:
    assert "39,000원" in client.get("/").get_data(as_text=True)  # cached at the old price
    with app.app_context():
        db.session.get(Product, products[0].id).price = 41_000  # type: ignore[union-attr]
        db.session.commit()
    order_id = shopper.place_order({products[0].id: 2})
    assert get_order(app, order_id).amount == 82_000


# -- the webhook acknowledgement -------------------------------------------------------------------


def test_webhook_ack_writes_the_event_once_within_its_budget(
    app: Flask, client: FlaskClient
) -> None:
    body = {
        "eventType": "PAYMENT_STATUS_CHANGED",
        "createdAt": "2026-11-22T10:00:00.000000",
        "data": {"paymentKey": "tpk_work_0001", "orderId": "order-work-0001", "status": "DONE"},
    }
    headers = {"tosspayments-webhook-transmission-id": "whtrans_work_0001"}
    with statements(shop_engine(app)) as seen:
        resp = client.post(
            "/api/payment/webhook", data=json.dumps(body), headers=headers,
            content_type="application/json",
        )  # fmt: skip
    assert resp.status_code == 200
    assert resp.get_json() == {"received": True, "duplicate": False}
    assert len(writes(seen, "webhook_events")) == 1
    assert len(seen) <= WEBHOOK_ACK_BUDGET, seen
    with app.app_context():
        assert db.session.scalars(select(WebhookEvent.order_id)).all() == ["order-work-0001"]


# -- a confirmation --------------------------------------------------------------------------------


def test_confirmation_through_the_success_url_stays_within_its_budget(
    app: Flask, shopper: Shopper, toss: responses.RequestsMock
) -> None:
    order_id = shopper.place_order()
    amount = get_order(app, order_id).amount
    toss.add(responses.POST, CONFIRM_URL, json=payment_json(order_id, amount, "tpk_work_0001"))
    with statements(shop_engine(app)) as seen:
        resp = shopper.return_from_toss(order_id, "tpk_work_0001", amount)
    assert resp.status_code == 303
    assert f"/orders/{order_id}" in resp.headers["Location"]
    assert len(seen) <= CONFIRMATION_BUDGET, seen
    # Each write happens once: two moves of the order, one payment row.
    assert len(writes(seen, "orders")) == 2
    assert len(writes(seen, "payments")) == 1
    assert get_order(app, order_id).status == "PAID"
    assert transitions(app, order_id) == [
        ("PENDING", "CONFIRMING", "redirect"),
        ("CONFIRMING", "PAID", "redirect"),
    ]


def test_sandbox_confirmation_stays_within_its_budget_and_replays_its_answer(
    database_url: str,
) -> None:
    app = sandbox_app(database_url)
    try:
        toss = SandboxDriver.in_process(app.test_client())
        window = toss.open_window("order-budget-0001", 15_000)
        assert window.payment_key is not None
        with app.extensions["sandbox_app"].app_context():
            engine = sandbox_db.engine
        with statements(engine) as seen:
            first = toss.confirm(window.payment_key, "order-budget-0001", 15_000,
                                 idempotency_key="budget-1")  # fmt: skip
        assert first.status == 200
        assert first.body["status"] == "DONE"
        assert len(seen) <= SANDBOX_CONFIRM_BUDGET, seen
        assert toss.payment(window.payment_key)["sandbox"]["confirmRequests"] == 1
        # The stored answer comes back for the same Idempotency-Key.
        replay = toss.confirm(
            window.payment_key, "order-budget-0001", 15_000, idempotency_key="budget-1"
        )
        assert replay == first
    finally:
        dispose(app)


# -- the state machine -----------------------------------------------------------------------------


def test_a_lost_transition_writes_no_audit_row(
    app: Flask, order_factory: Callable[..., Order]
) -> None:
    order = order_factory()
    with app.app_context():
        mine = db.session.get(Order, order.id)
        assert mine is not None
        assert transition(mine, OrderStatus.CONFIRMING, Source.API, payment_key="tpk_mv_1",
                          values={"payment_key": "tpk_mv_1"})  # fmt: skip
        db.session.commit()
        # Another writer moves it meanwhile; this copy still says CONFIRMING.
        db.session.execute(update(Order).where(Order.id == order.id).values(status="FAILED"))
        db.session.commit()
        mine = db.session.get(Order, order.id)
        assert mine is not None
        set_committed_value(mine, "status", OrderStatus.CONFIRMING)
        assert not transition(mine, OrderStatus.PAID, Source.API, transaction_key="tx_mv_1")
        db.session.commit()
        (row,) = db.session.scalars(select(AuditEntry).filter_by(order_pk=order.id,
                                                                  event="transition"))  # fmt: skip
        assert (row.payment_key, row.transaction_key) == ("tpk_mv_1", None)
    assert get_order(app, order.order_id).status == "FAILED"
    assert transitions(app, order.order_id) == [("PENDING", "CONFIRMING", "api")]
