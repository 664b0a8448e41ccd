"""Logs carry no secrets: keys, Authorization, card and account numbers, webhook secrets,
paymentKeys in URLs — checked on what the app's own handler writes during real work."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
import responses
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from payments.admin.refunds import request_refund
from payments.extensions import db
from payments.ops.logs import _PATTERNS, RedactingFilter, configure_logging, redact
from payments.sandbox.db import db as sandbox_db
from payments.toss import RefundAccount
from payments.webhooks.worker import run_once
from tests.helpers import (
    CONFIRM_URL,
    SECRET_KEY,
    TOSS,
    dispose,
    fixture,
    get_order,
    make_app,
    payment_json,
    sandbox_app,
    success_url,
)

PK = "tviva20261122secretKey0001"
ACCOUNT = "110123456789"
CARD = "4330123412341234"
DEPOSIT_SECRET = "ps_depositSecretValue42"


@pytest.fixture
def captured(app: Flask) -> Iterator[io.StringIO]:
    stream = io.StringIO()
    handler = configure_logging(app, stream)
    logging.getLogger().setLevel(logging.DEBUG)  # urllib3 logs URLs at DEBUG
    yield stream
    logging.getLogger().removeHandler(handler)
    logging.getLogger().setLevel(logging.INFO)


def test_a_checkout_a_webhook_and_a_refund_leak_nothing(
    app: Flask,
    client: FlaskClient,
    toss: responses.RequestsMock,
    place_order: Callable[..., str],
    captured: io.StringIO,
) -> None:
    order_id = place_order()
    amount = get_order(app, order_id).amount
    va = {
        "method": "가상계좌",
        "card": {"number": CARD},
        "secret": DEPOSIT_SECRET,
        "virtualAccount": {"accountNumber": ACCOUNT, "bankCode": "88", "customerName": "김토스"},
    }
    toss.post(CONFIRM_URL, json=payment_json(order_id, amount, PK, **va))
    client.get(success_url(order_id, PK, amount))
    client.get(f"/api/payment/{PK}")
    toss.get(f"{TOSS}/v1/payments/{PK}", json=payment_json(order_id, amount, PK, **va))
    body = {"eventType": "PAYMENT_STATUS_CHANGED", "createdAt": "2026-11-22T10:00:00.000000",
            "data": payment_json(order_id, amount, PK, **va)}  # fmt: skip
    client.post("/api/payment/webhook", data=json.dumps(body), content_type="application/json")
    deposit = {"createdAt": "2026-11-22T10:00:00", "secret": "wrong" + DEPOSIT_SECRET,
               "status": "DONE", "transactionKey": "tx1", "orderId": order_id}  # fmt: skip
    client.post("/api/payment/webhook", data=json.dumps(deposit), content_type="application/json")
    with app.app_context():
        run_once("log-test")
    toss.post(f"{TOSS}/v1/payments/{PK}/cancel", status=500, json={"code": "FAILED_REFUND_PROCESS",
              "message": f"account {ACCOUNT} failed"})  # fmt: skip
    with app.app_context(), pytest.raises(Exception):  # noqa: B017,PT011 — any refusal will do
        request_refund(order_id, 1000, "로그 테스트", RefundAccount("88", ACCOUNT, "김토스"), "op")
    # The line the development server writes for the success redirect.
    logging.getLogger("werkzeug").info(
        '127.0.0.1 - - "GET /checkout/success?paymentType=NORMAL&orderId=%s&paymentKey=%s'
        '&amount=%s HTTP/1.1" 303 -', order_id, PK, amount
    )  # fmt: skip
    logging.getLogger("payments.test").error(
        "toss said %s", f"Authorization: Basic dGVzdF9nc2tfc2FuZGJveDo= key {SECRET_KEY}",
        extra={"card": CARD, "payload": {"secret": DEPOSIT_SECRET}},
    )  # fmt: skip

    out = captured.getvalue()
    assert "GET /checkout/success" in out or "webhook stored" in out  # the log did record work
    for secret in (PK, ACCOUNT, CARD, DEPOSIT_SECRET, SECRET_KEY, "dGVzdF9nc2tfc2FuZGJveDo="):
        assert secret not in out, f"{secret} leaked into the log"
    assert "[REDACTED]" in out


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("GET /checkout/success?orderId=abc&paymentKey=tviva123456&amount=1000", "tviva123456"),
        ("POST https://api.tosspayments.com/v1/payments/tviva123456/cancel", "tviva123456"),
        ('{"secret": "ps_abcdef123", "status": "DONE"}', "ps_abcdef123"),
        (f"key {'live_gsk_' + 'abcdefABCDEF123'} used", "live_gsk_" + "abcdefABCDEF123"),
        ("card 4330-1234-1234-1234 declined", "4330-1234-1234-1234"),
        ("accountNumber=X6505636518308", "X6505636518308"),
        ("Bearer abcdefghijklmnop", "abcdefghijklmnop"),
    ],
)
def test_redact(text: str, secret: str) -> None:
    assert secret not in redact(text)


# Pieces that come close to what the patterns look for, and ordinary log text around them.
_PIECES = st.sampled_from(
    [
        "test_gsk_", "live_ck_", "test_", "gsk_", "Basic ", "bearer ", "paymentKey=",
        '"secret": "', "accountNumber:", "cardNumber", "/v1/payments/", "/v1/payments/confirm",
        "/api/payment/", "/api/payment/webhook", "4330", "1234", "-", " ", "*", "0123456789",
        "aB3dE5fG", "order status changed", "CONFIRMING", "=", '"', ",", "}",
    ]
)  # fmt: skip


@settings(max_examples=400, deadline=None)
@given(st.lists(_PIECES | st.text(max_size=6), max_size=12).map("".join))
def test_redact_skips_only_text_no_pattern_would_change(text: str) -> None:
    """The one-search shortcut never lets through what the full substitution would mask."""
    slow = text
    for pattern, replacement in _PATTERNS:
        slow = pattern.sub(replacement, slow)
    assert redact(text) == slow


def test_masked_numbers_and_normal_text_survive() -> None:
    text = "card 43301234****123* order amount=103000 /v1/payments/confirm /v1/payments/orders/x"
    assert redact(text) == text


def test_production_logs_are_json_lines_with_a_request_id(database_url: str) -> None:
    app = make_app(
        database_url,
        APP_ENV="production",
        TOSS_CLIENT_KEY="live_gck_" + "prodkey",
        TOSS_SECRET_KEY="live_gsk_" + "prodkey",
        TOSS_SANDBOX="0",
        PUBLIC_BASE_URL="https://x",
        TRUSTED_PROXY_COUNT="1",
    )
    stream = io.StringIO()
    handler = configure_logging(app, stream)
    try:
        app.test_client().get(
            "/checkout/fail?code=X", headers={"X-Request-Id": "req-12345678"}, base_url="https://x"
        )
        with app.test_request_context(headers={"X-Request-Id": "req-abcdefgh"}):
            app.preprocess_request()
            logging.getLogger("payments.test").info("hello %s", "live_gsk_" + "leak")
    finally:
        logging.getLogger().removeHandler(handler)
    lines = [json.loads(line) for line in stream.getvalue().splitlines() if line.startswith("{")]
    mine = [line for line in lines if line["logger"] == "payments.test"]
    assert mine
    assert mine[0]["request_id"] == "req-abcdefgh"
    assert mine[0]["message"] == "hello [REDACTED]"


def test_filter_keeps_unformattable_records() -> None:
    record = logging.LogRecord("x", logging.INFO, "x", 1, "%d items", ("nope",), None)
    assert RedactingFilter().filter(record)
    assert record.msg == "%d items"


VA_KEY = "tvivaLeakTest20261122Va01"
VA_SECRET = "ps_LeakTestDepositSecret0001"
VA_ACCOUNT = "X7712345678901"
VA_NAME = "박비밀고객"


@contextmanager
def payment_insert_fails(app: Flask) -> Iterator[None]:
    """Every INSERT into payments fails inside the database: on PostgreSQL a CHECK constraint
    (whose error carries `DETAIL: Failing row contains (…)`), on SQLite a trigger."""
    with app.app_context():
        postgres = db.engine.dialect.name == "postgresql"
        with db.engine.begin() as conn:
            if postgres:
                conn.execute(text("ALTER TABLE payments ADD CONSTRAINT t_refuse CHECK (id < 0)"))
            else:
                conn.execute(text(
                    "CREATE TRIGGER t_refuse BEFORE INSERT ON payments "
                    "BEGIN SELECT RAISE(ABORT, 'payments refused'); END"
                ))  # fmt: skip
    try:
        yield
    finally:
        with app.app_context(), db.engine.begin() as conn:
            if postgres:
                conn.execute(text("ALTER TABLE payments DROP CONSTRAINT t_refuse"))
            else:
                conn.execute(text("DROP TRIGGER t_refuse"))


def test_a_database_fault_after_approval_leaks_no_payment_data(
    app: Flask,
    client: FlaskClient,
    toss: responses.RequestsMock,
    place_order: Callable[..., str],
    captured: io.StringIO,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Toss approved a virtual account, then storing the payment failed: the exception the
    confirmation logs names the row, its parameters and PostgreSQL's DETAIL, none of which may
    reach a log."""
    caplog.set_level(logging.DEBUG)
    order_id = place_order()
    amount = get_order(app, order_id).amount
    va = fixture("toss/payment_waiting_for_deposit.json")
    va["virtualAccount"].update(accountNumber=VA_ACCOUNT, customerName=VA_NAME)
    body = {**va, "paymentKey": VA_KEY, "orderId": order_id, "secret": VA_SECRET,
            "totalAmount": amount, "balanceAmount": amount}  # fmt: skip
    toss.post(CONFIRM_URL, json=body)
    with payment_insert_fails(app):
        resp = client.get(success_url(order_id, VA_KEY, amount))
    assert resp.status_code < 500
    assert get_order(app, order_id).status == "CONFIRMING"  # reconcile finishes it
    faults = [r for r in caplog.records if r.getMessage() == "commit after confirm failed"]
    assert faults, "the database fault was not logged"
    assert faults[0].exc_info

    texts = [caplog.text, captured.getvalue()]
    for record in caplog.records:
        texts += [record.getMessage(), record.exc_text or ""]
        texts += [repr(v) for k, v in record.__dict__.items() if k not in ("exc_info", "args")]
    logged = "\n".join(texts)
    assert "commit after confirm failed" in captured.getvalue()
    for secret in (VA_KEY, VA_SECRET, VA_ACCOUNT, VA_NAME):
        assert secret not in logged, f"{secret} leaked into the log"


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("{'payment_key': 'tviva123456', 'status': 'DONE'}", "tviva123456"),
        ("payment_key=tviva123456 status=DONE", "tviva123456"),
        ('"customerName": "김 토스"', "토스"),
        ("{'va_customer_name': '김토스', 'secret': 'ps_abc'}", "김토스"),
        ("{'va_account_number': 'X6505636518308'}", "X6505636518308"),
        ("holder_name=홍길동&bank=88", "홍길동"),
        ('card_number: "4330-12**-****-123*"', "4330-12**-****-123*"),
        (
            'violates check constraint "x"\nDETAIL:  Failing row contains (7, tviva1, 김토스).',
            "tviva1",
        ),
        ("DETAIL:  Key (payment_key)=(tviva999) already exists.", "tviva999"),
        ("[parameters: {'pk': 'tviva42', 'name': '김토스'}]", "tviva42"),
        (json.dumps({"exc": "x\nDETAIL:  Failing row contains (tviva7)."}), "tviva7"),
    ],
)
def test_redact_snake_case_keys_and_row_details(text: str, secret: str) -> None:
    assert secret not in redact(text)


def test_database_errors_carry_no_bound_parameters(database_url: str) -> None:
    """The shop's and the sandbox's engines hide bound values from their exception messages."""
    app = sandbox_app(database_url)
    try:
        with app.app_context():
            engines = [db.engine]
        with app.extensions["sandbox_app"].app_context():
            engines.append(sandbox_db.engine)
        for engine in engines:
            with engine.connect() as conn, pytest.raises(DBAPIError) as caught:
                conn.execute(text("SELECT * FROM no_such_table WHERE x = :v"), {"v": VA_SECRET})
            assert VA_SECRET not in str(caught.value)
    finally:
        dispose(app)
