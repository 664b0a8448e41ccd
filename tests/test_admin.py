"""The operator console: login, guard, rate limit, idle timeout, orders, timeline, refunds,
webhook inbox and dashboard. Toss is faked with `responses`; orders are driven to PAID through
the real confirmation API."""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
import responses
from flask import Flask, url_for
from flask.testing import FlaskClient
from sqlalchemy import select, update
from werkzeug.security import generate_password_hash

import payments.admin.routes as admin_views
from payments.admin import queries as dashboard
from payments.checkout.settle import apply_payment
from payments.core.models import AuditEntry, Order, Refund, WebhookEvent
from payments.core.states import Source
from payments.extensions import db
from payments.shop.catalog import seed_catalog
from payments.toss import Payment as TossPayment
from tests.helpers import CONFIRM_URL, TOSS, csrf_token, dispose, get_order, make_app, payment_json

PASSWORD = "correct horse battery"
HASH = generate_password_hash(PASSWORD)
PUBLIC_ENDPOINTS = {"admin.login", "admin.login_submit"}


def admin_app(database_url: str, **overrides: Any) -> Flask:
    # The console's login limit is part of what these tests check: on unless a test says off.
    app = make_app(
        database_url, ADMIN_PASSWORD_HASH=HASH, **{"RATELIMIT_ENABLED": True, **overrides}
    )
    with app.app_context():
        seed_catalog()
    return app


@pytest.fixture
def app(database_url: str) -> Iterator[Flask]:
    """Overrides conftest's `app`: the same app with the console enabled."""
    app = admin_app(database_url)
    yield app
    dispose(app)


def login(client: FlaskClient, password: str = PASSWORD, **data: str) -> Any:
    return client.post("/admin/login", data={"password": password, **data})


@pytest.fixture
def operator(app: Flask) -> FlaskClient:
    """A logged-in operator's browser (separate from the shopper's `client`)."""
    c = app.test_client()
    assert login(c).status_code == 303
    return c


def pay(
    client: FlaskClient,
    toss: responses.RequestsMock,
    order: Order,
    key: str,
    **extra: Any,
) -> Any:
    """Confirm `order` through the API with Toss answering `payment_json(..., **extra)`."""
    toss.upsert(
        responses.POST, CONFIRM_URL, json=payment_json(order.order_id, order.amount, key, **extra)
    )
    return client.post(
        "/api/payment/confirm",
        json={"paymentKey": key, "orderId": order.order_id, "amount": order.amount},
    )


def refuse(
    client: FlaskClient, toss: responses.RequestsMock, order: Order, code: str, status: int
) -> Any:
    toss.upsert(responses.POST, CONFIRM_URL, status=status, json={"code": code, "message": "no"})
    return client.post(
        "/api/payment/confirm",
        json={
            "paymentKey": f"tpk_{code.lower()}",
            "orderId": order.order_id,
            "amount": order.amount,
        },
    )


def paid(
    client: FlaskClient,
    toss: responses.RequestsMock,
    order_factory: Callable[..., Order],
    key: str,
    cart: dict[str, int] | None = None,
    **extra: Any,
) -> Order:
    order = order_factory(cart)
    resp = pay(client, toss, order, key, **extra)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    return order


def cancel_answer(order: Order, key: str, cancel: int, balance: int) -> dict[str, Any]:
    """Toss's Payment after cancelling `cancel` won, leaving `balance`."""
    return payment_json(
        order.order_id,
        order.amount,
        key,
        status="CANCELED" if balance == 0 else "PARTIAL_CANCELED",
        balanceAmount=balance,
        lastTransactionKey=f"txkey_cancel_{balance}",
        cancels=[
            {
                "cancelAmount": cancel,
                "cancelReason": "고객 요청",
                "canceledAt": "2026-11-22T11:00:00+09:00",
                "transactionKey": f"txkey_cancel_{balance}",
                "cancelStatus": "DONE",
                "refundableAmount": balance,
            }
        ],
    )


def add_webhook(app: Flask, **fields: Any) -> int:
    with app.app_context():
        n = db.session.scalar(select(db.func.count(WebhookEvent.id))) or 0
        event = WebhookEvent(
            dedupe_key=f"test:{n}:{time.monotonic_ns()}",
            kind=fields.pop("kind", "PAYMENT_STATUS_CHANGED"),
            body=fields.pop("body", '{"eventType": "PAYMENT_STATUS_CHANGED", "data": {}}'),
            body_sha256="0" * 64,
            **fields,
        )
        db.session.add(event)
        db.session.commit()
        return event.id


def webhook(app: Flask, event_id: int) -> WebhookEvent:
    with app.app_context():
        event = db.session.get(WebhookEvent, event_id)
        assert event is not None
        db.session.expunge(event)
        return event


def order_ids(html: str) -> list[str]:
    return re.findall(r'<tr data-order-id="([^"]+)"', html)


def admin_rules(app: Flask) -> list[tuple[str, str]]:
    """Every (endpoint, method) of the console, from the URL map."""
    found = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint.startswith("admin."):
            for method in sorted((rule.methods or set()) & {"GET", "POST"}):
                found.append((rule.endpoint, method))
    return found


def build(app: Flask, endpoint: str, order_id: str, event_id: int) -> str:
    rule = next(r for r in app.url_map.iter_rules() if r.endpoint == endpoint)
    values = {"order_id": order_id, "event_id": event_id}
    with app.test_request_context():
        return url_for(endpoint, **{k: values[k] for k in rule.arguments})


# -- the guard ------------------------------------------------------------------------------


def test_every_admin_route_needs_login(
    app: Flask,
    client: FlaskClient,
    toss: responses.RequestsMock,
    order_factory: Callable[..., Order],
) -> None:
    order = paid(client, toss, order_factory, "tpk_guard_0001")
    event_id = add_webhook(app, status="FAILED", order_id=order.order_id, last_error="boom")
    calls_before = len(toss.calls)
    stranger = app.test_client()

    checked = set()
    for endpoint, method in admin_rules(app):
        if endpoint in PUBLIC_ENDPOINTS:
            continue
        url = build(app, endpoint, order.order_id, event_id)
        resp = stranger.open(url, method=method, data={"amount": "", "reason": "x"})
        assert resp.status_code in (302, 303, 401, 403), (endpoint, method, resp.status_code)
        if resp.status_code in (302, 303):
            assert resp.headers["Location"].startswith("/admin/login"), (endpoint, method)
        checked.add(endpoint)

    # The enumeration found the console's pages and actions, so a new route is covered too.
    assert {
        "admin.home",
        "admin.orders",
        "admin.order",
        "admin.refund",
        "admin.webhook_inbox",
        "admin.replay",
        "admin.replay_failed",
        "admin.logout",
    } <= checked
    # And none of the actions ran.
    assert webhook(app, event_id).status == "FAILED"
    assert len(toss.calls) == calls_before
    with app.app_context():
        assert db.session.scalar(select(db.func.count(Refund.id))) == 0
    # A GET remembers where the operator was going.
    resp = stranger.get("/admin/orders?status=PAID")
    assert resp.headers["Location"] == "/admin/login?next=/admin/orders?status%3DPAID"


