"""The sandbox's Toss API behaves like Toss (TOSS.md), in-process and over a real socket."""

from __future__ import annotations

import base64
import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from werkzeug.serving import make_server

from payments.config import ConfigError
from payments.extensions import db
from payments.sandbox import Clock, init_app
from payments.sandbox.models import SandboxIdempotencyKey, SandboxWebhook
from payments.toss import RefundAccount, TossClient, TossError, TossNetworkError
from tests.helpers import make_app

SECRET = "test_gsk_sandbox"
API_SECRET = "test_sk_sandbox"
CLIENT = "test_gck_sandbox"
START = datetime(2026, 11, 22, 1, 0, 0, tzinfo=UTC)  # 10:00 in Korea
FIXTURES = Path(__file__).parent / "fixtures"
SANDBOX_OVERRIDES: dict[str, Any] = {
    "TOSS_CLIENT_KEY": "",
    "TOSS_SECRET_KEY": "",
    "TOSS_SANDBOX": "1",
    "TOSS_API_BASE": "",
    "SANDBOX_WEBHOOKS_ENABLED": False,
    "SANDBOX_SLOW_CONFIRM_SECONDS": 0.6,
}


# -- helpers (the other sandbox test modules import these) -----------------------------------------


def sandbox_app(database_url: str, **overrides: Any) -> Flask:
    """The shop app in sandbox mode on a frozen sandbox clock (START) unless told otherwise."""
    config = {**SANDBOX_OVERRIDES, "SANDBOX_CLOCK": Clock(start=START), **overrides}
    return make_app(database_url, **config)


def dispose(app: Flask) -> None:
    worker = app.extensions["sandbox"].worker
    worker.stop()
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


def basic(key: str = SECRET, colon: bool = True) -> dict[str, str]:
    raw = f"{key}:" if colon else key
    return {"Authorization": "Basic " + base64.b64encode(raw.encode()).decode()}


_order_seq = iter(range(1, 10**6))


def new_order_id() -> str:
    return f"order-{int(time.time() * 1000)}-{next(_order_seq):05d}"


def session_body(**overrides: Any) -> dict[str, Any]:
    body = {
        "clientKey": CLIENT,
        "orderId": new_order_id(),
        "orderName": "무선 키보드 외 1건",
        "amount": 103_000,
        "successUrl": "http://shop.test/checkout/success",
        "failUrl": "http://shop.test/checkout/fail",
        "method": "CARD",
        "scenario": "approve",
    }
    body.update(overrides)
    return body


def query(url: str) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(url).query))


def open_payment(client: FlaskClient, **overrides: Any) -> tuple[str, str, int]:
    """A shopper finished the window with `scenario`: (paymentKey, orderId, amount)."""
    body = session_body(**overrides)
    resp = client.post("/sandbox/api/sessions", json=body)
    assert resp.status_code == 200, resp.get_json()
    q = query(resp.get_json()["redirectUrl"])
    return q["paymentKey"], q["orderId"], int(q["amount"])


def confirm(
    client: FlaskClient,
    payment_key: str,
    order_id: str,
    amount: int | str,
    *,
    key: str | None = None,
    headers: dict[str, str] | None = None,
) -> Any:
    hdrs = {**basic(), **(headers or {})}
    if key is not None:
        hdrs["Idempotency-Key"] = key
    return client.post(
        "/sandbox/v1/payments/confirm",
        json={"paymentKey": payment_key, "orderId": order_id, "amount": amount},
        headers=hdrs,
    )


def cancel(client: FlaskClient, payment_key: str, key: str | None = None, **body: Any) -> Any:
    hdrs = basic()
    if key is not None:
        hdrs["Idempotency-Key"] = key
    body.setdefault("cancelReason", "고객 요청")
    return client.post(f"/sandbox/v1/payments/{payment_key}/cancel", json=body, headers=hdrs)


def get_payment(client: FlaskClient, payment_key: str) -> dict[str, Any]:
    resp = client.get(f"/sandbox/v1/payments/{payment_key}", headers=basic())
    assert resp.status_code == 200, resp.get_json()
    data: dict[str, Any] = resp.get_json()
    return data


def error(resp: Any) -> tuple[int, str]:
    body = resp.get_json()
    assert set(body) == {"code", "message"}, body
    assert re.search(r"[가-힣]", body["message"]), body  # Korean, like Toss
    return resp.status_code, body["code"]


@pytest.fixture
def app(database_url: str) -> Iterator[Flask]:
    app = sandbox_app(database_url)
    yield app
    dispose(app)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


