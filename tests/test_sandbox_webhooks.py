"""The sandbox sends Toss's webhooks: payloads, headers, retry schedule and the chaos knobs.

The sandbox runs alone (its sender thread off) and delivers on demand with
`payments.sandbox.testing.deliver_webhooks`; the receiving shop is faked with `responses`.
"""

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

from payments.ops.sandbox import INPROCESS_SHOP
from payments.sandbox import state
from payments.sandbox.models import SandboxWebhook
from payments.sandbox.payments import sweep
from payments.sandbox.sender import MAX_ATTEMPTS, RETRY_MINUTES
from payments.sandbox.testing import SandboxDriver, Window, deliver_webhooks
from tests.helpers import dispose, sandbox_alone, sandbox_app, sandbox_of, sandbox_rows

HOOK = "https://shop.test/api/payment/webhook"
SCALE = 0.001


@pytest.fixture
def make(database_url: str) -> Iterator[Callable[..., Flask]]:
    """Build the sandbox alone on the test's database, sending to HOOK on Toss's schedule
    scaled by SCALE (settings by field name override)."""
    built: list[Flask] = []

    def build(**settings: Any) -> Flask:
        sandbox = sandbox_alone(
            database_url, **{"webhook_url": HOOK, "webhook_scale": SCALE, **settings}
        )
        built.append(sandbox)
        return sandbox

    yield build
    for sandbox in built:
        dispose(sandbox)