def test_console_is_404_without_a_password_hash(database_url: str) -> None:
    app = make_app(database_url, ADMIN_PASSWORD_HASH="")
    try:
        c = app.test_client()
        # Even a session that claims to be an operator finds nothing.
        with c.session_transaction() as s:
            s.update(operator=True, operator_login_at=time.time(), operator_seen_at=time.time())
        rules = admin_rules(app)
        assert ("admin.login", "GET") in rules
        assert len(rules) >= 10
        for endpoint, method in rules:
            url = build(app, endpoint, "order-that-does-not-exist", 1)
            resp = c.open(url, method=method, data={"password": PASSWORD})
            assert resp.status_code == 404, (endpoint, method)
            assert "페이지를 찾을 수 없습니다" in resp.get_data(as_text=True)
    finally:
        dispose(app)


# -- login / logout -------------------------------------------------------------------------


def test_wrong_password_is_refused_and_logged_without_it(
    app: Flask, caplog: pytest.LogCaptureFixture
) -> None:
    c = app.test_client()
    typo = PASSWORD + "!"
    with caplog.at_level(logging.INFO):
        resp = login(c, typo)

    assert resp.status_code == 401
    page = resp.get_data(as_text=True)
    assert "비밀번호가 올바르지 않습니다" in page
    assert typo not in page
    with c.session_transaction() as s:
        assert "operator" not in s
    assert c.get("/admin/").status_code == 303
    security = [r for r in caplog.records if "security: admin login failed" in r.getMessage()]
    assert len(security) == 1
    assert security[0].levelno == logging.WARNING
    for record in caplog.records:
        assert typo not in record.getMessage()
        assert PASSWORD not in repr(record.__dict__)


def test_empty_password_is_refused(app: Flask) -> None:
    c = app.test_client()
    assert login(c, "").status_code == 401
    assert c.post("/admin/login", data={}).status_code == 401


def test_right_password_logs_in_and_sets_the_operator_session(
    app: Flask, client: FlaskClient, order_factory: Callable[..., Order]
) -> None:
    someone_elses = order_factory()
    c = app.test_client()
    assert c.get(f"/orders/{someone_elses.order_id}").status_code == 404

    before = int(time.time())
    resp = login(c, next="/admin/webhooks")

    assert resp.status_code == 303
    assert resp.headers["Location"] == "/admin/webhooks"
    with c.session_transaction() as s:
        assert s["operator"] is True
        assert s["operator_login_at"] >= before
        assert s["operator_seen_at"] >= before
    home = c.get("/admin/")
    assert home.status_code == 200
    assert home.headers["Cache-Control"] == "no-store"
    # The shopper-side pages trust the same session flag.
    assert c.get(f"/orders/{someone_elses.order_id}").status_code == 200
    # The login page itself sends a logged-in operator on.
    assert c.get("/admin/login").headers["Location"] == "/admin/"


@pytest.mark.parametrize("target", ["https://evil.example/admin", "//evil.example", "/cart"])
def test_login_never_redirects_outside_the_console(app: Flask, target: str) -> None:
    resp = login(app.test_client(), next=target)
    assert resp.status_code == 303
    assert resp.headers["Location"] == "/admin/"


def test_logout_ends_the_operator_session(
    app: Flask, operator: FlaskClient, order_factory: Callable[..., Order]
) -> None:
    order = order_factory()
    assert operator.get(f"/orders/{order.order_id}").status_code == 200

    resp = operator.post("/admin/logout")

    assert resp.status_code == 303
    assert resp.headers["Location"] == "/admin/login"
    assert "로그아웃되었습니다" in operator.get("/admin/login").get_data(as_text=True)
    with operator.session_transaction() as s:
        assert not {"operator", "operator_login_at", "operator_seen_at"} & set(s)
    assert operator.get("/admin/").status_code == 303
    assert operator.get(f"/orders/{order.order_id}").status_code == 404
    # Logging out needs a POST: a link or an image cannot log the operator out.
    assert operator.get("/admin/logout").status_code == 405


# -- CSRF -----------------------------------------------------------------------------------


def test_csrf_is_enforced_on_login_logout_refund_and_replay(
    database_url: str, toss: responses.RequestsMock, order_factory: Callable[..., Order]
) -> None:
    app = admin_app(database_url, WTF_CSRF_ENABLED=True)
    try:
        shopper, c = app.test_client(), app.test_client()
        order = paid(shopper, toss, order_factory, "tpk_csrf_0001")  # the JSON API is exempt
        event_id = add_webhook(app, status="FAILED", last_error="boom")

        # Login.
        assert login(c).status_code == 400
        with c.session_transaction() as s:
            assert "operator" not in s
        token = csrf_token(c.get("/admin/login").get_data(as_text=True))
        assert login(c, csrf_token=token).status_code == 303

        # Replay (the token is renewed at login: take it from a console page).
        page = c.get("/admin/webhooks").get_data(as_text=True)
        token = csrf_token(page)
        assert c.post(f"/admin/webhooks/{event_id}/replay").status_code == 400
        assert webhook(app, event_id).status == "FAILED"
        assert (
            c.post(f"/admin/webhooks/{event_id}/replay", data={"csrf_token": token}).status_code
            == 303
        )
        assert webhook(app, event_id).status == "PENDING"

        # Refund.
        key = "tpk_csrf_0001"
        toss.post(
            f"{TOSS}/v1/payments/{key}/cancel",
            json=cancel_answer(order, key, 1000, order.amount - 1000),
        )
        form = {"amount": "1000", "reason": "고객 요청"}
        assert c.post(f"/admin/orders/{order.order_id}/refunds", data=form).status_code == 400
        assert get_order(app, order.order_id).status == "PAID"
        resp = c.post(f"/admin/orders/{order.order_id}/refunds", data={**form, "csrf_token": token})
        assert resp.status_code == 303
        assert get_order(app, order.order_id).status == "PARTIALLY_REFUNDED"

        # Logout.
        assert c.post("/admin/logout").status_code == 400
        assert c.get("/admin/").status_code == 200
        assert c.post("/admin/logout", data={"csrf_token": token}).status_code == 303
        assert c.get("/admin/").status_code == 303
    finally:
        dispose(app)