# -- authentication --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, (403, "INCORRECT_BASIC_AUTH_FORMAT")),
        (basic(SECRET, colon=False), (403, "INCORRECT_BASIC_AUTH_FORMAT")),
        ({"Authorization": "Basic !!!not-base64"}, (403, "INCORRECT_BASIC_AUTH_FORMAT")),
        ({"Authorization": f"Bearer {SECRET}"}, (403, "INCORRECT_BASIC_AUTH_FORMAT")),
        (basic("test_gsk_wrong"), (401, "UNAUTHORIZED_KEY")),
        (basic(CLIENT), (401, "UNAUTHORIZED_KEY")),
        (basic(""), (401, "UNAUTHORIZED_KEY")),
    ],
    ids=["missing", "no-colon", "not-base64", "bearer", "wrong-key", "client-key", "empty"],
)
def test_basic_auth_is_checked_like_toss(
    client: FlaskClient, headers: dict[str, str], expected: tuple[int, str]
) -> None:
    payment_key, order_id, amount = open_payment(client)
    for resp in (
        client.get(f"/sandbox/v1/payments/{payment_key}", headers=headers),
        client.get(f"/sandbox/v1/payments/orders/{order_id}", headers=headers),
        client.post(
            "/sandbox/v1/payments/confirm",
            json={"paymentKey": payment_key, "orderId": order_id, "amount": amount},
            headers=headers,
        ),
        client.post(
            f"/sandbox/v1/payments/{payment_key}/cancel",
            json={"cancelReason": "x"},
            headers=headers,
        ),
    ):
        assert error(resp) == expected
    assert get_payment(client, payment_key)["status"] == "IN_PROGRESS"


def test_api_secret_key_cannot_confirm_a_widget_payment(client: FlaskClient) -> None:
    payment_key, order_id, amount = open_payment(client)
    resp = confirm(client, payment_key, order_id, amount, headers=basic(API_SECRET))
    assert error(resp) == (403, "FORBIDDEN_REQUEST")
    assert "gsk" in resp.get_json()["message"]
    # The API key of the same merchant may still read it; the widget key then confirms.
    read = client.get(f"/sandbox/v1/payments/{payment_key}", headers=basic(API_SECRET))
    assert read.status_code == 200
    assert confirm(client, payment_key, order_id, amount).status_code == 200


# -- confirm and the Payment object ----------------------------------------------------------------


def test_confirm_answers_a_documented_payment_object(client: FlaskClient) -> None:
    payment_key, order_id, amount = open_payment(client, amount=103_000)
    assert re.fullmatch(r"tviva[A-Za-z0-9]{20,}", payment_key)
    resp = confirm(client, payment_key, order_id, str(amount), key="confirm-1")  # numeric string
    assert resp.status_code == 200
    assert resp.content_type.startswith("application/json")
    p = resp.get_json()

    toss_sample = json.loads((FIXTURES / "toss" / "payment_done_card.json").read_text())
    assert set(toss_sample) <= set(p), set(toss_sample) - set(p)
    assert set(toss_sample["card"]) <= set(p["card"])
    assert p["paymentKey"] == payment_key
    assert p["orderId"] == order_id
    assert p["status"] == "DONE"
    assert p["method"] == "카드"
    assert p["type"] == "NORMAL"
    assert p["orderName"] == "무선 키보드 외 1건"
    assert p["totalAmount"] == p["balanceAmount"] == 103_000
    assert (p["vat"], p["suppliedAmount"], p["taxFreeAmount"]) == (9_364, 93_636, 0)
    assert p["currency"] == "KRW"
    assert p["version"] == "2022-11-16"
    assert p["country"] == "KR"
    assert re.fullmatch(r"\d{8}\*{4}\d{3}\*", p["card"]["number"])  # masked like Toss
    assert re.fullmatch(r"\d{8}", p["card"]["approveNo"])
    assert p["requestedAt"] == "2026-11-22T10:00:00+09:00"
    assert p["approvedAt"] == "2026-11-22T10:00:00+09:00"
    assert p["lastTransactionKey"]
    assert p["cancels"] is None
    assert p["secret"] is None
    assert p["virtualAccount"] is None
    assert p["failure"] is None
    assert p["receipt"]["url"].endswith(f"/sandbox/receipt/{payment_key}")
    assert client.get(urlsplit(p["receipt"]["url"]).path).status_code == 200

    assert get_payment(client, payment_key) == p
    by_order = client.get(f"/sandbox/v1/payments/orders/{order_id}", headers=basic())
    assert by_order.get_json() == p


@pytest.mark.parametrize(
    ("total", "tax_free", "vat", "supplied"),
    [
        (103_000, 0, 9_364, 93_636),
        (15_000, 0, 1_364, 13_636),
        (50_000, 0, 4_545, 45_455),
        (100, 0, 9, 91),
        (10_000, 3_000, 636, 6_364),
        (1_000, 1_000, 0, 0),
    ],
)
def test_vat_and_supplied_amount(
    client: FlaskClient, total: int, tax_free: int, vat: int, supplied: int
) -> None:
    payment_key, order_id, amount = open_payment(client, amount=total, taxFreeAmount=tax_free)
    p = confirm(client, payment_key, order_id, amount).get_json()
    assert round((total - tax_free) / 11) == vat  # the documented formula
    assert (p["vat"], p["suppliedAmount"], p["taxFreeAmount"]) == (vat, supplied, tax_free)
    assert p["suppliedAmount"] + p["vat"] + p["taxFreeAmount"] == p["totalAmount"]


