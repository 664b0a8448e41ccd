"""Faults between the shop and Toss, and in the shop's own database, during confirmation.

Every fault runs against two Tosses: a stateful fake on `responses` (it confirms a paymentKey
at most once and replays an Idempotency-Key's stored answer, as Toss does) and the in-process
sandbox, whose transport is wrapped so the same faults hit real sandbox calls. Faults marked
"before" never reach Toss; "after" ones reach it (the work is done) and spoil the answer.
Whatever happens: one Idempotency-Key, at most one DONE payment at Toss, no cancel, and once
`reconcile` has run the order agrees with Toss (PAID), or is payable again (PENDING) when Toss
provably did nothing.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
import responses
from flask import Flask
from requests.adapters import BaseAdapter
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session
from werkzeug.test import TestResponse

import payments.checkout.confirm
import payments.checkout.settle
from payments.checkout.confirm import confirm_idempotency_key
from payments.core.clock import utcnow
from payments.core.models import Order, Payment
from payments.extensions import db
from payments.ops.reconcile import Report, reconcile
from payments.ops.sandbox import INPROCESS_TOSS
from payments.sandbox.db import db as sandbox_db
from payments.sandbox.models import SandboxIdempotencyKey, SandboxPayment
from payments.sandbox.testing import SandboxDriver
from payments.shop.catalog import seed_catalog
from tests.helpers import (
    CONFIRM_URL,
    TOSS,
    Shopper,
    dispose,
    get_order,
    make_app,
    payment_json,
    sandbox_app,
    success_url,
    transitions,
)

LOOKUP_BY_ORDER = re.compile(re.escape(TOSS) + r"/v1/payments/orders/([^/]+)$")
LOOKUP_BY_KEY = re.compile(re.escape(TOSS) + r"/v1/payments/([^/]+)$")
CANCEL = re.compile(re.escape(TOSS) + r"/v1/payments/([^/]+)/cancel$")

# Faults that never reach Toss, and faults that spoil the answer after Toss did the work.
BEFORE = frozenset({"connect_timeout", "reset_before", "500", "429", "html_before"})
AFTER = frozenset({"reset", "read_timeout", "truncated", "html"})
HTML_PAGE = b"<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>"

Wire = tuple[int, dict[str, str], bytes]


def _json(status: int, body: dict[str, Any]) -> Wire:
    return status, {"Content-Type": "application/json"}, json.dumps(body).encode()


def fault_before(fault: str) -> Exception | Wire:
    """What the client gets for a fault that kept the request from Toss."""
    if fault == "connect_timeout":
        return requests.ConnectTimeout("connect timed out (fault injected)")
    if fault == "reset_before":
        return requests.ConnectionError(ConnectionResetError(104, "Connection reset by peer"))
    if fault == "500":
        return _json(500, {"code": "FAILED_INTERNAL_SYSTEM_PROCESSING", "message": "내부 오류"})
    if fault == "429":
        return _json(429, {"code": "TOO_MANY_REQUESTS", "message": "요청이 너무 많습니다"})
    if fault == "html_before":
        return 502, {"Content-Type": "text/html"}, HTML_PAGE
    raise AssertionError(fault)


def fault_after(fault: str, status: int, body: bytes) -> Exception | Wire:
    """What the client gets for a fault that hit Toss's answer (the work is done)."""
    if fault == "reset":
        return requests.ConnectionError(ConnectionResetError(104, "Connection reset by peer"))
    if fault == "read_timeout":
        return requests.ReadTimeout("read timed out (fault injected)")
    if fault == "truncated":
        return status, {"Content-Type": "application/json"}, body[: len(body) // 2]
    if fault == "html":
        return 502, {"Content-Type": "text/html"}, HTML_PAGE
    raise AssertionError(fault)


def kind_of(method: str, url: str) -> str:
    path = urlsplit(url).path
    if method == "POST":
        return "confirm" if path.endswith("/payments/confirm") else "cancel"
    return "lookup"


@dataclass
class Wiretap:
    """Faults to inject per kind of call (consumed in order), and every call the shop sent."""

    plan: dict[str, list[str]] = field(default_factory=dict)
    sent: list[tuple[str, str | None, str | None]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def take(self, kind: str, key: str | None) -> str | None:
        with self.lock:
            faults = self.plan.get(kind) or []
            fault = faults.pop(0) if faults else None
            self.sent.append((kind, key, fault))
            return fault

    def keys(self, kind: str = "confirm") -> list[str | None]:
        return [key for k, key, _ in self.sent if k == kind]


# -- Toss faked with `responses` ----------------------------------------------------------------


class FakeToss:
    """One authenticated payment, confirmed at most once; answers behind the wiretap's faults."""

    def __init__(self, rsps: responses.RequestsMock, tap: Wiretap) -> None:
        self.tap = tap
        self.payment_key = ""
        self.order_id = ""
        self.amount = 0
        self.status = "IN_PROGRESS"
        self.replies: dict[str, tuple[int, dict[str, Any]]] = {}
        self.reached = 0
        self.charged = 0
        rsps.add_callback(responses.POST, CONFIRM_URL, callback=self._wire(self._confirm))
        rsps.add_callback(responses.POST, CANCEL, callback=self._wire(self._cancel))
        rsps.add_callback(responses.GET, LOOKUP_BY_ORDER, callback=self._wire(self._by_order))
        rsps.add_callback(responses.GET, LOOKUP_BY_KEY, callback=self._wire(self._by_key))

    def _wire(self, handler: Callable[[Any], Wire]) -> Callable[[Any], Exception | Wire]:
        def callback(request: Any) -> Exception | Wire:
            key = request.headers.get("Idempotency-Key")
            fault = self.tap.take(kind_of(request.method, request.url), key)
            if fault in BEFORE:
                return fault_before(fault)
            status, headers, body = handler(request)
            if fault is not None:
                return fault_after(fault, status, body)
            return status, headers, body

        return callback

    def _payment(self) -> dict[str, Any]:
        return payment_json(
            self.order_id,
            self.amount,
            self.payment_key,
            status=self.status,
            approvedAt="2026-11-22T10:00:05+09:00" if self.status == "DONE" else None,
        )

    def _confirm(self, request: Any) -> Wire:
        self.reached += 1
        key = request.headers["Idempotency-Key"]
        if key in self.replies:
            return _json(*self.replies[key])
        body = json.loads(request.body)
        if body != {
            "paymentKey": self.payment_key,
            "orderId": self.order_id,
            "amount": self.amount,
        }:
            answer = (400, {"code": "INVALID_REQUEST", "message": "불일치"})
        elif self.status == "EXPIRED":
            answer = (404, {"code": "NOT_FOUND_PAYMENT_SESSION", "message": "만료"})
        elif self.status != "IN_PROGRESS":
            answer = (400, {"code": "ALREADY_PROCESSED_PAYMENT", "message": "이미 처리"})
        else:
            self.status = "DONE"
            self.charged += 1
            answer = (200, self._payment())
        self.replies[key] = answer
        return _json(*answer)

    def _by_order(self, request: Any) -> Wire:
        if LOOKUP_BY_ORDER.match(request.url).group(1) != self.order_id:  # type: ignore[union-attr]
            return _json(404, {"code": "NOT_FOUND_PAYMENT", "message": "없는 결제"})
        return _json(200, self._payment())

    def _by_key(self, request: Any) -> Wire:
        if LOOKUP_BY_KEY.match(request.url).group(1) != self.payment_key:  # type: ignore[union-attr]
            return _json(404, {"code": "NOT_FOUND_PAYMENT", "message": "없는 결제"})
        return _json(200, self._payment())

    def _cancel(self, request: Any) -> Wire:
        return _json(403, {"code": "NOT_CANCELABLE_PAYMENT", "message": "테스트에서 취소 금지"})


# -- the sandbox, behind a faulty wire ---------------------------------------------------------


class FaultyTransport(BaseAdapter):
    """Wraps the in-process transport to the sandbox and injects the wiretap's faults."""

    def __init__(self, inner: BaseAdapter, tap: Wiretap) -> None:
        super().__init__()
        self.inner = inner
        self.tap = tap

    def send(  # type: ignore[override]
        self, request: requests.PreparedRequest, **kwargs: Any
    ) -> requests.Response:
        key = request.headers.get("Idempotency-Key")
        fault = self.tap.take(kind_of(request.method or "GET", request.url or ""), key)
        if fault in BEFORE:
            return self._answer(request, fault_before(fault))
        resp: requests.Response = self.inner.send(request, **kwargs)
        if fault is None:
            return resp
        return self._answer(request, fault_after(fault, resp.status_code, resp.content))

    @staticmethod
    def _answer(request: requests.PreparedRequest, wire: Exception | Wire) -> requests.Response:
        if isinstance(wire, Exception):
            if isinstance(wire, requests.RequestException):
                wire.request = request
            raise wire
        status, headers, body = wire
        resp = requests.Response()
        resp.status_code = status
        resp.headers.update(headers)
        resp._content = body
        resp.url = request.url or ""
        resp.request = request
        resp.encoding = "utf-8"
        return resp

    def close(self) -> None:
        self.inner.close()


# -- one shop, one order, one authenticated payment ---------------------------------------------


class Checkout:
    """An order whose shopper finished Toss's window; the Toss behind it is faked or the sandbox."""

    def __init__(self, app: Flask, tap: Wiretap, fake: FakeToss | None, scenario: str) -> None:
        self.app = app
        self.tap = tap
        self.fake = fake
        self.shopper = app.test_client()
        self.order_id = Shopper(app, self.shopper).place_order()
        self.amount = self.order().amount
        if fake is not None:
            fake.order_id, fake.amount = self.order_id, self.amount
            fake.payment_key = self.payment_key = f"tpk_fault_{self.order_id[:12]}"
        else:
            window = self.sandbox().open_window(
                self.order_id,
                self.amount,
                scenario=scenario,
                order_name=self.order().order_name,
                success_url="http://localhost/checkout/success",
                fail_url="http://localhost/checkout/fail",
            )
            assert window.payment_key is not None, window
            self.payment_key = window.payment_key
        self.key = confirm_idempotency_key(self.order_id, self.payment_key)

    def sandbox(self) -> SandboxDriver:
        return SandboxDriver.in_process(self.app.test_client())

    @property
    def kind(self) -> str:
        return "responses" if self.fake is not None else "sandbox"

    # the shopper's doors

    def verify(self) -> tuple[int, dict[str, Any]]:
        resp = self.shopper.post(
            "/api/payment/verify",
            json={"paymentKey": self.payment_key, "orderId": self.order_id, "amount": self.amount},
        )
        return resp.status_code, resp.get_json(silent=True) or {}

    def success(self) -> TestResponse:
        return self.shopper.get(success_url(self.order_id, self.payment_key, self.amount))

    # the shop's books

    def order(self) -> Order:
        return get_order(self.app, self.order_id)

    def transitions(self) -> list[tuple[str | None, str | None, str]]:
        return transitions(self.app, self.order_id)

    def payment_rows(self) -> list[tuple[str, str, int]]:
        with self.app.app_context():
            rows = db.session.execute(
                db.select(Payment.payment_key, Payment.status, Payment.total_amount)
            ).all()
            return [tuple(r) for r in rows]  # type: ignore[misc]

    # Toss's books

    def reached(self) -> int:
        """Confirm requests that reached Toss."""
        if self.fake is not None:
            return self.fake.reached
        return int(self.sandbox().payment(self.payment_key)["sandbox"]["confirmRequests"])

    def charged(self) -> int:
        """DONE payments Toss holds for this order."""
        if self.fake is not None:
            return self.fake.charged
        with self.app.extensions["sandbox_app"].app_context():
            return len(
                sandbox_db.session.scalars(
                    sandbox_db.select(SandboxPayment).filter_by(
                        order_id=self.order_id, status="DONE"
                    )
                ).all()
            )

    def expire_at_toss(self) -> None:
        """Toss gives up on the payment (confirm deadline passed): EXPIRED, no money moved."""
        if self.fake is not None:
            assert self.fake.status == "IN_PROGRESS"
            self.fake.status = "EXPIRED"
            return
        answer = self.sandbox().expire(self.payment_key)
        assert answer.status == 200, answer.body

    # time

    def reconcile(self, minutes_ago: float = 2) -> Report:
        """Make the order's last move `minutes_ago` old, then run one reconcile pass now."""
        then = utcnow() - timedelta(minutes=minutes_ago)
        with self.app.app_context():
            db.session.execute(
                db.update(Order)
                .filter_by(order_id=self.order_id)
                .values(updated_at=then, confirm_started_at=then)
            )
            db.session.commit()
            report = reconcile(now=utcnow())
            db.session.remove()
            return report

    def assert_books_agree(self, *, paid: bool) -> None:
        """One key on every confirm call, no cancel, and the shop agrees with Toss."""
        assert set(self.tap.keys("confirm")) == {self.key}
        assert self.tap.keys("cancel") == []
        assert self.charged() == (1 if paid else 0)
        order = self.order()
        if paid:
            assert (order.status, order.payment_key) == ("PAID", self.payment_key)
            assert self.payment_rows() == [(self.payment_key, "DONE", self.amount)]
            assert [t[1] for t in self.transitions()].count("PAID") == 1
        else:
            assert (order.status, order.payment_key) == ("PENDING", None)
            assert self.payment_rows() == []


@pytest.fixture
def make_checkout(
    database_url: str, toss: responses.RequestsMock
) -> Iterator[Callable[..., Checkout]]:
    apps: list[Flask] = []

    def make(
        backend: str,
        scenario: str = "approve",
        sandbox: dict[str, Any] | None = None,
        **overrides: Any,
    ) -> Checkout:
        tap = Wiretap()
        if backend == "responses":
            app = make_app(database_url, **overrides)
            fake: FakeToss | None = FakeToss(toss, tap)
        else:
            app = sandbox_app(database_url, sandbox=sandbox, **overrides)
            session = app.extensions["toss"].session
            inner = session.get_adapter(INPROCESS_TOSS + "/")
            session.mount(INPROCESS_TOSS, FaultyTransport(inner, tap))
            fake = None
        apps.append(app)
        with app.app_context():
            seed_catalog()
        return Checkout(app, tap, fake, scenario)

    yield make
    for app in apps:
        dispose(app)


BACKENDS = ["responses", "sandbox"]

# -- Toss faults -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    confirm: tuple[str, ...]  # faults on the shopper's confirm attempts (1 + TOSS_MAX_RETRIES = 3)
    answer: tuple[int, str]  # /verify: (HTTP status, order status or error code)
    after_request: str  # the order right after the request
    sent: int  # confirm calls the shop sent, reconcile included
    lookup: tuple[str, ...] = ()  # faults on lookups
    after_reconcile: str = "PAID"


CASES: dict[str, Any] = {
    # Nothing reached Toss, then Toss was reachable: paid in the same request.
    "connect_timeout_then_ok": Case(("connect_timeout",), (200, "PAID"), "PAID", 2),
    # Toss never reachable: PROVIDER_UNAVAILABLE, payable again, nothing for reconcile to do.
    "connect_timeout_always": Case(
        ("connect_timeout",) * 3,
        (503, "PROVIDER_UNAVAILABLE"),
        "PENDING",
        3,
        after_reconcile="PENDING",
    ),  # fmt: skip
    # Toss did the work, the answer timed out; the retry with the same key replays it.
    "read_timeout_then_replay": Case(("read_timeout",), (200, "PAID"), "PAID", 2),
    # Every answer timed out and so did the lookups: unknown now, reconcile's lookup settles it.
    "read_timeout_always_lookup_down": Case(
        ("read_timeout",) * 3,
        (409, "PAYMENT_PENDING"),
        "NEEDS_RECONCILE",
        3,
        lookup=("read_timeout",) * 3,
    ),  # fmt: skip
    # Toss did the work, every answer was cut by a reset: the immediate lookup settles it.
    "reset_after_work": Case(("reset",) * 3, (200, "PAID"), "PAID", 3),
    # Resets before Toss got the request: Toss shows IN_PROGRESS; reconcile confirms with the key.
    "reset_before_work": Case(
        ("reset_before",) * 3, (409, "PAYMENT_PENDING"), "NEEDS_RECONCILE", 4
    ),
    # 500 without doing the work: the same as a reset.
    "http_500": Case(("500",) * 3, (409, "PAYMENT_PENDING"), "NEEDS_RECONCILE", 4),
    # 429: Toss did nothing and said so; payable again.
    "http_429": Case(
        ("429",) * 3, (503, "PROVIDER_UNAVAILABLE"), "PENDING", 3, after_reconcile="PENDING"
    ),
    # A 200 whose JSON is cut in half: unknown, not retried (POST); the lookup settles it.
    "truncated_json": Case(("truncated",), (200, "PAID"), "PAID", 1),
    # A gateway's HTML 502 page in place of Toss's answer (the work was done).
    "html_page_after_work": Case(("html",) * 3, (200, "PAID"), "PAID", 3),
    # A gateway's HTML 502 page, the request never got through.
    "html_page_before_work": Case(
        ("html_before",) * 3, (409, "PAYMENT_PENDING"), "NEEDS_RECONCILE", 4
    ),
    # Toss did the work, then the retries could not reach it: the outcome is still unknown.
    "read_timeout_then_connect_timeouts": pytest.param(
        Case(
            ("read_timeout", "connect_timeout", "connect_timeout"),
            (409, "PAYMENT_PENDING"),
            "NEEDS_RECONCILE",
            3,
            lookup=("read_timeout",) * 3,
        ),  # fmt: skip
    ),
    "reset_then_429s": pytest.param(
        Case(
            ("reset", "429", "429"),
            (409, "PAYMENT_PENDING"),
            "NEEDS_RECONCILE",
            3,
            lookup=("read_timeout",) * 3,
        ),  # fmt: skip
    ),
}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))
def test_toss_fault_never_double_charges_nor_loses_the_payment(
    make_checkout: Callable[..., Checkout], backend: str, case: Case
) -> None:
    co = make_checkout(backend)
    co.tap.plan = {"confirm": list(case.confirm), "lookup": list(case.lookup)}

    status, body = co.verify()

    assert (status, body.get("status") or body.get("code")) == case.answer, body
    assert co.order().status == case.after_request
    assert co.charged() <= 1
    if case.after_request == "NEEDS_RECONCILE":
        assert co.payment_rows() == []  # nothing recorded that Toss has not confirmed to us

    co.reconcile()

    assert co.order().status == case.after_reconcile
    assert len(co.tap.keys("confirm")) == case.sent
    assert co.reached() == case.sent - sum(f in BEFORE for f in case.confirm)
    co.assert_books_agree(paid=case.after_reconcile == "PAID")
    if case.after_reconcile == "PENDING":
        # Toss provably did nothing: the shopper's refresh of the success page pays, once.
        assert co.success().status_code == 303
        co.assert_books_agree(paid=True)
        assert len(co.tap.keys("confirm")) == case.sent + 1


