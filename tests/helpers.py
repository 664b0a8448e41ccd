"""The tests' shared vocabulary: apps, a shopper's actions, Toss payloads, races, and reads of
what the database holds. Test modules import from here (and `conftest.py` fixtures), never from
each other.
"""

from __future__ import annotations

import copy
import json
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlencode

import requests
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from werkzeug.serving import make_server
from werkzeug.wrappers import Request
from werkzeug.wrappers import Response as WerkzeugResponse

from payments import create_app
from payments.core.models import AuditEntry, Order, Product
from payments.extensions import db
from payments.sandbox import Clock, SandboxSettings, SandboxState, state
from payments.sandbox import create_app as create_sandbox_app
from payments.sandbox.db import db as sandbox_db
from payments.sandbox.testing import SandboxDriver
from payments.shop.catalog import Buyer

T = TypeVar("T")

TOSS = "https://api.tosspayments.com"
CONFIRM_URL = f"{TOSS}/v1/payments/confirm"
# Keys the sandbox accepts; tests never carry real or docs keys.
# A valid buyer for every order a test places (the form's field names and the service's Buyer).
BUYER_FORM = {
    "buyer_name": "김토스",
    "buyer_email": "buyer@example.com",
    "buyer_phone": "01012345678",
    "postcode": "06236",
    "address": "서울특별시 강남구 테헤란로 142",
    "address_detail": "4층",
}
BUYER = Buyer(
    "김토스", "buyer@example.com", "01012345678", "06236", "서울특별시 강남구 테헤란로 142", "4층"
)

CLIENT_KEY = "test_gck_sandbox"
SECRET_KEY = "test_gsk_sandbox"
FIXTURES = Path(__file__).parent / "fixtures"
# Sandbox tests start their clock here: 10:00 in Korea.
START = datetime(2026, 11, 22, 1, 0, 0, tzinfo=UTC)


# -- apps ------------------------------------------------------------------------------------------


def make_app(database_url: str, **overrides: Any) -> Flask:
    """The shop on `database_url` (tables created), Toss faked by `responses` unless the
    overrides turn the sandbox on."""
    config: dict[str, Any] = {
        "APP_ENV": "testing",
        "SECRET_KEY": "test-secret-key-not-for-production",
        "DATABASE_URL": database_url,
        "TOSS_CLIENT_KEY": CLIENT_KEY,
        "TOSS_SECRET_KEY": SECRET_KEY,
        "TOSS_SANDBOX": "0",
        "TOSS_API_BASE": TOSS,
        "TOSS_RETRY_BACKOFF": "0",
        "TOSS_READ_TIMEOUT": "30",
        "WTF_CSRF_ENABLED": False,
        "PUBLIC_BASE_URL": "",
        # Tests fire far more requests than a shopper; test_ratelimit.py turns limits on.
        "RATELIMIT_ENABLED": False,
    }
    config.update(overrides)
    app = create_app(config)
    with app.app_context():
        db.create_all()
    return app


def sandbox_app(
    database_url: str, *, sandbox: dict[str, Any] | None = None, **overrides: Any
) -> Flask:
    """The shop with the offline Toss mounted in-process (as `make run` serves it), on a sandbox
    database of its own, its clock frozen at START and its webhook sender off unless `sandbox`
    (settings by field name) says otherwise."""
    settings: dict[str, Any] = {
        "database_url": "sqlite:///" + tempfile.mkdtemp(prefix="toss-sandbox-") + "/sandbox.db",
        "clock": Clock(start=START),
        "webhooks_enabled": False,
        "slow_confirm_seconds": 0.6,
        **(sandbox or {}),
    }
    config: dict[str, Any] = {
        "TOSS_CLIENT_KEY": "",
        "TOSS_SECRET_KEY": "",
        "TOSS_SANDBOX": "1",
        "TOSS_API_BASE": "",
        "SANDBOX": settings,
        **overrides,
    }
    return make_app(database_url, **config)


def sandbox_alone(database_url: str, **settings: Any) -> Flask:
    """The sandbox on its own (no shop) on `database_url`, its clock frozen at START and its
    sender off unless `settings` (by field name) say otherwise."""
    values: dict[str, Any] = {
        "database_url": database_url,
        "clock": Clock(start=START),
        "webhooks_enabled": False,
        "slow_confirm_seconds": 0.6,
        **settings,
    }
    return create_sandbox_app(SandboxSettings(**values))


def sandbox_of(app: Flask) -> SandboxState:
    """The in-process sandbox of a shop built by `sandbox_app`: its settings, clock, sender."""
    return state(app.extensions["sandbox_app"])


def sandbox_rows(sandbox: Flask, model: Any) -> list[Any]:
    """Every row of a sandbox table (detached), oldest first."""
    with sandbox.app_context():
        found = list(sandbox_db.session.scalars(select(model).order_by(model.id)))
        sandbox_db.session.expunge_all()
        return found


def dispose(app: Flask) -> None:
    """Stop the app's background threads and close its connections (a shop, with its mounted
    sandbox if any, or a sandbox alone)."""
    if "toss_sandbox" in app.extensions:
        _close_sandbox(app)
        return
    if "sandbox_app" in app.extensions:
        _close_sandbox(app.extensions["sandbox_app"])
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