def test_unknown_payment_key_and_order_are_not_found(client: FlaskClient) -> None:
    assert error(confirm(client, "tvivaDOESNOTEXIST0000000000", "order-000001", 1000)) == (
        404,
        "NOT_FOUND_PAYMENT",
    )
    assert error(client.get("/sandbox/v1/payments/tvivaNOPE", headers=basic())) == (
        404,
        "NOT_FOUND_PAYMENT",
    )
    assert error(client.get("/sandbox/v1/payments/orders/order-nope", headers=basic())) == (
        404,
        "NOT_FOUND_PAYMENT",
    )
    assert error(cancel(client, "tvivaNOPE")) == (404, "NOT_FOUND_PAYMENT")
    too_long = "t" * 201
    assert error(client.get(f"/sandbox/v1/payments/{too_long}", headers=basic()))[0] == 404


@pytest.mark.parametrize(
    ("field", "value"), [("amount", 103_001), ("amount", 1), ("orderId", "order-someone-else")]
)
def test_amount_or_order_id_different_from_the_session_is_refused(
    client: FlaskClient, field: str, value: Any
) -> None:
    payment_key, order_id, amount = open_payment(client, amount=103_000)
    args = {"order_id": order_id, "amount": amount, field.replace("Id", "_id"): value}
    resp = confirm(client, payment_key, args["order_id"], args["amount"])
    assert error(resp) == (400, "INVALID_REQUEST")
    assert get_payment(client, payment_key)["status"] == "IN_PROGRESS"
    assert confirm(client, payment_key, order_id, amount).status_code == 200


@pytest.mark.parametrize(
    "body",
    [{}, {"paymentKey": "x"}, {"paymentKey": "x", "orderId": "order-1", "amount": "12a"}],
)
def test_malformed_confirm_body_is_invalid_request(client: FlaskClient, body: Any) -> None:
    resp = client.post("/sandbox/v1/payments/confirm", json=body, headers=basic())
    assert error(resp) == (400, "INVALID_REQUEST")
    resp = client.post(
        "/sandbox/v1/payments/confirm",
        data="not json",
        headers={**basic(), "Content-Type": "text/plain"},
    )
    assert error(resp) == (400, "INVALID_REQUEST")


def test_second_confirm_without_the_key_is_already_processed(client: FlaskClient) -> None:
    payment_key, order_id, amount = open_payment(client)
    assert confirm(client, payment_key, order_id, amount).status_code == 200
    assert error(confirm(client, payment_key, order_id, amount)) == (
        400,
        "ALREADY_PROCESSED_PAYMENT",
    )
    assert error(confirm(client, payment_key, order_id, amount, key="another-key")) == (
        400,
        "ALREADY_PROCESSED_PAYMENT",
    )


def test_confirm_window_is_ten_minutes_after_authentication(
    app: Flask, client: FlaskClient
) -> None:
    clock = app.extensions["sandbox"].clock
    late_key, late_order, amount = open_payment(client)
    on_time_key, on_time_order, _ = open_payment(client)
    clock.advance(599)
    assert confirm(client, on_time_key, on_time_order, amount).status_code == 200
    clock.advance(2)  # 601 s after the shopper finished the window
    resp = confirm(client, late_key, late_order, amount, key="late")
    assert error(resp) == (404, "NOT_FOUND_PAYMENT_SESSION")
    p = get_payment(client, late_key)
    assert p["status"] == "EXPIRED"
    assert p["approvedAt"] is None
    # Nothing moves it any more; the confirmed one is untouched.
    assert error(confirm(client, late_key, late_order, amount)) == (
        404,
        "NOT_FOUND_PAYMENT_SESSION",
    )
    assert get_payment(client, on_time_key)["status"] == "DONE"


def test_a_lookup_after_the_deadline_already_shows_expired(app: Flask, client: FlaskClient) -> None:
    payment_key, order_id, _ = open_payment(client)
    app.extensions["sandbox"].advance(601)
    resp = client.get(f"/sandbox/v1/payments/orders/{order_id}", headers=basic())
    assert resp.get_json()["status"] == "EXPIRED"
    with app.app_context():
        events = [json.loads(w.body) for w in db.session.scalars(select(SandboxWebhook))]
    assert [e["data"]["status"] for e in events] == ["EXPIRED"]


def test_two_windows_for_one_order_confirm_only_once(client: FlaskClient) -> None:
    order_id = new_order_id()
    first, _, amount = open_payment(client, orderId=order_id)
    second, _, _ = open_payment(client, orderId=order_id)
    assert confirm(client, second, order_id, amount).status_code == 200
    assert error(confirm(client, first, order_id, amount)) == (400, "DUPLICATED_ORDER_ID")
    by_order = client.get(f"/sandbox/v1/payments/orders/{order_id}", headers=basic())
    assert by_order.get_json()["paymentKey"] == second
    # A new window for a paid orderId is refused at the start, like Toss.
    resp = client.post("/sandbox/api/sessions", json=session_body(orderId=order_id))
    assert error(resp) == (400, "DUPLICATED_ORDER_ID")


def test_concurrent_confirms_with_different_keys_confirm_once(
    app: Flask, client: FlaskClient
) -> None:
    payment_key, order_id, amount = open_payment(client)
    barrier = threading.Barrier(4)
    results: list[tuple[int, str | None]] = []

    def worker(i: int) -> None:
        c = app.test_client()
        barrier.wait()
        resp = confirm(c, payment_key, order_id, amount, key=f"racer-{i}")
        results.append((resp.status_code, (resp.get_json() or {}).get("code")))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert sorted(results, key=str) == sorted(
        [(200, None)] + [(400, "ALREADY_PROCESSED_PAYMENT")] * 3, key=str
    )
    with app.app_context():
        webhooks = list(db.session.scalars(select(SandboxWebhook)))
    assert len(webhooks) == 1  # one status change, one event