# -- rate limit -----------------------------------------------------------------------------


def test_sixth_login_attempt_in_a_minute_is_429_in_korean(app: Flask) -> None:
    c = app.test_client()
    for _ in range(5):
        assert login(c, "wrong").status_code == 401

    resp = login(c, "wrong")
    assert resp.status_code == 429
    assert "로그인 시도가 너무 많습니다" in resp.get_data(as_text=True)
    # Even the right password waits: guessing cannot continue.
    assert login(c).status_code == 429
    with c.session_transaction() as s:
        assert "operator" not in s
    # The limit is per client address.
    resp = app.test_client().post(
        "/admin/login", data={"password": PASSWORD}, environ_base={"REMOTE_ADDR": "10.0.0.7"}
    )
    assert resp.status_code == 303


def test_rate_limit_can_be_switched_off(database_url: str) -> None:
    app = admin_app(database_url, RATELIMIT_ENABLED=False)
    try:
        c = app.test_client()
        statuses = {login(c, "wrong").status_code for _ in range(8)}
        assert statuses == {401}
        assert login(c).status_code == 303
    finally:
        dispose(app)


def test_rate_limit_survives_an_unreachable_redis(database_url: str) -> None:
    # Nothing listens on this port: the limiter falls back to memory instead of failing logins.
    app = admin_app(database_url, REDIS_URL="redis://127.0.0.1:1/0")
    try:
        c = app.test_client()
        assert [login(c, "wrong").status_code for _ in range(6)] == [401] * 5 + [429]
    finally:
        dispose(app)


# -- idle timeout ---------------------------------------------------------------------------


def test_idle_operator_is_logged_out(operator: FlaskClient) -> None:
    with operator.session_transaction() as s:
        s["operator_seen_at"] = int(time.time()) - 29 * 60
    assert operator.get("/admin/orders").status_code == 200
    with operator.session_transaction() as s:
        assert s["operator_seen_at"] >= int(time.time()) - 5  # activity renews the clock

    with operator.session_transaction() as s:
        s["operator_seen_at"] = int(time.time()) - 31 * 60
    resp = operator.get("/admin/orders")

    assert resp.status_code == 303
    assert resp.headers["Location"] == "/admin/login?next=/admin/orders"
    with operator.session_transaction() as s:
        assert "operator" not in s
    assert "오랫동안 사용하지 않아 로그아웃되었습니다" in operator.get(
        resp.headers["Location"]
    ).get_data(as_text=True)


def test_idle_operator_loses_access_to_shoppers_orders_too(
    app: Flask, operator: FlaskClient, place_order: Callable[..., str]
) -> None:
    order_id = place_order()  # the shopper's, not the operator's
    assert operator.get(f"/orders/{order_id}").status_code == 200
    with operator.session_transaction() as s:
        s["operator_seen_at"] = int(time.time()) - 31 * 60
    assert operator.get(f"/orders/{order_id}").status_code == 404


def test_idle_minutes_are_configurable(database_url: str) -> None:
    app = admin_app(database_url, ADMIN_IDLE_MINUTES=5)
    try:
        c = app.test_client()
        login(c)
        with c.session_transaction() as s:
            s["operator_seen_at"] = int(time.time()) - 6 * 60
        assert c.get("/admin/").status_code == 303
    finally:
        dispose(app)


def test_operator_session_has_a_maximum_age(operator: FlaskClient) -> None:
    with operator.session_transaction() as s:
        s["operator_login_at"] = int(time.time()) - 13 * 3600
    assert operator.get("/admin/").status_code == 303


# -- orders list ----------------------------------------------------------------------------


def set_created(app: Flask, order_id: str, at: datetime) -> None:
    with app.app_context():
        db.session.execute(update(Order).where(Order.order_id == order_id).values(created_at=at))
        db.session.commit()


def test_order_list_filters_and_totals(
    app: Flask,
    client: FlaskClient,
    operator: FlaskClient,
    toss: responses.RequestsMock,
    order_factory: Callable[..., Order],
    products: list[Any],
) -> None:
    cart1 = {str(products[0].id): 1}
    cart2 = {str(products[1].id): 2}
    a = paid(client, toss, order_factory, "tpk_list_aaaa", cart1)
    b = paid(client, toss, order_factory, "tpk_list_bbbb", cart2)
    pending = order_factory(cart1)
    failed = order_factory(cart2)
    assert refuse(client, toss, failed, "EXCEED_MAX_AMOUNT", 400).status_code == 400
    # 2026-03-01 23:30 KST and 2026-03-02 00:10 KST: one minute apart in UTC terms of days.
    set_created(app, a.order_id, datetime(2026, 3, 1, 14, 30, tzinfo=UTC))
    set_created(app, b.order_id, datetime(2026, 3, 1, 15, 10, tzinfo=UTC))

    page = operator.get("/admin/orders").get_data(as_text=True)
    assert set(order_ids(page)) == {a.order_id, b.order_id, pending.order_id, failed.order_id}
    assert 'data-testid="total-count">4건' in page
    total = a.amount + b.amount + pending.amount + failed.amount
    assert f'data-testid="total-amount">{total:,}원' in page
    assert 'data-testid="total-refunded">0원' in page

    def ids(query: str) -> list[str]:
        resp = operator.get(f"/admin/orders?{query}")
        assert resp.status_code == 200, query
        return order_ids(resp.get_data(as_text=True))

    assert set(ids("status=PAID")) == {a.order_id, b.order_id}
    assert ids("status=FAILED") == [failed.order_id]
    assert ids("status=REFUNDED") == []
    assert ids("from=2026-03-01&to=2026-03-01") == [a.order_id]
    assert ids("from=2026-03-02&to=2026-03-02") == [b.order_id]
    assert set(ids("from=2026-03-01&to=2026-03-02")) == {a.order_id, b.order_id}
    assert a.order_id not in ids("from=2026-03-02")
    assert b.order_id not in ids("to=2026-03-01")
    assert ids(f"q={a.order_id}") == [a.order_id]
    assert ids(f"q={b.order_id[:10]}") == [b.order_id]
    assert ids("q=tpk_list_bbbb") == [b.order_id]
    assert ids("q=tpk_list") == []  # paymentKeys match exactly, never by prefix
    assert ids("q=100%25") == []  # LIKE wildcards are escaped
    name = products[1].name
    assert set(ids(f"q={name}")) == {b.order_id, failed.order_id}
    assert ids(f"status=PAID&q={name}&from=2026-03-02") == [b.order_id]
    # Totals follow the filter.
    paid_page = operator.get("/admin/orders?status=PAID").get_data(as_text=True)
    assert 'data-testid="total-count">2건' in paid_page
    assert f'data-testid="total-amount">{a.amount + b.amount:,}원' in paid_page


