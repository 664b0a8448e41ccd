"""Drive a sandbox from a test suite: open payment windows, approve, deposit, expire, look.

One API for this project's tests and for anyone else's, against a sandbox in the same process
(a Flask test client of the sandbox, or of an app that mounts it) or a running
`toss-sandbox serve` (its base URL):

    toss = SandboxDriver.over_http("http://127.0.0.1:8787")
    window = toss.open_window(order_id, 15_000)            # the shopper approved
    toss.confirm(window.payment_key, order_id, 15_000)     # what the merchant's server does
    toss.deposit(order_id)                                  # a virtual account is paid
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlsplit

import requests
from flask import Flask

from .clock import Clock
from .sender import deliver_due
from .settings import DEFAULT_CLIENT_KEY, DEFAULT_SECRET_KEY
from .state import state


@dataclass(frozen=True)
class Answer:
    """A sandbox answer: HTTP status and JSON body."""

    status: int
    body: Any

    @property
    def code(self) -> str | None:
        """Toss's error code, when the answer is an error."""
        return self.body.get("code") if isinstance(self.body, dict) else None


class _Transport(Protocol):
    def request(self, method: str, path: str, body: Any, headers: Mapping[str, str]) -> Answer: ...


class _FlaskTransport:
    def __init__(self, client: Any) -> None:
        self.client = client

    def request(self, method: str, path: str, body: Any, headers: Mapping[str, str]) -> Answer:
        resp = self.client.open(path, method=method, json=body, headers=dict(headers))
        return Answer(resp.status_code, resp.get_json(silent=True))