# -- Idempotency-Key -------------------------------------------------------------------------------


def test_reused_key_replays_the_first_answer_whatever_the_body(
    app: Flask, client: FlaskClient
) -> None:
    first_key, first_order, amount = open_payment(client)
    other_key, other_order, _ = open_payment(client)
    first = confirm(client, first_key, first_order, amount, key="same-key")
    again = confirm(client, other_key, other_order, amount, key="same-key")
    assert first.status_code == again.status_code == 200
    assert again.get_data() == first.get_data()  # the body is not part of the identity
    assert again.get_json()["paymentKey"] == first_key
    assert get_payment(client, other_key)["status"] == "IN_PROGRESS"  # nothing done for it
    view = client.get(f"/sandbox/api/payments/{first_key}").get_json()
    assert view["sandbox"]["confirmRequests"] == 1


def test_an_error_answer_is_replayed_too(client: FlaskClient) -> None:
    payment_key, order_id, amount = open_payment(client)
    wrong = confirm(client, payment_key, order_id, amount + 1, key="k-err")
    right = confirm(client, payment_key, order_id, amount, key="k-err")
    assert error(wrong) == error(right) == (400, "INVALID_REQUEST")
    assert right.get_data() == wrong.get_data()
    assert confirm(client, payment_key, order_id, amount, key="k-new").status_code == 200


def test_identity_includes_secret_key_url_and_method(client: FlaskClient) -> None:
    payment_key, order_id, amount = open_payment(client)
    refused = confirm(client, payment_key, order_id, amount, key="k", headers=basic(API_SECRET))
    assert error(refused) == (403, "FORBIDDEN_REQUEST")
    # Same key with the widget secret key: another identity, so the work happens.
    assert confirm(client, payment_key, order_id, amount, key="k").status_code == 200
    # Same key on another URL (cancel): another identity again.
    resp = cancel(client, payment_key, key="k", cancelAmount=1_000)
    assert resp.status_code == 200
    assert resp.get_json()["status"] == "PARTIAL_CANCELED"


def test_idempotency_key_length(client: FlaskClient) -> None:
    payment_key, order_id, amount = open_payment(client)
    too_long = confirm(client, payment_key, order_id, amount, key="k" * 301)
    assert error(too_long) == (400, "INVALID_IDEMPOTENCY_KEY")
    assert error(cancel(client, payment_key, key="k" * 301)) == (400, "INVALID_IDEMPOTENCY_KEY")
    assert get_payment(client, payment_key)["status"] == "IN_PROGRESS"
    assert confirm(client, payment_key, order_id, amount, key="k" * 300).status_code == 200


def test_keys_are_kept_fifteen_days(app: Flask, client: FlaskClient) -> None:
    payment_key, order_id, amount = open_payment(client)
    first = confirm(client, payment_key, order_id, amount, key="kept")
    app.extensions["sandbox"].advance(timedelta(days=15).total_seconds() - 1)
    assert confirm(client, payment_key, order_id, amount, key="kept").get_data() == (
        first.get_data()
    )
    app.extensions["sandbox"].advance(2)
    assert error(confirm(client, payment_key, order_id, amount, key="kept")) == (
        400,
        "ALREADY_PROCESSED_PAYMENT",
    )
    with app.app_context():
        rows = list(db.session.scalars(select(SandboxIdempotencyKey)))
    assert len(rows) == 1
    assert "kept" not in rows[0].identity
    assert SECRET not in rows[0].identity


def test_concurrent_repeat_of_a_running_key_gets_409(app: Flask) -> None:
    """slow_confirm holds its answer 0.6 s: the same key meanwhile gets 409 PROCESSING."""
    client = app.test_client()
    payment_key, order_id, amount = open_payment(client, scenario="slow_confirm")
    answers: dict[str, Any] = {}

    def first() -> None:
        answers["first"] = confirm(app.test_client(), payment_key, order_id, amount, key="slow-key")

    thread = threading.Thread(target=first)
    thread.start()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:  # wait until the first call holds the key
        with app.app_context():
            held = db.session.scalar(select(SandboxIdempotencyKey.state))
            db.session.remove()
        if held == "PROCESSING":
            break
        time.sleep(0.01)
    second = confirm(app.test_client(), payment_key, order_id, amount, key="slow-key")
    thread.join(10)

    assert error(second) == (409, "IDEMPOTENT_REQUEST_PROCESSING")
    assert answers["first"].status_code == 200
    assert answers["first"].get_json()["status"] == "DONE"
    third = confirm(client, payment_key, order_id, amount, key="slow-key")
    assert third.get_data() == answers["first"].get_data()


