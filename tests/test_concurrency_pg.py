"""Concurrency proofs: every door to one confirmation racing at once, settled by the database.

Each test runs against two Tosses: a stateful fake on `responses` (counts every confirm call and
its Idempotency-Key) and the in-process sandbox (counts `confirmRequests` itself). They run on
PostgreSQL with TEST_DATABASE_URL (where row locks and READ COMMITTED decide the races) and on
SQLite, which passes them too, except the row-lock proof, which needs PostgreSQL (`postgres`).
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import responses
from flask import Flask

from payments.checkout.confirm import confirm_idempotency_key
from payments.core.models import AuditEntry, Order, Payment, WebhookEvent
from payments.extensions import db
from payments.sandbox.testing import SandboxDriver
from payments.shop.catalog import seed_catalog
from payments.webhooks.worker import run_once
from tests.helpers import (
    CONFIRM_URL,
    TOSS,
    Shopper,
    dispose,
    get_order,
    make_app,
    payment_json,
    race,
    sandbox_app,
    status_changed,
    success_url,
    transitions,
    transitions_to,
)

DOORS = ("success", "verify", "confirm", "second_tab")
LOOKUP_BY_ORDER = re.compile(re.escape(TOSS) + r"/v1/payments/orders/([^/]+)$")
LOOKUP_BY_KEY = re.compile(re.escape(TOSS) + r"/v1/payments/([^/]+)$")
CANCEL = re.compile(re.escape(TOSS) + r"/v1/payments/([^/]+)/cancel$")
SLOW_ANSWER = 0.2


@pytest.fixture
def postgres(pg_base_url: str | None) -> None:
    """For proofs that only hold where the database takes row locks (PostgreSQL)."""
    if not pg_base_url:
        pytest.skip("needs TEST_DATABASE_URL (PostgreSQL)")


# -- a stateful fake Toss on `responses` ---------------------------------------------------------


class FakeToss:
    """Toss as far as confirmation goes: a paymentKey is confirmed at most once (a repeat with a
    new key gets ALREADY_PROCESSED_PAYMENT, with the same key the stored answer), and lookups
    show IN_PROGRESS until then. Every call is recorded; cancels are recorded and refused."""

    def __init__(self, rsps: responses.RequestsMock, latency: float = 0.05) -> None:
        self.latency = latency
        self.answer_delay = 0.0  # Toss has done the work; its answer is still on the way
        self.lock = threading.Lock()
        self.sessions: dict[str, tuple[str, int]] = {}  # paymentKey → (orderId, amount)
        self.done: dict[str, dict[str, Any]] = {}
        self.replies: dict[str, tuple[int, dict[str, Any]]] = {}
        self.confirms: list[tuple[str, dict[str, Any]]] = []  # (Idempotency-Key, body)
        self.cancels: list[str] = []
        rsps.add_callback(responses.POST, CONFIRM_URL, callback=self._confirm)
        rsps.add_callback(responses.POST, CANCEL, callback=self._cancel)
        rsps.add_callback(responses.GET, LOOKUP_BY_ORDER, callback=self._by_order)
        rsps.add_callback(responses.GET, LOOKUP_BY_KEY, callback=self._by_key)

    def authenticate(self, payment_key: str, order_id: str, amount: int) -> None:
        self.sessions[payment_key] = (order_id, amount)

    def confirm_calls(self, payment_key: str) -> list[str]:
        """The Idempotency-Keys of the confirm calls for `payment_key`."""
        return [key for key, body in self.confirms if body.get("paymentKey") == payment_key]

    def _payment(self, payment_key: str) -> dict[str, Any]:
        if payment_key in self.done:
            return self.done[payment_key]
        order_id, amount = self.sessions[payment_key]
        return payment_json(order_id, amount, payment_key, status="IN_PROGRESS", card=None)

    @staticmethod
    def _json(status: int, body: dict[str, Any]) -> tuple[int, dict[str, str], str]:
        return status, {"Content-Type": "application/json"}, json.dumps(body)

    def _confirm(self, request: Any) -> tuple[int, dict[str, str], str]:
        key = request.headers.get("Idempotency-Key", "")
        body = json.loads(request.body)
        time.sleep(self.latency)  # Toss takes a moment: the other doors arrive meanwhile
        with self.lock:
            self.confirms.append((key, body))
            if key in self.replies:
                return self._json(*self.replies[key])
            pk = body.get("paymentKey")
            if pk not in self.sessions:
                answer = (404, {"code": "NOT_FOUND_PAYMENT", "message": "없는 결제"})
            elif (body.get("orderId"), body.get("amount")) != self.sessions[pk]:
                answer = (400, {"code": "INVALID_REQUEST", "message": "불일치"})
            elif pk in self.done:
                answer = (400, {"code": "ALREADY_PROCESSED_PAYMENT", "message": "이미 처리"})
            else:
                order_id, amount = self.sessions[pk]
                self.done[pk] = payment_json(
                    order_id, amount, pk, lastTransactionKey=f"tx_{pk}"[:64]
                )
                answer = (200, self.done[pk])
            self.replies[key] = answer
        time.sleep(self.answer_delay)
        return self._json(*answer)

    def _by_key(self, request: Any) -> tuple[int, dict[str, str], str]:
        pk = LOOKUP_BY_KEY.match(request.url).group(1)  # type: ignore[union-attr]
        with self.lock:
            if pk not in self.sessions:
                return self._json(404, {"code": "NOT_FOUND_PAYMENT", "message": "없는 결제"})
            return self._json(200, self._payment(pk))

    def _by_order(self, request: Any) -> tuple[int, dict[str, str], str]:
        order_id = LOOKUP_BY_ORDER.match(request.url).group(1)  # type: ignore[union-attr]
        with self.lock:
            for pk, (oid, _) in self.sessions.items():
                if oid == order_id:
                    return self._json(200, self._payment(pk))
        return self._json(404, {"code": "NOT_FOUND_PAYMENT", "message": "없는 결제"})

    def _cancel(self, request: Any) -> tuple[int, dict[str, str], str]:
        self.cancels.append(request.url)
        return self._json(403, {"code": "NOT_CANCELABLE_PAYMENT", "message": "테스트"})


# -- the shop under test, against either Toss -----------------------------------------------------


class Shop:
    """One app, its shopper's browser, and the Toss it talks to."""

    def __init__(self, app: Flask, fake: FakeToss | None) -> None:
        self.app = app
        self.fake = fake
        self.shopper = app.test_client()

    @property
    def kind(self) -> str:
        return "responses" if self.fake else "sandbox"

    def place_order(self) -> tuple[str, int]:
        """The shopper fills the cart and orders; (orderId, amount)."""
        order_id = Shopper(self.app, self.shopper).place_order()
        return order_id, get_order(self.app, order_id).amount

    def authenticate(self, order_id: str, amount: int, scenario: str = "approve") -> str:
        """The shopper finishes Toss's payment window; the paymentKey of the success redirect.

        `slow_confirm`: Toss confirms at once but its answer takes SLOW_ANSWER seconds."""
        if self.fake is not None:
            pk = f"tpk_{order_id[:16]}"
            self.fake.authenticate(pk, order_id, amount)
            if scenario == "slow_confirm":
                self.fake.answer_delay = SLOW_ANSWER
            return pk
        window = self.sandbox().open_window(
            order_id,
            amount,
            scenario=scenario,
            order_name=get_order(self.app, order_id).order_name,
            method="카드",
            success_url="http://localhost/checkout/success",
            fail_url="http://localhost/checkout/fail",
        )
        assert window.query["orderId"] == order_id
        assert window.payment_key is not None, window
        return window.payment_key

    def sandbox(self) -> SandboxDriver:
        assert self.fake is None
        return SandboxDriver.in_process(self.app.test_client())

    def confirm_requests(self, payment_key: str) -> int:
        """How many confirm requests for this payment reached Toss."""
        if self.fake is not None:
            return len(self.fake.confirm_calls(payment_key))
        return int(self.toss_view(payment_key)["sandbox"]["confirmRequests"])

    def toss_view(self, payment_key: str) -> dict[str, Any]:
        return self.sandbox().payment(payment_key)