@pytest.fixture
def hook() -> Iterator[responses.RequestsMock]:
    """The receiving shop, faked: answers 200 unless a test queues other answers."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.add(responses.POST, HOOK, status=200)
        yield mock


def driver_for(sandbox: Flask) -> SandboxDriver:
    return SandboxDriver.in_process(sandbox.test_client())


def confirm(driver: SandboxDriver, window: Window, **kwargs: Any) -> Any:
    return driver.confirm(window.payment_key, window.order_id, window.amount, **kwargs)


def sent(mock: responses.RequestsMock) -> list[tuple[dict[str, str], dict[str, Any]]]:
    """(headers, JSON body) of every delivery the fake shop received, in order."""
    calls = []
    for call in mock.calls:
        body = call.request.body
        raw = body.decode() if isinstance(body, bytes) else str(body)
        calls.append((dict(call.request.headers), json.loads(raw)))
    return calls


def status_events(calls: list[tuple[dict[str, str], dict[str, Any]]]) -> list[str]:
    return [
        body["data"]["status"] if body.get("eventType") else "DEPOSIT_CALLBACK" for _, body in calls
    ]


def test_payment_status_changed_payload_and_headers(
    make: Callable[..., Flask], hook: responses.RequestsMock
) -> None:
    """Toss POSTs PAYMENT_STATUS_CHANGED as {eventType, createdAt, data: Payment} with its
    transmission headers and no signature (payment webhooks are unsigned)."""
    sandbox = make()
    driver = driver_for(sandbox)
    w = driver.open_window()
    assert deliver_webhooks(sandbox) == 0  # a finished window alone is not a status change
    confirmed = confirm(driver, w).body

    assert deliver_webhooks(sandbox) == 1
    ((headers, body),) = sent(hook)
    assert hook.calls[0].request.url == HOOK
    assert hook.calls[0].request.method == "POST"
    assert headers["Content-Type"] == "application/json"
    assert re.fullmatch(r"whtrans_[a-z0-9]{20,}", headers["tosspayments-webhook-transmission-id"])
    assert headers["tosspayments-webhook-transmission-time"] == "2026-11-22T10:00:00+09:00"
    assert headers["tosspayments-webhook-transmission-retried-count"] == "0"
    assert "tosspayments-webhook-signature" not in headers
    assert list(body) == ["eventType", "createdAt", "data"]
    assert body["eventType"] == "PAYMENT_STATUS_CHANGED"
    assert body["createdAt"] == "2026-11-22T10:00:00.000000"  # no offset, like Toss
    assert body["data"] == confirmed

    assert deliver_webhooks(sandbox) == 0  # delivered once, done
    view = driver.payment(w.payment_key)["sandbox"]
    assert (view["webhooksSent"], view["webhooksPending"]) == (1, 0)
    (row,) = sandbox_rows(sandbox, SandboxWebhook)
    assert (row.status, row.attempts, row.last_status_code) == ("DELIVERED", 1, 200)


def test_every_status_change_is_sent(
    make: Callable[..., Flask], hook: responses.RequestsMock
) -> None:
    """Toss sends a webhook for every status change (confirm, cancels, issue, deposit, expiry,
    abort), and DEPOSIT_CALLBACK {createdAt, secret, status, transactionKey, orderId} when a
    virtual account is issued, paid and cancelled (https://docs.tosspayments.com/en/webhooks);
    a refused confirm's ABORTED carries its failure (an ABORTED webhook on Toss's forum,
    https://techchat.tosspayments.com/m/1131524149819478036)."""
    sandbox = make()
    driver = driver_for(sandbox)
    card = driver.open_window(amount=30_000)
    confirm(driver, card)
    driver.cancel(card.payment_key, cancelAmount=10_000)
    driver.cancel(card.payment_key)
    va = driver.open_window(scenario="virtual_account")
    issued = confirm(driver, va).body
    driver.deposit(va.order_id)
    late = driver.open_window()
    driver.expire(late.payment_key)
    poor = driver.open_window(scenario="insufficient_balance")
    confirm(driver, poor)
    unpaid = driver.open_window(scenario="virtual_account")
    confirm(driver, unpaid)
    driver.cancel(unpaid.payment_key)

    deliver_webhooks(sandbox)
    calls = sent(hook)
    assert status_events(calls) == [
        "DONE",
        "PARTIAL_CANCELED",
        "CANCELED",
        "WAITING_FOR_DEPOSIT",
        "DEPOSIT_CALLBACK",
        "DONE",
        "DEPOSIT_CALLBACK",
        "EXPIRED",
        "ABORTED",
        "WAITING_FOR_DEPOSIT",
        "DEPOSIT_CALLBACK",
        "CANCELED",
        "DEPOSIT_CALLBACK",
    ]
    deposit = calls[6][1]
    after = driver.get(va.payment_key).body
    assert deposit == {
        "createdAt": "2026-11-22T10:00:00.000000",
        "secret": issued["secret"],
        "status": "DONE",
        "transactionKey": after["lastTransactionKey"],
        "orderId": va.order_id,
    }
    assert calls[5][1]["data"]["paymentKey"] == va.payment_key  # both webhooks of one deposit
    assert calls[4][1]["status"] == "WAITING_FOR_DEPOSIT"  # the issuance's DEPOSIT_CALLBACK
    assert calls[4][1]["secret"] == issued["secret"]
    assert calls[8][1]["data"]["status"] == "ABORTED"
    assert calls[8][1]["data"]["failure"] == {
        "code": "REJECT_CARD_PAYMENT",
        "message": "한도초과 혹은 잔액부족으로 결제에 실패했습니다.",
    }
    assert [b["status"] for _, b in calls if "eventType" not in b][-1] == "CANCELED"
    assert len({h["tosspayments-webhook-transmission-id"] for h, _ in calls}) == len(calls)


def test_refused_or_lost_requests_send_nothing(
    make: Callable[..., Flask], hook: responses.RequestsMock
) -> None:
    """A refused request changes nothing, so Toss sends nothing for it."""
    sandbox = make()
    driver = driver_for(sandbox)
    w = driver.open_window()
    driver.confirm(w.payment_key, w.order_id, w.amount + 1)  # INVALID_REQUEST
    confirm(driver, w, headers={"TossPayments-Test-Code": "FDS_ERROR"})
    assert sandbox_rows(sandbox, SandboxWebhook) == []
    confirm(driver, w)
    confirm(driver, w)  # ALREADY_PROCESSED_PAYMENT
    driver.cancel(w.payment_key, cancelAmount=10**9)  # NOT_CANCELABLE_AMOUNT
    assert [r.event_type for r in sandbox_rows(sandbox, SandboxWebhook)] == [
        "PAYMENT_STATUS_CHANGED"
    ]


def test_failed_deliveries_follow_tosss_retry_schedule(make: Callable[..., Flask]) -> None:
    """Toss retries a delivery that did not get a 200 after 1, 4, 16, 64, 256, 1024 and 4096
    minutes (8 attempts in all), counting them in the retried-count header, then gives up."""
    sandbox = make()
    clock = state(sandbox).settings.clock
    driver = driver_for(sandbox)
    w = driver.open_window()
    confirm(driver, w)

    with responses.RequestsMock() as mock:
        mock.add(responses.POST, HOOK, status=500)
        waits: list[timedelta] = []
        for attempt in range(MAX_ATTEMPTS):
            assert deliver_webhooks(sandbox) == 1, attempt
            assert deliver_webhooks(sandbox) == 0  # not due again yet
            (row,) = sandbox_rows(sandbox, SandboxWebhook)
            assert row.attempts == attempt + 1
            assert row.last_status_code == 500
            if row.status == "FAILED":
                break
            wait = row.next_attempt_at - clock.now()
            waits.append(wait)
            clock.advance(wait.total_seconds() - 0.001)
            assert deliver_webhooks(sandbox) == 0
            clock.advance(0.001)
        clock.advance(timedelta(days=30).total_seconds())
        assert deliver_webhooks(sandbox) == 0  # given up after the last retry
        counts = [
            c.request.headers["tosspayments-webhook-transmission-retried-count"] for c in mock.calls
        ]

    assert waits == [timedelta(minutes=m * SCALE) for m in RETRY_MINUTES]
    assert RETRY_MINUTES == (1, 4, 16, 64, 256, 1024, 4096)
    assert counts == [str(i) for i in range(MAX_ATTEMPTS)]
    assert MAX_ATTEMPTS == 8
    (row,) = sandbox_rows(sandbox, SandboxWebhook)
    assert row.status == "FAILED"
    view = driver.payment(w.payment_key)["sandbox"]
    assert (view["webhooksSent"], view["webhooksFailed"]) == (0, 1)


def test_a_retry_sends_the_same_delivery_again(make: Callable[..., Flask]) -> None:
    """Toss's retry is the same delivery: same transmission id, the very same bytes, whether
    the shop answered 5xx or the connection failed."""
    sandbox = make()
    driver = driver_for(sandbox)
    w = driver.open_window()
    confirm(driver, w)
    with responses.RequestsMock() as mock:
        mock.add(responses.POST, HOOK, status=503)
        mock.add(responses.POST, HOOK, body=requests.ConnectionError("reset"))
        mock.add(responses.POST, HOOK, status=200)
        deliver_webhooks(sandbox)
        (row,) = sandbox_rows(sandbox, SandboxWebhook)
        assert row.last_status_code == 503
        state(sandbox).advance(60 * SCALE)
        deliver_webhooks(sandbox)
        (row,) = sandbox_rows(sandbox, SandboxWebhook)
        assert row.last_status_code is None
        assert row.last_error == "ConnectionError"
        state(sandbox).advance(4 * 60 * SCALE)
        deliver_webhooks(sandbox)
        calls = list(mock.calls)
    assert len(calls) == 3
    assert len({c.request.body for c in calls}) == 1
    ids = {c.request.headers["tosspayments-webhook-transmission-id"] for c in calls}
    assert len(ids) == 1
    (row,) = sandbox_rows(sandbox, SandboxWebhook)
    assert (row.status, row.attempts) == ("DELIVERED", 3)
    assert driver.payment(w.payment_key)["sandbox"]["webhooksSent"] == 1


def test_duplicates_knob(make: Callable[..., Flask], hook: responses.RequestsMock) -> None:
    """webhook_duplicates: extra copies of a delivery, as Toss's re-sends look (same body and
    transmission id, a higher retried-count)."""
    sandbox = make(webhook_duplicates=2)
    driver = driver_for(sandbox)
    confirm(driver, driver.open_window())
    assert deliver_webhooks(sandbox) == 3
    calls = sent(hook)
    assert len({json.dumps(body) for _, body in calls}) == 1
    assert len({h["tosspayments-webhook-transmission-id"] for h, _ in calls}) == 1
    assert sorted(h["tosspayments-webhook-transmission-retried-count"] for h, _ in calls) == [
        "0",
        "1",
        "2",
    ]


def test_delay_knob(make: Callable[..., Flask], hook: responses.RequestsMock) -> None:
    """webhook_delay: a delivery's first attempt waits this long on the sandbox clock."""
    sandbox = make(webhook_delay=30)
    driver = driver_for(sandbox)
    confirm(driver, driver.open_window())
    assert deliver_webhooks(sandbox) == 0
    state(sandbox).advance(29)
    assert deliver_webhooks(sandbox) == 0
    state(sandbox).advance(1)
    assert deliver_webhooks(sandbox) == 1


@pytest.mark.parametrize(
    ("reorder", "expected"),
    [
        (False, ["WAITING_FOR_DEPOSIT", "DEPOSIT_CALLBACK", "DONE", "DEPOSIT_CALLBACK"]),
        (True, ["DEPOSIT_CALLBACK", "DONE", "DEPOSIT_CALLBACK", "WAITING_FOR_DEPOSIT"]),
    ],
)
def test_reorder_knob(
    make: Callable[..., Flask], hook: responses.RequestsMock, reorder: bool, expected: list[str]
) -> None:
    """webhook_reorder: deliveries due together go newest first (Toss does not promise order)."""
    sandbox = make(webhook_delay=5, webhook_reorder=reorder)
    driver = driver_for(sandbox)
    w = driver.open_window(scenario="virtual_account")
    confirm(driver, w)
    driver.deposit(w.order_id)
    state(sandbox).advance(5)
    assert deliver_webhooks(sandbox) == 4
    assert status_events(sent(hook)) == expected


def test_default_target_is_the_shops_own_route_in_process(database_url: str) -> None:
    """Mounted in the shop, the sandbox sends to the shop's webhook route without a socket."""
    app = sandbox_app(database_url)
    try:
        driver = SandboxDriver.in_process(app.test_client())
        confirm(driver, driver.open_window())
        sandbox = app.extensions["sandbox_app"]
        with responses.RequestsMock() as mock:  # any real HTTP call would fail here
            assert deliver_webhooks(sandbox) == 1
            assert len(mock.calls) == 0
        (row,) = sandbox_rows(sandbox, SandboxWebhook)
        assert row.url == INPROCESS_SHOP + "/api/payment/webhook"
        assert (row.status, row.last_status_code, row.last_error) == ("DELIVERED", 200, None)
    finally:
        dispose(app)


def test_concurrent_senders_deliver_each_row_once(make: Callable[..., Flask]) -> None:
    """Several senders on one sandbox database (several processes) never send a row twice."""
    sandbox = make()
    driver = driver_for(sandbox)
    for _ in range(5):
        confirm(driver, driver.open_window())

    def slow_ok(request: Any) -> tuple[int, dict[str, str], str]:
        time.sleep(0.02)
        return 200, {}, "{}"

    with responses.RequestsMock() as mock:
        mock.add_callback(responses.POST, HOOK, callback=slow_ok)
        barrier = threading.Barrier(3)

        def sender() -> None:
            barrier.wait()
            deliver_webhooks(sandbox)

        threads = [threading.Thread(target=sender) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        ids = [c.request.headers["tosspayments-webhook-transmission-id"] for c in mock.calls]
    assert len(ids) == 5
    assert len(set(ids)) == 5
    assert {r.status for r in sandbox_rows(sandbox, SandboxWebhook)} == {"DELIVERED"}


def test_background_sender_starts_lazily_and_delivers(
    database_url: str, hook: responses.RequestsMock
) -> None:
    """The sender thread starts with the first sandbox request (not at app creation, nor with
    the shop's `flask db` commands), delivers on its own, and stops."""
    app = sandbox_app(
        database_url,
        sandbox={"webhooks_enabled": True, "webhook_url": HOOK, "webhook_scale": SCALE},
    )
    try:
        sender = sandbox_of(app).sender
        assert not sender.running
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
        assert not sender.running

        driver = SandboxDriver.in_process(app.test_client())
        confirm(driver, driver.open_window())
        assert sender.running
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not hook.calls:
            time.sleep(0.02)
        assert len(hook.calls) == 1
        sender.stop()
        assert not sender.running
    finally:
        dispose(app)


def test_disabled_sender_stores_deliveries_for_later(
    make: Callable[..., Flask], hook: responses.RequestsMock
) -> None:
    """With the sender off, deliveries wait in the outbox until someone delivers them."""
    sandbox = make(webhooks_enabled=False)
    driver = driver_for(sandbox)
    confirm(driver, driver.open_window())
    assert not state(sandbox).sender.running
    (row,) = sandbox_rows(sandbox, SandboxWebhook)
    assert (row.status, row.attempts) == ("PENDING", 0)
    assert len(hook.calls) == 0
    assert deliver_webhooks(sandbox) == 1


def test_standalone_sandbox_without_url_records_nothing(make: Callable[..., Flask]) -> None:
    """A sandbox with no webhook URL sends nothing and keeps no outbox."""
    sandbox = make(webhook_url=None)
    driver = driver_for(sandbox)
    assert confirm(driver, driver.open_window()).body["status"] == "DONE"
    assert sandbox_rows(sandbox, SandboxWebhook) == []
    assert deliver_webhooks(sandbox) == 0


# -- windows and virtual accounts over time ------------------------------------------------------


def sweep_now(sandbox: Flask) -> None:
    """What the sender thread does on its own before each delivery round: apply the deadlines
    that passed."""
    with sandbox.app_context():
        sweep()


def test_windows_nobody_finished_expire_with_a_webhook_after_thirty_minutes(
    make: Callable[..., Flask], hook: responses.RequestsMock
) -> None:
    """An abandoned window, one the shopper closed and one whose card was refused all stay READY
    and send nothing; 30 minutes after opening each turns EXPIRED with failure EXPIRED_PAYMENT,
    announced by PAYMENT_STATUS_CHANGED without anyone looking
    (https://docs.tosspayments.com/en/webhooks: READY has 30 minutes; the failure as on Toss's
    forum, https://techchat.tosspayments.com/m/1410526054635933798)."""
    sandbox = make()
    driver = driver_for(sandbox)
    abandoned, _ = driver.start_window()
    closed = driver.open_window(scenario="cancel_by_user").opened_payment_key
    refused = driver.open_window(scenario="reject_card").opened_payment_key
    state(sandbox).advance(30 * 60 - 1)
    sweep_now(sandbox)
    assert deliver_webhooks(sandbox) == 0
    state(sandbox).advance(1)
    sweep_now(sandbox)
    assert deliver_webhooks(sandbox) == 3
    calls = sent(hook)
    assert {body["data"]["paymentKey"] for _, body in calls} == {abandoned, closed, refused}
    for _, body in calls:
        assert body["eventType"] == "PAYMENT_STATUS_CHANGED"
        assert body["data"]["status"] == "EXPIRED"
        assert body["data"]["failure"] == {
            "code": "EXPIRED_PAYMENT",
            "message": "결제가 만료되었습니다. 다시 시도해주세요.",
        }
    sweep_now(sandbox)
    assert deliver_webhooks(sandbox) == 0  # expired once


def test_an_unconfirmed_payment_expires_with_a_webhook_after_ten_minutes(
    make: Callable[..., Flask], hook: responses.RequestsMock
) -> None:
    """An authenticated payment nobody confirms within 10 minutes turns EXPIRED, announced
    (https://docs.tosspayments.com/en/webhooks; Toss's reference: the payment "만료됩니다",
    linking its PAYMENT_STATUS_CHANGED event, https://docs.tosspayments.com/reference)."""
    sandbox = make()
    driver = driver_for(sandbox)
    w = driver.open_window()
    state(sandbox).advance(10 * 60)
    sweep_now(sandbox)
    assert deliver_webhooks(sandbox) == 1
    ((_, body),) = sent(hook)
    assert (body["data"]["paymentKey"], body["data"]["status"]) == (w.payment_key, "EXPIRED")
    assert body["data"]["failure"]["code"] == "EXPIRED_PAYMENT"


def test_a_virtual_accounts_deposit_callbacks(
    make: Callable[..., Flask], hook: responses.RequestsMock
) -> None:
    """DEPOSIT_CALLBACK is sent when the account is issued (WAITING_FOR_DEPOSIT), paid (DONE),
    and when a deposit error moves it from DONE back to WAITING_FOR_DEPOSIT; each with
    PAYMENT_STATUS_CHANGED beside it (https://docs.tosspayments.com/en/webhooks). The buyer may
    then deposit again. The refund of a deposited account completes 2 days after its cancel
    (https://docs.tosspayments.com/reference, 결제 취소) without a webhook: refundStatus is not
    a payment status."""
    sandbox = make()
    driver = driver_for(sandbox)
    w = driver.open_window(scenario="virtual_account")
    secret = confirm(driver, w).body["secret"]
    assert driver.deposit(w.order_id).status == 200
    back = driver.deposit_error(w.order_id)
    assert back.status == 200
    assert (back.body["status"], back.body["approvedAt"]) == ("WAITING_FOR_DEPOSIT", None)
    assert driver.deposit_error(w.order_id).status == 409  # nothing deposited now
    assert driver.deposit(w.order_id).body["status"] == "DONE"
    refund_account = {"bank": "88", "accountNumber": "110123456789", "holderName": "김토스"}
    refunded = driver.cancel(w.payment_key, refundReceiveAccount=refund_account).body
    assert (refunded["status"], refunded["virtualAccount"]["refundStatus"]) == (
        "CANCELED",
        "PENDING",
    )
    assert driver.deposit_error(w.order_id).status == 409  # a cancelled deposit stays cancelled

    deliver_webhooks(sandbox)
    calls = sent(hook)
    assert status_events(calls) == [
        "WAITING_FOR_DEPOSIT",
        "DEPOSIT_CALLBACK",
        "DONE",
        "DEPOSIT_CALLBACK",
        "WAITING_FOR_DEPOSIT",
        "DEPOSIT_CALLBACK",
        "DONE",
        "DEPOSIT_CALLBACK",
        "CANCELED",
    ]
    callbacks = [body for _, body in calls if "eventType" not in body]
    assert [c["status"] for c in callbacks] == [
        "WAITING_FOR_DEPOSIT",
        "DONE",
        "WAITING_FOR_DEPOSIT",
        "DONE",
    ]
    assert {c["secret"] for c in callbacks} == {secret}
    assert {c["orderId"] for c in callbacks} == {w.order_id}
    assert len({c["transactionKey"] for c in callbacks}) == 4

    state(sandbox).advance(48 * 3600)
    sweep_now(sandbox)
    assert deliver_webhooks(sandbox) == 0
    after = driver.get(w.payment_key).body
    assert (after["status"], after["virtualAccount"]["refundStatus"]) == ("CANCELED", "COMPLETED")