# -- TossPayments-Test-Code ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("REJECT_CARD_COMPANY", 403),
        ("INVALID_CARD_NUMBER", 400),
        ("NOT_FOUND_PAYMENT_SESSION", 404),
        ("FAILED_INTERNAL_SYSTEM_PROCESSING", 500),
        ("UNAUTHORIZED_KEY", 401),
        ("SOME_FUTURE_CODE", 400),
    ],
)
def test_test_code_header_reproduces_the_error(client: FlaskClient, code: str, status: int) -> None:
    payment_key, order_id, amount = open_payment(client)
    header = {"TossPayments-Test-Code": code}
    resp = confirm(client, payment_key, order_id, amount, key="tc", headers=header)
    assert resp.status_code == status
    assert resp.get_json()["code"] == code
    get = client.get(f"/sandbox/v1/payments/{payment_key}", headers={**basic(), **header})
    assert get.status_code == status
    assert get_payment(client, payment_key)["status"] == "IN_PROGRESS"  # nothing was done
    assert confirm(client, payment_key, order_id, amount, key="tc").status_code == 200


# -- cancel ----------------------------------------------------------------------------------------


def test_partial_then_full_cancel(client: FlaskClient) -> None:
    payment_key, order_id, amount = open_payment(client, amount=50_000)
    confirm(client, payment_key, order_id, amount)

    partial = cancel(client, payment_key, key="refund-1", cancelAmount=12_000)
    assert partial.status_code == 200
    p = partial.get_json()
    assert (p["status"], p["balanceAmount"], p["totalAmount"]) == (
        "PARTIAL_CANCELED",
        38_000,
        50_000,
    )
    (c,) = p["cancels"]
    assert c["cancelAmount"] == 12_000
    assert c["cancelReason"] == "고객 요청"
    assert c["refundableAmount"] == 38_000
    assert c["cancelStatus"] == "DONE"
    assert c["canceledAt"].endswith("+09:00")
    assert c["transactionKey"] == p["lastTransactionKey"]
    sample = json.loads((FIXTURES / "toss" / "payment_partial_canceled.json").read_text())
    assert set(sample["cancels"][0]) <= set(c)
    assert (p["vat"], p["suppliedAmount"]) == (4_545, 45_455)  # from the total, as Toss

    guarded = cancel(client, payment_key, cancelAmount=1_000, refundableAmount=50_000)
    assert error(guarded) == (400, "NOT_MATCHES_REFUNDABLE_AMOUNT")
    over = cancel(client, payment_key, cancelAmount=38_001)
    assert error(over) == (403, "NOT_CANCELABLE_AMOUNT")

    rest = cancel(client, payment_key, key="refund-2", refundableAmount=38_000)
    p = rest.get_json()
    assert rest.status_code == 200
    assert (p["status"], p["balanceAmount"], len(p["cancels"])) == ("CANCELED", 0, 2)
    assert p["cancels"][1]["cancelAmount"] == 38_000
    assert error(cancel(client, payment_key)) == (400, "ALREADY_CANCELED_PAYMENT")
    # The replay of the first refund still answers what it answered then.
    assert cancel(client, payment_key, key="refund-1", cancelAmount=12_000).get_data() == (
        partial.get_data()
    )


@pytest.mark.parametrize(
    "body",
    [{"cancelReason": ""}, {"cancelReason": "x" * 201}, {"cancelReason": "x", "cancelAmount": 0}],
)
def test_cancel_body_is_validated(client: FlaskClient, body: dict[str, Any]) -> None:
    payment_key, order_id, amount = open_payment(client)
    confirm(client, payment_key, order_id, amount)
    resp = client.post(f"/sandbox/v1/payments/{payment_key}/cancel", json=body, headers=basic())
    assert error(resp) == (400, "INVALID_REQUEST")


def test_cancel_of_an_unconfirmed_payment_is_refused(client: FlaskClient) -> None:
    payment_key, _, _ = open_payment(client)
    assert error(cancel(client, payment_key)) == (403, "NOT_CANCELABLE_PAYMENT")


def test_virtual_account_issue_deposit_and_refund(app: Flask, client: FlaskClient) -> None:
    payment_key, order_id, amount = open_payment(
        client, scenario="virtual_account", customerName="김토스", amount=32_000
    )
    resp = confirm(client, payment_key, order_id, amount)
    p = resp.get_json()
    assert (p["status"], p["method"], p["approvedAt"]) == ("WAITING_FOR_DEPOSIT", "가상계좌", None)
    va = p["virtualAccount"]
    sample = json.loads((FIXTURES / "toss" / "payment_waiting_for_deposit.json").read_text())
    assert set(sample["virtualAccount"]) <= set(va)
    assert re.fullmatch(r"\d{10,}", va["accountNumber"])
    assert va["bankCode"]
    assert va["customerName"] == "김토스"
    assert va["refundStatus"] == "NONE"
    assert va["expired"] is False
    assert va["dueDate"] == "2026-11-25T10:00:00+09:00"  # three days after issue
    assert re.fullmatch(r"ps_[A-Za-z0-9]{20,}", p["secret"])

    deposited = client.post(f"/sandbox/api/virtual-accounts/{order_id}/deposit")
    assert deposited.status_code == 200
    d = deposited.get_json()
    assert d["status"] == "DONE"
    assert d["approvedAt"]
    assert d["secret"] == p["secret"]
    assert d["lastTransactionKey"] != p["lastTransactionKey"]
    again = client.post(f"/sandbox/api/virtual-accounts/{order_id}/deposit")
    assert again.status_code == 409

    refused = cancel(client, payment_key, cancelAmount=2_000)
    assert error(refused) == (400, "INVALID_REFUND_ACCOUNT_INFO")
    bad_account = {"bank": "88", "accountNumber": "abc", "holderName": "김토스"}
    assert error(cancel(client, payment_key, refundReceiveAccount=bad_account)) == (
        400,
        "INVALID_REFUND_ACCOUNT_INFO",
    )
    with app.app_context():
        client_toss = app.extensions["toss"]
        refunded = client_toss.cancel(
            payment_key,
            "단순 변심",
            idempotency_key="va-refund",
            refund_account=RefundAccount("88", "110-123-456789", "김토스"),
        )
    assert refunded.status == "CANCELED"
    assert refunded.balance_amount == 0
    assert refunded.raw["virtualAccount"]["refundStatus"] == "COMPLETED"