@pytest.fixture(params=["responses", "sandbox"])
def shop(
    request: pytest.FixtureRequest, database_url: str, toss: responses.RequestsMock
) -> Iterator[Shop]:
    if request.param == "responses":
        app = make_app(database_url)
        fake: FakeToss | None = FakeToss(toss)
    else:
        app = sandbox_app(database_url, sandbox={"slow_confirm_seconds": SLOW_ANSWER})
        fake = None
    with app.app_context():
        seed_catalog()
    yield Shop(app, fake)
    dispose(app)


# -- helpers --------------------------------------------------------------------------------------


def audit_rows(app: Flask, order_id: str) -> list[AuditEntry]:
    """The order's audit rows themselves (every column), oldest first."""
    with app.app_context():
        pk = db.session.execute(db.select(Order.id).filter_by(order_id=order_id)).scalar_one()
        rows = list(
            db.session.scalars(db.select(AuditEntry).filter_by(order_pk=pk).order_by(AuditEntry.id))
        )
        db.session.expunge_all()
        return rows


def payment_rows(app: Flask) -> list[tuple[str, str, int]]:
    """(paymentKey, orderId, amount) of every stored payment."""
    with app.app_context():
        rows = db.session.execute(
            db.select(Payment.payment_key, Order.order_id, Payment.total_amount).join(
                Order, Order.id == Payment.order_pk
            )
        ).all()
        return [tuple(r) for r in rows]  # type: ignore[misc]


