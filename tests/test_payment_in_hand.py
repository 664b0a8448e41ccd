"""Only the payment in hand decides an order: sequences with several payment windows.

Toss creates a paymentKey for every payment window, so one order can have several payments. A
window left unfinished expires (EXPIRED, failure EXPIRED_PAYMENT) and a refused approval leaves
an ABORTED payment, each announced by a PAYMENT_STATUS_CHANGED webhook; closing a window changes
nothing and sends nothing; a virtual account's issuance is announced by a DEPOSIT_CALLBACK
carrying the payment's `secret` (https://docs.tosspayments.com/reference/using-api/webhook-events;
the EXPIRED payment's failure as shown on Toss's forum,
https://techchat.tosspayments.com/m/1410526054635933798).

Toss is a stateful fake on `responses` (`FakeToss`): it knows each window's payment, confirms a
paymentKey at most once and replays an Idempotency-Key's first answer, and by orderId it answers
with the order's first window — the lookup by orderId may describe any window of the order, and
these tests take the least helpful one. Each test replays a sequence of redirects, webhooks,
lookups and reconcile runs and checks the end state: the order follows the payment in hand, and
what is said about another window lands on its timeline (`other_payment`) and nowhere else.
"""

from __future__ import annotations

import itertools
import json
import logging
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
import requests
import responses
from flask import Flask
from sqlalchemy import select, update
from werkzeug.test import TestResponse

from payments.core.clock import utcnow
from payments.core.models import AuditEntry, Order, Payment, WebhookEvent
from payments.extensions import db
from payments.ops.reconcile import reconcile
from payments.webhooks.worker import run_once
from tests.helpers import (
    CONFIRM_URL,
    TOSS,
    error_json,
    fixture,
    get_order,
    payment_json,
    status_changed,
    success_url,
    transitions,
    transitions_to,
)

BY_ORDER = re.compile(re.escape(TOSS) + r"/v1/payments/orders/([^/]+)$")
BY_KEY = re.compile(re.escape(TOSS) + r"/v1/payments/([^/]+)$")
HOOK = "/api/payment/webhook"
EXPIRED_FAILURE = ("EXPIRED_PAYMENT", "결제가 만료되었습니다. 다시 시도해주세요.")
VA_SECRET = "ps_InHandSecret0000000000001"

Wire = tuple[int, dict[str, str], str]


# -- Toss ------------------------------------------------------------------------------------------


@dataclass
class Window:
    """One payment window of an order, as Toss records it (authenticated: IN_PROGRESS)."""

    order_id: str
    amount: int
    payment_key: str
    virtual_account: bool = False
    refuse: str | None = None  # confirm answers this error code and the payment is ABORTED
    status: str = "IN_PROGRESS"
    failure: tuple[str, str] | None = None