def test_virtual_account_cancelled_before_deposit_needs_no_account(client: FlaskClient) -> None:
    payment_key, order_id, amount = open_payment(client, scenario="virtual_account")
    confirm(client, payment_key, order_id, amount)
    assert error(cancel(client, payment_key, cancelAmount=1_000))[1] == "NOT_CANCELABLE_AMOUNT"
    resp = cancel(client, payment_key)
    assert resp.status_code == 200
    assert resp.get_json()["status"] == "CANCELED"
    assert client.post(f"/sandbox/api/virtual-accounts/{order_id}/deposit").status_code == 409


def test_virtual_account_expires_at_its_due_date(app: Flask, client: FlaskClient) -> None:
    payment_key, order_id, amount = open_payment(client, scenario="virtual_account")
    confirm(client, payment_key, order_id, amount)
    app.extensions["sandbox"].advance(timedelta(days=3).total_seconds())
    assert client.post(f"/sandbox/api/virtual-accounts/{order_id}/deposit").status_code == 409
    p = get_payment(client, payment_key)
    assert p["status"] == "EXPIRED"
    assert p["virtualAccount"]["expired"] is True


# -- scenarios -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scenario", "code"),
    [("reject_card", "REJECT_CARD_COMPANY"), ("cancel_by_user", "PAY_PROCESS_CANCELED")],
)
def test_window_failures_redirect_to_fail_url(
    client: FlaskClient, scenario: str, code: str
) -> None:
    body = session_body(scenario=scenario, failUrl="http://shop.test/checkout/fail?from=widget")
    url = client.post("/sandbox/api/sessions", json=body).get_json()["redirectUrl"]
    assert url.startswith("http://shop.test/checkout/fail?from=widget&code=")
    assert list(query(url)) == ["from", "code", "message", "orderId"]
    q = query(url)
    assert q["code"] == code
    assert q["orderId"] == body["orderId"]
    assert q["message"]
    lookup = client.get(f"/sandbox/v1/payments/orders/{body['orderId']}", headers=basic())
    assert error(lookup) == (404, "NOT_FOUND_PAYMENT")


def test_success_redirect_carries_exactly_tosss_parameters(client: FlaskClient) -> None:
    body = session_body(amount=103_000)
    url = client.post("/sandbox/api/sessions", json=body).get_json()["redirectUrl"]
    assert url.startswith("http://shop.test/checkout/success?paymentType=NORMAL&orderId=")
    q = query(url)
    assert list(q) == ["paymentType", "orderId", "paymentKey", "amount"]
    assert (q["orderId"], q["amount"]) == (body["orderId"], "103000")


def test_insufficient_balance_is_refused_at_confirm_and_aborts(client: FlaskClient) -> None:
    payment_key, order_id, amount = open_payment(client, scenario="insufficient_balance")
    resp = confirm(client, payment_key, order_id, amount, key="poor")
    assert error(resp) == (403, "REJECT_CARD_PAYMENT")
    p = get_payment(client, payment_key)
    assert p["status"] == "ABORTED"
    assert p["failure"]["code"] == "REJECT_CARD_PAYMENT"
    assert error(confirm(client, payment_key, order_id, amount))[1] == "REJECT_CARD_PAYMENT"


def test_provider_error_fails_once_without_doing_the_work(client: FlaskClient) -> None:
    payment_key, order_id, amount = open_payment(client, scenario="provider_error")
    first = confirm(client, payment_key, order_id, amount, key="retry-me")
    assert error(first) == (500, "FAILED_PAYMENT_INTERNAL_SYSTEM_PROCESSING")
    assert get_payment(client, payment_key)["status"] == "IN_PROGRESS"
    retry = confirm(client, payment_key, order_id, amount, key="retry-me")  # same key: not replayed
    assert retry.status_code == 200
    assert retry.get_json()["status"] == "DONE"
    view = client.get(f"/sandbox/api/payments/{payment_key}").get_json()
    assert view["sandbox"]["confirmRequests"] == 2


def test_slow_confirm_is_done_before_it_answers(app: Flask, client: FlaskClient) -> None:
    payment_key, order_id, amount = open_payment(client, scenario="slow_confirm")
    app.config["SANDBOX_SLOW_CONFIRM_SECONDS"] = 0.2
    started = time.monotonic()
    resp = confirm(client, payment_key, order_id, amount)
    assert time.monotonic() - started >= 0.2
    assert resp.get_json()["status"] == "DONE"


