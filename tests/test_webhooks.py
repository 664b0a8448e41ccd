"""POST /api/payment/webhook and the worker behind it: accept → store once → re-check with Toss.

Toss is faked with `responses`; orders are put into a state by driving a real confirmation
through the JSON API, so every webhook acts on rows the shop itself wrote.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import json
import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime, timedelta
from functools import partial
from typing import Any

import pytest
import responses
from click.testing import Result
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select, update
from werkzeug.test import TestResponse

import payments.webhooks.inbox
import payments.webhooks.worker as webhooks
from payments.core.clock import KST, utcnow
from payments.core.models import Order, Payment, Refund, WebhookEvent
from payments.core.states import RefundStatus
from payments.extensions import db
from payments.webhooks.inbox import MAX_BODY
from payments.webhooks.worker import RETRY_DELAYS, process, prune, run_once
from tests.helpers import (
    CONFIRM_URL,
    FIXTURES,
    TOSS,
    audit,
    dispose,
    fixture,
    get_order,
    make_app,
    payment_json,
    race,
)

HOOK = "/api/payment/webhook"
TRANSMISSION_TIME = "2026-11-22T12:19:21+09:00"
SECURITY_KEY = "whsk_test_3f9c2a7e1b5d8f0a4c6e"
CARD_PK = "tgen_20261122121910Abc12"
VA_PK = "tviva20261122130102Def34"
VA_SECRET = "ps_Wd46qopOB89gRbalbP0aVZmM75y0"
VA_ACCOUNT = "X6515006029612"
VA_DUE = "2026-11-29T23:59:59+09:00"


# -- building webhooks ----------------------------------------------------------------------


def encode(body: dict[str, Any]) -> bytes:
    return json.dumps(body, ensure_ascii=False).encode()


def status_changed(
    order_id: str,
    amount: int,
    payment_key: str,
    status: str = "DONE",
    **data: Any,
) -> bytes:
    """A PAYMENT_STATUS_CHANGED body (the realistic fixture) claiming `status` for the payment."""
    body = fixture("webhooks/payment_status_changed_done.json")
    body["data"].update(
        orderId=order_id,
        paymentKey=payment_key,
        status=status,
        totalAmount=amount,
        balanceAmount=amount,
        **data,
    )
    return encode(body)


def deposit_callback(order_id: str, secret: str) -> bytes:
    body = fixture("webhooks/deposit_callback.json")
    body.update(orderId=order_id, secret=secret)
    return encode(body)


def toss_headers(
    transmission_id: str | None = "whtrans_a1b2c3d4e5f6", retried: int = 0
) -> dict[str, str]:
    headers = {
        "tosspayments-webhook-transmission-time": TRANSMISSION_TIME,
        "tosspayments-webhook-transmission-retried-count": str(retried),
    }
    if transmission_id is not None:
        headers["tosspayments-webhook-transmission-id"] = transmission_id
    return headers


def sign(raw: bytes, transmission_time: str = TRANSMISSION_TIME, key: str = SECURITY_KEY) -> str:
    digest = hmac.new(key.encode(), raw + b":" + transmission_time.encode(), hashlib.sha256)
    return "v1:" + base64.b64encode(digest.digest()).decode()


def post(
    client: FlaskClient,
    raw: bytes,
    headers: dict[str, str] | None = None,
    content_type: str = "application/json",
) -> TestResponse:
    return client.post(HOOK, data=raw, headers=headers or toss_headers(), content_type=content_type)


# -- Toss answers ---------------------------------------------------------------------------


def cancel_entry(amount: int, refundable: int, key: str) -> dict[str, Any]:
    return {
        "transactionKey": key,
        "cancelReason": "고객 요청",
        "taxExemptionAmount": 0,
        "canceledAt": "2026-11-22T15:10:44+09:00",
        "cancelAmount": amount,
        "taxFreeAmount": 0,
        "refundableAmount": refundable,
        "cancelStatus": "DONE",
        "cancelRequestId": None,
    }


def va_payment(order_id: str, amount: int, status: str = "WAITING_FOR_DEPOSIT") -> dict[str, Any]:
    return payment_json(
        order_id,
        amount,
        VA_PK,
        status,
        method="가상계좌",
        card=None,
        secret=VA_SECRET,
        virtualAccount={
            "accountType": "일반",
            "accountNumber": VA_ACCOUNT,
            "bankCode": "20",
            "customerName": "김토스",
            "dueDate": VA_DUE,
            "refundStatus": "NONE",
            "expired": False,
            "settlementStatus": "INCOMPLETED",
            "refundReceiveAccount": None,
        },
    )


def by_key(payment_key: str) -> str:
    return f"{TOSS}/v1/payments/{payment_key}"


def by_order(order_id: str) -> str:
    return f"{TOSS}/v1/payments/orders/{order_id}"


def toss_says(toss: responses.RequestsMock, url: str, answer: dict[str, Any]) -> None:
    toss.upsert(responses.GET, url, json=answer)


def toss_error(toss: responses.RequestsMock, url: str, status: int, code: str) -> None:
    toss.upsert(responses.GET, url, status=status, json={"code": code, "message": "toss says no"})


# -- reading the database -------------------------------------------------------------------


def events(app: Flask) -> list[WebhookEvent]:
    with app.app_context():
        rows = list(db.session.scalars(select(WebhookEvent).order_by(WebhookEvent.id)))
        db.session.expunge_all()
        return rows


def get_payment(app: Flask, order_id: str) -> Payment | None:
    with app.app_context():
        payment = db.session.execute(
            select(Payment).join(Order).where(Order.order_id == order_id)
        ).scalar_one_or_none()
        if payment is not None:
            db.session.expunge(payment)
        return payment


def work(app: Flask, worker: str = "test-worker") -> int:
    """Run the worker until nothing is due; the number of events it handled."""
    total = 0
    with app.app_context():
        while handled := run_once(worker):
            total += handled
    return total


def set_event(app: Flask, event_id: int, **values: Any) -> None:
    with app.app_context():
        db.session.execute(update(WebhookEvent).where(WebhookEvent.id == event_id).values(**values))
        db.session.commit()


def cli(app: Flask, *args: str) -> Result:
    result: Result = app.test_cli_runner().invoke(args=["payments", *args])
    return result


def leaks(records: Iterable[logging.LogRecord], secrets: Iterable[str]) -> list[str]:
    """Every (logger, secret) pair where a secret shows up in a record's message or fields."""
    found = []
    for record in records:
        texts = [record.getMessage(), *(repr(v) for v in record.__dict__.values())]
        found += [f"{record.name}: {s}" for s in secrets if any(s in t for t in texts)]
    return found


# -- putting orders into a state ------------------------------------------------------------


@pytest.fixture
def order(order_factory: Callable[..., Order]) -> Order:
    return order_factory()


def confirm(
    app: Flask, toss: responses.RequestsMock, order: Order, answer: dict[str, Any], expect: str
) -> None:
    """Drive the real confirmation through the JSON API, then forget the calls it made."""
    toss.post(CONFIRM_URL, json=answer)
    resp = app.test_client().post(
        "/api/payment/verify",
        json={
            "paymentKey": answer["paymentKey"],
            "orderId": order.order_id,
            "amount": order.amount,
        },
    )
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert get_order(app, order.order_id).status == expect
    toss.remove(responses.POST, CONFIRM_URL)
    toss.calls.reset()


def pay_by_card(app: Flask, toss: responses.RequestsMock, order: Order) -> None:
    confirm(app, toss, order, payment_json(order.order_id, order.amount, CARD_PK), "PAID")


def issue_virtual_account(app: Flask, toss: responses.RequestsMock, order: Order) -> None:
    confirm(app, toss, order, va_payment(order.order_id, order.amount), "AWAITING_DEPOSIT")