def test_order_list_totals_include_refunds(
    app: Flask,
    client: FlaskClient,
    operator: FlaskClient,
    toss: responses.RequestsMock,
    order_factory: Callable[..., Order],
) -> None:
    order = paid(client, toss, order_factory, "tpk_tot_0001")
    toss.post(
        f"{TOSS}/v1/payments/tpk_tot_0001/cancel",
        json=cancel_answer(order, "tpk_tot_0001", 700, order.amount - 700),
    )
    form = {"amount": "700", "reason": "부분 환불"}
    assert operator.post(f"/admin/orders/{order.order_id}/refunds", data=form).status_code == 303

    page = operator.get("/admin/orders").get_data(as_text=True)
    assert 'data-testid="total-refunded">700원' in page
    page = operator.get("/admin/orders?status=PAID").get_data(as_text=True)
    assert 'data-testid="total-refunded">0원' in page


def test_order_list_pages_by_50(
    app: Flask, operator: FlaskClient, order_factory: Callable[..., Order]
) -> None:
    made = [order_factory().order_id for _ in range(53)]
    with app.app_context():
        # Distinct creation times so "newest first" is well defined.
        for i, order_id in enumerate(made):
            db.session.execute(
                update(Order)
                .where(Order.order_id == order_id)
                .values(created_at=datetime(2026, 5, 1, tzinfo=UTC) + timedelta(minutes=i))
            )
        db.session.commit()

    first = operator.get("/admin/orders").get_data(as_text=True)
    second = operator.get("/admin/orders?page=2").get_data(as_text=True)
    beyond = operator.get("/admin/orders?page=3")

    assert order_ids(first) == list(reversed(made))[:50]
    assert order_ids(second) == list(reversed(made))[50:]
    assert "1 / 2 페이지" in first
    assert "2 / 2 페이지" in second
    assert 'href="/admin/orders?page=2"' in first
    assert 'data-testid="total-count">53건' in first
    assert 'data-testid="total-count">53건' in second
    assert beyond.status_code == 200
    assert order_ids(beyond.get_data(as_text=True)) == []


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("status=NOPE", "알 수 없는 주문 상태입니다"),
        ("status=paid", "알 수 없는 주문 상태입니다"),
        ("from=2026-02-30", "YYYY-MM-DD"),
        ("from=2026-2-3", "YYYY-MM-DD"),
        ("to=20260301", "YYYY-MM-DD"),
        ("to=yesterday", "YYYY-MM-DD"),
        ("from=9999-12-31", "범위를 벗어났습니다"),
        ("from=2026-03-02&to=2026-03-01", "시작 날짜가 종료 날짜보다 늦습니다"),
        ("page=0", "페이지 번호"),
        ("page=-1", "페이지 번호"),
        ("page=abc", "페이지 번호"),
        ("page=99999999999999999999", "페이지 번호"),
        ("q=" + "x" * 201, "검색어는 200자 이내"),
    ],
)
def test_bad_order_filters_are_400_with_a_message(
    operator: FlaskClient, query: str, message: str
) -> None:
    resp = operator.get(f"/admin/orders?{query}")
    assert resp.status_code == 400
    page = resp.get_data(as_text=True)
    assert message in page
    assert 'data-testid="filter-error"' in page
    assert 'name="status"' in page  # the form is there to fix the filter


@pytest.mark.parametrize("query", ["status=BAD", "page=0", "status=done"])
def test_bad_webhook_filters_are_400(operator: FlaskClient, query: str) -> None:
    resp = operator.get(f"/admin/webhooks?{query}")
    assert resp.status_code == 400
    assert 'data-testid="filter-error"' in resp.get_data(as_text=True)


# -- order detail ---------------------------------------------------------------------------


def test_detail_shows_payment_and_a_merged_timeline(
    app: Flask,
    client: FlaskClient,
    operator: FlaskClient,
    toss: responses.RequestsMock,
    order_factory: Callable[..., Order],
) -> None:
    order = order_factory()
    # A refused card first (back to PENDING with a code), then a successful payment.
    assert refuse(client, toss, order, "REJECT_CARD_PAYMENT", 403).status_code == 403
    assert pay(client, toss, order, "tpk_detail_0001").status_code == 200
    other = order_factory()
    with app.app_context():
        stamps = db.session.scalars(
            select(AuditEntry.created_at)
            .join(Order)
            .where(Order.order_id == order.order_id)
            .order_by(AuditEntry.id)
        ).all()
    assert len(stamps) == 5  # created, →CONFIRMING, →PENDING, →CONFIRMING, →PAID
    between = stamps[2] + (stamps[3] - stamps[2]) / 2
    early = add_webhook(
        app,
        order_id=order.order_id,
        status="DONE",
        attempts=1,
        result="Toss ABORTED: PENDING → PENDING",
        received_at=between,
    )
    late = add_webhook(
        app,
        order_id=order.order_id,
        status="FAILED",
        attempts=6,
        last_error="TossError: FAILED_INTERNAL_SYSTEM_PROCESSING",
        received_at=datetime(2030, 1, 1, 0, 0, 5, tzinfo=UTC),
    )
    stranger = add_webhook(app, order_id=other.order_id, status="DONE", result="other order")

    resp = operator.get(f"/admin/orders/{order.order_id}")

    assert resp.status_code == 200
    page = resp.get_data(as_text=True)
    # Payment block.
    assert 'data-testid="payment-key">tpk_detail_0001' in page
    assert "43301234****123*" in page
    assert 'href="https://dashboard.tosspayments.com/receipt/sample"' in page
    assert f'data-testid="balance">{order.amount:,}원' in page
    # Timeline: every audit row and both webhooks of this order, in time order.
    items = re.findall(
        r'<li class="tl tl-(audit|webhook)"[^>]*?(?:data-webhook-id="(\d+)")?>', page
    )
    kinds = [k for k, _ in items]
    assert kinds == ["audit", "audit", "audit", "webhook", "audit", "audit", "webhook"]
    assert [int(i) for k, i in items if k == "webhook"] == [early, late]
    assert f'data-webhook-id="{stranger}"' not in page
    assert "결제 대기 → <strong>결제 확인 중</strong>" in page
    assert "CONFIRMING → PAID" in page
    assert "<code>REJECT_CARD_PAYMENT</code>" in page
    assert "txkey_0001" in page  # Toss transaction key of the PAID transition
    assert "TossError: FAILED_INTERNAL_SYSTEM_PROCESSING" in page
    assert "Toss ABORTED: PENDING → PENDING" in page
    assert "시도 6회" in page
    assert "2030-01-01 09:00:05" in page  # received time in KST
    # Sources are shown.
    assert "주문 생성" in page
    assert ">API<" in page