# -- test helpers ----------------------------------------------------------------------------------


def _invalid_cases() -> list[Any]:
    data = json.loads((FIXTURES / "sandbox" / "invalid_sessions.json").read_text())
    return [pytest.param(c["patch"], tuple(c["expect"]), id=c["id"]) for c in data["cases"]]


@pytest.mark.parametrize(("patch", "expected"), _invalid_cases())
def test_sessions_helper_validates_field_rules(
    client: FlaskClient, patch: dict[str, Any], expected: tuple[int, str]
) -> None:
    body = session_body(amount=10_000)
    body.update(patch)
    body = {k: v for k, v in body.items() if v is not None}
    assert error(client.post("/sandbox/api/sessions", json=body)) == expected


def test_sessions_helper_accepts_the_edges(client: FlaskClient) -> None:
    for patch in (
        {"orderId": "a" * 6},
        {"orderId": "A-z_09" * 10 + "abcd"},
        {"orderName": "가" * 100},
        {"amount": 100},
        {"amount": "200", "scenario": "virtual_account", "method": "가상계좌"},
        {"customerKey": "@@ANONYMOUS"},
        {"customerKey": "cust-Key_=.@1"},
        {"method": "카드"},
    ):
        resp = client.post("/sandbox/api/sessions", json=session_body(**patch))
        assert resp.status_code == 200, (patch, resp.get_json())
    assert error(client.post("/sandbox/api/sessions", data="x"))[0] == 400


def test_every_confirm_request_counts_once_whatever_its_answer(client: FlaskClient) -> None:
    payment_key, order_id, amount = open_payment(client)
    forced = confirm(
        client, payment_key, order_id, amount, headers={"TossPayments-Test-Code": "FDS_ERROR"}
    )
    assert error(forced)[1] == "FDS_ERROR"
    assert confirm(client, payment_key, order_id, amount, key="k1").status_code == 200
    again = confirm(client, payment_key, order_id, amount, key="k2")
    assert error(again) == (400, "ALREADY_PROCESSED_PAYMENT")
    replay = confirm(client, payment_key, order_id, amount, key="k1")
    assert replay.status_code == 200
    view = client.get(f"/sandbox/api/payments/{payment_key}").get_json()
    assert view["status"] == "DONE"
    assert view["sandbox"]["confirmRequests"] == 4


def test_sandbox_view_counts_confirms_and_webhooks(app: Flask, client: FlaskClient) -> None:
    payment_key, order_id, amount = open_payment(client)
    confirm(client, payment_key, order_id, amount + 1)
    confirm(client, payment_key, order_id, amount, key="a")
    confirm(client, payment_key, order_id, amount, key="a")
    view = client.get(f"/sandbox/api/payments/{payment_key}")  # no auth needed
    assert view.status_code == 200
    data = view.get_json()
    assert data["status"] == "DONE"
    assert data["sandbox"]["confirmRequests"] == 3
    assert data["sandbox"]["webhooksSent"] == 0
    assert data["sandbox"]["webhooksPending"] == 1
    assert client.get("/sandbox/api/payments/tvivaNOPE").status_code == 404


def test_expire_helper(client: FlaskClient) -> None:
    payment_key, order_id, amount = open_payment(client)
    resp = client.post(f"/sandbox/api/payments/{payment_key}/expire")
    assert resp.status_code == 200
    assert resp.get_json()["status"] == "EXPIRED"
    assert error(confirm(client, payment_key, order_id, amount)) == (
        404,
        "NOT_FOUND_PAYMENT_SESSION",
    )
    va_key, va_order, va_amount = open_payment(client, scenario="virtual_account")
    confirm(client, va_key, va_order, va_amount)
    expired = client.post(f"/sandbox/api/payments/{va_key}/expire").get_json()
    assert expired["status"] == "EXPIRED"
    assert expired["virtualAccount"]["expired"] is True
    done_key, done_order, done_amount = open_payment(client)
    confirm(client, done_key, done_order, done_amount)
    assert client.post(f"/sandbox/api/payments/{done_key}/expire").status_code == 409
    assert client.post("/sandbox/api/payments/tvivaNOPE/expire").status_code == 404


def test_deposit_helper_refuses_what_is_not_a_waiting_account(client: FlaskClient) -> None:
    payment_key, order_id, amount = open_payment(client)
    confirm(client, payment_key, order_id, amount)
    assert client.post(f"/sandbox/api/virtual-accounts/{order_id}/deposit").status_code == 409
    assert client.post("/sandbox/api/virtual-accounts/order-nope/deposit").status_code == 404


def test_state_lives_in_the_database(database_url: str) -> None:
    """Two app instances on one database (two gunicorn workers) see one sandbox."""
    one = sandbox_app(database_url)
    two = sandbox_app(database_url)
    try:
        payment_key, order_id, amount = open_payment(one.test_client())
        assert confirm(two.test_client(), payment_key, order_id, amount).status_code == 200
        assert get_payment(one.test_client(), payment_key)["status"] == "DONE"
    finally:
        dispose(one)
        dispose(two)