SIGNED_AT = datetime.fromisoformat(TRANSMISSION_TIME)


@pytest.fixture
def signed_app(database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Flask]:
    """A shop with a webhook security key, whose inbox clock reads a few seconds after
    TRANSMISSION_TIME (a signed event must be fresh)."""
    monkeypatch.setattr(payments.webhooks.inbox, "utcnow", lambda: SIGNED_AT + timedelta(seconds=3))
    app = make_app(database_url, TOSS_WEBHOOK_SECURITY_KEY=SECURITY_KEY)
    yield app
    dispose(app)


# -- accepting ------------------------------------------------------------------------------


def test_valid_webhook_is_stored_as_received_and_acknowledged_before_any_toss_call(
    app: Flask, client: FlaskClient, toss: responses.RequestsMock, order: Order
) -> None:
    raw = status_changed(order.order_id, order.amount, CARD_PK)
    headers = toss_headers("whtrans_0f1e2d3c4b5a", retried=2)

    resp = post(client, raw, headers)

    assert resp.status_code == 200
    assert resp.get_json() == {"received": True, "duplicate": False}
    assert len(toss.calls) == 0
    (event,) = events(app)
    assert event.kind == "PAYMENT_STATUS_CHANGED"
    assert event.status == "PENDING"
    assert event.attempts == 0
    assert event.body == raw.decode()
    assert event.body_sha256 == hashlib.sha256(raw).hexdigest()
    assert event.dedupe_key == "tid:whtrans_0f1e2d3c4b5a"
    assert event.transmission_id == "whtrans_0f1e2d3c4b5a"
    assert event.transmission_time == TRANSMISSION_TIME
    assert event.retried_count == 2
    assert (event.order_id, event.payment_key) == (order.order_id, CARD_PK)
    assert get_order(app, order.order_id).status == "PENDING"


def padded(size: int) -> bytes:
    """A JSON object of exactly `size` bytes."""
    head, tail = b'{"eventType":"PADDING_TEST","pad":"', b'"}'
    return head + b"x" * (size - len(head) - len(tail)) + tail


@pytest.mark.parametrize(
    ("raw", "content_type", "status", "code"),
    [
        pytest.param(b"{not json", "application/json", 400, "INVALID_REQUEST", id="not-json"),
        pytest.param(b"", "application/json", 400, "INVALID_REQUEST", id="empty"),
        pytest.param(
            b'[{"eventType": "PAYMENT_STATUS_CHANGED"}]',
            "application/json",
            400,
            "INVALID_REQUEST",
            id="json-array",
        ),
        pytest.param(b'"DONE"', "application/json", 400, "INVALID_REQUEST", id="json-string"),
        pytest.param(b"null", "application/json", 400, "INVALID_REQUEST", id="json-null"),
        pytest.param(
            b'{"eventType": "PAYMENT_STATUS_CHANGED", "x": "\xff\xfe"}',
            "application/json",
            400,
            "INVALID_REQUEST",
            id="not-utf8",
        ),
        pytest.param(b"[" * 60_000, "application/json", 400, "INVALID_REQUEST", id="deep-nesting"),
        pytest.param(None, "text/plain", 400, "INVALID_REQUEST", id="text-plain"),
        pytest.param(None, "application/x-www-form-urlencoded", 400, "INVALID_REQUEST", id="form"),
        pytest.param(
            padded(MAX_BODY + 1), "application/json", 413, "PAYLOAD_TOO_LARGE", id="64KiB+1"
        ),
        pytest.param(padded(1024 * 1024), "application/json", 413, "PAYLOAD_TOO_LARGE", id="1MiB"),
    ],
)
def test_malformed_or_oversized_bodies_get_4xx_and_store_nothing(
    app: Flask,
    client: FlaskClient,
    toss: responses.RequestsMock,
    order: Order,
    raw: bytes | None,
    content_type: str,
    status: int,
    code: str,
) -> None:
    body = raw if raw is not None else status_changed(order.order_id, order.amount, CARD_PK)

    resp = post(client, body, content_type=content_type)

    assert resp.status_code == status
    assert resp.is_json
    assert set(resp.get_json()) == {"code", "message"}
    assert resp.get_json()["code"] == code
    assert events(app) == []
    assert len(toss.calls) == 0


def test_body_of_exactly_64_kib_is_accepted(app: Flask, client: FlaskClient) -> None:
    raw = padded(MAX_BODY)
    assert len(raw) == 64 * 1024

    resp = post(client, raw)

    assert resp.status_code == 200
    (event,) = events(app)
    assert event.body == raw.decode()


def post_chunked(client: FlaskClient, raw: bytes) -> TestResponse:
    """A chunked upload: no Content-Length, so the limit must hold while reading the stream."""
    return client.post(
        HOOK,
        input_stream=io.BytesIO(raw),
        content_type="application/json",
        headers={**toss_headers(), "Transfer-Encoding": "chunked"},
        environ_overrides={"wsgi.input_terminated": True},
    )


def test_chunked_oversized_body_is_never_stored(app: Flask, client: FlaskClient) -> None:
    resp = post_chunked(client, padded(MAX_BODY + 1))

    assert 400 <= resp.status_code < 500
    assert set(resp.get_json()) == {"code", "message"}
    assert events(app) == []


@pytest.mark.parametrize(
    "raw",
    [padded(MAX_BODY + 1), padded(MAX_BODY) + b" " * 1024],
    ids=["invalid-prefix", "valid-json-prefix"],
)
def test_chunked_body_over_64_kib_gets_413(app: Flask, client: FlaskClient, raw: bytes) -> None:
    resp = post_chunked(client, raw)

    assert events(app) == []
    assert resp.status_code == 413
    assert resp.get_json()["code"] == "PAYLOAD_TOO_LARGE"


# -- duplicates -----------------------------------------------------------------------------


@pytest.mark.parametrize("transmission_id", ["whtrans_9z8y7x6w5v4u", None], ids=["tid", "no-tid"])
def test_ten_simultaneous_deliveries_store_one_event_and_take_effect_once(
    app: Flask,
    toss: responses.RequestsMock,
    order: Order,
    transmission_id: str | None,
) -> None:
    issue_virtual_account(app, toss, order)
    before = audit(app, order.order_id)
    raw = status_changed(order.order_id, order.amount, VA_PK)
    toss_says(toss, by_key(VA_PK), va_payment(order.order_id, order.amount, "DONE"))

    def deliver(i: int) -> tuple[int, bool]:
        resp = post(app.test_client(), raw, toss_headers(transmission_id, retried=i % 3))
        return resp.status_code, resp.get_json()["duplicate"]

    answers = race([partial(deliver, i) for i in range(10)])

    assert [status for status, _ in answers] == [200] * 10
    assert sorted(duplicate for _, duplicate in answers) == [False] + [True] * 9
    (event,) = events(app)
    prefix = f"tid:{transmission_id}" if transmission_id else "sha256:"
    assert event.dedupe_key.startswith(prefix)
    assert len(toss.calls) == 0

    assert work(app) == 1

    assert get_order(app, order.order_id).status == "PAID"
    assert audit(app, order.order_id)[len(before) :] == [
        ("transition", "AWAITING_DEPOSIT", "PAID", "webhook")
    ]
    assert len(toss.calls) == 1
    assert [e.status for e in events(app)] == ["DONE"]


