"""The sandbox sends Toss's webhooks: payloads, headers, retry schedule and the chaos knobs."""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
import requests
import responses
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from payments.extensions import db
from payments.sandbox import deliver_due_webhooks
from payments.sandbox.models import SandboxWebhook
from payments.sandbox.standalone import create_sandbox_app
from payments.sandbox.webhooks import INPROCESS_URL, MAX_ATTEMPTS, RETRY_MINUTES
from tests.test_sandbox_api import (
    cancel,
    confirm,
    dispose,
    get_payment,
    open_payment,
    sandbox_app,
)

HOOK = "https://shop.test/api/payment/webhook"
SCALE = 0.001


@pytest.fixture
def make(database_url: str) -> Iterator[Callable[..., Flask]]:
    apps: list[Flask] = []

    def build(**overrides: Any) -> Flask:
        config = {"SANDBOX_WEBHOOK_URL": HOOK, "SANDBOX_WEBHOOK_SCALE": SCALE, **overrides}
        app = sandbox_app(database_url, **config)
        apps.append(app)
        return app

    yield build
    for app in apps:
        dispose(app)


@pytest.fixture
def hook() -> Iterator[responses.RequestsMock]:
    """The receiving shop, faked: answers 200 unless a test queues other answers."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.add(responses.POST, HOOK, status=200)
        yield mock


def sent(mock: responses.RequestsMock) -> list[tuple[dict[str, str], dict[str, Any]]]:
    """(headers, JSON body) of every delivery the fake shop received, in order."""
    calls = []
    for call in mock.calls:
        body = call.request.body
        raw = body.decode() if isinstance(body, bytes) else str(body)
        calls.append((dict(call.request.headers), json.loads(raw)))
    return calls


def rows(app: Flask) -> list[SandboxWebhook]:
    with app.app_context():
        found = list(db.session.scalars(select(SandboxWebhook).order_by(SandboxWebhook.id)))
        db.session.expunge_all()
        return found


def status_events(calls: list[tuple[dict[str, str], dict[str, Any]]]) -> list[str]:
    return [
        body["data"]["status"] if body.get("eventType") else "DEPOSIT_CALLBACK" for _, body in calls
    ]


def test_payment_status_changed_payload_and_headers(
    make: Callable[..., Flask], hook: responses.RequestsMock
) -> None:
    app = make()
    client = app.test_client()
    payment_key, order_id, amount = open_payment(client)
    assert deliver_due_webhooks(app) == 0  # a finished window alone is not a status change
    confirmed = confirm(client, payment_key, order_id, amount).get_json()

    assert deliver_due_webhooks(app) == 1
    ((headers, body),) = sent(hook)
    assert hook.calls[0].request.url == HOOK
    assert hook.calls[0].request.method == "POST"
    assert headers["Content-Type"] == "application/json"
    assert re.fullmatch(r"whtrans_[a-z0-9]{20,}", headers["tosspayments-webhook-transmission-id"])
    assert headers["tosspayments-webhook-transmission-time"] == "2026-11-22T10:00:00+09:00"
    assert headers["tosspayments-webhook-transmission-retried-count"] == "0"
    assert "tosspayments-webhook-signature" not in headers  # payment webhooks are unsigned
    assert list(body) == ["eventType", "createdAt", "data"]
    assert body["eventType"] == "PAYMENT_STATUS_CHANGED"
    assert body["createdAt"] == "2026-11-22T10:00:00.000000"  # no offset, like Toss
    assert body["data"] == confirmed

    assert deliver_due_webhooks(app) == 0  # delivered once, done
    view = client.get(f"/sandbox/api/payments/{payment_key}").get_json()["sandbox"]
    assert (view["webhooksSent"], view["webhooksPending"]) == (1, 0)
    (row,) = rows(app)
    assert (row.status, row.attempts, row.last_status_code) == ("DELIVERED", 1, 200)


def test_every_status_change_is_sent(
    make: Callable[..., Flask], hook: responses.RequestsMock
) -> None:
    app = make()
    client = app.test_client()
    card, card_order, amount = open_payment(client, amount=30_000)
    confirm(client, card, card_order, amount)
    cancel(client, card, cancelAmount=10_000)
    cancel(client, card)
    va, va_order, va_amount = open_payment(client, scenario="virtual_account")
    issued = confirm(client, va, va_order, va_amount).get_json()
    client.post(f"/sandbox/api/virtual-accounts/{va_order}/deposit")
    late, _, _ = open_payment(client)
    client.post(f"/sandbox/api/payments/{late}/expire")
    poor, poor_order, poor_amount = open_payment(client, scenario="insufficient_balance")
    confirm(client, poor, poor_order, poor_amount)
    unpaid, unpaid_order, unpaid_amount = open_payment(client, scenario="virtual_account")
    confirm(client, unpaid, unpaid_order, unpaid_amount)
    cancel(client, unpaid)

    deliver_due_webhooks(app)
    calls = sent(hook)
    assert status_events(calls) == [
        "DONE",
        "PARTIAL_CANCELED",
        "CANCELED",
        "WAITING_FOR_DEPOSIT",
        "DONE",
        "DEPOSIT_CALLBACK",
        "EXPIRED",
        "ABORTED",
        "WAITING_FOR_DEPOSIT",
        "CANCELED",
    ]
    deposit = calls[5][1]
    after = get_payment(client, va)
    assert deposit == {
        "createdAt": "2026-11-22T10:00:00.000000",
        "secret": issued["secret"],
        "status": "DONE",
        "transactionKey": after["lastTransactionKey"],
        "orderId": va_order,
    }
    assert calls[4][1]["data"]["paymentKey"] == va  # both webhooks of one deposit
    assert calls[7][1]["data"]["failure"]["code"] == "REJECT_CARD_PAYMENT"
    assert len({h["tosspayments-webhook-transmission-id"] for h, _ in calls}) == len(calls)


def test_refused_or_lost_requests_send_nothing(
    make: Callable[..., Flask], hook: responses.RequestsMock
) -> None:
    app = make()
    client = app.test_client()
    payment_key, order_id, amount = open_payment(client)
    confirm(client, payment_key, order_id, amount + 1)  # INVALID_REQUEST
    confirm(client, payment_key, order_id, amount, headers={"TossPayments-Test-Code": "FDS_ERROR"})
    assert rows(app) == []
    confirm(client, payment_key, order_id, amount)
    confirm(client, payment_key, order_id, amount)  # ALREADY_PROCESSED_PAYMENT
    cancel(client, payment_key, cancelAmount=10**9)  # NOT_CANCELABLE_AMOUNT
    assert [r.event_type for r in rows(app)] == ["PAYMENT_STATUS_CHANGED"]


def test_failed_deliveries_follow_tosss_retry_schedule(make: Callable[..., Flask]) -> None:
    app = make()
    clock = app.extensions["sandbox"].clock
    client = app.test_client()
    payment_key, order_id, amount = open_payment(client)
    confirm(client, payment_key, order_id, amount)

    with responses.RequestsMock() as mock:
        mock.add(responses.POST, HOOK, status=500)
        waits: list[timedelta] = []
        for attempt in range(MAX_ATTEMPTS):
            assert deliver_due_webhooks(app) == 1, attempt
            assert deliver_due_webhooks(app) == 0  # not due again yet
            (row,) = rows(app)
            assert row.attempts == attempt + 1
            assert row.last_status_code == 500
            if row.status == "FAILED":
                break
            wait = row.next_attempt_at - clock.now()
            waits.append(wait)
            clock.advance(wait.total_seconds() - 0.001)
            assert deliver_due_webhooks(app) == 0
            clock.advance(0.001)
        clock.advance(timedelta(days=30).total_seconds())
        assert deliver_due_webhooks(app) == 0  # given up after the last retry
        counts = [
            c.request.headers["tosspayments-webhook-transmission-retried-count"] for c in mock.calls
        ]

    assert waits == [timedelta(minutes=m * SCALE) for m in RETRY_MINUTES]
    assert counts == [str(i) for i in range(MAX_ATTEMPTS)]
    assert MAX_ATTEMPTS == 8
    (row,) = rows(app)
    assert row.status == "FAILED"
    view = client.get(f"/sandbox/api/payments/{payment_key}").get_json()["sandbox"]
    assert (view["webhooksSent"], view["webhooksFailed"]) == (0, 1)


def test_a_retry_sends_the_same_delivery_again(make: Callable[..., Flask]) -> None:
    app = make()
    client = app.test_client()
    payment_key, order_id, amount = open_payment(client)
    confirm(client, payment_key, order_id, amount)
    with responses.RequestsMock() as mock:
        mock.add(responses.POST, HOOK, status=503)
        mock.add(responses.POST, HOOK, body=requests.ConnectionError("reset"))
        mock.add(responses.POST, HOOK, status=200)
        deliver_due_webhooks(app)
        (row,) = rows(app)
        assert row.last_status_code == 503
        app.extensions["sandbox"].advance(60 * SCALE)
        deliver_due_webhooks(app)
        (row,) = rows(app)
        assert row.last_status_code is None
        assert row.last_error == "ConnectionError"
        app.extensions["sandbox"].advance(4 * 60 * SCALE)
        deliver_due_webhooks(app)
        calls = list(mock.calls)
    assert len(calls) == 3
    assert len({c.request.body for c in calls}) == 1  # the very same bytes each time
    ids = {c.request.headers["tosspayments-webhook-transmission-id"] for c in calls}
    assert len(ids) == 1
    (row,) = rows(app)
    assert (row.status, row.attempts) == ("DELIVERED", 3)
    assert (
        client.get(f"/sandbox/api/payments/{payment_key}").get_json()["sandbox"]["webhooksSent"]
        == 1
    )


def test_duplicates_knob(make: Callable[..., Flask], hook: responses.RequestsMock) -> None:
    app = make(SANDBOX_WEBHOOK_DUPLICATES=2)
    client = app.test_client()
    payment_key, order_id, amount = open_payment(client)
    confirm(client, payment_key, order_id, amount)
    assert deliver_due_webhooks(app) == 3
    calls = sent(hook)
    assert len({json.dumps(body) for _, body in calls}) == 1
    assert len({h["tosspayments-webhook-transmission-id"] for h, _ in calls}) == 1
    assert sorted(h["tosspayments-webhook-transmission-retried-count"] for h, _ in calls) == [
        "0",
        "1",
        "2",
    ]


def test_delay_knob(make: Callable[..., Flask], hook: responses.RequestsMock) -> None:
    app = make(SANDBOX_WEBHOOK_DELAY=30)
    client = app.test_client()
    payment_key, order_id, amount = open_payment(client)
    confirm(client, payment_key, order_id, amount)
    assert deliver_due_webhooks(app) == 0
    app.extensions["sandbox"].advance(29)
    assert deliver_due_webhooks(app) == 0
    app.extensions["sandbox"].advance(1)
    assert deliver_due_webhooks(app) == 1


@pytest.mark.parametrize(
    ("reorder", "expected"),
    [
        (False, ["WAITING_FOR_DEPOSIT", "DONE", "DEPOSIT_CALLBACK"]),
        (True, ["DEPOSIT_CALLBACK", "DONE", "WAITING_FOR_DEPOSIT"]),
    ],
)
def test_reorder_knob(
    make: Callable[..., Flask], hook: responses.RequestsMock, reorder: bool, expected: list[str]
) -> None:
    app = make(SANDBOX_WEBHOOK_DELAY=5, SANDBOX_WEBHOOK_REORDER=reorder)
    client = app.test_client()
    payment_key, order_id, amount = open_payment(client, scenario="virtual_account")
    confirm(client, payment_key, order_id, amount)
    client.post(f"/sandbox/api/virtual-accounts/{order_id}/deposit")
    app.extensions["sandbox"].advance(5)
    assert deliver_due_webhooks(app) == 3
    assert status_events(sent(hook)) == expected


def test_default_target_is_the_apps_own_route_in_process(make: Callable[..., Flask]) -> None:
    app = make(SANDBOX_WEBHOOK_URL=None)
    client = app.test_client()
    payment_key, order_id, amount = open_payment(client)
    confirm(client, payment_key, order_id, amount)
    with responses.RequestsMock() as mock:  # any real HTTP call would fail here
        assert deliver_due_webhooks(app) == 1
        assert len(mock.calls) == 0
    (row,) = rows(app)
    assert row.url == INPROCESS_URL
    assert row.last_error is None
    assert row.last_status_code is not None


def test_concurrent_senders_deliver_each_row_once(make: Callable[..., Flask]) -> None:
    app = make()
    client = app.test_client()
    for _ in range(5):
        payment_key, order_id, amount = open_payment(client)
        confirm(client, payment_key, order_id, amount)

    def slow_ok(request: Any) -> tuple[int, dict[str, str], str]:
        time.sleep(0.02)
        return 200, {}, "{}"

    with responses.RequestsMock() as mock:
        mock.add_callback(responses.POST, HOOK, callback=slow_ok)
        barrier = threading.Barrier(3)

        def sender() -> None:
            barrier.wait()
            deliver_due_webhooks(app)

        threads = [threading.Thread(target=sender) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        ids = [c.request.headers["tosspayments-webhook-transmission-id"] for c in mock.calls]
    assert len(ids) == 5
    assert len(set(ids)) == 5
    assert {r.status for r in rows(app)} == {"DELIVERED"}


def test_background_sender_starts_lazily_and_delivers(
    make: Callable[..., Flask], hook: responses.RequestsMock
) -> None:
    app = make(SANDBOX_WEBHOOKS_ENABLED=True)
    worker = app.extensions["sandbox"].worker
    assert not worker.running  # not at import or app creation
    # alembic's fileConfig() reconfigures logging for the whole process: put it back after.
    loggers = logging.root.manager.loggerDict.values()
    enabled = [lg for lg in loggers if isinstance(lg, logging.Logger) and not lg.disabled]
    root_level, root_handlers = logging.root.level, list(logging.root.handlers)
    try:
        app.test_cli_runner().invoke(args=["db", "current"])
    finally:
        for lg in enabled:
            lg.disabled = False
        logging.root.setLevel(root_level)
        logging.root.handlers[:] = root_handlers
    assert not worker.running  # nor by `flask db` commands

    client = app.test_client()
    payment_key, order_id, amount = open_payment(client)
    confirm(client, payment_key, order_id, amount)
    assert worker.running
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not hook.calls:
        time.sleep(0.02)
    assert len(hook.calls) == 1
    worker.stop()
    assert not worker.running


def test_disabled_sender_stores_deliveries_for_later(
    make: Callable[..., Flask], hook: responses.RequestsMock
) -> None:
    app = make(SANDBOX_WEBHOOKS_ENABLED=False)
    client = app.test_client()
    payment_key, order_id, amount = open_payment(client)
    confirm(client, payment_key, order_id, amount)
    assert not app.extensions["sandbox"].worker.running
    (row,) = rows(app)
    assert (row.status, row.attempts) == ("PENDING", 0)
    assert len(hook.calls) == 0
    assert deliver_due_webhooks(app) == 1


def test_standalone_sandbox_without_url_records_nothing(tmp_path: Any) -> None:
    app = create_sandbox_app({"SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 's.sqlite3'}"})
    client: FlaskClient = app.test_client()
    payment_key, order_id, amount = open_payment(client)
    assert confirm(client, payment_key, order_id, amount).get_json()["status"] == "DONE"
    assert rows(app) == []
    dispose(app)