@pytest.mark.parametrize("backend", BACKENDS)
def test_toss_down_through_the_confirm_window_leaves_the_order_payable(
    make_checkout: Callable[..., Checkout], backend: str
) -> None:
    """500s on every confirm, reconcile's included; Toss then expires the payment (no money
    moved): the order is payable again, never PAID and never FAILED."""
    co = make_checkout(backend)
    co.tap.plan = {"confirm": ["500"] * 6}

    assert co.verify()[0] == 409
    co.reconcile(minutes_ago=2)
    assert co.order().status == "NEEDS_RECONCILE"  # reconcile's own confirm met 500s too
    assert len(co.tap.keys("confirm")) == 6
    co.expire_at_toss()
    co.reconcile(minutes_ago=12)

    order = co.order()
    assert (order.status, order.payment_key) == ("PENDING", None)
    assert co.reached() == 0
    co.assert_books_agree(paid=False)
    assert ("NEEDS_RECONCILE", "PENDING", "reconcile") in co.transitions()


# -- the sandbox's own slow and failing confirmations ----------------------------------------------


def wait_for_sandbox_key(app: Flask, timeout: float = 5.0) -> None:
    """Wait until the sandbox stored its answer (the slow confirm's thread has finished)."""
    deadline = time.monotonic() + timeout
    states: list[str] = []
    while time.monotonic() < deadline:
        with app.extensions["sandbox_app"].app_context():
            states = list(
                sandbox_db.session.scalars(sandbox_db.select(SandboxIdempotencyKey.state))
            )
            sandbox_db.session.remove()
        if states and all(s == "DONE" for s in states):
            return
        time.sleep(0.05)
    raise AssertionError(f"the sandbox's slow confirm did not finish: {states}")


