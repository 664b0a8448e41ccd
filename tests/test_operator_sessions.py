"""Operator sessions live on the server: logging out revokes the session, so a copy of the
operator's cookie stops working too; each login is a new session; a revoked one stays revoked.

The cookie is signed, not secret from whoever copies it (a shared machine, a proxy log, a
browser extension): without a server-side record, logout only forgot it in one browser.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta

import pytest
import responses
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select, update
from werkzeug.security import generate_password_hash

from payments.core.clock import utcnow
from payments.core.models import OperatorSession, Order, Refund
from payments.extensions import db
from payments.shop.catalog import seed_catalog
from tests.helpers import CONFIRM_URL, TOSS, dispose, get_order, make_app, payment_json

PASSWORD = "correct horse battery"


@pytest.fixture
def app(database_url: str) -> Iterator[Flask]:
    """Overrides conftest's `app`: the console enabled (the login limit off)."""
    app = make_app(database_url, ADMIN_PASSWORD_HASH=generate_password_hash(PASSWORD))
    with app.app_context():
        seed_catalog()
    yield app
    dispose(app)


def logged_in(app: Flask) -> FlaskClient:
    browser = app.test_client()
    assert browser.post("/admin/login", data={"password": PASSWORD}).status_code == 303
    return browser


def copy_of(app: Flask, browser: FlaskClient) -> FlaskClient:
    """Another browser holding the same session cookie, as someone who copied it would."""
    cookie = browser.get_cookie("session")
    assert cookie is not None
    thief = app.test_client()
    thief.set_cookie("session", cookie.value)
    return thief


def operator_token(browser: FlaskClient) -> str:
    with browser.session_transaction() as s:
        token = s["operator_sid"]
    assert isinstance(token, str)
    return token


def rows(app: Flask) -> list[OperatorSession]:
    with app.app_context():
        found = list(
            db.session.scalars(select(OperatorSession).order_by(OperatorSession.created_at))
        )
        db.session.expunge_all()
        return found


def refused(browser: FlaskClient, path: str = "/admin/") -> bool:
    resp = browser.get(path)
    return resp.status_code == 303 and resp.headers["Location"].startswith("/admin/login")


def paid_order(
    client: FlaskClient, toss: responses.RequestsMock, order_factory: Callable[..., Order]
) -> Order:
    order = order_factory()
    toss.upsert(
        responses.POST, CONFIRM_URL, json=payment_json(order.order_id, order.amount, "tpk_copy_1")
    )
    resp = client.post(
        "/api/payment/confirm",
        json={"paymentKey": "tpk_copy_1", "orderId": order.order_id, "amount": order.amount},
    )
    assert resp.status_code == 200, resp.get_data(as_text=True)
    return order


def test_a_copied_cookie_stops_working_when_the_operator_logs_out(
    app: Flask,
    client: FlaskClient,
    toss: responses.RequestsMock,
    order_factory: Callable[..., Order],
) -> None:
    order = paid_order(client, toss, order_factory)
    cancel = toss.post(f"{TOSS}/v1/payments/tpk_copy_1/cancel", json={})
    operator = logged_in(app)
    thief = copy_of(app, operator)
    # While the operator is logged in, the copy is as good as the original.
    assert thief.get("/admin/").status_code == 200
    assert 'data-testid="refund-form"' in thief.get(f"/admin/orders/{order.order_id}").get_data(
        as_text=True
    )

    assert operator.post("/admin/logout").status_code == 303

    assert refused(thief, "/admin/")
    assert refused(thief, "/admin/orders")
    assert refused(thief, f"/admin/orders/{order.order_id}")
    refund = thief.post(
        f"/admin/orders/{order.order_id}/refunds", data={"amount": "", "reason": "훔친 쿠키"}
    )
    assert refund.status_code == 303
    assert refund.headers["Location"].startswith("/admin/login")
    assert not cancel.calls  # Toss never asked to cancel
    assert get_order(app, order.order_id).status == "PAID"
    with app.app_context():
        assert db.session.scalars(select(Refund)).all() == []
    # The shop's pages no longer see an operator either (someone else's order is 404).
    assert thief.get(f"/orders/{order.order_id}").status_code == 404
    # The dead keys are dropped from the copy.
    with thief.session_transaction() as s:
        assert "operator" not in s
        assert "operator_sid" not in s
    assert [r.revoked_at is not None for r in rows(app)] == [True]


def test_each_login_is_a_new_server_session(app: Flask) -> None:
    first = logged_in(app)
    old_token = operator_token(first)
    old_copy = copy_of(app, first)
    elsewhere = logged_in(app)  # the operator on another computer

    # Logging in again in the same browser starts a new session and ends the one it replaces…
    assert first.post("/admin/login", data={"password": PASSWORD}).status_code == 303
    new_token = operator_token(first)
    assert new_token != old_token
    assert first.get("/admin/").status_code == 200
    assert refused(old_copy)
    # …but no other: the other computer stays logged in, through this browser's logout too.
    assert elsewhere.get("/admin/").status_code == 200
    assert first.post("/admin/logout").status_code == 303
    assert elsewhere.get("/admin/").status_code == 200

    sessions = rows(app)
    assert len(sessions) == 3
    assert sum(r.revoked_at is None for r in sessions) == 1  # only `elsewhere`'s
    # The table holds digests, never the tokens the cookies carry.
    assert {old_token, new_token}.isdisjoint({r.id for r in sessions})


def test_a_revoked_session_cannot_be_revived(app: Flask) -> None:
    operator = logged_in(app)
    token = operator_token(operator)
    thief = copy_of(app, operator)
    assert operator.post("/admin/logout").status_code == 303
    (revoked,) = rows(app)
    assert revoked.revoked_at is not None

    # Neither fresh timestamps in the cookie nor the old token put back into it help: the
    # server decides. (The test client can sign cookies; an attacker with SECRET_KEY could too.)
    for browser in (thief, operator):
        with browser.session_transaction() as s:
            now = int(utcnow().timestamp())
            s.update(operator=True, operator_sid=token, operator_login_at=now, operator_seen_at=now)
        assert refused(browser)
        assert browser.post("/admin/logout").status_code == 303
    # A new login is a new session; the revoked one stays revoked.
    assert logged_in(app).get("/admin/").status_code == 200
    sessions = {r.id: r for r in rows(app)}
    assert sessions[revoked.id].revoked_at == revoked.revoked_at
    assert len(sessions) == 2


def test_the_server_ends_an_idle_or_old_session_whatever_the_cookie_says(app: Flask) -> None:
    idle = logged_in(app)
    old = logged_in(app)
    (idle_row, old_row) = rows(app)
    with app.app_context():
        now = utcnow()
        db.session.execute(
            update(OperatorSession)
            .where(OperatorSession.id == idle_row.id)
            .values(last_seen_at=now - timedelta(minutes=31))
        )
        db.session.execute(
            update(OperatorSession)
            .where(OperatorSession.id == old_row.id)
            .values(created_at=now - timedelta(hours=13))
        )
        db.session.commit()

    assert refused(idle)
    assert refused(old)


def test_activity_keeps_the_server_session_alive(app: Flask) -> None:
    operator = logged_in(app)
    (row,) = rows(app)
    with app.app_context():
        db.session.execute(
            update(OperatorSession)
            .where(OperatorSession.id == row.id)
            .values(last_seen_at=utcnow() - timedelta(minutes=29))
        )
        db.session.commit()

    assert operator.get("/admin/").status_code == 200

    (touched,) = rows(app)
    assert utcnow() - touched.last_seen_at < timedelta(minutes=1)