@dataclass(frozen=True)
class Answer:
    door: str
    status: int
    code: str | None
    body_status: str | None
    location: str


def door(shop: Shop, name: str, order_id: str, amount: int, pk: str) -> Callable[[], Answer]:
    """One way into the confirmation, with its own browser (made now, used in the thread)."""
    client = shop.app.test_client()
    if name == "second_tab":
        cookie = shop.shopper.get_cookie("session")
        assert cookie is not None
        client.set_cookie("session", cookie.value)
    body = {"paymentKey": pk, "orderId": order_id, "amount": amount}

    def call() -> Answer:
        if name in ("success", "second_tab"):
            resp = client.get(success_url(order_id, pk, amount))
        else:
            resp = client.post(f"/api/payment/{name}", json=body)
        data = resp.get_json(silent=True) or {}
        return Answer(
            name,
            resp.status_code,
            data.get("code"),
            data.get("status"),
            resp.headers.get("Location", ""),
        )

    return call


def assert_acceptable(answers: list[Answer], order_id: str) -> None:
    """Redirect doors land on the order page; API doors get the PAID order or PAYMENT_PENDING.

    The "success" door is a browser that did not order (the payer's webview): until Toss's
    answer is in, it gets the waiting page (202) that asks the success URL again."""
    for a in answers:
        assert a.status < 500, a
        if a.door == "success" and a.status == 202:
            continue
        if a.door in ("success", "second_tab"):
            assert a.status == 303, a
            assert a.location.startswith(f"/orders/{order_id}"), a
        elif a.status == 200:
            assert a.body_status == "PAID", a
        else:
            assert (a.status, a.code) == (409, "PAYMENT_PENDING"), a


def figures(answers: list[Answer]) -> Counter[tuple[str, int, str | None]]:
    return Counter((a.door, a.status, a.code) for a in answers)


# -- 1. sixty-four doors, one order ---------------------------------------------------------------