@pytest.mark.parametrize("lookup_down", [False, True])
def test_read_timeout_after_the_sandbox_confirmed(
    make_checkout: Callable[..., Checkout], lookup_down: bool
) -> None:
    """slow_confirm: the sandbox is DONE at once but answers after 1.5 s; the shop gives up
    after 0.5 s, its retries meet IDEMPOTENT_REQUEST_PROCESSING, then it looks the payment up."""
    co = make_checkout(
        "sandbox", "slow_confirm", sandbox={"slow_confirm_seconds": 1.5}, TOSS_READ_TIMEOUT="0.5"
    )
    if lookup_down:
        co.tap.plan = {"lookup": ["read_timeout"] * 3}

    status, body = co.verify()

    assert co.reached() == 3  # the first call and two retries with the same key
    assert co.charged() == 1
    # The shop did not wait for the late answer: the outcome went unknown, then a lookup.
    assert co.transitions()[:2] == [
        ("PENDING", "CONFIRMING", "api"),
        ("CONFIRMING", "NEEDS_RECONCILE", "api"),
    ]
    if lookup_down:
        assert (status, body["code"]) == (409, "PAYMENT_PENDING")
        assert co.order().status == "NEEDS_RECONCILE"
    else:
        assert (status, body["status"]) == (200, "PAID")
    wait_for_sandbox_key(co.app)
    co.reconcile()
    assert co.reached() == 3
    co.assert_books_agree(paid=True)
    assert len(co.tap.keys("confirm")) == 3
    assert co.transitions()[-1] == (
        ("NEEDS_RECONCILE", "PAID", "reconcile")
        if lookup_down
        else ("NEEDS_RECONCILE", "PAID", "api")
    )