def _close_sandbox(sandbox: Flask) -> None:
    state(sandbox).sender.stop()
    with sandbox.app_context():
        sandbox_db.session.remove()
        sandbox_db.engine.dispose()


def csrf_token(html: str) -> str:
    """The CSRF token of the (first) form on a page."""
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "no CSRF token on the page"
    return match.group(1)


# -- processes ----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def console_script(name: str, module: str) -> list[str]:
    """A console script of this environment (e.g. toss-sandbox), else `python -m <module>`."""
    script = Path(sys.executable).parent / name
    return [str(script)] if script.exists() else [sys.executable, "-m", module]


class WebhookReceiver:
    """A webhook endpoint on a loopback port, standing in for a shop's route: records each
    delivery (headers, raw body) and answers the statuses queued in `answers` (200 once they run
    out)."""

    def __init__(self) -> None:
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.answers: list[int] = []
        self.arrived = threading.Condition()
        self.server = make_server("127.0.0.1", 0, self._app, threaded=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}/api/payment/webhook"

    def _app(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        with self.arrived:
            self.received.append((dict(request.headers), request.get_data()))
            status = self.answers.pop(0) if self.answers else 200
            self.arrived.notify_all()
        return WerkzeugResponse("", status)(environ, start_response)

    def wait_for(self, count: int, seconds: float = 20) -> list[tuple[dict[str, str], bytes]]:
        """The first `count` deliveries, once they arrived."""
        deadline = time.monotonic() + seconds
        with self.arrived:
            while len(self.received) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"{len(self.received)} of {count} webhooks arrived")
                self.arrived.wait(left)
            return list(self.received)

    def wait_until(
        self, check: Callable[[dict[str, Any]], bool], seconds: float = 20
    ) -> tuple[dict[str, str], dict[str, Any]]:
        """The first delivery whose JSON body passes `check`: (headers, body)."""
        deadline = time.monotonic() + seconds
        with self.arrived:
            while True:
                for headers, raw in self.received:
                    body = json.loads(raw)
                    if check(body):
                        return headers, body
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no such webhook arrived: {self.received}")
                self.arrived.wait(left)