def test_64_concurrent_confirmations_through_every_door_confirm_once(shop: Shop) -> None:
    order_id, amount = shop.place_order()
    pk = shop.authenticate(order_id, amount)
    calls = [door(shop, DOORS[i % len(DOORS)], order_id, amount, pk) for i in range(64)]

    answers = race(calls)

    assert_acceptable(answers, order_id)
    seen = figures(answers)
    print(f"\n[{shop.kind}] 64 doors: {dict(seen)}")
    assert shop.confirm_requests(pk) == 1
    if shop.fake is not None:
        assert shop.fake.confirm_calls(pk) == [confirm_idempotency_key(order_id, pk)]
        assert shop.fake.cancels == []
    else:
        view = shop.toss_view(pk)
        assert (view["status"], view["orderId"], view["totalAmount"]) == ("DONE", order_id, amount)
    assert get_order(shop.app, order_id).status == "PAID"
    assert payment_rows(shop.app) == [(pk, order_id, amount)]
    assert transitions_to(shop.app, order_id, "CONFIRMING") == 1
    assert transitions_to(shop.app, order_id, "PAID") == 1
    # The winner answered PAID or redirected; nobody was told the payment failed.
    assert all(a.code in (None, "PAYMENT_PENDING") for a in answers)


# -- 2. success redirect, /verify and a webhook -------------------------------------------------


@pytest.mark.parametrize(
    ("scenario", "webhook_delay"),
    [("approve", 0.0), ("approve", 0.1), ("slow_confirm", 0.0), ("slow_confirm", 0.1)],
)
def test_redirect_verify_and_webhook_race_to_one_paid_transition(
    shop: Shop, scenario: str, webhook_delay: float
) -> None:
    """The webhook is processed before, during or after Toss's confirm. With slow_confirm and a
    delay, Toss is DONE while the confirming request still waits for its answer: the webhook's
    lookup sees DONE first and races the request for the CONFIRMING → PAID move."""
    order_id, amount = shop.place_order()
    pk = shop.authenticate(order_id, amount, scenario)
    raw, headers = status_changed(order_id, amount, pk, f"whtrans_race_{order_id[:12]}")
    hook_client = shop.app.test_client()

    def webhook() -> tuple[int, int]:
        time.sleep(webhook_delay)
        ack = hook_client.post("/api/payment/webhook", data=raw, headers=headers).status_code
        with shop.app.app_context():
            processed = run_once(f"race-{order_id[:6]}")
            db.session.remove()
        return ack, processed

    redirect, verify, hook = race(
        [
            door(shop, "success", order_id, amount, pk),
            door(shop, "verify", order_id, amount, pk),
            webhook,
        ]
    )

    assert_acceptable([redirect, verify], order_id)
    assert hook == (200, 1)
    assert shop.confirm_requests(pk) == 1
    assert get_order(shop.app, order_id).status == "PAID"
    assert transitions_to(shop.app, order_id, "PAID") == 1
    assert payment_rows(shop.app) == [(pk, order_id, amount)]
    with shop.app.app_context():
        events = db.session.execute(db.select(WebhookEvent.status, WebhookEvent.result)).all()
    assert [e[0] for e in events] == ["DONE"]
    sources = [source for _src, dst, source in transitions(shop.app, order_id) if dst == "PAID"]
    print(f"\n[{shop.kind}] {scenario} +{webhook_delay}s: {redirect.status} {verify.status}")
    print(f"  event {events[0][1]!r}; PAID moved by {sources}")


# -- 3. two orders from one cart, paid at once ----------------------------------------------------