def test_detail_of_unknown_order_is_404(operator: FlaskClient) -> None:
    assert operator.get("/admin/orders/no-such-order-123").status_code == 404
    assert operator.get("/admin/orders/%3Cscript%3E").status_code == 404


def virtual_account(**extra: Any) -> dict[str, Any]:
    return {
        "method": "가상계좌",
        "card": None,
        "virtualAccount": {
            "accountNumber": "X6150001234567",
            "bankCode": "20",
            "customerName": "김토스",
            "dueDate": "2026-11-25T23:59:59+09:00",
            "refundStatus": "NONE",
            "expired": False,
        },
        "secret": "va-secret-0001",
        **extra,
    }


def test_virtual_account_detail_and_refund_to_an_account(
    app: Flask,
    client: FlaskClient,
    operator: FlaskClient,
    toss: responses.RequestsMock,
    order_factory: Callable[..., Order],
) -> None:
    key = "tpk_va_0001"
    order = order_factory()
    resp = pay(client, toss, order, key, status="WAITING_FOR_DEPOSIT", **virtual_account())
    assert resp.status_code == 200
    page = operator.get(f"/admin/orders/{order.order_id}").get_data(as_text=True)
    assert "우리은행" in page
    assert "X6150001234567" in page
    assert "김토스" in page
    assert "2026년 11월 25일 23:59" in page
    assert 'data-testid="refund-form"' not in page  # nothing deposited yet

    # The buyer deposits (as the webhook worker would apply it).
    with app.app_context():
        row = db.session.scalar(select(Order).where(Order.order_id == order.order_id))
        done = payment_json(order.order_id, order.amount, key, **virtual_account())
        apply_payment(row, TossPayment.from_dict(done), Source.WEBHOOK)
        db.session.commit()
    page = operator.get(f"/admin/orders/{order.order_id}").get_data(as_text=True)
    assert 'data-testid="refund-form"' in page
    assert 'data-testid="refund-account"' in page
    assert '<option value="88" >신한은행</option>' in page
    assert 'name="account_number"' in page
    assert 'name="holder_name"' in page

    cancel = toss.post(
        f"{TOSS}/v1/payments/{key}/cancel",
        json=cancel_answer(order, key, order.amount, 0) | virtual_account(status="CANCELED"),
    )
    resp = operator.post(
        f"/admin/orders/{order.order_id}/refunds",
        data={
            "amount": "",
            "reason": "주문 취소",
            "bank": "88",
            "account_number": "110123456789",
            "holder_name": "김토스",
        },
    )
    assert resp.status_code == 303, resp.get_data(as_text=True)
    body = json.loads(cancel.calls[0].request.body)
    assert body["refundReceiveAccount"] == {
        "bank": "88",
        "accountNumber": "110123456789",
        "holderName": "김토스",
    }
    assert get_order(app, order.order_id).status == "REFUNDED"
    page = operator.get(f"/admin/orders/{order.order_id}").get_data(as_text=True)
    assert "신한은행 ********6789 김토스" in page


def test_card_payment_refund_form_has_no_account_fields(
    client: FlaskClient,
    operator: FlaskClient,
    toss: responses.RequestsMock,
    order_factory: Callable[..., Order],
) -> None:
    order = paid(client, toss, order_factory, "tpk_card_0001")
    page = operator.get(f"/admin/orders/{order.order_id}").get_data(as_text=True)
    assert 'data-testid="refund-form"' in page
    assert 'data-testid="refund-account"' not in page
    assert 'name="account_number"' not in page


# -- refunds --------------------------------------------------------------------------------