@dataclass
class FakeToss:
    """Toss's books for the test's orders, served through `responses`."""

    windows: list[Window] = field(default_factory=list)
    replies: dict[str, tuple[int, dict[str, Any]]] = field(default_factory=dict)
    confirms: list[tuple[str, str]] = field(default_factory=list)  # (paymentKey, Idempotency-Key)
    # While set, Toss works but every answer is lost: confirms time out, lookups cannot connect.
    outage: bool = False
    # Runs (in another thread, once) after Toss decided a confirm and before it answers.
    while_confirming: Callable[[], None] | None = None
    errors: list[BaseException] = field(default_factory=list)

    def install(self, mock: responses.RequestsMock) -> None:
        mock.add_callback(responses.POST, CONFIRM_URL, callback=self._confirm)
        mock.add_callback(responses.GET, BY_ORDER, callback=self._by_order)
        mock.add_callback(responses.GET, BY_KEY, callback=self._by_key)

    def open(
        self, order: Order, *, virtual_account: bool = False, refuse: str | None = None
    ) -> Window:
        n = sum(w.order_id == order.order_id for w in self.windows) + 1
        window = Window(
            order.order_id,
            order.amount,
            f"tgen_{order.order_id[:20]}_w{n}",
            virtual_account=virtual_account,
            refuse=refuse,
        )
        self.windows.append(window)
        return window

    def expire(self, window: Window) -> None:
        """The window's 30 minutes (or the 10 after authentication) passed unconfirmed."""
        assert window.status == "IN_PROGRESS"
        window.status, window.failure = "EXPIRED", EXPIRED_FAILURE

    def deposit(self, window: Window) -> None:
        assert window.status == "WAITING_FOR_DEPOSIT"
        window.status = "DONE"

    def payment(self, window: Window) -> dict[str, Any]:
        extra: dict[str, Any] = {}
        if window.status not in ("DONE", "WAITING_FOR_DEPOSIT"):
            extra["lastTransactionKey"] = None
        if window.failure:
            extra["failure"] = {"code": window.failure[0], "message": window.failure[1]}
        if window.virtual_account:
            extra.update(
                method="가상계좌",
                card=None,
                secret=VA_SECRET,
                virtualAccount={
                    "accountType": "일반",
                    "accountNumber": "X6515006029612",
                    "bankCode": "20",
                    "customerName": "김토스",
                    "dueDate": "2026-11-29T23:59:59+09:00",
                    "refundStatus": "NONE",
                    "expired": False,
                    "settlementStatus": "INCOMPLETED",
                    "refundReceiveAccount": None,
                },
            )
        return payment_json(
            window.order_id, window.amount, window.payment_key, window.status, **extra
        )

    def charged(self, order_id: str) -> list[str]:
        """paymentKeys of the order's payments that hold money (or await it)."""
        return [
            w.payment_key
            for w in self.windows
            if w.order_id == order_id and w.status in ("DONE", "WAITING_FOR_DEPOSIT")
        ]

    def _find(self, payment_key: str) -> Window | None:
        return next((w for w in self.windows if w.payment_key == payment_key), None)

    def _confirm(self, request: Any) -> Exception | Wire:
        key = request.headers["Idempotency-Key"]
        body = json.loads(request.body)
        self.confirms.append((body["paymentKey"], key))
        if key not in self.replies:  # Toss runs a key once and replays its answer
            self.replies[key] = self._decide(body)
        if self.while_confirming is not None:
            hook, self.while_confirming = self.while_confirming, None
            self._in_thread(hook)
        if self.outage:
            return requests.ReadTimeout("the answer was lost (test outage)")
        return _wire(*self.replies[key])

    def _decide(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        window = self._find(body["paymentKey"])
        if window is None or window.order_id != body["orderId"] or window.status == "EXPIRED":
            return 404, error_json("NOT_FOUND_PAYMENT_SESSION", "결제 시간이 만료되었습니다.")
        if window.status != "IN_PROGRESS":
            return 400, error_json("ALREADY_PROCESSED_PAYMENT", "이미 처리된 결제 입니다.")
        if window.refuse:
            window.status = "ABORTED"
            window.failure = (window.refuse, "카드사에서 거절했습니다.")
            return 403, error_json(window.refuse, "카드사에서 거절했습니다.")
        window.status = "WAITING_FOR_DEPOSIT" if window.virtual_account else "DONE"
        return 200, self.payment(window)

    def _by_order(self, request: Any) -> Exception | Wire:
        if self.outage:
            return requests.ConnectionError("Toss unreachable (test outage)")
        order_id = BY_ORDER.match(request.url).group(1)  # type: ignore[union-attr]
        mine = [w for w in self.windows if w.order_id == order_id]
        if not mine:
            return _wire(404, error_json("NOT_FOUND_PAYMENT", "존재하지 않는 결제 입니다."))
        return _wire(200, self.payment(mine[0]))  # the first window, whatever became of it

    def _by_key(self, request: Any) -> Exception | Wire:
        if self.outage:
            return requests.ConnectionError("Toss unreachable (test outage)")
        window = self._find(BY_KEY.match(request.url).group(1))  # type: ignore[union-attr]
        if window is None:
            return _wire(404, error_json("NOT_FOUND_PAYMENT", "존재하지 않는 결제 입니다."))
        return _wire(200, self.payment(window))

    def _in_thread(self, hook: Callable[[], None]) -> None:
        def run() -> None:
            try:
                hook()
            except BaseException as exc:  # noqa: BLE001 — reported by the test
                self.errors.append(exc)

        thread = threading.Thread(target=run)
        thread.start()
        thread.join(60)
        assert not thread.is_alive(), "the webhook delivered during confirm is stuck"


def _wire(status: int, body: dict[str, Any]) -> Wire:
    return status, {"Content-Type": "application/json"}, json.dumps(body)


@pytest.fixture
def fake(toss: responses.RequestsMock) -> Iterator[FakeToss]:
    toss_books = FakeToss()
    toss_books.install(toss)
    yield toss_books
    assert toss_books.errors == []


@pytest.fixture
def order(order_factory: Callable[..., Order]) -> Order:
    return order_factory()


# -- the shop's doors ------------------------------------------------------------------------------


def redirect(app: Flask, window: Window) -> TestResponse:
    """Toss sends the shopper back to the success URL of `window`."""
    return app.test_client().get(success_url(window.order_id, window.payment_key, window.amount))


def deliver(app: Flask, fake: FakeToss, window: Window, tid: str) -> None:
    """Toss posts a PAYMENT_STATUS_CHANGED carrying the window's payment; the worker runs."""
    raw, headers = status_changed(window.order_id, window.amount, window.payment_key, tid)
    body = json.loads(raw)
    body["data"] = fake.payment(window)
    resp = app.test_client().post(HOOK, data=json.dumps(body), headers=headers)
    assert resp.status_code == 200
    work(app)


def deposit_callback(
    app: Flask, window: Window, status: str, tid: str, secret: str = VA_SECRET
) -> None:
    """Toss posts a DEPOSIT_CALLBACK {createdAt, secret, status, transactionKey, orderId}."""
    body = fixture("webhooks/deposit_callback.json")
    body.update(orderId=window.order_id, secret=secret, status=status)
    resp = app.test_client().post(
        HOOK,
        data=json.dumps(body),
        headers={"Content-Type": "application/json", "tosspayments-webhook-transmission-id": tid},
    )
    assert resp.status_code == 200
    work(app)


def work(app: Flask) -> None:
    with app.app_context():
        while run_once("in-hand-test"):
            pass
        db.session.remove()


def reconcile_later(app: Flask) -> None:
    """`flask payments reconcile` two minutes from now (in-flight orders count as quiet)."""
    with app.app_context():
        reconcile(now=utcnow() + timedelta(minutes=2))
        db.session.remove()


# -- what the shop holds ---------------------------------------------------------------------------


def others(app: Flask, order_id: str) -> list[tuple[str | None, str | None]]:
    """The timeline's notes about payments that were not the one in hand: (paymentKey, status)."""
    with app.app_context():
        return [
            (a.payment_key, a.code)
            for a in db.session.scalars(
                select(AuditEntry)
                .join(Order, Order.id == AuditEntry.order_pk)
                .where(Order.order_id == order_id, AuditEntry.event == "other_payment")
                .order_by(AuditEntry.id)
            )
        ]


def stored_payment(app: Flask, order_id: str) -> tuple[str, str, int, str | None] | None:
    with app.app_context():
        row = db.session.execute(
            select(Payment).join(Order).where(Order.order_id == order_id)
        ).scalar_one_or_none()
        return None if row is None else (row.payment_key, row.status, row.total_amount, row.secret)


def events(app: Flask) -> list[WebhookEvent]:
    with app.app_context():
        rows = list(db.session.scalars(select(WebhookEvent).order_by(WebhookEvent.id)))
        db.session.expunge_all()
        return rows


def assert_paid_by(app: Flask, fake: FakeToss, window: Window) -> None:
    """The order is PAID by `window`'s payment, once, and Toss holds exactly that money."""
    after = get_order(app, window.order_id)
    assert (after.status, after.payment_key) == ("PAID", window.payment_key)
    assert stored_payment(app, window.order_id) == (
        window.payment_key,
        "DONE",
        window.amount,
        None,
    )
    assert transitions_to(app, window.order_id, "PAID") == 1
    assert fake.charged(window.order_id) == [window.payment_key]


# -- an older window's EXPIRED webhook -------------------------------------------------------------


def test_first_windows_expiry_while_the_second_is_confirming_changes_nothing(
    app: Flask, fake: FakeToss, order: Order
) -> None:
    """Window 1 was abandoned and Toss expires it while the shop confirms window 2."""
    first, second = fake.open(order), fake.open(order)
    fake.expire(first)
    fake.while_confirming = lambda: deliver(app, fake, first, "whtrans_first_expired")

    resp = redirect(app, second)

    assert resp.status_code == 303
    assert "/checkout/fail" not in resp.headers["Location"]
    assert_paid_by(app, fake, second)
    (event,) = events(app)
    assert (event.status, event.payment_key) == ("DONE", first.payment_key)
    assert event.result == "Toss EXPIRED: CONFIRMING → CONFIRMING"
    assert others(app, order.order_id) == [(first.payment_key, "EXPIRED")]


@pytest.mark.parametrize("settled_by", ["reconcile", "order page"])
def test_first_windows_expiry_while_the_second_needs_reconcile_changes_nothing(
    app: Flask, fake: FakeToss, order: Order, settled_by: str
) -> None:
    first, second = fake.open(order), fake.open(order)
    fake.expire(first)
    fake.outage = True  # Toss approves window 2, but neither the answer nor a lookup gets back
    resp = redirect(app, second)
    fake.outage = False
    assert get_order(app, order.order_id).status == "NEEDS_RECONCILE"

    deliver(app, fake, first, "whtrans_first_expired")

    after = get_order(app, order.order_id)
    assert (after.status, after.payment_key) == ("NEEDS_RECONCILE", second.payment_key)
    assert others(app, order.order_id) == [(first.payment_key, "EXPIRED")]

    # The lookup by orderId answers with window 1 again; the attempt's own paymentKey settles.
    if settled_by == "reconcile":
        reconcile_later(app)
    else:  # the payer's "결제 확인 중" page asks the success URL again, which asks Toss
        assert resp.status_code == 202  # no order link before Toss's record shows the payment
        again = redirect(app, second)
        assert again.status_code == 303
        assert app.test_client().get(again.headers["Location"]).status_code == 200

    assert_paid_by(app, fake, second)
    assert {key for pk, key in fake.confirms if pk == second.payment_key} == {
        after.confirm_idempotency_key
    }
    assert others(app, order.order_id) == [(first.payment_key, "EXPIRED")]


def test_first_windows_expiry_after_the_second_paid_is_only_noted(
    app: Flask, fake: FakeToss, order: Order
) -> None:
    first, second = fake.open(order), fake.open(order)
    redirect(app, second)
    assert_paid_by(app, fake, second)
    trail = transitions(app, order.order_id)
    fake.expire(first)

    deliver(app, fake, first, "whtrans_first_expired")

    assert_paid_by(app, fake, second)
    assert transitions(app, order.order_id) == trail
    assert others(app, order.order_id) == [(first.payment_key, "EXPIRED")]
    (event,) = events(app)
    assert (event.status, event.result) == ("DONE", "Toss EXPIRED: PAID → PAID")


# -- a refused window, then another ----------------------------------------------------------------


@pytest.mark.parametrize("webhook", ["before", "while_confirming", "after"])
def test_aborted_confirm_then_success_in_a_second_window(
    app: Flask, fake: FakeToss, order: Order, webhook: str
) -> None:
    """Toss refuses window 1's confirm (403 REJECT_CARD_COMPANY, the payment is ABORTED and its
    webhook follows, https://docs.tosspayments.com/reference/error-codes); the shopper pays in a
    second window. The ABORTED webhook, whenever it is processed, never touches window 2."""
    first = fake.open(order, refuse="REJECT_CARD_COMPANY")

    refused = redirect(app, first)

    assert "/checkout/fail?code=REJECT_CARD_COMPANY" in refused.headers["Location"]
    after = get_order(app, order.order_id)
    assert (after.status, after.payment_key) == ("PENDING", None)
    assert after.failure_code == "REJECT_CARD_COMPANY"
    second = fake.open(order)
    if webhook == "before":
        deliver(app, fake, first, "whtrans_first_aborted")
    elif webhook == "while_confirming":
        fake.while_confirming = lambda: deliver(app, fake, first, "whtrans_first_aborted")

    paid = redirect(app, second)

    assert "/checkout/fail" not in paid.headers["Location"]
    if webhook == "after":
        deliver(app, fake, first, "whtrans_first_aborted")
    assert_paid_by(app, fake, second)
    assert get_order(app, order.order_id).failure_code is None
    assert others(app, order.order_id) == [(first.payment_key, "ABORTED")]
    assert [e.status for e in events(app)] == ["DONE"]


def test_confirm_of_an_attempt_toss_already_aborted_leaves_the_order_payable(
    app: Flask, fake: FakeToss, order: Order
) -> None:
    """Toss answers ALREADY_PROCESSED_PAYMENT and its record of the attempt is ABORTED (with
    the reason, e.g. COMMON_ERROR, https://docs.tosspayments.com/reference/error-codes): the
    attempt is over and the order payable again, with the reason in Korean."""
    window = fake.open(order)
    window.status = "ABORTED"
    window.failure = ("COMMON_ERROR", "일시적인 오류가 발생했습니다. 잠시 후 다시 시도해주세요.")

    resp = redirect(app, window)

    assert "/checkout/fail?code=COMMON_ERROR" in resp.headers["Location"]
    after = get_order(app, order.order_id)
    assert (after.status, after.payment_key, after.failure_code) == (
        "PENDING",
        None,
        "COMMON_ERROR",
    )
    assert after.failure_message == "일시적인 오류가 발생했습니다. 잠시 후 다시 결제해주세요."
    assert others(app, order.order_id) == []


# -- the virtual account's issuance callback -------------------------------------------------------


def test_issuance_callback_before_the_confirm_answer_is_stored_is_accepted(
    app: Flask, fake: FakeToss, order: Order, caplog: pytest.LogCaptureFixture
) -> None:
    """Toss announces the issued account (DEPOSIT_CALLBACK, WAITING_FOR_DEPOSIT) while the shop
    still waits for its confirm answer: no payment, no secret stored yet. The callback's secret
    is compared with Toss's own record of the order instead."""
    caplog.set_level(logging.INFO)
    window = fake.open(order, virtual_account=True)
    fake.while_confirming = lambda: deposit_callback(
        app, window, "WAITING_FOR_DEPOSIT", "whtrans_issued"
    )

    resp = redirect(app, window)

    assert "/checkout/fail" not in resp.headers["Location"]
    (event,) = events(app)
    assert (event.kind, event.status) == ("DEPOSIT_CALLBACK", "DONE")
    assert event.result == "Toss WAITING_FOR_DEPOSIT: CONFIRMING → AWAITING_DEPOSIT"
    after = get_order(app, order.order_id)
    assert (after.status, after.payment_key) == ("AWAITING_DEPOSIT", window.payment_key)
    assert stored_payment(app, order.order_id) == (
        window.payment_key,
        "WAITING_FOR_DEPOSIT",
        order.amount,
        VA_SECRET,
    )
    assert transitions_to(app, order.order_id, "AWAITING_DEPOSIT") == 1
    assert not [r for r in caplog.records if "security" in r.getMessage()]
    assert all(VA_SECRET not in r.getMessage() for r in caplog.records)

    fake.deposit(window)
    deposit_callback(app, window, "DONE", "whtrans_deposited")

    assert get_order(app, order.order_id).status == "PAID"


def test_issuance_callback_with_a_wrong_secret_before_the_answer_is_still_rejected(
    app: Flask, fake: FakeToss, order: Order, caplog: pytest.LogCaptureFixture
) -> None:
    window = fake.open(order, virtual_account=True)
    fake.while_confirming = lambda: deposit_callback(
        app, window, "WAITING_FOR_DEPOSIT", "whtrans_forged", secret="ps_forged_000000000000"
    )
    with caplog.at_level(logging.WARNING):
        redirect(app, window)

    (event,) = events(app)
    assert (event.status, event.result) == ("REJECTED", "secret mismatch")
    assert any("security" in r.getMessage() for r in caplog.records)
    assert get_order(app, order.order_id).status == "AWAITING_DEPOSIT"  # the confirm answer


def test_issuance_callback_waits_while_toss_shows_another_windows_payment(
    app: Flask, fake: FakeToss, order: Order, caplog: pytest.LogCaptureFixture
) -> None:
    """By orderId Toss answers with an earlier card window (no secret): nothing can be verified
    yet, so the callback is retried later (never rejected), and then matches the stored secret."""
    caplog.set_level(logging.INFO)
    card = fake.open(order)
    fake.expire(card)
    account = fake.open(order, virtual_account=True)
    fake.while_confirming = lambda: deposit_callback(
        app, account, "WAITING_FOR_DEPOSIT", "whtrans_issued"
    )

    redirect(app, account)

    (event,) = events(app)
    assert (event.status, event.attempts) == ("PENDING", 1)
    assert "secret" in (event.last_error or "")
    assert get_order(app, order.order_id).status == "AWAITING_DEPOSIT"  # the confirm answer
    with app.app_context():
        db.session.execute(
            update(WebhookEvent).values(next_attempt_at=utcnow() - timedelta(seconds=1))
        )
        db.session.commit()

    work(app)

    (event,) = events(app)
    assert (event.status, event.payment_key) == ("DONE", account.payment_key)
    assert not [r for r in caplog.records if "security" in r.getMessage()]
    after = get_order(app, order.order_id)
    assert (after.status, after.payment_key) == ("AWAITING_DEPOSIT", account.payment_key)
    assert others(app, order.order_id) == [(card.payment_key, "EXPIRED")]


def test_issuance_callback_after_the_confirm_answer_is_stored(
    app: Flask, fake: FakeToss, order: Order
) -> None:
    window = fake.open(order, virtual_account=True)
    redirect(app, window)
    trail = transitions(app, order.order_id)

    deposit_callback(app, window, "WAITING_FOR_DEPOSIT", "whtrans_issued")

    (event,) = events(app)
    assert (event.status, event.payment_key) == ("DONE", window.payment_key)
    assert transitions(app, order.order_id) == trail
    fake.deposit(window)
    deposit_callback(app, window, "DONE", "whtrans_deposited")
    assert get_order(app, order.order_id).status == "PAID"
    assert transitions(app, order.order_id)[len(trail) :] == [
        ("AWAITING_DEPOSIT", "PAID", "webhook")
    ]


# -- every ordering of one recorded sequence -------------------------------------------------------

# The recorded story of one order: window 1 was abandoned and Toss expired it; window 2 was
# approved, but the shop lost Toss's answer and its lookups in that request (NEEDS_RECONCILE).
# Its five events, replayed in every order:
SEQUENCE = (
    "window 1's late redirect",  # another tab returns from the expired window
    "window 2's redirect",  # the confirm: Toss approves, the answers are lost
    "window 1's EXPIRED webhook",
    "window 2's DONE webhook",
    "reconcile run",
)


def play(app: Flask, fake: FakeToss, first: Window, second: Window, event: str) -> None:
    if event == "window 1's late redirect":
        # 202 while window 2 is in flight: the browser waits and asks the success URL again.
        assert redirect(app, first).status_code in (202, 303)
    elif event == "window 2's redirect":
        fake.outage = True
        # 202: the payer waits on the "결제 확인 중" page; 303: the order is settled already.
        assert redirect(app, second).status_code in (202, 303)
        fake.outage = False
    elif event == "window 1's EXPIRED webhook":
        deliver(app, fake, first, f"wh_{first.payment_key}")
    elif event == "window 2's DONE webhook":
        deliver(app, fake, second, f"wh_{second.payment_key}")
    else:
        reconcile_later(app)


def end_state(app: Flask, fake: FakeToss, first: Window, second: Window) -> tuple[Any, ...]:
    """What the shop and Toss hold for the order, with the windows' keys named generically."""
    names = {first.payment_key: "window 1", second.payment_key: "window 2", None: None}
    after = get_order(app, first.order_id)
    stored = stored_payment(app, first.order_id)
    return (
        str(after.status),
        names[after.payment_key],
        after.failure_code,
        stored and (names[stored[0]], *stored[1:]),
        transitions_to(app, first.order_id, "PAID"),
        [(names[pk], status) for pk, status in others(app, first.order_id)],
        [names[pk] for pk in fake.charged(first.order_id)],
        len({key for pk, key in fake.confirms if pk == second.payment_key}),
    )


def test_every_ordering_of_a_multi_window_sequence_ends_in_the_same_state(
    app: Flask, fake: FakeToss, order_factory: Callable[..., Order]
) -> None:
    """All 120 orderings of SEQUENCE, each on an order of its own, then the worker and reconcile
    once more (as they run on their schedule): one end state, window 2's payment."""
    ends: dict[str, list[tuple[str, ...]]] = {}
    seen: set[str] = set()  # the order's statuses between events, over all orderings
    amount = 0
    for ordering in itertools.permutations(SEQUENCE):
        order = order_factory()
        amount = order.amount
        first, second = fake.open(order), fake.open(order)
        fake.expire(first)
        for event in ordering:
            play(app, fake, first, second, event)
            seen.add(str(get_order(app, order.order_id).status))
        work(app)
        reconcile_later(app)
        ends.setdefault(repr(end_state(app, fake, first, second)), []).append(ordering)

    # Older windows' events met the order payable, in doubt and paid.
    assert seen == {"PENDING", "NEEDS_RECONCILE", "PAID"}
    assert len(ends) == 1, "\n".join(f"{len(o)} orderings: {state}" for state, o in ends.items())
    assert next(iter(ends)) == repr(
        (
            "PAID",
            "window 2",
            None,
            ("window 2", "DONE", amount, None),
            1,
            [("window 1", "EXPIRED")],
            ["window 2"],
            1,
        )
    )