def test_two_orders_from_one_cart_paid_concurrently_stay_apart(shop: Shop) -> None:
    first, amount = shop.place_order()
    second, amount2 = shop.place_order()  # the cart was emptied by the first order, then re-filled
    assert first != second
    assert amount == amount2  # same basket, same amount: only the ids tell them apart
    keys = {first: shop.authenticate(first, amount), second: shop.authenticate(second, amount)}
    calls = [
        door(shop, DOORS[i % len(DOORS)], oid, amount, keys[oid])
        for i in range(16)
        for oid in (first, second)
    ]

    answers = race(calls)

    print(f"\n[{shop.kind}] two orders x16 doors: {dict(figures(answers))}")
    for i, a in enumerate(answers):
        assert_acceptable([a], first if i % 2 == 0 else second)
    for oid in (first, second):
        assert get_order(shop.app, oid).status == "PAID"
        assert shop.confirm_requests(keys[oid]) == 1
        assert transitions_to(shop.app, oid, "PAID") == 1
    assert sorted(payment_rows(shop.app)) == sorted(
        [(keys[first], first, amount), (keys[second], second, amount)]
    )
    idem = {oid: get_order(shop.app, oid).confirm_idempotency_key for oid in (first, second)}
    assert idem == {oid: confirm_idempotency_key(oid, keys[oid]) for oid in (first, second)}
    assert idem[first] != idem[second]
    if shop.fake is not None:
        assert shop.fake.confirm_calls(keys[first]) == [idem[first]]
        assert shop.fake.confirm_calls(keys[second]) == [idem[second]]
    for oid, other in ((first, second), (second, first)):
        for entry in audit_rows(shop.app, oid):
            text = " ".join(
                str(v or "") for v in (entry.payment_key, entry.transaction_key, entry.detail)
            )
            assert keys[other] not in text, (oid, entry.event, text)
            assert other not in text
        assert {a.payment_key for a in audit_rows(shop.app, oid) if a.payment_key} == {keys[oid]}


# -- 4. PostgreSQL only: writers queued on the order's row lock -----------------------------------


def test_confirmations_queued_on_the_order_row_lock_confirm_once(
    postgres: None, shop: Shop
) -> None:
    """Another transaction (an operator, a reconcile pass) holds the order row FOR UPDATE while
    twelve doors arrive: their conditional UPDATEs queue on the lock. When it is released,
    PostgreSQL re-checks `status = 'PENDING'` for each queued UPDATE (READ COMMITTED), so exactly
    one wins and the others see CONFIRMING. SQLite has no row locks to prove this with."""
    order_id, amount = shop.place_order()
    pk = shop.authenticate(order_id, amount)
    calls = [door(shop, DOORS[i % len(DOORS)], order_id, amount, pk) for i in range(12)]
    answers: list[Answer] = []

    with shop.app.app_context():
        engine = db.engine
        holder = engine.connect()
    try:
        lock = holder.begin()
        holder.execute(
            db.text("SELECT id FROM orders WHERE order_id = :o FOR UPDATE"), {"o": order_id}
        )
        racing = threading.Thread(target=lambda: answers.extend(race(calls)))
        racing.start()
        waiting = 0
        deadline = time.monotonic() + 10
        with engine.connect() as watch:
            while time.monotonic() < deadline:
                waiting = watch.execute(
                    db.text(
                        "SELECT count(*) FROM pg_stat_activity "
                        "WHERE datname = current_database() AND wait_event_type = 'Lock'"
                    )
                ).scalar_one()
                watch.commit()
                if waiting >= len(calls):
                    break
                time.sleep(0.02)
        assert waiting == len(calls)  # every door is parked on the row lock
        assert shop.confirm_requests(pk) == 0
        lock.commit()
        racing.join(30)
        assert not racing.is_alive()
    finally:
        holder.close()

    print(f"\n[{shop.kind}] 12 doors behind a row lock: {dict(figures(answers))}")
    assert len(answers) == len(calls)
    assert_acceptable(answers, order_id)
    assert shop.confirm_requests(pk) == 1
    assert get_order(shop.app, order_id).status == "PAID"
    assert transitions_to(shop.app, order_id, "CONFIRMING") == 1
    assert transitions_to(shop.app, order_id, "PAID") == 1
    assert payment_rows(shop.app) == [(pk, order_id, amount)]
