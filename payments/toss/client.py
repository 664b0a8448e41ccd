"""HTTP client for Toss Payments' core API: plain values in, typed values out.

No Flask and no database here, so the same code serves the web app, the worker, the CLI and the
tests, whether Toss is real, faked by `responses`, or the in-process sandbox mounted on the session.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import requests

from .errors import TossError, TossNetworkError, error_from_response
from .types import CashReceipt, Payment

logger = logging.getLogger(__name__)

MAX_IDEMPOTENCY_KEY = 300
# Printable ASCII only: anything else cannot travel in an HTTP header.
_HEADER_SAFE = re.compile(r"^[\x21-\x7e]{1,300}$")


@dataclass(frozen=True)
class RefundAccount:
    """Where Toss sends a refund of a deposited virtual account."""

    bank: str
    account_number: str
    holder_name: str


class TossClient:
    """Calls Toss with Basic auth, explicit timeouts and bounded, idempotent retries."""

    def __init__(
        self,
        secret_key: str,
        api_base: str = "https://api.tosspayments.com",
        *,
        connect_timeout: float = 5.0,
        read_timeout: float = 30.0,
        max_retries: int = 2,
        backoff: float = 0.5,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not secret_key:
            raise ValueError("secret_key is required")
        self.api_base = api_base.rstrip("/")
        self.timeout = (connect_timeout, read_timeout)
        self.max_retries = max_retries
        self.backoff = backoff
        self.session = session or requests.Session()
        self._sleep = sleep
        # The trailing colon is part of Toss's scheme: "<secretKey>:" (empty password).
        token = base64.b64encode(f"{secret_key}:".encode()).decode("ascii")
        self._auth = f"Basic {token}"

    # -- public API -------------------------------------------------------------------------

    def confirm(
        self, payment_key: str, order_id: str, amount: int, *, idempotency_key: str
    ) -> Payment:
        """Approve an authenticated payment.

        Every retry reuses `idempotency_key`, so Toss performs it at most once.
        """
        body = {"paymentKey": payment_key, "orderId": order_id, "amount": amount}
        return self._payment("POST", "/v1/payments/confirm", body, idempotency_key)

    def get_payment(self, payment_key: str) -> Payment:
        """Fetch a payment by its paymentKey (Toss's own view; the source of truth)."""
        return self._payment("GET", f"/v1/payments/{quote(payment_key, safe='')}")

    def get_payment_by_order(self, order_id: str) -> Payment:
        """Fetch the payment of an orderId; used to settle outcomes we could not observe."""
        return self._payment("GET", f"/v1/payments/orders/{quote(order_id, safe='')}")

    def cancel(
        self,
        payment_key: str,
        reason: str,
        *,
        idempotency_key: str,
        cancel_amount: int | None = None,
        refundable_amount: int | None = None,
        refund_account: RefundAccount | None = None,
    ) -> Payment:
        """Cancel all (no amount) or part of a payment; `refundable_amount` makes Toss refuse
        when the balance is not what we believe, so two racing refunds cannot overdraw."""
        body: dict[str, Any] = {"cancelReason": reason}
        if cancel_amount is not None:
            body["cancelAmount"] = cancel_amount
        if refundable_amount is not None:
            body["refundableAmount"] = refundable_amount
        if refund_account is not None:
            body["refundReceiveAccount"] = {
                "bank": refund_account.bank,
                "accountNumber": refund_account.account_number,
                "holderName": refund_account.holder_name,
            }
        path = f"/v1/payments/{quote(payment_key, safe='')}/cancel"
        return self._payment("POST", path, body, idempotency_key)

    def issue_cash_receipt(
        self,
        *,
        amount: int,
        order_id: str,
        order_name: str,
        customer_identity_number: str,
        receipt_type: str,
        idempotency_key: str,
        tax_free_amount: int | None = None,
    ) -> CashReceipt:
        """Issue a cash receipt (POST /v1/cash-receipts); `receipt_type` is 소득공제 (income
        deduction: a phone or cash-receipt card number) or 지출증빙 (proof of expense: a
        business registration number)."""
        body: dict[str, Any] = {
            "amount": amount,
            "orderId": order_id,
            "orderName": order_name,
            "customerIdentityNumber": customer_identity_number,
            "type": receipt_type,
        }
        if tax_free_amount is not None:
            body["taxFreeAmount"] = tax_free_amount
        return self._cash_receipt("/v1/cash-receipts", body, idempotency_key)

    def cancel_cash_receipt(
        self, receipt_key: str, *, idempotency_key: str, amount: int | None = None
    ) -> CashReceipt:
        """Cancel a cash receipt, all of it (no amount) or `amount` of it."""
        body: dict[str, Any] = {} if amount is None else {"amount": amount}
        path = f"/v1/cash-receipts/{quote(receipt_key, safe='')}/cancel"
        return self._cash_receipt(path, body, idempotency_key)

    # -- plumbing ---------------------------------------------------------------------------

    def _payment(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> Payment:
        data = self._request(method, path, body, idempotency_key)
        try:
            return Payment.from_dict(data)
        except ValueError as exc:
            raise TossError(
                "INVALID_RESPONSE", str(exc), 200, outcome_unknown=method == "POST"
            ) from exc

    def _cash_receipt(self, path: str, body: dict[str, Any], key: str) -> CashReceipt:
        data = self._request("POST", path, body, key)
        receipt = CashReceipt.from_dict(data)
        if not receipt.receipt_key:
            raise TossError(
                "INVALID_RESPONSE", "cash receipt without receiptKey", 200, outcome_unknown=True
            )
        return receipt

    def _request(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None,
        idempotency_key: str | None,
    ) -> dict[str, Any]:
        headers = {"Authorization": self._auth, "Accept": "application/json"}
        if method == "POST":
            if not idempotency_key or not _HEADER_SAFE.match(idempotency_key):
                raise ValueError(
                    "POST to Toss needs an Idempotency-Key of 1-300 printable ASCII characters"
                )
            headers["Idempotency-Key"] = idempotency_key
            headers["Content-Type"] = "application/json"
        url = self.api_base + path
        payload = json.dumps(body, ensure_ascii=False).encode() if body is not None else None

        attempt = 0
        unknown = False
        while True:
            try:
                return self._once(method, url, headers, payload)
            except TossError as exc:
                # Once an attempt may have done the work, a later "busy" or unreachable answer
                # (which says nothing about the operation) cannot make the outcome known again.
                unknown = unknown or exc.outcome_unknown
                if not exc.retryable or attempt >= self.max_retries:
                    if unknown and exc.retryable and not exc.outcome_unknown:
                        exc.outcome_unknown = True
                    raise
                delay = self.backoff * (2**attempt)
                attempt += 1
                logger.warning(
                    "toss call retrying",
                    extra={
                        "toss_path": path.split("/")[2] if path.count("/") > 1 else path,
                        "toss_code": exc.code,
                        "attempt": attempt,
                        "delay": delay,
                    },
                )
                self._sleep(delay)

    def _once(
        self, method: str, url: str, headers: dict[str, str], payload: bytes | None
    ) -> dict[str, Any]:
        try:
            resp = self.session.request(
                method, url, data=payload, headers=headers, timeout=self.timeout
            )
        except requests.ConnectTimeout as exc:
            # Nothing reached Toss: safe to retry, and the work was not done.
            raise TossNetworkError(
                "CONNECT_TIMEOUT", "Toss did not accept the connection in time", retryable=True
            ) from exc
        except requests.Timeout as exc:
            raise TossNetworkError(
                "READ_TIMEOUT",
                "Toss did not answer in time",
                retryable=True,
                outcome_unknown=method == "POST",
            ) from exc
        except requests.ConnectionError as exc:
            raise TossNetworkError(
                "CONNECTION_ERROR",
                "the connection to Toss failed",
                retryable=True,
                outcome_unknown=method == "POST",
            ) from exc
        except requests.RequestException as exc:
            raise TossNetworkError(
                "CONNECTION_ERROR", "the request to Toss failed", outcome_unknown=True
            ) from exc

        try:
            data: Any = resp.json()
        except ValueError:
            data = None
        if 200 <= resp.status_code < 300:
            if not isinstance(data, dict):
                raise TossError(
                    "INVALID_RESPONSE",
                    "Toss answered success with an unreadable body",
                    resp.status_code,
                    retryable=method == "GET",
                    outcome_unknown=method == "POST",
                )
            return data
        raise error_from_response(resp.status_code, data)