def test_a_retry_of_a_processed_event_is_acknowledged_and_changes_nothing(
    app: Flask, client: FlaskClient, toss: responses.RequestsMock, order: Order
) -> None:
    issue_virtual_account(app, toss, order)
    raw = status_changed(order.order_id, order.amount, VA_PK)
    toss_says(toss, by_key(VA_PK), va_payment(order.order_id, order.amount, "DONE"))
    post(client, raw, toss_headers("whtrans_retry_0001"))
    work(app)
    trail = audit(app, order.order_id)

    resp = post(client, raw, toss_headers("whtrans_retry_0001", retried=1))

    assert resp.status_code == 200
    assert resp.get_json()["duplicate"] is True
    assert work(app) == 0
    assert audit(app, order.order_id) == trail
    assert len(toss.calls) == 1


# -- order of arrival -----------------------------------------------------------------------


def refund_story(order: Order) -> list[dict[str, Any]]:
    """Toss's successive answers for a card payment: approved, part refunded, fully refunded."""
    amount, part = order.amount, 9_000
    first = cancel_entry(part, amount - part, "txkey_cancel_0001")
    rest = cancel_entry(amount - part, 0, "txkey_cancel_0002")
    return [
        payment_json(order.order_id, amount, CARD_PK, "DONE"),
        payment_json(
            order.order_id,
            amount,
            CARD_PK,
            "PARTIAL_CANCELED",
            balanceAmount=amount - part,
            lastTransactionKey="txkey_cancel_0001",
            cancels=[first],
        ),
        payment_json(
            order.order_id,
            amount,
            CARD_PK,
            "CANCELED",
            balanceAmount=0,
            lastTransactionKey="txkey_cancel_0002",
            cancels=[first, rest],
        ),
    ]


def final_state(app: Flask, order_id: str) -> tuple[Any, ...]:
    order, payment = get_order(app, order_id), get_payment(app, order_id)
    assert payment is not None
    return (
        order.status,
        payment.status,
        payment.balance_amount,
        payment.last_transaction_key,
        sorted({e.status for e in events(app)}),
    )


@pytest.mark.parametrize(
    "delivery",
    ["in-order", "reversed-duplicated", "reversed-worker-each", "shuffled-no-tid"],
)
def test_any_order_of_arrival_ends_in_the_same_state(
    app: Flask, toss: responses.RequestsMock, order: Order, delivery: str
) -> None:
    pay_by_card(app, toss, order)
    story = refund_story(order)
    bodies = [
        status_changed(order.order_id, order.amount, CARD_PK, answer["status"]) for answer in story
    ]
    client = app.test_client()

    if delivery == "in-order":
        # Toss moves on between deliveries; each is processed while it is current.
        for i, (answer, raw) in enumerate(zip(story, bodies, strict=True)):
            toss_says(toss, by_key(CARD_PK), answer)
            post(client, raw, toss_headers(f"whtrans_story_{i}"))
            work(app)
    else:
        # Late deliveries: Toss is already at the end of the story.
        toss_says(toss, by_key(CARD_PK), story[-1])
        order_of_posts = {
            "reversed-duplicated": [2, 1, 0, 2, 1, 0, 2],
            "reversed-worker-each": [2, 2, 1, 0, 1],
            "shuffled-no-tid": [1, 2, 0, 1, 0, 2],
        }[delivery]
        for i in order_of_posts:
            tid = None if delivery == "shuffled-no-tid" else f"whtrans_story_{i}"
            post(client, bodies[i], toss_headers(tid))
            if delivery == "reversed-worker-each":
                work(app)
        work(app)

    assert final_state(app, order.order_id) == (
        "REFUNDED",
        "CANCELED",
        0,
        "txkey_cancel_0002",
        ["DONE"],
    )
    assert len(events(app)) == 3
    webhook_moves = [a for a in audit(app, order.order_id) if a[3] == "webhook"]
    assert webhook_moves[-1][2] == "REFUNDED"
    assert len(webhook_moves) == len(set(webhook_moves))  # no transition twice


def test_one_deposit_announced_by_both_webhook_kinds_pays_once(
    app: Flask, client: FlaskClient, toss: responses.RequestsMock, order: Order
) -> None:
    issue_virtual_account(app, toss, order)
    done = va_payment(order.order_id, order.amount, "DONE")
    toss_says(toss, by_key(VA_PK), done)
    toss_says(toss, by_order(order.order_id), done)

    post(client, deposit_callback(order.order_id, VA_SECRET), toss_headers("whtrans_dep_1"))
    post(client, status_changed(order.order_id, order.amount, VA_PK), toss_headers("whtrans_psc_1"))
    work(app)

    assert get_order(app, order.order_id).status == "PAID"
    paid = [a for a in audit(app, order.order_id) if a[2] == "PAID"]
    assert paid == [("transition", "AWAITING_DEPOSIT", "PAID", "webhook")]
    assert [(e.kind, e.status) for e in events(app)] == [
        ("DEPOSIT_CALLBACK", "DONE"),
        ("PAYMENT_STATUS_CHANGED", "DONE"),
    ]


# -- forged payment webhooks ----------------------------------------------------------------


@pytest.mark.parametrize("toss_status", ["WAITING_FOR_DEPOSIT", "IN_PROGRESS"])
def test_forged_done_is_checked_with_toss_and_changes_nothing(
    app: Flask,
    client: FlaskClient,
    toss: responses.RequestsMock,
    order: Order,
    toss_status: str,
) -> None:
    if toss_status == "WAITING_FOR_DEPOSIT":
        issue_virtual_account(app, toss, order)
        answer = va_payment(order.order_id, order.amount)
        status = "AWAITING_DEPOSIT"
    else:
        answer = payment_json(order.order_id, order.amount, VA_PK, "IN_PROGRESS")
        status = "PENDING"
    trail, payment = audit(app, order.order_id), get_payment(app, order.order_id)
    toss_says(toss, by_key(VA_PK), answer)

    resp = post(client, status_changed(order.order_id, order.amount, VA_PK, "DONE"))
    work(app)

    assert resp.status_code == 200
    assert [c.request.url for c in toss.calls] == [by_key(VA_PK)]
    assert get_order(app, order.order_id).status == status
    assert audit(app, order.order_id) == trail
    after = get_payment(app, order.order_id)
    assert (after and (after.status, after.balance_amount)) == (
        payment and (payment.status, payment.balance_amount)
    )
    (event,) = events(app)
    assert event.status == "DONE"
    assert toss_status in (event.result or "")


def test_webhook_naming_a_payment_toss_does_not_know_is_rejected(
    app: Flask,
    client: FlaskClient,
    toss: responses.RequestsMock,
    order: Order,
    caplog: pytest.LogCaptureFixture,
) -> None:
    forged_pk = "tgen_forged_000000000001"
    toss_error(toss, by_key(forged_pk), 404, "NOT_FOUND_PAYMENT")

    post(client, status_changed(order.order_id, order.amount, forged_pk, "DONE"))
    with caplog.at_level(logging.INFO):
        work(app)

    (event,) = events(app)
    assert (event.status, event.attempts) == ("REJECTED", 1)
    assert "NOT_FOUND_PAYMENT" in (event.result or "")
    assert len(toss.calls) == 1  # definitive: never asked again
    assert get_order(app, order.order_id).status == "PENDING"
    assert get_payment(app, order.order_id) is None
    assert any("security" in r.getMessage() for r in caplog.records)


def test_webhook_acts_on_tosss_order_not_on_the_order_the_body_names(
    app: Flask,
    client: FlaskClient,
    toss: responses.RequestsMock,
    order_factory: Callable[..., Order],
) -> None:
    victim, attackers = order_factory(), order_factory()
    attackers_pk = "tgen_attacker_0000000001"
    toss_says(
        toss,
        by_key(attackers_pk),
        payment_json(attackers.order_id, attackers.amount, attackers_pk, "IN_PROGRESS"),
    )

    post(client, status_changed(victim.order_id, victim.amount, attackers_pk, "DONE"))
    work(app)

    assert get_order(app, victim.order_id).status == "PENDING"
    assert get_order(app, attackers.order_id).status == "PENDING"
    (event,) = events(app)
    assert event.order_id == attackers.order_id