def wait_until_serving(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    """Until `url` answers 200; fails with the process's log if it exits or never answers."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(
                f"{url}: the process exited ({proc.returncode}):\n{log.read_text()}"
            )
        try:
            if requests.get(url, timeout=1).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"{url} did not answer:\n{log.read_text()}")


# -- a shopper -------------------------------------------------------------------------------------


class Shopper:
    """What a shopper's browser does, as calls on a test client (one browser session)."""

    def __init__(self, app: Flask, client: FlaskClient) -> None:
        self.app = app
        self.client = client

    def product_ids(self) -> list[int]:
        with self.app.app_context():
            return list(db.session.scalars(select(Product.id).order_by(Product.id)))

    def add(self, product_id: int, quantity: int = 1) -> None:
        resp = self.client.post(
            "/cart", data={"action": "add", "product_id": product_id, "quantity": quantity}
        )
        assert resp.status_code == 303, resp.get_data(as_text=True)

    def place_order(self, cart: dict[int, int] | None = None) -> str:
        """Fill the cart (default: 2 of the first product, 1 of the second) and order; the
        new orderId."""
        ids = self.product_ids()
        for product_id, quantity in (cart or {ids[0]: 2, ids[1]: 1}).items():
            self.add(product_id, quantity)
        resp = self.client.post("/orders", data=BUYER_FORM)
        assert resp.status_code == 303, resp.get_data(as_text=True)
        return str(resp.headers["Location"].rsplit("/", 1)[-1])

    def return_from_toss(self, order_id: str, payment_key: str, amount: int | str) -> Any:
        """Toss's redirect to the success URL, as the browser follows it."""
        return self.client.get(success_url(order_id, payment_key, amount))

    def pay_in_sandbox(self, order_id: str, amount: int, scenario: str = "approve") -> Any:
        """Finish the sandbox's payment window with `scenario` and follow Toss's redirect back
        (the answer of the success or fail URL)."""
        window = SandboxDriver.in_process(self.client).open_window(
            order_id,
            amount,
            scenario=scenario,
            success_url="http://localhost/checkout/success",
            fail_url="http://localhost/checkout/fail",
        )
        return self.client.get(window.redirect_url.removeprefix("http://localhost"))


def success_url(order_id: str, payment_key: str, amount: int | str) -> str:
    query = urlencode(
        {"paymentType": "NORMAL", "orderId": order_id, "paymentKey": payment_key, "amount": amount}
    )
    return f"/checkout/success?{query}"


# -- Toss payloads ---------------------------------------------------------------------------------


def fixture(name: str) -> Any:
    """A JSON file under tests/fixtures, e.g. fixture("toss/payment_done_card.json")."""
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


def payment_json(
    order_id: str,
    amount: int,
    payment_key: str = "tpk_test_0001",
    status: str = "DONE",
    **extra: Any,
) -> dict[str, Any]:
    """A Toss Payment object (the recorded card payment fixture) for this order and amount, as
    confirm and lookups answer; `extra` replaces fields."""
    body: dict[str, Any] = copy.deepcopy(fixture("toss/payment_done_card.json"))
    body.update(
        {
            "paymentKey": payment_key,
            "orderId": order_id,
            "orderName": "테스트 주문",
            "status": status,
            "totalAmount": amount,
            "balanceAmount": amount,
            "suppliedAmount": amount - round(amount / 11),
            "vat": round(amount / 11),
            "requestedAt": "2026-11-22T10:00:00+09:00",
            "approvedAt": "2026-11-22T10:00:05+09:00" if status == "DONE" else None,
            "lastTransactionKey": "txkey_0001",
            "receipt": {"url": "https://dashboard.tosspayments.com/receipt/sample"},
            # Toss adds fields over time; the client must ignore what it does not know.
            "unknownFutureField": {"ignored": True},
        }
    )
    body["card"] = {**body["card"], "amount": amount}
    body.update(extra)
    return body


def status_changed(
    order_id: str, amount: int, payment_key: str, transmission_id: str
) -> tuple[bytes, dict[str, str]]:
    """A PAYMENT_STATUS_CHANGED delivery (DONE) as Toss sends it: (raw body, headers)."""
    body = {
        "eventType": "PAYMENT_STATUS_CHANGED",
        "createdAt": "2026-11-22T10:00:06.000000",
        "data": payment_json(order_id, amount, payment_key),
    }
    headers = {
        "Content-Type": "application/json",
        "tosspayments-webhook-transmission-id": transmission_id,
        "tosspayments-webhook-transmission-time": "2026-11-22T10:00:06+09:00",
        "tosspayments-webhook-transmission-retried-count": "0",
    }
    return json.dumps(body).encode(), headers


def error_json(code: str, message: str = "오류가 발생했습니다.") -> dict[str, str]:
    return {"code": code, "message": message}


# -- races -----------------------------------------------------------------------------------------


def race(calls: list[Callable[[], T]], timeout: float = 60) -> list[T]:
    """Run every call in its own thread, released at once by a barrier; their results in order.

    An exception in any thread fails the test (after all threads finished)."""
    barrier = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            barrier.wait(30)
            results[i] = calls[i]()
        except BaseException as exc:  # noqa: BLE001 — handed to the test thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)
    assert not any(t.is_alive() for t in threads), "a thread is stuck"
    if errors:
        raise errors[0]
    return results


# -- what the database holds -----------------------------------------------------------------------


def get_order(app: Flask, order_id: str) -> Order:
    """The order as stored now (detached: read its columns, not its relationships)."""
    with app.app_context():
        order = db.session.execute(select(Order).filter_by(order_id=order_id)).scalar_one()
        db.session.expunge(order)
        return order


def audit(app: Flask, order_id: str) -> list[tuple[str, str | None, str | None, str]]:
    """The order's timeline: (event, from, to, source) per audit row, oldest first."""
    with app.app_context():
        order = db.session.execute(select(Order).filter_by(order_id=order_id)).scalar_one()
        return [
            (a.event, a.from_status, a.to_status, a.source)
            for a in db.session.scalars(
                select(AuditEntry).filter_by(order_pk=order.id).order_by(AuditEntry.id)
            )
        ]


def transitions(app: Flask, order_id: str) -> list[tuple[str | None, str | None, str]]:
    """The order's status changes: (from, to, source), oldest first."""
    return [(src, dst, source) for event, src, dst, source in audit(app, order_id)
            if event == "transition"]  # fmt: skip


def transitions_to(app: Flask, order_id: str, status: str) -> int:
    """How many times the order moved into `status`."""
    return [dst for _src, dst, _source in transitions(app, order_id)].count(status)


# -- a real SMTP server ----------------------------------------------------------------------------


class SmtpInbox:
    """An aiosmtpd handler that keeps every message arriving over SMTP, parsed."""

    def __init__(self) -> None:
        self.received: list[Any] = []  # email.message.EmailMessage
        self._lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        import email
        import email.policy

        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        with self._lock:
            self.received.append(message)
        return "250 Message accepted for delivery"

    def wait_for(self, subject_part: str, seconds: float = 30) -> Any:
        """The first message whose Subject contains `subject_part`, waiting for it to arrive."""
        deadline = time.monotonic() + seconds
        while True:
            with self._lock:
                for message in self.received:
                    if subject_part in str(message["Subject"]):
                        return message
                subjects = [str(m["Subject"]) for m in self.received]
            if time.monotonic() > deadline:
                raise AssertionError(f"no e-mail about {subject_part!r}; arrived: {subjects}")
            time.sleep(0.1)

    @staticmethod
    def text(message: Any) -> str:
        part = message.get_body(("plain",))
        assert part is not None, "no text/plain part"
        return str(part.get_content())


def start_smtp_server() -> tuple[SmtpInbox, int, Callable[[], None]]:
    """A real SMTP server (aiosmtpd) on a loopback port: (its inbox, the port, a function that
    stops it)."""
    from aiosmtpd.controller import Controller

    inbox = SmtpInbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    return inbox, port, controller.stop