class _HttpTransport:
    def __init__(self, base_url: str, session: requests.Session | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.session = session or requests.Session()

    def request(self, method: str, path: str, body: Any, headers: Mapping[str, str]) -> Answer:
        resp = self.session.request(
            method, self.base_url + path, json=body, headers=dict(headers), timeout=30
        )
        try:
            data = resp.json()
        except ValueError:
            data = None
        return Answer(resp.status_code, data)


@dataclass(frozen=True)
class Window:
    """A payment window the shopper finished: where the browser went and with what."""

    redirect_url: str
    order_id: str
    payment_key: str | None  # as the redirect carries it (success only)
    amount: int | None
    code: str | None  # the fail redirect's code
    # The window's own paymentKey, which it has from the moment it opened (READY), whatever
    # the shopper did in it.
    opened_payment_key: str | None = None

    @property
    def query(self) -> dict[str, str]:
        return dict(parse_qsl(urlsplit(self.redirect_url).query))


class SandboxDriver:
    """What shoppers, Toss's clock and a merchant's server do to a sandbox, as calls."""

    def __init__(
        self,
        transport: _Transport,
        *,
        client_key: str = DEFAULT_CLIENT_KEY,
        secret_key: str = DEFAULT_SECRET_KEY,
    ) -> None:
        self.transport = transport
        self.client_key = client_key
        self.secret_key = secret_key

    @classmethod
    def over_http(cls, base_url: str, **keys: str) -> SandboxDriver:
        """A running sandbox (`toss-sandbox serve`) at `base_url`, e.g. http://127.0.0.1:8787."""
        return cls(_HttpTransport(base_url), **keys)

    @classmethod
    def in_process(cls, client: Any, **keys: str) -> SandboxDriver:
        """Through a Flask test client of the sandbox app, or of an app that mounts it."""
        return cls(_FlaskTransport(client), **keys)

    # -- the shopper ----------------------------------------------------------------------------

    def open_window(
        self,
        order_id: str | None = None,
        amount: int = 10_000,
        *,
        scenario: str = "approve",
        order_name: str = "테스트 주문",
        method: str | None = None,
        success_url: str = "http://shop.test/checkout/success",
        fail_url: str = "http://shop.test/checkout/fail",
        **extra: Any,
    ) -> Window:
        """Open a window for `order_id` and finish it with `scenario`, as the widget and the
        shopper would; raises AssertionError when the sandbox refuses the request."""
        order_id = order_id or new_order_id()
        body = {
            "clientKey": self.client_key,
            "orderId": order_id,
            "orderName": order_name,
            "amount": amount,
            "successUrl": success_url,
            "failUrl": fail_url,
            "scenario": scenario,
            **({"method": method} if method else {}),
            **extra,
        }
        answer = self.transport.request("POST", "/sandbox/api/sessions", body, {})
        if answer.status != 200:
            raise AssertionError(f"sandbox refused the window: {answer.status} {answer.body}")
        url = answer.body["redirectUrl"]
        query = dict(parse_qsl(urlsplit(url).query))
        return Window(
            redirect_url=url,
            order_id=order_id,
            payment_key=query.get("paymentKey"),
            amount=int(query["amount"]) if "amount" in query else None,
            code=query.get("code"),
            opened_payment_key=answer.body.get("paymentKey"),
        )

    def start_window(
        self,
        order_id: str | None = None,
        amount: int = 10_000,
        *,
        order_name: str = "테스트 주문",
        success_url: str = "http://shop.test/checkout/success",
        fail_url: str = "http://shop.test/checkout/fail",
        **extra: Any,
    ) -> tuple[str, str]:
        """Open a window as the widget's requestPayment does and leave it (the shopper has not
        chosen yet): (its paymentKey, the window's URL)."""
        body = {
            "clientKey": self.client_key,
            "orderId": order_id or new_order_id(),
            "orderName": order_name,
            "amount": amount,
            "successUrl": success_url,
            "failUrl": fail_url,
            **extra,
        }
        answer = self.transport.request("POST", "/sandbox/widget/sessions", body, {})
        if answer.status != 201:
            raise AssertionError(f"sandbox refused the window: {answer.status} {answer.body}")
        return str(answer.body["paymentKey"]), str(answer.body["windowUrl"])

    def deposit(self, order_id: str, amount: int | None = None) -> Answer:
        """The buyer pays the virtual account of `order_id`."""
        body = {} if amount is None else {"amount": amount}
        return self.transport.request(
            "POST", f"/sandbox/api/virtual-accounts/{order_id}/deposit", body, {}
        )

    def deposit_error(self, order_id: str) -> Answer:
        """The bank reports an error on the deposit of `order_id`'s virtual account: it goes
        back to WAITING_FOR_DEPOSIT."""
        return self.transport.request(
            "POST", f"/sandbox/api/virtual-accounts/{order_id}/deposit-error", None, {}
        )

    def expire(self, payment_key: str) -> Answer:
        """As if the payment's deadline passed: a window or an unconfirmed payment expires, a
        virtual account passes its due date."""
        return self.transport.request(
            "POST", f"/sandbox/api/payments/{payment_key}/expire", None, {}
        )

    def payment(self, payment_key: str) -> dict[str, Any]:
        """The sandbox's own view: the Payment plus {"sandbox": {"confirmRequests", …}}."""
        answer = self.transport.request("GET", f"/sandbox/api/payments/{payment_key}", None, {})
        if answer.status != 200:
            raise AssertionError(f"no such sandbox payment: {answer.status} {answer.body}")
        data: dict[str, Any] = answer.body
        return data

    # -- the merchant's server (Toss's API) --------------------------------------------------------

    def auth(self, key: str | None = None, *, colon: bool = True) -> dict[str, str]:
        """Toss's Basic auth header for `key` (default: the secret key)."""
        raw = (key or self.secret_key) + (":" if colon else "")
        return {"Authorization": "Basic " + base64.b64encode(raw.encode()).decode()}

    def confirm(
        self,
        payment_key: str,
        order_id: str,
        amount: int | str,
        *,
        idempotency_key: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Answer:
        hdrs = {**self.auth(), **(headers or {})}
        if idempotency_key is not None:
            hdrs["Idempotency-Key"] = idempotency_key
        body = {"paymentKey": payment_key, "orderId": order_id, "amount": amount}
        return self.transport.request("POST", "/sandbox/v1/payments/confirm", body, hdrs)

    def cancel(
        self, payment_key: str, *, idempotency_key: str | None = None, **body: Any
    ) -> Answer:
        hdrs = self.auth()
        if idempotency_key is not None:
            hdrs["Idempotency-Key"] = idempotency_key
        body.setdefault("cancelReason", "고객 요청")
        return self.transport.request(
            "POST", f"/sandbox/v1/payments/{payment_key}/cancel", body, hdrs
        )

    def get(self, payment_key: str) -> Answer:
        return self.transport.request(
            "GET", f"/sandbox/v1/payments/{payment_key}", None, self.auth()
        )

    def get_by_order(self, order_id: str) -> Answer:
        return self.transport.request(
            "GET", f"/sandbox/v1/payments/orders/{order_id}", None, self.auth()
        )


def new_order_id() -> str:
    """A fresh orderId in Toss's alphabet."""
    return "order-" + secrets.token_urlsafe(12)


# -- a sandbox in this process ---------------------------------------------------------------------


def clock(app: Flask) -> Clock:
    """The clock of the sandbox running as `app`: `advance(seconds)` moves every deadline."""
    return state(app).settings.clock


def deliver_webhooks(app: Flask, http: requests.Session | None = None) -> int:
    """Deliver every webhook due by the sandbox clock now, in this thread; how many were tried
    (for a sandbox whose sender thread is off)."""
    sandbox = state(app)
    with http or sandbox.sender.session() as session:
        return deliver_due(app, sandbox.settings, session)


def stop(app: Flask) -> None:
    """Stop the sandbox's sender thread (end of a test)."""
    state(app).sender.stop()