def test_payment_of_an_order_this_shop_does_not_know_is_ignored(
    app: Flask, client: FlaskClient, toss: responses.RequestsMock, order: Order
) -> None:
    toss_says(
        toss,
        by_key("tgen_elsewhere_0000001"),
        payment_json("another-shops-order-1", 5_000, "tgen_elsewhere_0000001"),
    )

    post(client, status_changed("another-shops-order-1", 5_000, "tgen_elsewhere_0000001"))
    work(app)

    (event,) = events(app)
    assert event.status == "IGNORED"
    assert get_order(app, order.order_id).status == "PENDING"


# -- virtual-account deposits ---------------------------------------------------------------


@pytest.mark.parametrize(
    "secret",
    ["ps_forged_secret_000000000000", VA_SECRET[:-1], VA_SECRET + "0", VA_SECRET.lower(), ""],
    ids=["other", "prefix", "longer", "case", "empty"],
)
def test_deposit_callback_with_a_wrong_secret_is_rejected_without_asking_toss(
    app: Flask,
    client: FlaskClient,
    toss: responses.RequestsMock,
    order: Order,
    secret: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    issue_virtual_account(app, toss, order)
    trail = audit(app, order.order_id)

    resp = post(client, deposit_callback(order.order_id, secret))
    work(app)

    assert resp.status_code == 200
    (event,) = events(app)
    assert event.kind == "DEPOSIT_CALLBACK"
    assert event.status == "REJECTED"
    assert len(toss.calls) == 0
    assert get_order(app, order.order_id).status == "AWAITING_DEPOSIT"
    assert audit(app, order.order_id) == trail
    assert any("security" in r.getMessage() for r in caplog.records)
    assert leaks(caplog.records, [VA_SECRET, VA_ACCOUNT] + ([secret] if secret else [])) == []


def test_deposit_callback_for_an_order_without_a_stored_secret_is_rejected(
    app: Flask, client: FlaskClient, toss: responses.RequestsMock, order: Order
) -> None:
    pay_by_card(app, toss, order)  # a card payment has no deposit secret

    post(client, deposit_callback(order.order_id, VA_SECRET))
    work(app)

    (event,) = events(app)
    assert event.status == "REJECTED"
    assert len(toss.calls) == 0
    assert get_order(app, order.order_id).status == "PAID"


def test_deposit_callback_with_the_stored_secret_pays_the_order_from_tosss_record(
    app: Flask,
    client: FlaskClient,
    toss: responses.RequestsMock,
    order: Order,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    issue_virtual_account(app, toss, order)
    trail = audit(app, order.order_id)
    toss_says(toss, by_order(order.order_id), va_payment(order.order_id, order.amount, "DONE"))

    resp = post(client, deposit_callback(order.order_id, VA_SECRET))
    assert len(toss.calls) == 0
    work(app)

    assert resp.status_code == 200
    assert [c.request.url for c in toss.calls] == [by_order(order.order_id)]
    assert get_order(app, order.order_id).status == "PAID"
    assert audit(app, order.order_id)[len(trail) :] == [
        ("transition", "AWAITING_DEPOSIT", "PAID", "webhook")
    ]
    payment = get_payment(app, order.order_id)
    assert payment is not None
    assert payment.status == "DONE"
    (event,) = events(app)
    assert (event.status, event.order_id, event.payment_key) == ("DONE", order.order_id, VA_PK)
    assert caplog.records  # the run did log; none of it carries the secrets
    assert leaks(caplog.records, [VA_SECRET, VA_ACCOUNT]) == []


def test_deposit_callback_for_an_unknown_order_is_ignored(
    app: Flask, client: FlaskClient, toss: responses.RequestsMock
) -> None:
    post(client, deposit_callback("ord_unknown_000000001", VA_SECRET))
    work(app)

    (event,) = events(app)
    assert (event.kind, event.status) == ("DEPOSIT_CALLBACK", "IGNORED")
    assert len(toss.calls) == 0


# -- signed events (payout / seller) --------------------------------------------------------


def signed_body(kind: str) -> bytes:
    if kind == "payout.changed":
        return (FIXTURES / "webhooks" / "payout_changed.json").read_bytes()
    return (FIXTURES / "webhooks" / "seller_changed.json").read_bytes()


@pytest.mark.parametrize("kind", ["payout.changed", "seller.changed"])
@pytest.mark.parametrize("which", ["only", "first-of-two", "second-of-two"])
def test_signed_event_with_a_valid_signature_is_accepted(
    signed_app: Flask, toss: responses.RequestsMock, kind: str, which: str
) -> None:
    raw = signed_body(kind)
    good, stale = sign(raw), sign(raw, key="whsk_rotated_out_key_0000")
    header = {"only": good, "first-of-two": f"{good},{stale}", "second-of-two": f"{stale},{good}"}

    resp = post(
        signed_app.test_client(),
        raw,
        {**toss_headers("whtrans_signed_1"), "tosspayments-webhook-signature": header[which]},
    )

    assert resp.status_code == 200
    (event,) = events(signed_app)
    assert (event.kind, event.status, event.body) == (kind, "PENDING", raw.decode())
    work(signed_app)
    assert events(signed_app)[0].status == "IGNORED"
    assert len(toss.calls) == 0


def test_signed_event_signature_is_over_the_raw_bytes(signed_app: Flask) -> None:
    """Whitespace Toss sent is part of what was signed: no re-serialisation before checking."""
    raw = json.dumps(json.loads(signed_body("payout.changed")), indent=4).encode()

    resp = post(
        signed_app.test_client(),
        raw,
        {**toss_headers(), "tosspayments-webhook-signature": sign(raw)},
    )

    assert resp.status_code == 200


@pytest.mark.parametrize(
    "case",
    [
        "other-key",
        "other-time",
        "tampered-body",
        "missing-header",
        "missing-time",
        "not-base64",
        "wrong-scheme",
        "empty",
        "both-bad",
        "no-key-configured",
    ],
)
@pytest.mark.parametrize("kind", ["payout.changed", "seller.changed"])
def test_signed_event_without_a_valid_signature_is_refused_and_not_stored(
    app: Flask,
    signed_app: Flask,
    toss: responses.RequestsMock,
    caplog: pytest.LogCaptureFixture,
    kind: str,
    case: str,
) -> None:
    raw = signed_body(kind)
    headers = toss_headers("whtrans_signed_bad")
    signature: str | None = {
        "other-key": sign(raw, key="whsk_someone_else_000000"),
        "other-time": sign(raw, "2026-11-22T12:19:22+09:00"),
        "tampered-body": sign(raw),
        "missing-header": None,
        "missing-time": sign(raw),
        "not-base64": "v1:!!!not-base64!!!",
        "wrong-scheme": sign(raw).replace("v1:", "v2:"),
        "empty": "",
        "both-bad": f"{sign(raw, key='k1')},{sign(raw, key='k2')}",
        "no-key-configured": sign(raw),
    }[case]
    if signature is not None:
        headers["tosspayments-webhook-signature"] = signature
    if case == "missing-time":
        del headers["tosspayments-webhook-transmission-time"]
    if case == "tampered-body":
        raw = raw.replace(b'"eventId": "e', b'"eventId": "f')
        assert signature != sign(raw)
    target = app if case == "no-key-configured" else signed_app

    with caplog.at_level(logging.WARNING):
        resp = post(target.test_client(), raw, headers)

    assert resp.status_code == 401
    assert resp.is_json
    assert set(resp.get_json()) == {"code", "message"}
    assert events(target) == []
    assert len(toss.calls) == 0
    assert any("security" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    ("sent", "accepted"),
    [
        (SIGNED_AT - timedelta(minutes=4, seconds=59), True),
        (SIGNED_AT + timedelta(minutes=4, seconds=59), True),
        (SIGNED_AT - timedelta(minutes=5, seconds=1), False),
        (SIGNED_AT - timedelta(days=30), False),
        (SIGNED_AT + timedelta(minutes=5, seconds=1), False),
    ],
    ids=["4m59s-old", "4m59s-ahead", "5m01s-old", "a-month-old", "5m01s-ahead"],
)
def test_signed_event_transmitted_more_than_five_minutes_from_now_is_refused(
    signed_app: Flask,
    toss: responses.RequestsMock,
    monkeypatch: pytest.MonkeyPatch,
    sent: datetime,
    accepted: bool,
) -> None:
    """A captured signed event cannot be replayed later: the signature covers the time."""
    monkeypatch.setattr(payments.webhooks.inbox, "utcnow", lambda: SIGNED_AT)
    raw = signed_body("payout.changed")
    when = sent.astimezone(KST).isoformat()
    headers = {
        **toss_headers("whtrans_signed_window"),
        "tosspayments-webhook-transmission-time": when,
        "tosspayments-webhook-signature": sign(raw, when),
    }

    resp = post(signed_app.test_client(), raw, headers)

    if accepted:
        assert resp.status_code == 200
        assert len(events(signed_app)) == 1
    else:
        assert resp.status_code == 401
        assert resp.get_json()["code"] == "STALE_TRANSMISSION"
        assert set(resp.get_json()) == {"code", "message"}
        assert events(signed_app) == []
    assert len(toss.calls) == 0


@pytest.mark.parametrize(
    "when",
    [
        "2026-11-22 12:19:21",
        "2026-11-22T12:19:21",
        "1795317561",
        "Sun, 22 Nov 2026 03:19:21 GMT",
        "2026-11-22T25:19:21+09:00",
        "yesterday",
    ],
)
def test_signed_event_with_an_unreadable_transmission_time_is_refused(
    signed_app: Flask, toss: responses.RequestsMock, when: str
) -> None:
    """Toss sends ISO 8601 with an offset (2024-09-05T12:19:21+09:00); anything else, even
    validly signed, names no instant and is refused."""
    raw = signed_body("seller.changed")
    headers = {
        **toss_headers("whtrans_signed_unreadable"),
        "tosspayments-webhook-transmission-time": when,
        "tosspayments-webhook-signature": sign(raw, when),
    }

    resp = post(signed_app.test_client(), raw, headers)

    assert 400 <= resp.status_code < 500
    assert set(resp.get_json()) == {"code", "message"}
    assert events(signed_app) == []
    assert len(toss.calls) == 0


# -- bodies no text column can hold ---------------------------------------------------------


def with_field(raw: bytes, path: str, value: Any) -> bytes:
    """`raw` with the field at the dotted `path` set to `value`, ASCII-escaped as JSON allows
    (\\u0000, \\ud800)."""
    body = json.loads(raw)
    *parents, last = path.split(".")
    target = body
    for name in parents:
        target = target[name]
    target[last] = value
    return json.dumps(body, ensure_ascii=True).encode()


UNSTORABLE = {"nul": "ord\u0000er", "lone-high": "\ud800", "lone-low": "ab\udfffcd"}


@pytest.mark.parametrize("value", list(UNSTORABLE.values()), ids=list(UNSTORABLE))
@pytest.mark.parametrize(
    ("shape", "path"),
    [
        ("status", "eventType"),
        ("status", "data.orderId"),
        ("status", "data.paymentKey"),
        ("status", "data.status"),
        ("status", "data.method"),
        ("status", "data.card.issuerCode"),
        ("deposit", "secret"),
        ("deposit", "status"),
        ("deposit", "orderId"),
        ("deposit", "transactionKey"),
        ("cancel", "data.transactionKey"),
    ],
)
def test_nul_or_lone_surrogate_in_any_webhook_field_gets_400(
    app: Flask,
    client: FlaskClient,
    toss: responses.RequestsMock,
    order: Order,
    shape: str,
    path: str,
    value: str,
) -> None:
    raw = {
        "status": status_changed(order.order_id, order.amount, CARD_PK),
        "deposit": deposit_callback(order.order_id, VA_SECRET),
        "cancel": cancel_status_changed({"transactionKey": "txrd_0001", "cancelStatus": "DONE"}),
    }[shape]

    resp = post(client, with_field(raw, path, value))

    assert resp.status_code == 400, resp.get_data(as_text=True)
    assert resp.get_json()["code"] == "INVALID_REQUEST"
    assert set(resp.get_json()) == {"code", "message"}
    assert events(app) == []
    assert work(app) == 0
    assert len(toss.calls) == 0


@pytest.mark.parametrize("value", list(UNSTORABLE.values()), ids=list(UNSTORABLE))
def test_nul_or_lone_surrogate_in_a_key_or_a_list_gets_400(
    app: Flask, client: FlaskClient, order: Order, value: str
) -> None:
    raw = status_changed(order.order_id, order.amount, CARD_PK)
    for bad in (
        with_field(raw, "data.extra", {value: 1}),
        with_field(raw, "data.extra", [[{"deep": ["ok", value]}]]),
    ):
        resp = post(client, bad)

        assert resp.status_code == 400, resp.get_data(as_text=True)
        assert set(resp.get_json()) == {"code", "message"}
    assert events(app) == []


def test_characters_that_are_storable_are_kept(
    app: Flask, client: FlaskClient, order: Order
) -> None:
    """A surrogate pair is one character (😀), and Korean text is ordinary: both are stored."""
    raw = with_field(
        status_changed(order.order_id, order.amount, CARD_PK), "data.orderName", "주문 \ud83d\ude00"
    )

    assert post(client, raw).status_code == 200
    (event,) = events(app)
    assert json.loads(event.body or "")["data"]["orderName"] == "주문 😀"


@pytest.mark.parametrize(
    "header",
    [
        "tosspayments-webhook-transmission-id",
        "tosspayments-webhook-transmission-time",
        "tosspayments-webhook-transmission-retried-count",
    ],
)
@pytest.mark.parametrize("value", ["a\x7fb", "\u00b2", "\u00e9t\u00e9", "1\u00b9"])
def test_odd_transmission_headers_are_dropped_not_a_500(
    app: Flask, client: FlaskClient, order: Order, header: str, value: str
) -> None:
    raw = status_changed(order.order_id, order.amount, CARD_PK)

    resp = post(client, raw, {**toss_headers(), header: value})

    assert resp.status_code == 200
    (event,) = events(app)
    stored = {
        "tosspayments-webhook-transmission-id": event.transmission_id,
        "tosspayments-webhook-transmission-time": event.transmission_time,
        "tosspayments-webhook-transmission-retried-count": event.retried_count,
    }[header]
    assert stored in (None, 0)


# -- the worker: retries, parking, replay, leases -------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = utcnow()

    def __call__(self) -> datetime:
        return self.now


def test_toss_outage_backs_off_then_parks_failed_and_replay_by_id_recovers(
    app: Flask,
    client: FlaskClient,
    toss: responses.RequestsMock,
    order: Order,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    issue_virtual_account(app, toss, order)
    clock = Clock()
    # The inbox dates an event's first attempt, the worker every later one.
    monkeypatch.setattr(payments.webhooks.inbox, "utcnow", clock)
    monkeypatch.setattr(webhooks, "utcnow", clock)
    toss_error(toss, by_key(VA_PK), 500, "FAILED_INTERNAL_SYSTEM_PROCESSING")
    post(client, status_changed(order.order_id, order.amount, VA_PK))
    (event,) = events(app)

    for attempt, delay in enumerate(RETRY_DELAYS, start=1):
        assert work(app) == 1
        event = events(app)[0]
        assert (event.status, event.attempts) == ("PENDING", attempt)
        assert event.next_attempt_at == clock.now + timedelta(seconds=delay)
        assert "FAILED_INTERNAL_SYSTEM_PROCESSING" in (event.last_error or "")
        assert (event.locked_by, event.locked_until) == (None, None)
        clock.now += timedelta(seconds=delay - 1)
        assert work(app) == 0  # not due yet
        clock.now += timedelta(seconds=1)

    assert work(app) == 1
    event = events(app)[0]
    assert (event.status, event.attempts) == ("FAILED", len(RETRY_DELAYS) + 1)
    assert "FAILED_INTERNAL_SYSTEM_PROCESSING" in (event.last_error or "")
    clock.now += timedelta(days=30)
    assert work(app) == 0  # parked for good
    assert get_order(app, order.order_id).status == "AWAITING_DEPOSIT"

    toss_says(toss, by_key(VA_PK), va_payment(order.order_id, order.amount, "DONE"))
    replayed = cli(app, "replay-webhooks", "--id", str(event.id))
    assert replayed.exit_code == 0, replayed.output
    assert "queued 1" in replayed.output
    assert (events(app)[0].status, events(app)[0].attempts) == ("PENDING", 0)

    worked = cli(app, "worker", "--once")
    assert worked.exit_code == 0, worked.output
    assert "processed 1" in worked.output
    event = events(app)[0]
    assert (event.status, event.last_error) == ("DONE", None)
    assert get_order(app, order.order_id).status == "PAID"


def test_definitive_toss_error_parks_the_event_at_once_and_replay_failed_requeues_it(
    app: Flask,
    client: FlaskClient,
    toss: responses.RequestsMock,
    order_factory: Callable[..., Order],
) -> None:
    first, second = order_factory(), order_factory()
    keys = {first.order_id: "tgen_first_000000000001", second.order_id: "tgen_second_00000000001"}
    for o in (first, second):
        toss_error(toss, by_key(keys[o.order_id]), 401, "UNAUTHORIZED_KEY")
        post(
            client,
            status_changed(o.order_id, o.amount, keys[o.order_id]),
            toss_headers(f"whtrans_{o.order_id}"),
        )
    post(
        client,
        encode({"eventType": "BILLING_DELETED", "createdAt": "2026-11-22T12:00:00.000000"}),
        toss_headers("whtrans_billing"),
    )

    work(app)

    assert [(e.status, e.attempts) for e in events(app)] == [
        ("FAILED", 1),
        ("FAILED", 1),
        ("IGNORED", 1),
    ]
    assert all("UNAUTHORIZED_KEY" in (e.last_error or "") for e in events(app)[:2])
    assert len(toss.calls) == 2  # one call each, no retries

    for o in (first, second):
        toss_says(
            toss, by_key(keys[o.order_id]), payment_json(o.order_id, o.amount, keys[o.order_id])
        )
    replayed = cli(app, "replay-webhooks", "--failed")
    assert replayed.exit_code == 0, replayed.output
    assert "queued 2" in replayed.output
    assert [e.status for e in events(app)] == ["PENDING", "PENDING", "IGNORED"]

    assert "processed 2" in cli(app, "worker", "--once").output
    assert [e.status for e in events(app)] == ["DONE", "DONE", "IGNORED"]
    assert get_order(app, first.order_id).status == "PAID"
    assert get_order(app, second.order_id).status == "PAID"


def test_replay_command_refuses_without_a_target_and_for_unknown_or_running_events(
    app: Flask, client: FlaskClient
) -> None:
    post(client, encode({"eventType": "BILLING_DELETED"}))
    (event,) = events(app)
    set_event(
        app,
        event.id,
        status="PROCESSING",
        locked_by="busy",
        locked_until=utcnow() + timedelta(minutes=1),
    )

    assert cli(app, "replay-webhooks").exit_code == 2
    assert cli(app, "replay-webhooks", "--id", "987654").exit_code == 1
    assert cli(app, "replay-webhooks", "--id", str(event.id)).exit_code == 1
    assert events(app)[0].locked_by == "busy"


def test_event_of_a_dead_worker_is_claimed_again_once_its_lease_expires(
    app: Flask,
    client: FlaskClient,
    toss: responses.RequestsMock,
    order_factory: Callable[..., Order],
) -> None:
    dead, alive = order_factory(), order_factory()
    issue_virtual_account(app, toss, dead)
    keys = {dead.order_id: VA_PK, alive.order_id: "tgen_alive_000000000001"}
    toss_says(toss, by_key(VA_PK), va_payment(dead.order_id, dead.amount, "DONE"))
    toss_says(
        toss,
        by_key(keys[alive.order_id]),
        payment_json(alive.order_id, alive.amount, keys[alive.order_id]),
    )
    for o in (dead, alive):
        post(
            client,
            status_changed(o.order_id, o.amount, keys[o.order_id]),
            toss_headers(f"whtrans_{o.order_id}"),
        )
    expired, live = events(app)
    now = utcnow()
    lease = {"status": "PROCESSING", "locked_by": "worker-that-died", "attempts": 1}
    set_event(app, expired.id, locked_until=now - timedelta(seconds=1), **lease)
    set_event(app, live.id, locked_until=now + timedelta(seconds=60), **lease)

    assert work(app, "rescuer") == 1

    expired, live = events(app)
    assert (expired.status, expired.attempts, expired.locked_by) == ("DONE", 2, None)
    assert (live.status, live.locked_by) == ("PROCESSING", "worker-that-died")
    assert [c.request.url for c in toss.calls] == [by_key(VA_PK)]
    assert get_order(app, dead.order_id).status == "PAID"
    assert get_order(app, alive.order_id).status == "PENDING"
    # The dead worker coming back cannot process what it no longer holds.
    with app.app_context():
        assert process(expired.id, "worker-that-died") == "LOST"
    paid = [a for a in audit(app, dead.order_id) if a[2] == "PAID"]
    assert len(paid) == 1


def test_worker_that_lost_its_lease_cannot_reopen_a_finished_event(
    app: Flask, client: FlaskClient, toss: responses.RequestsMock, order: Order
) -> None:
    issue_virtual_account(app, toss, order)
    post(client, status_changed(order.order_id, order.amount, VA_PK))
    (event,) = events(app)
    start = utcnow()
    with app.app_context():
        assert webhooks.claim("slow-worker", now=start) == [event.id]
    slow = threading.get_ident()
    rescued: list[str] = []

    def rescue() -> None:
        with app.app_context():
            later = start + timedelta(seconds=app.config["WEBHOOK_LEASE_SECONDS"] + 1)
            assert webhooks.claim("rescuer", now=later) == [event.id]
            rescued.append(process(event.id, "rescuer"))
            db.session.remove()

    def answer(request: Any) -> tuple[int, dict[str, str], str]:
        if threading.get_ident() != slow:
            return 200, {}, json.dumps(va_payment(order.order_id, order.amount, "DONE"))
        if not rescued:  # while the slow worker waits for Toss, its lease runs out
            helper = threading.Thread(target=rescue)
            helper.start()
            helper.join(timeout=30)
        return 500, {}, json.dumps({"code": "FAILED_INTERNAL_SYSTEM_PROCESSING", "message": "x"})

    toss.add_callback(responses.GET, by_key(VA_PK), callback=answer)

    with app.app_context():
        process(event.id, "slow-worker")

    assert rescued == ["DONE"]
    assert get_order(app, order.order_id).status == "PAID"
    (event,) = events(app)
    assert (event.status, event.last_error) == ("DONE", None)


def test_claim_leases_for_the_configured_time(
    database_url: str, toss: responses.RequestsMock
) -> None:
    app = make_app(database_url, WEBHOOK_LEASE_SECONDS=7)
    post(app.test_client(), encode({"eventType": "BILLING_DELETED"}))
    now = utcnow()
    with app.app_context():
        (event_id,) = webhooks.claim("w1", now=now)
    event = events(app)[0]
    assert (event.status, event.locked_by) == ("PROCESSING", "w1")
    assert event.locked_until == now + timedelta(seconds=7)
    with app.app_context():
        assert webhooks.claim("w2", now=now + timedelta(seconds=7)) == []
        assert webhooks.claim("w2", now=now + timedelta(seconds=8)) == [event_id]
        db.session.remove()
        db.engine.dispose()


def test_two_workers_at_once_process_every_event_exactly_once(
    app: Flask, client: FlaskClient, toss: responses.RequestsMock, order: Order
) -> None:
    keys = [f"tgen_shared_{i:012d}" for i in range(8)]
    for i, key in enumerate(keys):
        # Each names our order (so Toss is asked), and Toss says another shop's order.
        toss_says(toss, by_key(key), payment_json(f"another-shops-order-{i}", 5_000, key))
        post(
            client,
            status_changed(order.order_id, 5_000, key),
            toss_headers(f"whtrans_shared_{i}"),
        )

    def worker(i: int) -> int:
        handled = 0
        with app.app_context():
            while n := run_once(f"worker-{i}", limit=2):
                handled += n
            db.session.remove()
        return handled

    handled = race([partial(worker, i) for i in range(2)])

    assert sum(handled) == len(keys)
    assert [e.status for e in events(app)] == ["IGNORED"] * len(keys)
    assert sorted(c.request.url for c in toss.calls) == sorted(by_key(k) for k in keys)


# -- what Toss's answers do to an order -----------------------------------------------------


def deliver(
    app: Flask, toss: responses.RequestsMock, order: Order, answer: dict[str, Any], tid: str
) -> None:
    toss_says(toss, by_key(answer["paymentKey"]), answer)
    post(
        app.test_client(),
        status_changed(order.order_id, order.amount, answer["paymentKey"], answer["status"]),
        toss_headers(tid),
    )
    work(app)


def test_refunds_move_a_paid_order_and_a_stale_done_is_ignored(
    app: Flask, toss: responses.RequestsMock, order: Order
) -> None:
    pay_by_card(app, toss, order)
    done, partial, canceled = refund_story(order)
    second_part = {
        **partial,
        "balanceAmount": order.amount - 12_000,
        "lastTransactionKey": "txkey_cancel_000b",
        "cancels": [
            *partial["cancels"],
            cancel_entry(3_000, order.amount - 12_000, "txkey_cancel_000b"),
        ],
    }
    trail = audit(app, order.order_id)

    deliver(app, toss, order, partial, "whtrans_r1")
    assert get_order(app, order.order_id).status == "PARTIALLY_REFUNDED"
    assert get_payment(app, order.order_id).balance_amount == order.amount - 9_000  # type: ignore[union-attr]

    deliver(app, toss, order, second_part, "whtrans_r2")
    assert get_order(app, order.order_id).status == "PARTIALLY_REFUNDED"
    assert get_payment(app, order.order_id).balance_amount == order.amount - 12_000  # type: ignore[union-attr]

    deliver(app, toss, order, canceled, "whtrans_r3")
    deliver(app, toss, order, done, "whtrans_r4")  # stale: REFUNDED is terminal

    assert get_order(app, order.order_id).status == "REFUNDED"
    payment = get_payment(app, order.order_id)
    assert payment is not None
    assert (payment.status, payment.balance_amount) == ("CANCELED", 0)
    assert audit(app, order.order_id)[len(trail) :] == [
        ("transition", "PAID", "PARTIALLY_REFUNDED", "webhook"),
        ("transition", "PARTIALLY_REFUNDED", "PARTIALLY_REFUNDED", "webhook"),
        ("transition", "PARTIALLY_REFUNDED", "REFUNDED", "webhook"),
    ]
    assert [e.status for e in events(app)] == ["DONE"] * 4


@pytest.mark.parametrize(
    ("story", "expected"),
    [
        (["CANCELED"], ["CANCELED"]),
        (["DONE"], ["PAID"]),
        (["DONE", "CANCELED"], ["PAID", "REFUNDED"]),
    ],
)
def test_virtual_account_order_follows_toss(
    app: Flask,
    toss: responses.RequestsMock,
    order: Order,
    story: list[str],
    expected: list[str],
) -> None:
    issue_virtual_account(app, toss, order)
    trail = audit(app, order.order_id)

    for i, status in enumerate(story):
        answer = va_payment(order.order_id, order.amount, status)
        if status == "CANCELED":
            answer["balanceAmount"] = 0
        deliver(app, toss, order, answer, f"whtrans_va_{i}")
        assert get_order(app, order.order_id).status == expected[i]

    moves = [m for m in audit(app, order.order_id)[len(trail) :] if m[0] != "stock_released"]
    assert [m[2] for m in moves] == expected
    assert {m[3] for m in moves} == {"webhook"}


def refunded_account(
    order: Order, refund_status: str, status: str = "CANCELED", balance: int = 0
) -> dict[str, Any]:
    """Toss's record of a deposited virtual account whose money went back to the buyer's
    account: cancels[] hold the refunds, `virtualAccount.refundStatus` tracks the bank transfer
    (NONE → PENDING → COMPLETED; Payment object, https://docs.tosspayments.com/reference)."""
    answer = va_payment(order.order_id, order.amount, status)
    refunded = order.amount - balance
    answer.update(
        balanceAmount=balance,
        lastTransactionKey="txkey_va_refund_01",
        cancels=[cancel_entry(refunded, balance, "txkey_va_refund_01")],
    )
    answer["virtualAccount"] = {**answer["virtualAccount"], "refundStatus": refund_status}
    return answer


def test_deposited_virtual_account_refunded_to_zero_ends_refunded(
    app: Flask, toss: responses.RequestsMock, order: Order
) -> None:
    issue_virtual_account(app, toss, order)
    deliver(app, toss, order, va_payment(order.order_id, order.amount, "DONE"), "whtrans_dep")
    assert get_order(app, order.order_id).status == "PAID"

    deliver(app, toss, order, refunded_account(order, "PENDING"), "whtrans_refund_pending")
    assert get_order(app, order.order_id).status == "REFUNDED"
    deliver(app, toss, order, refunded_account(order, "COMPLETED"), "whtrans_refund_done")

    assert get_order(app, order.order_id).status == "REFUNDED"
    payment = get_payment(app, order.order_id)
    assert payment is not None
    assert (payment.status, payment.balance_amount) == ("CANCELED", 0)
    assert [m[2] for m in audit(app, order.order_id) if m[0] == "transition"][-2:] == [
        "PAID",
        "REFUNDED",
    ]


@pytest.mark.parametrize(
    ("status", "refund_status"),
    [("CANCELED", "COMPLETED"), ("CANCELED", "PENDING"), ("PARTIAL_CANCELED", "COMPLETED")],
)
def test_deposit_never_seen_then_refunded_to_zero_ends_refunded_not_canceled(
    app: Flask, toss: responses.RequestsMock, order: Order, status: str, refund_status: str
) -> None:
    """The deposit's webhooks were lost and an operator refunded the whole deposit: Toss's record
    says the money came and went back (refundStatus is not NONE), so the order was paid and is
    refunded, not cancelled unpaid. A PARTIAL_CANCELED payment with nothing left is refunded too
    (docs silent on whether Toss ever shows one: the balance decides)."""
    issue_virtual_account(app, toss, order)
    trail = audit(app, order.order_id)

    deliver(app, toss, order, refunded_account(order, refund_status, status), "whtrans_refunded")

    assert get_order(app, order.order_id).status == "REFUNDED"
    assert [m[1:3] for m in audit(app, order.order_id)[len(trail) :]] == [
        ("AWAITING_DEPOSIT", "PAID"),
        ("PAID", "REFUNDED"),
    ]


def test_virtual_account_cancelled_before_any_deposit_ends_canceled(
    app: Flask, toss: responses.RequestsMock, order: Order
) -> None:
    issue_virtual_account(app, toss, order)
    answer = refunded_account(order, "NONE")  # nothing was deposited, nothing to send back

    deliver(app, toss, order, answer, "whtrans_cancelled")

    assert get_order(app, order.order_id).status == "CANCELED"


# -- CANCEL_STATUS_CHANGED ------------------------------------------------------------------


def cancel_status_changed(data: dict[str, Any]) -> bytes:
    """A CANCEL_STATUS_CHANGED body: its data is a Cancel object, which names no payment
    (https://docs.tosspayments.com/reference/using-api/webhook-events)."""
    return encode(
        {
            "eventType": "CANCEL_STATUS_CHANGED",
            "createdAt": "2026-11-22T15:10:45.000000",
            "data": data,
        }
    )


def add_refund(app: Flask, order: Order, transaction_key: str) -> None:
    """An operator's whole refund whose cancel Toss answered as still in progress."""
    with app.app_context():
        db.session.add(
            Refund(
                order_pk=order.id,
                refund_key="refund-cancel-status-test-0001",
                amount=order.amount,
                full=True,
                balance_before=order.amount,
                reason="고객 요청",
                status=RefundStatus.DONE,
                requested_by="operator",
                transaction_key=transaction_key,
            )
        )
        db.session.commit()


@pytest.mark.parametrize("known_as", ["refund", "last transaction"])
def test_cancel_status_changed_is_traced_to_its_payment_and_rechecked(
    app: Flask, client: FlaskClient, toss: responses.RequestsMock, order: Order, known_as: str
) -> None:
    pay_by_card(app, toss, order)
    done, _partial, canceled = refund_story(order)
    cancel = {**canceled["cancels"][-1], "cancelStatus": "DONE"}
    if known_as == "refund":
        add_refund(app, order, cancel["transactionKey"])
    else:  # Toss's earlier status change already carried the cancel's transaction
        in_progress = {**canceled, "status": "DONE", "balanceAmount": order.amount}
        deliver(app, toss, order, in_progress, "whtrans_cancel_started")
        assert get_payment(app, order.order_id).last_transaction_key == cancel["transactionKey"]  # type: ignore[union-attr]
        toss.calls.reset()
    toss_says(toss, by_key(CARD_PK), canceled)

    post(client, cancel_status_changed(cancel), toss_headers("whtrans_cancel_status"))
    work(app)

    event = events(app)[-1]
    assert (event.kind, event.status) == ("CANCEL_STATUS_CHANGED", "DONE")
    assert (event.order_id, event.payment_key) == (order.order_id, CARD_PK)
    assert [c.request.url for c in toss.calls] == [by_key(CARD_PK)]
    assert get_order(app, order.order_id).status == "REFUNDED"


@pytest.mark.parametrize(
    "data",
    [
        cancel_entry(5_000, 0, "txkey_someone_elses_0001"),
        {"cancelStatus": "DONE", "cancelAmount": 5_000},
        {},
    ],
    ids=["unknown-transaction", "no-transaction-key", "empty"],
)
def test_cancel_status_changed_naming_nothing_of_ours_is_ignored_not_rejected(
    app: Flask,
    client: FlaskClient,
    toss: responses.RequestsMock,
    order: Order,
    data: dict[str, Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    pay_by_card(app, toss, order)

    with caplog.at_level(logging.INFO):
        post(client, cancel_status_changed(data))
        work(app)

    (event,) = events(app)
    assert (event.kind, event.status) == ("CANCEL_STATUS_CHANGED", "IGNORED")
    assert event.result == "cancel of a transaction this shop does not know"
    assert len(toss.calls) == 0
    assert get_order(app, order.order_id).status == "PAID"
    assert not [r for r in caplog.records if "security" in r.getMessage()]


@pytest.mark.parametrize(
    "body",
    [
        {
            "eventType": "BILLING_DELETED",
            "createdAt": "2026-11-22T12:00:00.000000",
            "data": {"billingKey": "bk_1"},
        },
        {
            "eventType": "METHOD_UPDATED",
            "createdAt": "2026-11-22T12:00:00.000000",
            "data": {"customerKey": "c_1"},
        },
        {
            "eventType": "CUSTOMER_STATUS_CHANGED",
            "createdAt": "2026-11-22T12:00:00.000000",
            "data": {},
        },
        {"hello": "world"},
        {"eventType": 5, "orderId": "ord_Wk3nR7tY2uI8oP4a"},
    ],
    ids=["billing-deleted", "method-updated", "customer-status", "no-event-type", "odd-event-type"],
)
def test_unknown_event_kinds_are_stored_and_end_ignored(
    app: Flask, client: FlaskClient, toss: responses.RequestsMock, body: dict[str, Any]
) -> None:
    resp = post(client, encode(body))

    assert resp.status_code == 200
    assert work(app) == 1
    (event,) = events(app)
    expected_kind = body["eventType"] if isinstance(body.get("eventType"), str) else "UNKNOWN"
    assert (event.kind, event.status) == (expected_kind, "IGNORED")
    assert event.processed_at is not None
    assert len(toss.calls) == 0


# -- retention ------------------------------------------------------------------------------


def test_prune_drops_old_processed_bodies_and_keeps_metadata(
    app: Flask, client: FlaskClient, toss: responses.RequestsMock, order: Order
) -> None:
    toss_says(
        toss, by_key(CARD_PK), payment_json(order.order_id, order.amount, CARD_PK, "IN_PROGRESS")
    )
    post(
        client,
        status_changed(order.order_id, order.amount, CARD_PK),
        toss_headers("whtrans_old_done"),
    )
    post(client, encode({"eventType": "BILLING_DELETED"}), toss_headers("whtrans_old_ignored"))
    post(
        client,
        encode({"eventType": "PAYMENT_STATUS_CHANGED", "data": {}}),
        toss_headers("whtrans_old_rejected"),
    )
    post(client, encode({"eventType": "METHOD_UPDATED"}), toss_headers("whtrans_recent_ignored"))
    work(app)
    post(
        client,
        encode({"eventType": "CUSTOMER_STATUS_CHANGED"}),
        toss_headers("whtrans_old_pending"),
    )
    old_done, old_ignored, old_rejected, recent, old_pending = events(app)
    assert [e.status for e in events(app)] == ["DONE", "IGNORED", "REJECTED", "IGNORED", "PENDING"]
    now = utcnow()
    for e in (old_done, old_ignored, old_rejected, old_pending):
        set_event(app, e.id, received_at=now - timedelta(days=31))
    set_event(app, recent.id, received_at=now - timedelta(days=29))

    with app.app_context():
        assert prune(30, now) == 3
        assert prune(30, now) == 0

    after = {e.id: e for e in events(app)}
    for e in (old_done, old_ignored, old_rejected):
        pruned = after[e.id]
        assert pruned.body is None
        assert pruned.pruned_at is not None
        assert (pruned.kind, pruned.status, pruned.order_id, pruned.payment_key) == (
            e.kind,
            e.status,
            e.order_id,
            e.payment_key,
        )
        assert (pruned.body_sha256, pruned.dedupe_key) == (e.body_sha256, e.dedupe_key)
    assert after[old_done.id].order_id == order.order_id
    for e in (recent, old_pending):
        assert after[e.id].body == e.body
        assert after[e.id].pruned_at is None
