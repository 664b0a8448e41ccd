"""Per-request database work that bench/run.py showed to matter, pinned by counting statements.

Nothing here is timed: the benchmark measures speed; these tests keep the fixes it led to (the
catalog read once per cache period, the webhook ack as a single INSERT, a confirmation that never
reads back what it wrote) from quietly coming back.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import responses
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import event, insert, update
from sqlalchemy.orm.attributes import set_committed_value

import payments.orders
from payments.shop.catalog import seed_catalog
from payments.extensions import db, execute_alone, insert_loaded
from payments.core.models import AuditEntry, Order, Payment, Product, WebhookEvent
from payments.orders import claim_pending, transition
from payments.core.states import OrderStatus, Source
from tests.helpers import CONFIRM_URL, make_app, payment_json
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
    """Each statement as its verb and, for writes, its table ("UPDATE orders"); the writes of
    one WITH statement joined by " + "."""
    out = []
    for sql in seen:
        text = sql.replace('"', "")
        words = text.split()
        if words[0].upper() == "WITH":
            writes = re.findall(r"\b(?:UPDATE (\w+)|INSERT INTO (\w+))", text)
            out.append(" + ".join(f"UPDATE {u}" if u else f"INSERT {i}" for u, i in writes))
            continue
        table = {"SELECT": "", "UPDATE": words[1], "INSERT": words[2]}.get(words[0].upper(), "")
        out.append(f"{words[0].upper()} {table}".strip())
    return out


def order_move(app: Flask) -> list[str]:
    """A state change's statements: the UPDATE and its audit row's INSERT, which PostgreSQL
    runs as one WITH statement (SQLite has no data-modifying WITH)."""
    with app.app_context():
        postgres = db.engine.dialect.name == "postgresql"
    if postgres:
        return ["UPDATE orders + INSERT audit_entries"]
    return ["UPDATE orders", "INSERT audit_entries"]


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
    assert verbs(seen) == [*order_move(app), *order_move(app), "INSERT payments"]
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


# -- the helpers behind these figures --------------------------------------------------------


def new_payment(order: Order, payment_key: str) -> Payment:
    return Payment(
        order_pk=order.id,
        payment_key=payment_key,
        status="DONE",
        total_amount=order.amount,
        balance_amount=order.amount,
    )


def transitions(order: Order) -> list[tuple[str | None, str | None, str]]:
    rows = db.session.scalars(
        db.select(AuditEntry).filter_by(order_pk=order.id, event="transition")
    )
    return [(a.from_status, a.to_status, a.source) for a in rows]


def test_insert_loaded_writes_one_statement_and_leaves_the_row_loaded(
    app: Flask, order_factory: Callable[..., Order]
) -> None:
    order = order_factory()
    with app.app_context():
        row = new_payment(order, "tpk_loaded_0001")
        with statements(app) as seen:
            assert insert_loaded(row) is row
            # Persistent and clean: nothing left for a flush, every column already read.
            assert row in db.session
            assert not db.session.new
            assert not db.session.dirty
            assert row.id > 0
            assert row.created_at is not None
            assert row.method is None
        assert verbs(seen) == ["INSERT payments"]
        row.status = "CANCELED"  # still an ordinary ORM object afterwards
        db.session.commit()
    with app.app_context():
        stored = db.session.scalars(db.select(Payment).filter_by(payment_key="tpk_loaded_0001"))
        assert stored.one().status == "CANCELED"


def test_execute_alone_commits_apart_from_the_session(app: Flask) -> None:
    table = WebhookEvent.__table__
    body = {"dedupe_key": "tid:alone-1", "kind": "X", "body_sha256": "0" * 64}
    with app.app_context():
        ((event_id,),) = execute_alone(insert(table).returning(table.c.id), body)
        db.session.rollback()  # the session's transaction is not the statement's
    with app.app_context():
        stored = db.session.get(WebhookEvent, event_id)
        assert stored is not None
        assert stored.dedupe_key == "tid:alone-1"
        assert stored.status == "PENDING"  # column defaults applied


@pytest.mark.parametrize("case", ["amount", "status", "payment_row", "unknown"])
def test_claim_pending_moves_nothing_it_should_not(
    app: Flask, order_factory: Callable[..., Order], case: str
) -> None:
    """No claim, and no write, unless the order is PENDING, of this amount, with no payment."""
    order = order_factory()
    order_id = "no-such-order-1" if case == "unknown" else order.order_id
    amount = order.amount + 1 if case == "amount" else order.amount
    with app.app_context():
        if case == "status":
            db.session.execute(update(Order).where(Order.id == order.id).values(status="FAILED"))
        if case == "payment_row":
            db.session.add(new_payment(order, "tpk_claim_1"))
        db.session.commit()
        claimed = claim_pending(
            order_id,
            OrderStatus.CONFIRMING,
            Source.API,
            amount=amount,
            payment_key="tpk_claim_2",
            values={"payment_key": "tpk_claim_2"},
        )
        db.session.commit()
        assert claimed is None
        stored = db.session.get(Order, order.id)
        assert stored is not None
        assert stored.status == ("FAILED" if case == "status" else "PENDING")
        assert stored.payment_key is None
        assert transitions(order) == []


def test_claim_pending_claims_with_its_audit_row_and_no_read(
    app: Flask, order_factory: Callable[..., Order]
) -> None:
    order = order_factory()
    with app.app_context():
        with statements(app) as seen:
            claimed = claim_pending(
                order.order_id,
                OrderStatus.CONFIRMING,
                Source.API,
                amount=order.amount,
                payment_key="tpk_claim_3",
                values={"payment_key": "tpk_claim_3"},
            )
            assert claimed is not None
            assert claimed.payment is None  # known from the WHERE, not looked up
            assert claimed.status == "CONFIRMING"
            assert claimed.payment_key == "tpk_claim_3"
        assert verbs(seen) == order_move(app)
        db.session.commit()
        assert transitions(order) == [("PENDING", "CONFIRMING", "api")]
        stored = db.session.scalars(db.select(AuditEntry).filter_by(event="transition")).one()
        assert stored.order_pk == order.id
        assert stored.payment_key == "tpk_claim_3"


def test_transition_writes_its_audit_row_with_the_move_and_none_when_it_loses(
    app: Flask, order_factory: Callable[..., Order]
) -> None:
    order = order_factory()
    with app.app_context():
        mine = db.session.get(Order, order.id)
        assert mine is not None
        with statements(app) as seen:
            assert transition(mine, OrderStatus.CONFIRMING, Source.API, payment_key="tpk_mv_1",
                              values={"payment_key": "tpk_mv_1"})  # fmt: skip
        assert verbs(seen) == order_move(app)
        db.session.commit()
        assert mine.status == "CONFIRMING"
        # Another writer moves it meanwhile; this copy still says CONFIRMING.
        db.session.execute(update(Order).where(Order.id == order.id).values(status="FAILED"))
        db.session.commit()
        mine = db.session.get(Order, order.id)
        assert mine is not None
        set_committed_value(mine, "status", "CONFIRMING")
        assert not transition(mine, OrderStatus.PAID, Source.API, transaction_key="tx_mv_1")
        db.session.commit()
        assert db.session.get(Order, order.id).status == "FAILED"
        assert transitions(order) == [("PENDING", "CONFIRMING", "api")]
        (row,) = db.session.scalars(db.select(AuditEntry).filter_by(event="transition"))
        assert (row.payment_key, row.transaction_key, row.created_at is not None) == (
            "tpk_mv_1", None, True,
        )  # fmt: skip


def test_catalog_cards_rendered_once_carry_each_visitors_own_token(database_url: str) -> None:
    app = make_app(database_url, WTF_CSRF_ENABLED=True)
    with app.app_context():
        seed_catalog()
        product_id = db.session.scalars(db.select(Product.id).order_by(Product.id)).first()
    shoppers = [app.test_client() for _ in range(2)]
    tokens = []
    for shopper in shoppers:
        html = shopper.get("/").get_data(as_text=True)
        found = re.findall(r'name="csrf_token" value="([^"]+)"', html)
        assert len(found) == html.count('class="product card"') >= 6
        assert len(set(found)) == 1
        tokens.append(found[0])
    assert tokens[0] != tokens[1]

    def add(shopper: FlaskClient, token: str) -> int:
        form = {"csrf_token": token, "action": "add", "return_to": "catalog",
                "product_id": product_id, "quantity": "1"}  # fmt: skip
        return shopper.post("/cart", data=form).status_code

    # The card's form, as the browser sends it, works with its own page's token only.
    assert add(shoppers[0], tokens[1]) == 400
    assert add(shoppers[0], tokens[0]) == 303