def test_sandbox_provider_error_is_retried_with_the_same_key(
    make_checkout: Callable[..., Checkout],
) -> None:
    co = make_checkout("sandbox", "provider_error")

    status, body = co.verify()

    assert (status, body["status"]) == (200, "PAID")
    assert co.reached() == 2
    co.assert_books_agree(paid=True)


# -- database faults -------------------------------------------------------------------------------


def _db_down(statement: str) -> OperationalError:
    return OperationalError(statement, {}, Exception("server closed the connection unexpectedly"))


@pytest.mark.parametrize("backend", BACKENDS)
def test_storing_the_confirmed_payment_fails_then_reconcile_finishes_it(
    make_checkout: Callable[..., Checkout], backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    co = make_checkout(backend)

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise _db_down("INSERT INTO payments")

    monkeypatch.setattr(payments.checkout.settle, "_store_payment", broken)
    status, body = co.verify()
    monkeypatch.undo()

    assert (status, body["code"]) == (409, "PAYMENT_PENDING")
    assert co.order().status == "CONFIRMING"
    assert co.payment_rows() == []
    assert co.charged() == 1  # Toss has the money; the shop must not lose it
    report = co.reconcile()
    assert report.settled == {"PAID": 1}
    co.assert_books_agree(paid=True)
    assert len(co.tap.keys("confirm")) == co.reached() == 1  # no second confirm
    assert co.transitions()[-1] == ("CONFIRMING", "PAID", "reconcile")


class FailingCommit:
    """The database goes away: the next Session.commit in this thread fails once, after the
    confirmation has made the move it is armed on (`apply_payment` of Toss's answer to our
    confirm, or the intent: the `transition` to CONFIRMING)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, on: str) -> None:
        self.failed = 0
        self.armed: int | None = None  # the thread whose next commit fails
        real_commit = Session.commit

        def commit(session: Session) -> None:
            if self.armed == threading.get_ident():
                self.armed = None
                self.failed += 1
                session.rollback()
                raise _db_down("COMMIT")
            real_commit(session)

        def arm(real: Callable[..., Any], when: Callable[..., bool]) -> Callable[..., Any]:
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                result = real(*args, **kwargs)
                if not self.failed and when(result, *args, **kwargs):
                    self.armed = threading.get_ident()
                return result

            return wrapper

        confirm = payments.checkout.confirm
        monkeypatch.setattr(Session, "commit", commit)
        if on == "PAID":
            monkeypatch.setattr(
                confirm,
                "apply_payment",
                arm(
                    confirm.apply_payment, lambda _result, *a, **k: bool(k.get("answer_to_confirm"))
                ),
            )
        else:
            monkeypatch.setattr(
                confirm,
                "transition",
                arm(confirm.transition, lambda moved, _order, to, *a, **k: moved and to == on),
            )


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("lookup_down", [False, True], ids=["lookup_ok", "lookup_down"])
def test_commit_after_tosss_confirm_fails_then_reconcile_finishes_it(
    make_checkout: Callable[..., Checkout],
    backend: str,
    lookup_down: bool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With the lookup down too, reconcile confirms again with the stored key and Toss replays
    its first answer: still one charge."""
    co = make_checkout(backend)
    failing = FailingCommit(monkeypatch, "PAID")

    status, body = co.verify()

    assert failing.failed == 1
    assert (status, body["code"]) == (409, "PAYMENT_PENDING")
    assert co.order().status == "CONFIRMING"
    assert co.charged() == 1
    if lookup_down:
        co.tap.plan = {"lookup": ["read_timeout"] * 3}
    co.reconcile()
    co.assert_books_agree(paid=True)
    assert len(co.tap.keys("confirm")) == co.reached() == (2 if lookup_down else 1)


@pytest.mark.parametrize("backend", BACKENDS)
def test_commit_of_the_intent_fails_and_nothing_reaches_toss(
    make_checkout: Callable[..., Checkout], backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    co = make_checkout(backend)
    failing = FailingCommit(monkeypatch, "CONFIRMING")

    status, body = co.verify()

    assert failing.failed == 1
    assert status == 500
    assert set(body) == {"code", "message"}
    assert co.tap.sent == []
    assert co.order().status == "PENDING"
    co.reconcile()
    assert co.order().status == "PENDING"
    # The shopper's refresh pays, once.
    assert co.success().status_code == 303
    co.assert_books_agree(paid=True)
    assert len(co.tap.keys("confirm")) == 1