def test_refuses_to_load_in_production() -> None:
    app = Flask(__name__)
    app.config["APP_ENV"] = "production"
    with pytest.raises(ConfigError, match="production"):
        init_app(app)
    assert "sandbox" not in app.extensions


# -- the real TossClient against the sandbox -------------------------------------------------------


def _exercise_client(
    toss: TossClient, client: FlaskClient, peek: Callable[[str], dict[str, Any]]
) -> None:
    payment_key, order_id, amount = open_payment(client, amount=48_000)
    done = toss.confirm(payment_key, order_id, amount, idempotency_key=f"c-{order_id}")
    assert (done.status, done.total_amount, done.method) == ("DONE", 48_000, "카드")
    assert done.card is not None
    assert done.receipt_url
    assert toss.get_payment(payment_key).status == "DONE"
    assert toss.get_payment_by_order(order_id).payment_key == payment_key
    part = toss.cancel(
        payment_key,
        "부분 환불",
        idempotency_key="r-1",
        cancel_amount=8_000,
        refundable_amount=48_000,
    )
    assert (part.status, part.balance_amount, len(part.cancels)) == ("PARTIAL_CANCELED", 40_000, 1)
    with pytest.raises(TossError) as exc:
        toss.cancel(payment_key, "다시", idempotency_key="r-2", refundable_amount=48_000)
    assert exc.value.code == "NOT_MATCHES_REFUNDABLE_AMOUNT"
    assert not exc.value.retryable
    full = toss.cancel(payment_key, "전액", idempotency_key="r-3")
    assert (full.status, full.balance_amount) == ("CANCELED", 0)

    flaky_key, flaky_order, flaky_amount = open_payment(client, scenario="provider_error")
    flaky = toss.confirm(flaky_key, flaky_order, flaky_amount, idempotency_key="flaky")
    assert flaky.status == "DONE"
    assert peek(flaky_key)["sandbox"]["confirmRequests"] == 2  # retried once, same key

    with pytest.raises(TossError) as exc:
        toss.get_payment("tvivaDOESNOTEXIST000000000")
    assert exc.value.code == "NOT_FOUND_PAYMENT"
    assert exc.value.http_status == 404


def test_toss_client_in_process(app: Flask, client: FlaskClient) -> None:
    with app.app_context():
        toss: TossClient = app.extensions["toss"]
        assert toss.api_base == "http://toss-sandbox.internal/sandbox"
        _exercise_client(
            toss, client, lambda k: client.get(f"/sandbox/api/payments/{k}").get_json()
        )

        slow_key, slow_order, slow_amount = open_payment(client, scenario="slow_confirm")
        # Same in-process transport; it honours the read timeout like a socket.
        quick = TossClient(
            SECRET, toss.api_base, read_timeout=0.2, max_retries=0, session=toss.session
        )
        with pytest.raises(TossNetworkError) as exc:
            quick.confirm(slow_key, slow_order, slow_amount, idempotency_key="slow")
    assert exc.value.code == "READ_TIMEOUT"
    assert exc.value.outcome_unknown
    assert get_payment(client, slow_key)["status"] == "DONE"
    time.sleep(0.6)  # let the slow answer finish before the database goes away


@pytest.fixture
def live_sandbox(app: Flask) -> Iterator[str]:
    """The sandbox app on a loopback port, as another process would reach it."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(5)


def test_toss_client_over_http(live_sandbox: str, client: FlaskClient) -> None:
    toss = TossClient(SECRET, f"{live_sandbox}/sandbox", backoff=0, max_retries=2)
    _exercise_client(toss, client, lambda k: client.get(f"/sandbox/api/payments/{k}").get_json())

    slow_key, slow_order, slow_amount = open_payment(client, scenario="slow_confirm")
    quick = TossClient(SECRET, f"{live_sandbox}/sandbox", read_timeout=0.3, max_retries=0)
    with pytest.raises(TossNetworkError) as exc:
        quick.confirm(slow_key, slow_order, slow_amount, idempotency_key="slow-http")
    assert exc.value.code == "READ_TIMEOUT"
    assert exc.value.outcome_unknown
    # The payment went through anyway: a lookup by orderId settles it.
    assert toss.get_payment_by_order(slow_order).status == "DONE"
    time.sleep(0.5)

    wrong = TossClient("test_gsk_not_ours", f"{live_sandbox}/sandbox", max_retries=0)
    with pytest.raises(TossError) as exc:
        wrong.get_payment(slow_key)
    assert (exc.value.code, exc.value.http_status) == ("UNAUTHORIZED_KEY", 401)


def test_sandbox_ids_are_uniform_over_their_alphabet() -> None:
    from payments.sandbox.core import _random, digits, new_payment_key

    sample = "".join(_random("abc", 30) for _ in range(2000))
    counts = {ch: sample.count(ch) for ch in "abc"}
    assert set(sample) == {"a", "b", "c"}
    assert all(abs(n - 20_000) < 1_000 for n in counts.values()), counts
    assert re.fullmatch(r"tviva[A-Za-z0-9]{24}", new_payment_key())
    assert re.fullmatch(r"[0-9]{8}", digits(8))
    assert len({new_payment_key() for _ in range(1000)}) == 1000