def test_a_double_clicked_refund_form_refunds_once(
    app: Flask,
    client: FlaskClient,
    operator: FlaskClient,
    toss: responses.RequestsMock,
    order_factory: Callable[..., Order],
) -> None:
    key = "tpk_double_0001"
    order = paid(client, toss, order_factory, key)
    cancel = toss.post(
        f"{TOSS}/v1/payments/{key}/cancel",
        json=cancel_answer(order, key, 1000, order.amount - 1000),
    )
    page = operator.get(f"/admin/orders/{order.order_id}").get_data(as_text=True)
    token = re.search(r'name="refund_token" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
    form = {"amount": "1000", "reason": "고객 요청", "refund_token": token}

    first = operator.post(f"/admin/orders/{order.order_id}/refunds", data=form)
    second = operator.post(f"/admin/orders/{order.order_id}/refunds", data=form)

    assert first.status_code == second.status_code == 303
    assert cancel.call_count == 1
    with app.app_context():
        assert db.session.scalar(db.select(db.func.count()).select_from(Refund)) == 1
    fresh = operator.get(f"/admin/orders/{order.order_id}").get_data(as_text=True)
    assert f'value="{token}"' not in fresh  # each rendered form gets a new key


def test_full_refund_through_the_form(
    app: Flask,
    client: FlaskClient,
    operator: FlaskClient,
    toss: responses.RequestsMock,
    order_factory: Callable[..., Order],
) -> None:
    key = "tpk_full_0001"
    order = paid(client, toss, order_factory, key)
    cancel = toss.post(
        f"{TOSS}/v1/payments/{key}/cancel", json=cancel_answer(order, key, order.amount, 0)
    )

    resp = operator.post(
        f"/admin/orders/{order.order_id}/refunds", data={"amount": "", "reason": "고객 요청"}
    )

    assert resp.status_code == 303
    assert resp.headers["Location"] == f"/admin/orders/{order.order_id}"
    body = json.loads(cancel.calls[0].request.body)
    assert body["cancelReason"] == "고객 요청"
    assert "cancelAmount" not in body  # the whole remaining balance
    assert body["refundableAmount"] == order.amount
    assert get_order(app, order.order_id).status == "REFUNDED"
    page = operator.get(resp.headers["Location"]).get_data(as_text=True)
    assert f"환불되었습니다: {order.amount:,}원" in page
    assert 'data-refund-status="DONE"' in page
    assert "(전액)" in page
    assert ">admin<" in page
    assert 'data-testid="balance">0원' in page
    assert 'data-testid="refund-form"' not in page  # nothing left to refund
    assert "환불 요청" in page  # the service's audit row is on the timeline


def test_partial_refunds_through_the_form(
    app: Flask,
    client: FlaskClient,
    operator: FlaskClient,
    toss: responses.RequestsMock,
    order_factory: Callable[..., Order],
) -> None:
    key = "tpk_part_0001"
    order = paid(client, toss, order_factory, key)
    url = f"{TOSS}/v1/payments/{key}/cancel"
    toss.upsert(responses.POST, url, json=cancel_answer(order, key, 3000, order.amount - 3000))

    resp = operator.post(
        f"/admin/orders/{order.order_id}/refunds", data={"amount": "3,000", "reason": "일부 반품"}
    )

    assert resp.status_code == 303
    assert get_order(app, order.order_id).status == "PARTIALLY_REFUNDED"
    page = operator.get(resp.headers["Location"]).get_data(as_text=True)
    assert "환불되었습니다: 3,000원" in page
    assert f'data-testid="balance">{order.amount - 3000:,}원' in page
    assert 'data-testid="refunded">3,000원' in page
    assert 'data-testid="refund-form"' in page  # the rest can still be refunded
    body = json.loads(toss.calls[-1].request.body)
    assert (body["cancelAmount"], body["refundableAmount"]) == (3000, order.amount)


def test_over_refund_is_refused_with_the_message(
    app: Flask,
    client: FlaskClient,
    operator: FlaskClient,
    toss: responses.RequestsMock,
    order_factory: Callable[..., Order],
) -> None:
    order = paid(client, toss, order_factory, "tpk_over_0001")
    calls = len(toss.calls)

    resp = operator.post(
        f"/admin/orders/{order.order_id}/refunds",
        data={"amount": str(order.amount + 1), "reason": "실수"},
    )

    assert resp.status_code == 400
    page = resp.get_data(as_text=True)
    assert f"환불 가능 금액({order.amount:,}원)을 초과했습니다" in page
    assert 'data-code="REFUND_EXCEEDS_BALANCE"' in page
    assert f'value="{order.amount + 1}"' in page
    assert 'value="실수"' in page
    assert len(toss.calls) == calls
    assert get_order(app, order.order_id).status == "PAID"


@pytest.mark.parametrize(
    ("form", "message"),
    [
        ({"amount": "", "reason": ""}, "환불 사유를 입력해주세요"),
        ({"amount": "", "reason": "x" * 201}, "200자 이내"),
        ({"amount": "-5", "reason": "x"}, "1원 이상의 정수"),
        ({"amount": "1.5", "reason": "x"}, "1원 이상의 정수"),
    ],
)
def test_bad_refund_form_is_400_with_the_message(
    client: FlaskClient,
    operator: FlaskClient,
    toss: responses.RequestsMock,
    order_factory: Callable[..., Order],
    form: dict[str, str],
    message: str,
) -> None:
    order = paid(client, toss, order_factory, "tpk_badform_01")
    resp = operator.post(f"/admin/orders/{order.order_id}/refunds", data=form)
    assert resp.status_code == 400
    assert message in resp.get_data(as_text=True)


def test_refund_refused_by_toss_is_shown(
    app: Flask,
    client: FlaskClient,
    operator: FlaskClient,
    toss: responses.RequestsMock,
    order_factory: Callable[..., Order],
) -> None:
    key = "tpk_refused_01"
    order = paid(client, toss, order_factory, key)
    toss.post(
        f"{TOSS}/v1/payments/{key}/cancel",
        status=403,
        json={"code": "NOT_CANCELABLE_PAYMENT", "message": "취소 할 수 없는 결제 입니다."},
    )

    resp = operator.post(
        f"/admin/orders/{order.order_id}/refunds", data={"amount": "1000", "reason": "테스트"}
    )

    assert resp.status_code == 409
    page = resp.get_data(as_text=True)
    assert 'data-testid="refund-error" data-code="NOT_CANCELABLE_PAYMENT"' in page
    assert 'data-refund-status="FAILED"' in page
    assert get_order(app, order.order_id).status == "PAID"


def test_refund_with_unknown_outcome_says_it_is_being_confirmed(
    app: Flask,
    client: FlaskClient,
    operator: FlaskClient,
    toss: responses.RequestsMock,
    order_factory: Callable[..., Order],
) -> None:
    key = "tpk_timeout_01"
    order = paid(client, toss, order_factory, key)
    toss.post(f"{TOSS}/v1/payments/{key}/cancel", body=requests.exceptions.ReadTimeout("slow"))

    resp = operator.post(
        f"/admin/orders/{order.order_id}/refunds", data={"amount": "", "reason": "테스트"}
    )

    assert resp.status_code == 202
    page = resp.get_data(as_text=True)
    assert 'data-testid="refund-pending"' in page
    assert "결과를 확인하고 있습니다" in page
    assert 'data-refund-status="PENDING"' in page


def test_no_refund_form_for_unpaid_orders(
    operator: FlaskClient, order_factory: Callable[..., Order]
) -> None:
    order = order_factory()
    page = operator.get(f"/admin/orders/{order.order_id}").get_data(as_text=True)
    assert 'data-testid="refund-form"' not in page
    resp = operator.post(
        f"/admin/orders/{order.order_id}/refunds", data={"amount": "", "reason": "x"}
    )
    assert resp.status_code == 409
    assert 'data-code="REFUND_NOT_ALLOWED"' in resp.get_data(as_text=True)


def test_refund_of_unknown_order_is_404(operator: FlaskClient) -> None:
    resp = operator.post("/admin/orders/no-such-order-1/refunds", data={"reason": "x"})
    assert resp.status_code == 404


# -- webhook inbox --------------------------------------------------------------------------


def test_webhook_inbox_lists_newest_first_and_filters(
    app: Flask, operator: FlaskClient, order_factory: Callable[..., Order]
) -> None:
    order = order_factory()
    base = datetime(2026, 11, 22, 1, 0, tzinfo=UTC)
    old = add_webhook(app, status="DONE", result="ok", received_at=base)
    new = add_webhook(
        app,
        status="FAILED",
        order_id=order.order_id,
        last_error="TossError: boom",
        attempts=6,
        received_at=base + timedelta(minutes=5),
    )

    page = operator.get("/admin/webhooks").get_data(as_text=True)
    rows = re.findall(r'<tr data-webhook-id="(\d+)" data-status="(\w+)">', page)
    assert rows == [(str(new), "FAILED"), (str(old), "DONE")]
    assert f'href="/admin/orders/{order.order_id}"' in page
    assert "TossError: boom" in page
    assert "2026-11-22 10:05:00" in page
    assert "실패한 웹훅 모두 다시 처리 (1건)" in page

    failed = operator.get("/admin/webhooks?status=FAILED").get_data(as_text=True)
    assert re.findall(r'<tr data-webhook-id="(\d+)"', failed) == [str(new)]


def test_replay_button_requeues_a_failed_event(app: Flask, operator: FlaskClient) -> None:
    event_id = add_webhook(app, status="FAILED", attempts=6, last_error="boom")
    done = add_webhook(app, status="DONE", attempts=1, result="ok")

    resp = operator.post(f"/admin/webhooks/{event_id}/replay", data={"status": "FAILED"})

    assert resp.status_code == 303
    assert resp.headers["Location"] == "/admin/webhooks?status=FAILED"
    event = webhook(app, event_id)
    assert (event.status, event.attempts) == ("PENDING", 0)
    assert webhook(app, done).status == "DONE"
    page = operator.get(resp.headers["Location"]).get_data(as_text=True)
    assert f"웹훅 #{event_id}을(를) 다시 처리하도록 대기열에 넣었습니다" in page


def test_replay_of_a_pruned_event_explains_why_not(app: Flask, operator: FlaskClient) -> None:
    event_id = add_webhook(app, status="DONE", body=None)
    resp = operator.post(f"/admin/webhooks/{event_id}/replay")
    assert resp.status_code == 303
    assert webhook(app, event_id).status == "DONE"
    assert "지금 다시 처리할 수 없습니다" in operator.get("/admin/webhooks").get_data(as_text=True)


def test_replay_all_failed(app: Flask, operator: FlaskClient) -> None:
    failed = [add_webhook(app, status="FAILED", attempts=6) for _ in range(3)]
    ignored = add_webhook(app, status="IGNORED")

    resp = operator.post("/admin/webhooks/replay-failed")

    assert resp.status_code == 303
    assert [webhook(app, i).status for i in failed] == ["PENDING"] * 3
    assert webhook(app, ignored).status == "IGNORED"
    page = operator.get("/admin/webhooks").get_data(as_text=True)
    assert "실패한 웹훅 3건을 다시 처리하도록 대기열에 넣었습니다" in page


# -- dashboard ------------------------------------------------------------------------------

NOW = datetime(2026, 11, 22, 3, 30, tzinfo=UTC)  # 12:30 in Korea
TODAY_10 = datetime(2026, 11, 22, 1, 5, tzinfo=UTC)  # 10:05 KST
TODAY_11 = datetime(2026, 11, 22, 2, 40, tzinfo=UTC)  # 11:40 KST
YESTERDAY_20 = datetime(2026, 11, 21, 11, 10, tzinfo=UTC)  # 20:10 KST the day before


def move_audit(app: Flask, order_id: str, at: datetime) -> None:
    with app.app_context():
        pk = db.session.scalar(select(Order.id).where(Order.order_id == order_id))
        db.session.execute(
            update(AuditEntry).where(AuditEntry.order_pk == pk).values(created_at=at)
        )
        db.session.commit()


@pytest.fixture
def day(
    app: Flask,
    client: FlaskClient,
    operator: FlaskClient,
    toss: responses.RequestsMock,
    order_factory: Callable[..., Order],
    products: list[Any],
) -> dict[str, Order]:
    """A day of confirmations: paid, paid yesterday evening, refused, failed, tampered."""
    cart = {str(products[2].id): 1}
    a = paid(client, toss, order_factory, "tpk_day_aaaa", cart)
    b = paid(client, toss, order_factory, "tpk_day_bbbb")
    refused, failed, tampered, stuck = (order_factory() for _ in range(4))
    assert refuse(client, toss, refused, "REJECT_CARD_PAYMENT", 403).status_code == 403
    assert refuse(client, toss, failed, "EXCEED_MAX_AMOUNT", 400).status_code == 400
    resp = client.post(
        "/api/payment/confirm",
        json={"paymentKey": "tpk_tamper", "orderId": tampered.order_id, "amount": 1},
    )
    assert resp.status_code == 400
    toss.post(
        f"{TOSS}/v1/payments/tpk_day_aaaa/cancel",
        json=cancel_answer(a, "tpk_day_aaaa", 1000, a.amount - 1000),
    )
    form = {"amount": "1000", "reason": "부분 환불"}
    assert operator.post(f"/admin/orders/{a.order_id}/refunds", data=form).status_code == 303
    add_webhook(app, status="FAILED")
    add_webhook(app, status="DONE")
    add_webhook(app, status="DONE")
    with app.app_context():
        db.session.execute(
            update(Order).where(Order.order_id == stuck.order_id).values(status="NEEDS_RECONCILE")
        )
        db.session.execute(update(Refund).values(completed_at=TODAY_11))
        db.session.commit()
    for order in (a, refused, tampered):
        move_audit(app, order.order_id, TODAY_10)
    move_audit(app, failed.order_id, TODAY_11)
    move_audit(app, b.order_id, YESTERDAY_20)
    return {"a": a, "b": b}


def test_dashboard_numbers_for_a_pinned_now(app: Flask, day: dict[str, Order]) -> None:
    with app.app_context():
        d = dashboard.dashboard(NOW)

    assert d.day_start == datetime(2026, 11, 21, 15, 0, tzinfo=UTC)
    assert (d.confirmed, d.failed) == (1, 2)
    assert d.success_rate == pytest.approx(1 / 3)
    assert {(c.code, c.count) for c in d.failures_by_code} == {
        ("REJECT_CARD_PAYMENT", 1),
        ("EXCEED_MAX_AMOUNT", 1),
        ("AMOUNT_MISMATCH", 1),
    }
    assert (d.paid_count, d.paid_amount) == (1, day["a"].amount)
    assert (d.refund_count, d.refunded_amount) == (1, 1000)
    assert (d.needs_reconcile, d.refunds_pending) == (1, 0)
    assert d.webhooks == {
        "PENDING": 0,
        "PROCESSING": 0,
        "DONE": 2,
        "IGNORED": 0,
        "REJECTED": 0,
        "FAILED": 1,
    }
    assert len(d.hours) == 24
    assert d.hours[0].start == datetime(2026, 11, 21, 4, 0, tzinfo=UTC)
    busy = {h.start: (h.success, h.failure) for h in d.hours if h.success or h.failure}
    assert busy == {
        datetime(2026, 11, 21, 11, tzinfo=UTC): (1, 0),
        datetime(2026, 11, 22, 1, tzinfo=UTC): (1, 1),
        datetime(2026, 11, 22, 2, tzinfo=UTC): (0, 1),
    }

    # A minute after midnight in Korea, yesterday's numbers are gone but the chart keeps them.
    with app.app_context():
        later = dashboard.dashboard(datetime(2026, 11, 22, 15, 1, tzinfo=UTC))
    assert (later.confirmed, later.failed, later.paid_amount) == (0, 0, 0)
    assert later.success_rate is None
    assert sum(h.success + h.failure for h in later.hours) == 3


def test_dashboard_page_renders_the_figures_and_the_svg(
    monkeypatch: pytest.MonkeyPatch, operator: FlaskClient, day: dict[str, Order]
) -> None:
    monkeypatch.setattr(admin_views, "utcnow", lambda: NOW)

    resp = operator.get("/admin/")

    assert resp.status_code == 200
    page = resp.get_data(as_text=True)
    assert "33.3%" in page
    assert 'data-testid="confirmed">1<' in page
    assert 'data-testid="failed">2<' in page
    assert f'data-testid="paid-amount">{day["a"].amount:,}원' in page
    assert 'data-testid="refunded-amount">1,000원' in page
    assert "<code>AMOUNT_MISMATCH</code>" in page
    assert 'data-status-count="FAILED">1<' in page
    svg = re.search(r'<svg class="chart".*?</svg>', page, re.S)
    assert svg is not None
    bars = re.findall(r'<rect class="bar bar-(ok|fail)"[^>]* height="([\d.]+)"', svg.group(0))
    assert len(bars) == 48
    peak = max(float(h) for _, h in bars)
    assert peak > 100  # the hourly peak (1) fills the plot; every other hour is empty
    assert sorted(kind for kind, h in bars if float(h) == peak) == ["fail", "fail", "ok", "ok"]
    assert all(float(h) in (0.0, peak) for _, h in bars)
    assert "style=" not in page  # no inline styles (a strict CSP is coming)
    assert "<script" not in page


def test_dashboard_with_no_activity(operator: FlaskClient) -> None:
    page = operator.get("/admin/").get_data(as_text=True)
    assert '<svg class="chart"' in page
    assert "오늘 실패한 결제 승인이 없습니다" in page
    with operator.application.app_context():
        d = dashboard.dashboard(datetime.now(UTC))
    assert d.success_rate is None
    assert d.attempts == 0


def test_dashboard_needs_an_aware_now(app: Flask) -> None:
    with app.app_context(), pytest.raises(ValueError, match="timezone-aware"):
        dashboard.dashboard(datetime(2026, 11, 22, 3, 30))


def test_confirm_outcome_classification() -> None:
    outcome = dashboard.confirm_outcome
    assert outcome("transition", "CONFIRMING", "PAID", None) == "success"
    assert outcome("transition", "NEEDS_RECONCILE", "AWAITING_DEPOSIT", None) == "success"
    assert outcome("transition", "CONFIRMING", "FAILED", "X") == "failure"
    assert outcome("transition", "CONFIRMING", "PENDING", "REJECT_CARD_PAYMENT") == "failure"
    assert outcome("transition", "CONFIRMING", "PENDING", None) is None
    assert outcome("transition", "CONFIRMING", "NEEDS_RECONCILE", "TIMEOUT") is None
    assert outcome("transition", "AWAITING_DEPOSIT", "PAID", None) is None
    assert outcome("amount_mismatch", "PENDING", "PENDING", "AMOUNT_MISMATCH") is None


# -- bad input from an operator ------------------------------------------------------------------


@pytest.mark.parametrize(
    "target",
    ["/admin/orders\r\nSet-Cookie: x=1", "/admin/\nLocation: https://evil.example", "/admin/\x00"],
)
def test_login_next_with_control_characters_goes_home(app: Flask, target: str) -> None:
    """CR/LF in `next` would split the Location header (werkzeug refuses with a 500)."""
    resp = login(app.test_client(), next=target)
    assert resp.status_code in (303, 400)
    if resp.status_code == 303:
        assert resp.headers["Location"] == "/admin/"
    page = app.test_client().get("/admin/login", query_string={"next": "/admin/\r\nX: y"})
    assert page.status_code == 200
    assert "X: y" not in page.get_data(as_text=True)


@pytest.mark.parametrize("q", ["\x00", "abc\x00def", "\x00" * 50])
def test_order_search_with_a_nul_is_400_with_a_message(operator: FlaskClient, q: str) -> None:
    """PostgreSQL refuses NUL in text: the search is refused before it reaches the database."""
    resp = operator.get("/admin/orders", query_string={"q": q})
    assert resp.status_code == 400
    page = resp.get_data(as_text=True)
    assert "INVALID_REQUEST" in page
    assert "사용할 수 없는 문자" in page


@pytest.mark.parametrize("event_id", [2**31, 2**32 + 1, 2**63, 10**30])
def test_replay_of_an_id_beyond_32_bits_is_404(
    app: Flask, operator: FlaskClient, event_id: int
) -> None:
    failed = add_webhook(app, status="FAILED", attempts=6)
    resp = operator.post(f"/admin/webhooks/{event_id}/replay")
    assert resp.status_code == 404
    assert "찾을 수 없습니다" in resp.get_data(as_text=True)
    assert webhook(app, failed).status == "FAILED"
    # The largest 32-bit id is still a route (no such event: nothing to replay).
    assert operator.post(f"/admin/webhooks/{2**31 - 1}/replay").status_code == 303
