"""The sandbox's Toss API behaves like Toss: auth, key families, the Payment object, deadlines,
Idempotency-Key, test codes, cancels, virtual accounts, scenarios; in-process and over a socket.

Most tests run the sandbox alone (`payments.sandbox.create_app`) on the test's database; the
shop-mounted sandbox appears where the mount itself is what is shown.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from functools import partial
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import text
from werkzeug.serving import make_server

from payments.extensions import toss as shop_toss
from payments.ops.sandbox import INPROCESS_TOSS
from payments.sandbox import SandboxSettings, SettingsError, create_app, state
from payments.sandbox.db import db as sandbox_db
from payments.sandbox.errors import ERRORS
from payments.sandbox.idempotency import identity, releases_key
from payments.sandbox.ids import _random, digits, new_payment_key
from payments.sandbox.models import (
    SCHEMA_VERSION,
    SandboxIdempotencyKey,
    SandboxPayment,
    SandboxSchema,
    SandboxWebhook,
)
from payments.sandbox.payments import sweep
from payments.sandbox.testing import Answer, SandboxDriver, Window, new_order_id
from payments.sandbox.transport import WSGITransport
from payments.toss import RefundAccount, TossClient, TossError, TossNetworkError
from tests.helpers import (
    FIXTURES,
    dispose,
    fixture,
    race,
    sandbox_alone,
    sandbox_app,
    sandbox_rows,
)

SECRET = "test_gsk_sandbox"
API_SECRET = "test_sk_sandbox"  # the same merchant's API-family secret key
CLIENT = "test_gck_sandbox"
# Webhooks are recorded (the sender is off, nothing is sent) so tests can count them.
HOOK = "http://shop.test/api/payment/webhook"
SANDBOX_HOST = "http://toss-sandbox.test"
EXPIRED_MESSAGE = "결제가 만료되었습니다. 다시 시도해주세요."


# -- the sandbox alone -----------------------------------------------------------------------------


@pytest.fixture
def sandboxes(database_url: str) -> Iterator[Callable[..., Flask]]:
    """Build sandboxes on the test's database (settings by field name); closed at the end."""
    built: list[Flask] = []

    def build(**settings: Any) -> Flask:
        sandbox = sandbox_alone(database_url, **{"webhook_url": HOOK, **settings})
        built.append(sandbox)
        return sandbox

    yield build
    for sandbox in built:
        dispose(sandbox)


@pytest.fixture
def sandbox(sandboxes: Callable[..., Flask]) -> Flask:
    return sandboxes()


@pytest.fixture
def client(sandbox: Flask) -> FlaskClient:
    return sandbox.test_client()


@pytest.fixture
def driver(client: FlaskClient) -> SandboxDriver:
    return SandboxDriver.in_process(client)


def basic(key: str = SECRET, colon: bool = True) -> dict[str, str]:
    """Toss's Basic auth header: base64("<secretKey>:")."""
    raw = f"{key}:" if colon else key
    return {"Authorization": "Basic " + base64.b64encode(raw.encode()).decode()}


def session_body(**overrides: Any) -> dict[str, Any]:
    """A valid POST /sandbox/api/sessions body (what the widget sends, plus a scenario)."""
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


def error(answer: Any) -> tuple[int, str]:
    """(status, code) of a Toss error answer (an Answer or a test-client response); its body
    is exactly {code, message} with a Korean message, as Toss's."""
    if isinstance(answer, Answer):
        status, body = answer.status, answer.body
    else:
        status, body = answer.status_code, answer.get_json()
    assert set(body) == {"code", "message"}, body
    assert re.search(r"[가-힣]", body["message"]), body
    return status, body["code"]


def confirm_raw(
    client: FlaskClient, window: Window, *, key: str | None = None, amount: int | None = None
) -> Any:
    """POST /v1/payments/confirm through the test client: the response as sent (for byte-exact
    replay checks)."""
    headers = basic()
    if key is not None:
        headers["Idempotency-Key"] = key
    body = {
        "paymentKey": window.payment_key,
        "orderId": window.order_id,
        "amount": window.amount if amount is None else amount,
    }
    return client.post("/sandbox/v1/payments/confirm", json=body, headers=headers)


def confirm(driver: SandboxDriver, window: Window, **kwargs: Any) -> Answer:
    """The merchant's confirm of the payment the shopper approved in `window`."""
    return driver.confirm(window.payment_key, window.order_id, window.amount, **kwargs)


def status_of(driver: SandboxDriver, payment_key: str) -> str:
    answer = driver.get(payment_key)
    assert answer.status == 200, answer.body
    return str(answer.body["status"])


def in_process_client(sandbox: Flask, **options: Any) -> TossClient:
    """The shop's Toss client code, reaching this sandbox through the in-process transport."""
    session = requests.Session()
    session.mount(SANDBOX_HOST, WSGITransport(sandbox))
    return TossClient(SECRET, f"{SANDBOX_HOST}/sandbox", session=session, **options)


def wait_until_answered(sandbox: Flask, seconds: float = 10) -> None:
    """Until no request holds an Idempotency-Key (a slow answer still being held)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if all(row.state != "PROCESSING" for row in sandbox_rows(sandbox, SandboxIdempotencyKey)):
            return
        time.sleep(0.02)
    raise AssertionError("a request still holds its Idempotency-Key")


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
    client: FlaskClient,
    driver: SandboxDriver,
    headers: dict[str, str],
    expected: tuple[int, str],
) -> None:
    """Toss wants `Basic base64("<secretKey>:")`: a bad format is 403, an unknown key 401."""
    w = driver.open_window()
    for resp in (
        client.get(f"/sandbox/v1/payments/{w.payment_key}", headers=headers),
        client.get(f"/sandbox/v1/payments/orders/{w.order_id}", headers=headers),
        client.post(
            "/sandbox/v1/payments/confirm",
            json={"paymentKey": w.payment_key, "orderId": w.order_id, "amount": w.amount},
            headers=headers,
        ),
        client.post(
            f"/sandbox/v1/payments/{w.payment_key}/cancel",
            json={"cancelReason": "x"},
            headers=headers,
        ),
    ):
        assert error(resp) == expected
    assert status_of(driver, w.payment_key) == "IN_PROGRESS"


def test_api_secret_key_cannot_confirm_a_widget_payment(driver: SandboxDriver) -> None:
    """A widget payment confirmed with the API-family (sk) secret key is refused with 400
    INVALID_API_KEY, "잘못된 시크릿키 연동 정보 입니다." (Toss's confirm error table,
    https://docs.tosspayments.com/reference/error-codes; which code this mistake gets is not
    found in Toss's docs); that key may still read the payment, and nothing changed."""
    w = driver.open_window()
    refused = confirm(driver, w, headers=basic(API_SECRET), idempotency_key="mixed")
    assert error(refused) == (400, "INVALID_API_KEY")
    assert refused.body["message"].startswith("잘못된 시크릿키 연동 정보 입니다.")
    assert "gsk" in refused.body["message"]
    assert SandboxDriver(driver.transport, secret_key=API_SECRET).get(w.payment_key).status == 200
    assert confirm(driver, w).status == 200


# -- confirm and the Payment object ----------------------------------------------------------------


def test_confirm_answers_a_documented_payment_object(
    client: FlaskClient, driver: SandboxDriver
) -> None:
    """Toss answers confirm with the Payment object (version 2022-11-16); lookups by paymentKey
    and by orderId answer the same object; the amount may come as a numeric string."""
    w = driver.open_window(amount=103_000, order_name="무선 키보드 외 1건")
    assert re.fullmatch(r"tviva[A-Za-z0-9]{20,}", w.payment_key)
    resp = driver.confirm(w.payment_key, w.order_id, "103000", idempotency_key="confirm-1")
    assert resp.status == 200
    p = resp.body

    toss_sample = fixture("toss/payment_done_card.json")
    assert set(toss_sample) <= set(p), set(toss_sample) - set(p)
    assert set(toss_sample["card"]) <= set(p["card"])
    assert p["paymentKey"] == w.payment_key
    assert p["orderId"] == w.order_id
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
    assert p["receipt"]["url"].endswith(f"/sandbox/receipt/{w.payment_key}")
    assert client.get(urlsplit(p["receipt"]["url"]).path).status_code == 200

    assert driver.get(w.payment_key).body == p
    assert driver.get_by_order(w.order_id).body == p
    # Fields in Toss's order (as its recorded answer has them), not sorted.
    raw = client.get(f"/sandbox/v1/payments/{w.payment_key}", headers=basic()).get_data()
    assert list(json.loads(raw))[:8] == list(toss_sample)[:8]


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
    driver: SandboxDriver, total: int, tax_free: int, vat: int, supplied: int
) -> None:
    """Toss's VAT is round((total − taxFree) / 11); suppliedAmount + vat + taxFree = total."""
    w = driver.open_window(amount=total, taxFreeAmount=tax_free)
    p = confirm(driver, w).body
    assert round((total - tax_free) / 11) == vat  # the documented formula
    assert (p["vat"], p["suppliedAmount"], p["taxFreeAmount"]) == (vat, supplied, tax_free)
    assert p["suppliedAmount"] + p["vat"] + p["taxFreeAmount"] == p["totalAmount"]


def test_unknown_payment_key_and_order_are_not_found(
    client: FlaskClient, driver: SandboxDriver
) -> None:
    """Toss answers 404 NOT_FOUND_PAYMENT for a paymentKey or orderId it does not know."""
    missing = driver.confirm("tvivaDOESNOTEXIST0000000000", "order-000001", 1000)
    assert error(missing) == (404, "NOT_FOUND_PAYMENT")
    assert error(driver.get("tvivaNOPE")) == (404, "NOT_FOUND_PAYMENT")
    assert error(driver.get_by_order("order-nope")) == (404, "NOT_FOUND_PAYMENT")
    assert error(driver.cancel("tvivaNOPE")) == (404, "NOT_FOUND_PAYMENT")
    too_long = "t" * 201
    assert error(client.get(f"/sandbox/v1/payments/{too_long}", headers=basic()))[0] == 404


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("amount", 103_001, (400, "INVALID_REQUEST")),
        ("amount", 1, (400, "INVALID_REQUEST")),
        ("orderId", "order-someone-else", (404, "NOT_FOUND_PAYMENT_SESSION")),
    ],
)
def test_amount_or_order_id_different_from_the_session_is_refused(
    driver: SandboxDriver, field: str, value: Any, expected: tuple[int, str]
) -> None:
    """A confirm whose orderId is not the payment's is 404 NOT_FOUND_PAYMENT_SESSION (a code of
    Toss's confirm table, https://docs.tosspayments.com/reference/error-codes; that Toss answers
    it for another orderId is not found in its docs), one whose amount differs 400
    INVALID_REQUEST (no specific code found); the payment stays confirmable."""
    w = driver.open_window(amount=103_000)
    args = {"orderId": w.order_id, "amount": w.amount, field: value}
    resp = driver.confirm(w.payment_key, args["orderId"], args["amount"])
    assert error(resp) == expected
    assert status_of(driver, w.payment_key) == "IN_PROGRESS"
    assert confirm(driver, w).status == 200


@pytest.mark.parametrize(
    "body",
    [{}, {"paymentKey": "x"}, {"paymentKey": "x", "orderId": "order-1", "amount": "12a"}],
)
def test_malformed_confirm_body_is_invalid_request(client: FlaskClient, body: Any) -> None:
    """Toss answers 400 INVALID_REQUEST for a missing or malformed field, or a body that is not
    JSON."""
    resp = client.post("/sandbox/v1/payments/confirm", json=body, headers=basic())
    assert error(resp) == (400, "INVALID_REQUEST")
    resp = client.post(
        "/sandbox/v1/payments/confirm",
        data="not json",
        headers={**basic(), "Content-Type": "text/plain"},
    )
    assert error(resp) == (400, "INVALID_REQUEST")


def test_second_confirm_without_the_key_is_already_processed(driver: SandboxDriver) -> None:
    """Toss: a confirmed payment confirmed again (no key, or another key) is 400
    ALREADY_PROCESSED_PAYMENT."""
    w = driver.open_window()
    assert confirm(driver, w).status == 200
    assert error(confirm(driver, w)) == (400, "ALREADY_PROCESSED_PAYMENT")
    assert error(confirm(driver, w, idempotency_key="another-key")) == (
        400,
        "ALREADY_PROCESSED_PAYMENT",
    )


def test_confirm_window_is_ten_minutes_after_authentication(
    sandbox: Flask, driver: SandboxDriver
) -> None:
    """Toss: confirm must follow the shopper's authentication within 10 minutes; later the
    payment is EXPIRED and confirm answers 404 NOT_FOUND_PAYMENT_SESSION."""
    late = driver.open_window()
    on_time = driver.open_window()
    state(sandbox).advance(599)
    assert confirm(driver, on_time).status == 200
    state(sandbox).advance(2)  # 601 s after the shopper finished the window
    assert error(confirm(driver, late, idempotency_key="late")) == (
        404,
        "NOT_FOUND_PAYMENT_SESSION",
    )
    p = driver.get(late.payment_key).body
    assert p["status"] == "EXPIRED"
    assert p["approvedAt"] is None
    # The failure an expired payment shows on Toss's forum
    # (https://techchat.tosspayments.com/m/1410526054635933798).
    assert p["failure"] == {"code": "EXPIRED_PAYMENT", "message": EXPIRED_MESSAGE}
    # Nothing moves it any more; the confirmed one is untouched.
    assert error(confirm(driver, late)) == (404, "NOT_FOUND_PAYMENT_SESSION")
    assert status_of(driver, on_time.payment_key) == "DONE"


def test_a_lookup_after_the_deadline_already_shows_expired(
    sandbox: Flask, driver: SandboxDriver
) -> None:
    """Toss's lookup shows EXPIRED once the deadline passed, and the change is one webhook."""
    w = driver.open_window()
    state(sandbox).advance(601)
    assert driver.get_by_order(w.order_id).body["status"] == "EXPIRED"
    events = [json.loads(row.body) for row in sandbox_rows(sandbox, SandboxWebhook)]
    assert [e["data"]["status"] for e in events] == ["EXPIRED"]


def test_two_windows_for_one_order_confirm_only_once(
    client: FlaskClient, driver: SandboxDriver
) -> None:
    """Toss confirms an orderId once: another window's confirm is 400 DUPLICATED_ORDER_ID, and
    so is a new payment request for a paid orderId."""
    order_id = new_order_id()
    first = driver.open_window(order_id)
    second = driver.open_window(order_id)
    assert confirm(driver, second).status == 200
    assert error(confirm(driver, first)) == (400, "DUPLICATED_ORDER_ID")
    assert driver.get_by_order(order_id).body["paymentKey"] == second.payment_key
    resp = client.post("/sandbox/api/sessions", json=session_body(orderId=order_id))
    assert error(resp) == (400, "DUPLICATED_ORDER_ID")


def test_a_window_nobody_finishes_expires_after_thirty_minutes(
    sandbox: Flask, driver: SandboxDriver
) -> None:
    """A window is READY with its own paymentKey from the moment it opens; left alone (or closed
    by the shopper) it changes nothing, and 30 minutes after it opened it is EXPIRED with
    failure EXPIRED_PAYMENT (READY must authenticate within 30 minutes,
    https://docs.tosspayments.com/en/webhooks; the failure as on Toss's forum,
    https://techchat.tosspayments.com/m/1410526054635933798)."""
    abandoned, _ = driver.start_window()
    closed = driver.open_window(scenario="cancel_by_user").opened_payment_key
    assert closed is not None
    state(sandbox).advance(30 * 60 - 1)
    for key in (abandoned, closed):
        p = driver.get(key).body
        assert (p["status"], p["failure"]) == ("READY", None)
    state(sandbox).advance(1)
    for key in (abandoned, closed):
        p = driver.get(key).body
        assert (p["paymentKey"], p["status"]) == (key, "EXPIRED")
        assert p["failure"] == {"code": "EXPIRED_PAYMENT", "message": EXPIRED_MESSAGE}
        assert (p["method"], p["approvedAt"], p["receipt"]) == (None, None, None)
        assert error(driver.confirm(key, p["orderId"], p["totalAmount"])) == (
            404,
            "NOT_FOUND_PAYMENT_SESSION",
        )


def test_one_order_may_open_several_windows(driver: SandboxDriver) -> None:
    """Each window of an orderId is a payment of its own, each with its own paymentKey (Toss's
    Payment: "paymentKey ... 중복되지 않는 고유한 값", https://docs.tosspayments.com/reference).
    The lookup by orderId answers the confirmed one ("승인된 결제를 orderId로 조회", ibid.);
    while none is, the latest window (which one Toss answers then is not found in its docs)."""
    order_id = new_order_id()
    first = driver.open_window(order_id, scenario="cancel_by_user")
    second = driver.open_window(order_id, scenario="insufficient_balance")
    assert error(confirm(driver, second)) == (403, "REJECT_CARD_PAYMENT")
    third = driver.open_window(order_id)
    keys = {first.opened_payment_key, second.payment_key, third.payment_key}
    assert len(keys) == 3
    assert driver.get_by_order(order_id).body["paymentKey"] == third.payment_key
    fourth, _ = driver.start_window(order_id)
    assert driver.get_by_order(order_id).body["paymentKey"] == fourth
    assert confirm(driver, third).status == 200
    fifth, _ = driver.start_window(order_id + "x")  # another order's window changes nothing
    found = driver.get_by_order(order_id).body
    assert (found["paymentKey"], found["status"]) == (third.payment_key, "DONE")
    assert [status_of(driver, k) for k in (first.opened_payment_key, second.payment_key)] == [
        "READY",
        "ABORTED",
    ]
    assert status_of(driver, fifth) == "READY"


def test_concurrent_confirms_with_different_keys_confirm_once(sandbox: Flask) -> None:
    """Toss performs a confirm once however many race: one DONE, the rest
    ALREADY_PROCESSED_PAYMENT, one status change (one webhook)."""
    w = SandboxDriver.in_process(sandbox.test_client()).open_window()
    drivers = [SandboxDriver.in_process(sandbox.test_client()) for _ in range(4)]
    answers = race(
        [partial(confirm, d, w, idempotency_key=f"racer-{i}") for i, d in enumerate(drivers)]
    )
    assert sorted((a.status, a.code) for a in answers) == sorted(
        [(200, None)] + [(400, "ALREADY_PROCESSED_PAYMENT")] * 3, key=str
    )
    assert len(sandbox_rows(sandbox, SandboxWebhook)) == 1


# -- Idempotency-Key -------------------------------------------------------------------------------


def test_reused_key_replays_the_first_answer_whatever_the_body(
    client: FlaskClient, driver: SandboxDriver
) -> None:
    """Toss keys idempotency on (key, secret key, method, URL), not the body: a reused key
    replays the first answer byte for byte and does nothing for the other payment."""
    first_w = driver.open_window()
    other_w = driver.open_window(amount=first_w.amount)
    first = confirm_raw(client, first_w, key="same-key")
    again = confirm_raw(client, other_w, key="same-key")
    assert first.status_code == again.status_code == 200
    assert again.get_data() == first.get_data()
    assert again.get_json()["paymentKey"] == first_w.payment_key
    assert status_of(driver, other_w.payment_key) == "IN_PROGRESS"
    assert driver.payment(first_w.payment_key)["sandbox"]["confirmRequests"] == 1


def test_an_error_answer_is_replayed_too(client: FlaskClient, driver: SandboxDriver) -> None:
    """Toss replays a 4xx answer for its key as well; a new key does the work."""
    w = driver.open_window()
    wrong = confirm_raw(client, w, key="k-err", amount=w.amount + 1)
    right = confirm_raw(client, w, key="k-err")
    assert error(wrong) == error(right) == (400, "INVALID_REQUEST")
    assert right.get_data() == wrong.get_data()
    assert confirm(driver, w, idempotency_key="k-new").status == 200


def test_which_error_answers_a_key_keeps(client: FlaskClient, driver: SandboxDriver) -> None:
    """A definitive refusal is kept under its key and replayed (Toss replays "the first
    request's answer", https://docs.tosspayments.com/reference/using-api/authorization); an
    answer that says "nothing was done, try again" (PROVIDER_ERROR, a 5xx) is not, so the retry
    with the same key, which Toss asks for instead of a new key (ibid.), can succeed. Which
    error answers Toss keeps is not found in its docs."""
    poor = driver.open_window(scenario="insufficient_balance")
    refused = confirm_raw(client, poor, key="kept-refusal")
    assert error(refused) == (403, "REJECT_CARD_PAYMENT")
    assert confirm_raw(client, poor, key="kept-refusal").get_data() == refused.get_data()

    flaky = driver.open_window(scenario="provider_error")
    assert error(confirm_raw(client, flaky, key="released")) == (400, "PROVIDER_ERROR")
    again = confirm_raw(client, flaky, key="released")
    assert (again.status_code, again.get_json()["status"]) == (200, "DONE")
    assert confirm_raw(client, flaky, key="released").get_data() == again.get_data()

    assert releases_key(500, "COMMON_ERROR")
    assert releases_key(409, "IDEMPOTENT_REQUEST_PROCESSING")
    assert releases_key(429, "TOO_MANY_REQUESTS")
    assert releases_key(400, "CARD_PROCESSING_ERROR")
    assert releases_key(403, "FORBIDDEN_CONSECUTIVE_REQUEST")
    assert not releases_key(400, "INVALID_REQUEST")
    assert not releases_key(404, "NOT_FOUND_PAYMENT_SESSION")
    assert not releases_key(403, "REJECT_CARD_PAYMENT")


def test_identity_includes_secret_key_url_and_method(driver: SandboxDriver) -> None:
    """Toss: the same Idempotency-Key with another secret key, or on another URL, is another
    request."""
    w = driver.open_window()
    refused = confirm(driver, w, idempotency_key="k", headers=basic(API_SECRET))
    assert error(refused) == (400, "INVALID_API_KEY")
    assert confirm(driver, w, idempotency_key="k").status == 200
    resp = driver.cancel(w.payment_key, idempotency_key="k", cancelAmount=1_000)
    assert resp.status == 200
    assert resp.body["status"] == "PARTIAL_CANCELED"


def test_idempotency_key_length(driver: SandboxDriver) -> None:
    """Toss accepts an Idempotency-Key of up to 300 characters; longer is 400
    INVALID_IDEMPOTENCY_KEY and nothing is done."""
    w = driver.open_window()
    too_long = confirm(driver, w, idempotency_key="k" * 301)
    assert error(too_long) == (400, "INVALID_IDEMPOTENCY_KEY")
    assert error(driver.cancel(w.payment_key, idempotency_key="k" * 301)) == (
        400,
        "INVALID_IDEMPOTENCY_KEY",
    )
    assert status_of(driver, w.payment_key) == "IN_PROGRESS"
    assert confirm(driver, w, idempotency_key="k" * 300).status == 200


def test_keys_are_kept_fifteen_days(
    sandbox: Flask, client: FlaskClient, driver: SandboxDriver
) -> None:
    """Toss keeps an Idempotency-Key's answer 15 days; after that the key is new again. Neither
    the key nor the secret key is stored in clear."""
    w = driver.open_window()
    first = confirm_raw(client, w, key="kept")
    state(sandbox).advance(timedelta(days=15).total_seconds() - 1)
    assert confirm_raw(client, w, key="kept").get_data() == first.get_data()
    state(sandbox).advance(2)
    assert error(confirm_raw(client, w, key="kept")) == (400, "ALREADY_PROCESSED_PAYMENT")
    (row,) = sandbox_rows(sandbox, SandboxIdempotencyKey)
    assert "kept" not in row.identity
    assert SECRET not in row.identity


def test_concurrent_repeat_of_a_running_key_gets_409(
    sandbox: Flask, client: FlaskClient, driver: SandboxDriver
) -> None:
    """Toss answers 409 IDEMPOTENT_REQUEST_PROCESSING while the first request with the key is
    running (slow_confirm holds its answer 0.6 s); later the first answer is replayed."""
    w = driver.open_window(scenario="slow_confirm")
    answers: dict[str, Any] = {}

    def first() -> None:
        answers["first"] = confirm_raw(sandbox.test_client(), w, key="slow-key")

    thread = threading.Thread(target=first)
    thread.start()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:  # wait until the first call holds the key
        if [r.state for r in sandbox_rows(sandbox, SandboxIdempotencyKey)] == ["PROCESSING"]:
            break
        time.sleep(0.01)
    second = confirm_raw(sandbox.test_client(), w, key="slow-key")
    thread.join(10)

    assert error(second) == (409, "IDEMPOTENT_REQUEST_PROCESSING")
    assert answers["first"].status_code == 200
    assert answers["first"].get_json()["status"] == "DONE"
    third = confirm_raw(client, w, key="slow-key")
    assert third.get_data() == answers["first"].get_data()


def test_a_key_whose_request_died_is_free_again(sandbox: Flask, driver: SandboxDriver) -> None:
    """A PROCESSING key whose request never finished answers 409 until its timeout, then the
    key does the work (Toss does not keep a dead request's key busy forever)."""
    w = driver.open_window()
    ident = identity("orphan", SECRET, "POST", "/sandbox/v1/payments/confirm")
    with sandbox.app_context():
        now = state(sandbox).now()
        sandbox_db.session.add(
            SandboxIdempotencyKey(
                identity=ident,
                state="PROCESSING",
                created_at=now,
                expires_at=now + timedelta(days=15),
            )
        )
        sandbox_db.session.commit()
    assert error(confirm(driver, w, idempotency_key="orphan")) == (
        409,
        "IDEMPOTENT_REQUEST_PROCESSING",
    )
    state(sandbox).advance(state(sandbox).settings.idempotency_processing_timeout)
    assert confirm(driver, w, idempotency_key="orphan").status == 200


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
def test_test_code_header_reproduces_the_error(
    client: FlaskClient, driver: SandboxDriver, code: str, status: int
) -> None:
    """Toss: `TossPayments-Test-Code: <CODE>` with a test key answers that error and does
    nothing."""
    w = driver.open_window()
    header = {"TossPayments-Test-Code": code}
    resp = confirm(driver, w, idempotency_key="tc", headers=header)
    assert (resp.status, resp.code) == (status, code)
    get = client.get(f"/sandbox/v1/payments/{w.payment_key}", headers={**basic(), **header})
    assert get.status_code == status
    assert status_of(driver, w.payment_key) == "IN_PROGRESS"
    assert confirm(driver, w, idempotency_key="tc").status == 200


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("COMMON_ERROR", 500),
        ("EXCEED_CANCEL_LIMIT", 403),
        ("EXCEED_MAX_AUTH_COUNT", 403),
        ("EXCEED_MAX_ONE_DAY_AMOUNT", 403),
        ("EXCEED_MAX_REFUND_DUE", 403),
        ("NOT_ALLOWED_PARTIAL_REFUND", 403),
        ("NOT_ALLOWED_PARTIAL_REFUND_WAITING_DEPOSIT", 403),
        ("NOT_AVAILABLE_BANK", 403),
        ("FORBIDDEN_BANK_REFUND_REQUEST", 400),
        ("PROVIDER_ERROR", 400),
        ("INVALID_API_KEY", 400),
        ("FAILED_REFUND_PROCESS", 500),
        ("REJECT_TOSSPAY_INVALID_ACCOUNT", 403),
    ],
)
def test_errors_carry_tosss_http_status(
    client: FlaskClient, driver: SandboxDriver, code: str, status: int
) -> None:
    """Every code answers with the HTTP status and Korean message of Toss's error-code reference
    (https://docs.tosspayments.com/reference/error-codes: the confirm and cancel tables)."""
    w = driver.open_window()
    confirm(driver, w)
    resp = client.post(
        f"/sandbox/v1/payments/{w.payment_key}/cancel",
        json={"cancelReason": "x"},
        headers={**basic(), "TossPayments-Test-Code": code},
    )
    assert error(resp) == (status, code)
    assert resp.get_json()["message"] == ERRORS[code][1]
    assert status_of(driver, w.payment_key) == "DONE"


# -- cancel ----------------------------------------------------------------------------------------


def test_partial_then_full_cancel(client: FlaskClient, driver: SandboxDriver) -> None:
    """Toss cancels part of a payment (PARTIAL_CANCELED, one cancels[] entry each), refuses a
    refundableAmount that is not the balance and an amount over it, and cancels the rest."""
    w = driver.open_window(amount=50_000)
    confirm(driver, w)
    path = f"/sandbox/v1/payments/{w.payment_key}/cancel"
    partial = client.post(
        path,
        json={"cancelReason": "고객 요청", "cancelAmount": 12_000},
        headers={**basic(), "Idempotency-Key": "refund-1"},
    )
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
    sample = fixture("toss/payment_partial_canceled.json")
    assert set(sample["cancels"][0]) <= set(c)
    # Those of the balance: Toss's reference ("결제 취소 및 부분 취소가 되면 ... 값이 바뀝니다",
    # https://docs.tosspayments.com/reference) and a partial cancel on Toss's forum
    # (https://techchat.tosspayments.com/m/1237958998343417856).
    assert (p["vat"], p["suppliedAmount"], p["taxFreeAmount"]) == (3_455, 34_545, 0)

    guarded = driver.cancel(w.payment_key, cancelAmount=1_000, refundableAmount=50_000)
    assert error(guarded) == (400, "NOT_MATCHES_REFUNDABLE_AMOUNT")
    over = driver.cancel(w.payment_key, cancelAmount=38_001)
    assert error(over) == (403, "NOT_CANCELABLE_AMOUNT")

    rest = driver.cancel(w.payment_key, idempotency_key="refund-2", refundableAmount=38_000)
    assert rest.status == 200
    assert (rest.body["status"], rest.body["balanceAmount"], len(rest.body["cancels"])) == (
        "CANCELED",
        0,
        2,
    )
    assert rest.body["cancels"][1]["cancelAmount"] == 38_000
    # A full cancel leaves nothing: Toss's cancel example
    # (https://docs.tosspayments.com/common/apis/cancel-payment) answers 0 and 0.
    assert (rest.body["suppliedAmount"], rest.body["vat"], rest.body["taxFreeAmount"]) == (0, 0, 0)
    assert error(driver.cancel(w.payment_key)) == (400, "ALREADY_CANCELED_PAYMENT")
    # The replay of the first refund still answers what it answered then.
    replay = client.post(
        path,
        json={"cancelReason": "고객 요청", "cancelAmount": 12_000},
        headers={**basic(), "Idempotency-Key": "refund-1"},
    )
    assert replay.get_data() == partial.get_data()


def test_cancels_adjust_tax_free_vat_and_supplied_amounts(driver: SandboxDriver) -> None:
    """taxFreeAmount, vat and suppliedAmount follow the balance as cancels take it, vat being
    round((amount − taxFreeAmount) / 11) (https://docs.tosspayments.com/reference: Payment 객체,
    and the cancel's taxFreeAmount, 0 unless given); a full cancel leaves 0
    (https://docs.tosspayments.com/common/apis/cancel-payment)."""
    w = driver.open_window(amount=10_000, taxFreeAmount=3_000)
    p = confirm(driver, w).body
    assert (p["taxFreeAmount"], p["vat"], p["suppliedAmount"]) == (3_000, 636, 6_364)
    p = driver.cancel(w.payment_key, cancelAmount=2_000).body  # all of it taxable
    assert (p["balanceAmount"], p["taxFreeAmount"], p["vat"], p["suppliedAmount"]) == (
        8_000,
        3_000,
        455,
        4_545,
    )
    assert p["cancels"][0]["taxFreeAmount"] == 0
    p = driver.cancel(w.payment_key, cancelAmount=3_000, taxFreeAmount=1_000).body
    assert (p["balanceAmount"], p["taxFreeAmount"], p["vat"], p["suppliedAmount"]) == (
        5_000,
        2_000,
        273,
        2_727,
    )
    assert p["cancels"][1]["taxFreeAmount"] == 1_000
    p = driver.cancel(w.payment_key).body
    assert (p["status"], p["balanceAmount"], p["taxFreeAmount"], p["vat"]) == ("CANCELED", 0, 0, 0)
    assert (p["suppliedAmount"], p["cancels"][2]["taxFreeAmount"]) == (0, 2_000)
    assert p["totalAmount"] == 10_000  # "최초에 결제된 결제 금액으로 유지됩니다" (ibid.)


@pytest.mark.parametrize(
    "body",
    [{"cancelReason": ""}, {"cancelReason": "x" * 201}, {"cancelReason": "x", "cancelAmount": 0}],
)
def test_cancel_body_is_validated(
    client: FlaskClient, driver: SandboxDriver, body: dict[str, Any]
) -> None:
    """Toss wants a cancelReason of 1-200 characters and a positive cancelAmount."""
    w = driver.open_window()
    confirm(driver, w)
    resp = client.post(f"/sandbox/v1/payments/{w.payment_key}/cancel", json=body, headers=basic())
    assert error(resp) == (400, "INVALID_REQUEST")


def test_cancel_of_an_unconfirmed_payment_is_refused(driver: SandboxDriver) -> None:
    """Toss: a payment not yet confirmed is 403 NOT_CANCELABLE_PAYMENT."""
    w = driver.open_window()
    assert error(driver.cancel(w.payment_key)) == (403, "NOT_CANCELABLE_PAYMENT")


# -- virtual accounts ------------------------------------------------------------------------------


def test_virtual_account_issue_deposit_and_refund(sandbox: Flask, driver: SandboxDriver) -> None:
    """Toss issues a virtual account at confirm (WAITING_FOR_DEPOSIT, due in 7 days, a secret),
    turns it DONE on deposit, and refunds a deposited account only to a refund account."""
    w = driver.open_window(scenario="virtual_account", customerName="김토스", amount=32_000)
    p = confirm(driver, w).body
    assert (p["status"], p["method"], p["approvedAt"]) == ("WAITING_FOR_DEPOSIT", "가상계좌", None)
    va = p["virtualAccount"]
    sample = fixture("toss/payment_waiting_for_deposit.json")
    assert set(sample["virtualAccount"]) <= set(va)
    assert re.fullmatch(r"\d{10,}", va["accountNumber"])
    assert va["bankCode"]
    assert va["customerName"] == "김토스"
    assert va["refundStatus"] == "NONE"
    assert va["expired"] is False
    assert va["dueDate"] == "2026-11-29T10:00:00+09:00"  # seven days after issue
    assert re.fullmatch(r"ps_[A-Za-z0-9]{20,}", p["secret"])

    deposited = driver.deposit(w.order_id)
    assert deposited.status == 200
    d = deposited.body
    assert d["status"] == "DONE"
    assert d["approvedAt"]
    assert d["secret"] == p["secret"]
    assert d["lastTransactionKey"] != p["lastTransactionKey"]
    assert driver.deposit(w.order_id).status == 409

    assert error(driver.cancel(w.payment_key, cancelAmount=2_000)) == (
        400,
        "INVALID_REFUND_ACCOUNT_INFO",
    )
    bad_account = {"bank": "88", "accountNumber": "abc", "holderName": "김토스"}
    assert error(driver.cancel(w.payment_key, refundReceiveAccount=bad_account)) == (
        400,
        "INVALID_REFUND_ACCOUNT_INFO",
    )
    refunded = in_process_client(sandbox).cancel(
        w.payment_key,
        "단순 변심",
        idempotency_key="va-refund",
        refund_account=RefundAccount("88", "110-123-456789", "김토스"),
    )
    assert refunded.status == "CANCELED"
    assert refunded.balance_amount == 0
    # Toss refunds a deposited account 2 days after the cancel ("환불은 취소 요청 후 2일 후에
    # 진행됩니다", https://docs.tosspayments.com/reference, 결제 취소): refundStatus PENDING,
    # then COMPLETED (the statuses of the reference's virtualAccount.refundStatus).
    assert refunded.raw["virtualAccount"]["refundStatus"] == "PENDING"
    state(sandbox).advance(timedelta(hours=48).total_seconds() - 1)
    assert driver.get(w.payment_key).body["virtualAccount"]["refundStatus"] == "PENDING"
    state(sandbox).advance(1)
    after = driver.get(w.payment_key).body
    assert (after["status"], after["virtualAccount"]["refundStatus"]) == ("CANCELED", "COMPLETED")


def test_virtual_account_cancelled_before_deposit_needs_no_account(driver: SandboxDriver) -> None:
    """Toss cancels an unpaid virtual account only in full, without a refund account ("입금
    전에는 부분 취소를 할 수 없고 전체 금액 취소만", https://docs.tosspayments.com/reference):
    a partial cancel is 403 NOT_ALLOWED_PARTIAL_REFUND_WAITING_DEPOSIT
    (https://docs.tosspayments.com/reference/error-codes); the account then takes no deposit."""
    w = driver.open_window(scenario="virtual_account")
    confirm(driver, w)
    partial = driver.cancel(w.payment_key, cancelAmount=1_000)
    assert error(partial) == (403, "NOT_ALLOWED_PARTIAL_REFUND_WAITING_DEPOSIT")
    assert status_of(driver, w.payment_key) == "WAITING_FOR_DEPOSIT"
    resp = driver.cancel(w.payment_key)
    assert resp.status == 200
    assert resp.body["status"] == "CANCELED"
    assert driver.deposit(w.order_id).status == 409


def test_virtual_account_past_its_due_date_stays_waiting_and_sends_nothing(
    sandbox: Flask, driver: SandboxDriver
) -> None:
    """Past its due date (7 days by default) an unpaid account takes no deposit ("dueDate이 지난
    시점에 입금을 시도하면 실패합니다", https://docs.tosspayments.com/reference) and shows
    virtualAccount.expired (ibid.), but its status stays WAITING_FOR_DEPOSIT and nothing is sent:
    that Toss sends nothing is not found in its docs, so a shop must expire its own order."""
    w = driver.open_window(scenario="virtual_account")
    confirm(driver, w)
    issued = len(sandbox_rows(sandbox, SandboxWebhook))
    state(sandbox).advance(timedelta(days=7).total_seconds() - 1)
    assert driver.get(w.payment_key).body["virtualAccount"]["expired"] is False
    state(sandbox).advance(1)
    with sandbox.app_context():
        sweep()  # what the sender thread runs on its own
    late = driver.deposit(w.order_id)
    assert (late.status, late.code) == (409, "VIRTUAL_ACCOUNT_EXPIRED")
    p = driver.get(w.payment_key).body
    assert p["status"] == "WAITING_FOR_DEPOSIT"
    assert p["virtualAccount"]["expired"] is True
    assert driver.get_by_order(w.order_id).body["status"] == "WAITING_FOR_DEPOSIT"
    assert len(sandbox_rows(sandbox, SandboxWebhook)) == issued


def test_virtual_account_days_is_a_setting(sandboxes: Callable[..., Flask]) -> None:
    """SANDBOX_VIRTUAL_ACCOUNT_DAYS moves the due date (Toss lets a merchant choose it)."""
    settings = SandboxSettings.load(environ={"SANDBOX_VIRTUAL_ACCOUNT_DAYS": "3"})
    sandbox = sandboxes(virtual_account_days=settings.virtual_account_days)
    driver = SandboxDriver.in_process(sandbox.test_client())
    w = driver.open_window(scenario="virtual_account")
    assert confirm(driver, w).body["virtualAccount"]["dueDate"] == "2026-11-25T10:00:00+09:00"
    with pytest.raises(SettingsError):
        SandboxSettings.load({"virtual_account_days": 31})


# -- scenarios -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scenario", "code"),
    [("reject_card", "REJECT_CARD_COMPANY"), ("cancel_by_user", "PAY_PROCESS_CANCELED")],
)
def test_window_failures_redirect_to_fail_url(
    sandbox: Flask, driver: SandboxDriver, scenario: str, code: str
) -> None:
    """Toss sends a failed window to failUrl with code, message and orderId appended to its own
    query (https://docs.tosspayments.com/reference/error-codes, failUrl errors). The window's
    payment exists (READY, with its own paymentKey, which the redirect does not carry) and
    nothing changed or was sent: READY is kept until the shopper authenticates
    (https://docs.tosspayments.com/reference, Payment 객체); what a card refusal inside the
    window does to the status is not found in Toss's docs."""
    w = driver.open_window(scenario=scenario, fail_url="http://shop.test/checkout/fail?from=widget")
    assert w.redirect_url.startswith("http://shop.test/checkout/fail?from=widget&code=")
    assert list(w.query) == ["from", "code", "message", "orderId"]
    assert w.code == code
    assert w.query["orderId"] == w.order_id
    assert w.query["message"]
    assert w.payment_key is None
    found = driver.get_by_order(w.order_id).body
    assert (found["paymentKey"], found["status"]) == (w.opened_payment_key, "READY")
    assert (found["method"], found["failure"], found["approvedAt"]) == (None, None, None)
    assert sandbox_rows(sandbox, SandboxWebhook) == []


def test_success_redirect_carries_exactly_tosss_parameters(driver: SandboxDriver) -> None:
    """Toss's success redirect: paymentType, orderId, paymentKey, amount, in that order."""
    w = driver.open_window(amount=103_000)
    assert w.redirect_url.startswith("http://shop.test/checkout/success?paymentType=NORMAL&")
    assert list(w.query) == ["paymentType", "orderId", "paymentKey", "amount"]
    assert (w.query["orderId"], w.query["amount"]) == (w.order_id, "103000")


def test_insufficient_balance_is_refused_at_confirm_and_aborts(driver: SandboxDriver) -> None:
    """Toss refuses a card without funds at confirm (403 REJECT_CARD_PAYMENT): the payment is
    ABORTED with its failure, and stays refused."""
    w = driver.open_window(scenario="insufficient_balance")
    assert error(confirm(driver, w, idempotency_key="poor")) == (403, "REJECT_CARD_PAYMENT")
    p = driver.get(w.payment_key).body
    assert p["status"] == "ABORTED"
    assert p["failure"]["code"] == "REJECT_CARD_PAYMENT"
    assert error(confirm(driver, w))[1] == "REJECT_CARD_PAYMENT"


@pytest.mark.parametrize(
    ("scenario", "expected"),
    [
        ("provider_error", (400, "PROVIDER_ERROR")),
        ("server_error", (500, "FAILED_PAYMENT_INTERNAL_SYSTEM_PROCESSING")),
    ],
)
def test_a_temporary_confirm_error_is_retried_with_the_same_key(
    driver: SandboxDriver, scenario: str, expected: tuple[int, str]
) -> None:
    """Confirm's PROVIDER_ERROR is a 400 ("일시적인 오류가 발생했습니다. 잠시 후 다시
    시도해주세요.", https://docs.tosspayments.com/reference/error-codes), a 5xx of the same
    kind a 500: the first answer did nothing, the key is not kept for it, and the retry with the
    same key does the work (Toss: retry under the same key, not a new one,
    https://docs.tosspayments.com/reference/using-api/authorization)."""
    w = driver.open_window(scenario=scenario)
    first = confirm(driver, w, idempotency_key="retry-me")
    assert error(first) == expected
    assert status_of(driver, w.payment_key) == "IN_PROGRESS"
    retry = confirm(driver, w, idempotency_key="retry-me")
    assert retry.status == 200
    assert retry.body["status"] == "DONE"
    assert driver.payment(w.payment_key)["sandbox"]["confirmRequests"] == 2


def test_slow_confirm_is_done_before_it_answers(sandboxes: Callable[..., Flask]) -> None:
    """slow_confirm: the payment is DONE (and visible) while its answer is still held."""
    sandbox = sandboxes(slow_confirm_seconds=0.3)
    driver = SandboxDriver.in_process(sandbox.test_client())
    w = driver.open_window(scenario="slow_confirm")
    seen: list[str] = []

    def look() -> None:
        deadline = time.monotonic() + 5
        while not seen and time.monotonic() < deadline:
            status = SandboxDriver.in_process(sandbox.test_client()).get(w.payment_key)
            if status.body["status"] == "DONE":
                seen.append(status.body["status"])
            time.sleep(0.01)

    watcher = threading.Thread(target=look)
    watcher.start()
    started = time.monotonic()
    resp = confirm(driver, w)
    held = time.monotonic() - started
    watcher.join(10)
    assert held >= 0.3
    assert resp.body["status"] == "DONE"
    assert seen == ["DONE"]


# -- test helpers ----------------------------------------------------------------------------------


def _invalid_cases() -> list[Any]:
    data = json.loads((FIXTURES / "sandbox" / "invalid_sessions.json").read_text())
    return [pytest.param(c["patch"], tuple(c["expect"]), id=c["id"]) for c in data["cases"]]


@pytest.mark.parametrize(("patch", "expected"), _invalid_cases())
def test_sessions_helper_validates_field_rules(
    client: FlaskClient, patch: dict[str, Any], expected: tuple[int, str]
) -> None:
    """A payment request that breaks Toss's field rules is refused as Toss refuses it."""
    body = session_body(amount=10_000)
    body.update(patch)
    body = {k: v for k, v in body.items() if v is not None}
    assert error(client.post("/sandbox/api/sessions", json=body)) == expected


def test_sessions_helper_accepts_the_edges(client: FlaskClient) -> None:
    """The edges of Toss's field rules are accepted (6- and 64-character orderIds, 100-character
    orderName, the minimum amounts, Korean method names, the anonymous customerKey)."""
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


def test_every_confirm_request_counts_once_whatever_its_answer(driver: SandboxDriver) -> None:
    """The sandbox's own view counts each confirm that reached it: refused, done, replayed."""
    w = driver.open_window()
    forced = confirm(driver, w, headers={"TossPayments-Test-Code": "FDS_ERROR"})
    assert error(forced)[1] == "FDS_ERROR"
    assert confirm(driver, w, idempotency_key="k1").status == 200
    assert error(confirm(driver, w, idempotency_key="k2")) == (400, "ALREADY_PROCESSED_PAYMENT")
    assert confirm(driver, w, idempotency_key="k1").status == 200  # replayed
    view = driver.payment(w.payment_key)
    assert view["status"] == "DONE"
    assert view["sandbox"]["confirmRequests"] == 4


def test_sandbox_view_counts_confirms_and_webhooks(
    client: FlaskClient, driver: SandboxDriver
) -> None:
    """GET /sandbox/api/payments/<key> (no auth): the Payment plus confirms and webhooks."""
    w = driver.open_window()
    driver.confirm(w.payment_key, w.order_id, w.amount + 1)
    confirm(driver, w, idempotency_key="a")
    confirm(driver, w, idempotency_key="a")
    view = client.get(f"/sandbox/api/payments/{w.payment_key}")  # no auth needed
    assert view.status_code == 200
    data = view.get_json()
    assert data["status"] == "DONE"
    assert data["sandbox"]["confirmRequests"] == 3
    assert data["sandbox"]["webhooksSent"] == 0
    assert data["sandbox"]["webhooksPending"] == 1
    assert client.get("/sandbox/api/payments/tvivaNOPE").status_code == 404


def test_expire_helper(driver: SandboxDriver) -> None:
    """The expire helper does what a passed deadline does, to what has a deadline only: a window
    or an unconfirmed payment expires, a virtual account passes its due date (and stays
    waiting)."""
    w = driver.open_window()
    expired = driver.expire(w.payment_key)
    assert (expired.status, expired.body["status"]) == (200, "EXPIRED")
    assert expired.body["failure"]["code"] == "EXPIRED_PAYMENT"
    assert error(confirm(driver, w)) == (404, "NOT_FOUND_PAYMENT_SESSION")
    ready_key, _ = driver.start_window()
    assert driver.expire(ready_key).body["status"] == "EXPIRED"

    va = driver.open_window(scenario="virtual_account")
    confirm(driver, va)
    expired = driver.expire(va.payment_key)
    assert expired.body["status"] == "WAITING_FOR_DEPOSIT"
    assert expired.body["virtualAccount"]["expired"] is True
    assert driver.deposit(va.order_id).status == 409

    done = driver.open_window()
    confirm(driver, done)
    assert driver.expire(done.payment_key).status == 409
    assert driver.expire("tvivaNOPE").status == 404


def test_deposit_helper_refuses_what_is_not_a_waiting_account(driver: SandboxDriver) -> None:
    """Only a virtual account waiting for its deposit can be paid."""
    w = driver.open_window()
    confirm(driver, w)
    assert driver.deposit(w.order_id).status == 409
    assert driver.deposit("order-nope").status == 404


def test_state_lives_in_the_database(sandboxes: Callable[..., Flask]) -> None:
    """Two sandbox processes on one database (two server workers) are one sandbox."""
    one = SandboxDriver.in_process(sandboxes().test_client())
    two = SandboxDriver.in_process(sandboxes().test_client())
    w = one.open_window()
    assert confirm(two, w).status == 200
    assert status_of(one, w.payment_key) == "DONE"


def test_servers_starting_at_once_on_a_new_database_all_come_up(
    fresh_database_url: str,
) -> None:
    """Every server process (gunicorn's workers) creates the sandbox's tables at start; when
    they race on a new database, the losers find the tables there instead of failing."""
    started = race([partial(sandbox_alone, fresh_database_url) for _ in range(6)])
    try:
        driver = SandboxDriver.in_process(started[-1].test_client())
        assert driver.open_window().payment_key
    finally:
        for sandbox in started:
            dispose(sandbox)


def test_a_database_made_by_another_sandbox_version_starts_afresh(tmp_path: Any) -> None:
    """The sandbox keeps no migrations: tables made by another version (a stored version that
    differs, or sandbox tables without one) are dropped and made anew at start."""
    url = f"sqlite:///{tmp_path / 'old.sqlite3'}"
    old = sandbox_alone(url)
    SandboxDriver.in_process(old.test_client()).open_window()
    with old.app_context():
        sandbox_db.session.execute(text("UPDATE sandbox_schema SET version = 1"))
        sandbox_db.session.commit()
    dispose(old)

    again = sandbox_alone(url)
    assert sandbox_rows(again, SandboxPayment) == []
    assert [row.version for row in sandbox_rows(again, SandboxSchema)] == [SCHEMA_VERSION]
    with again.app_context():  # tables from before versions were kept: no schema row
        sandbox_db.session.execute(text("DROP TABLE sandbox_schema"))
        sandbox_db.session.commit()
    SandboxDriver.in_process(again.test_client()).open_window()
    dispose(again)

    third = sandbox_alone(url)
    assert sandbox_rows(third, SandboxPayment) == []
    driver = SandboxDriver.in_process(third.test_client())
    assert driver.open_window().payment_key
    dispose(third)


def test_refuses_to_run_in_production(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    """The sandbox never starts beside a production deployment."""
    monkeypatch.setenv("APP_ENV", "production")
    with pytest.raises(SettingsError, match="production"):
        create_app(SandboxSettings(database_url=f"sqlite:///{tmp_path / 's.sqlite3'}"))


# -- the real TossClient against the sandbox -------------------------------------------------------


def _exercise_client(toss: TossClient, driver: SandboxDriver) -> None:
    """The shop's Toss client against the sandbox: confirm, lookups, partial and full cancel, a
    refused cancel, a retried 5xx, a 404."""
    w = driver.open_window(amount=48_000)
    done = toss.confirm(w.payment_key, w.order_id, w.amount, idempotency_key=f"c-{w.order_id}")
    assert (done.status, done.total_amount, done.method) == ("DONE", 48_000, "카드")
    assert done.card is not None
    assert done.receipt_url
    assert toss.get_payment(w.payment_key).status == "DONE"
    assert toss.get_payment_by_order(w.order_id).payment_key == w.payment_key
    part = toss.cancel(
        w.payment_key,
        "부분 환불",
        idempotency_key="r-1",
        cancel_amount=8_000,
        refundable_amount=48_000,
    )
    assert (part.status, part.balance_amount, len(part.cancels)) == ("PARTIAL_CANCELED", 40_000, 1)
    with pytest.raises(TossError) as exc:
        toss.cancel(w.payment_key, "다시", idempotency_key="r-2", refundable_amount=48_000)
    assert exc.value.code == "NOT_MATCHES_REFUNDABLE_AMOUNT"
    assert not exc.value.retryable
    full = toss.cancel(w.payment_key, "전액", idempotency_key="r-3")
    assert (full.status, full.balance_amount) == ("CANCELED", 0)

    flaky = driver.open_window(scenario="provider_error")
    paid = toss.confirm(flaky.payment_key, flaky.order_id, flaky.amount, idempotency_key="flaky")
    assert paid.status == "DONE"
    assert driver.payment(flaky.payment_key)["sandbox"]["confirmRequests"] == 2  # one retry

    with pytest.raises(TossError) as exc:
        toss.get_payment("tvivaDOESNOTEXIST000000000")
    assert exc.value.code == "NOT_FOUND_PAYMENT"
    assert exc.value.http_status == 404


def test_toss_client_in_process(database_url: str) -> None:
    """The shop with the sandbox mounted: its own Toss client reaches the sandbox without a
    socket, and the in-process transport honours the read timeout like a socket."""
    app = sandbox_app(database_url)
    try:
        driver = SandboxDriver.in_process(app.test_client())
        with app.app_context():
            toss = shop_toss.client
            assert toss.api_base == f"{INPROCESS_TOSS}/sandbox"
            _exercise_client(toss, driver)

            slow = driver.open_window(scenario="slow_confirm")
            quick = TossClient(
                SECRET, toss.api_base, read_timeout=0.2, max_retries=0, session=toss.session
            )
            with pytest.raises(TossNetworkError) as exc:
                quick.confirm(slow.payment_key, slow.order_id, slow.amount, idempotency_key="slow")
        assert exc.value.code == "READ_TIMEOUT"
        assert exc.value.outcome_unknown
        # The payment went through anyway (Toss's outcome is unknown, not failed).
        assert status_of(driver, slow.payment_key) == "DONE"
        wait_until_answered(app.extensions["sandbox_app"])
    finally:
        dispose(app)


@pytest.fixture
def live_sandbox(sandbox: Flask) -> Iterator[str]:
    """The sandbox alone on a loopback port, as another process reaches it."""
    server = make_server("127.0.0.1", 0, sandbox, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(5)


def test_toss_client_over_http(sandbox: Flask, live_sandbox: str) -> None:
    """The shop's Toss client against a sandbox over HTTP, a read timeout settled by a lookup by
    orderId, and Toss's 401 for a key that is not the merchant's."""
    toss = TossClient(SECRET, f"{live_sandbox}/sandbox", backoff=0, max_retries=2)
    driver = SandboxDriver.over_http(live_sandbox)
    _exercise_client(toss, driver)

    slow = driver.open_window(scenario="slow_confirm")
    quick = TossClient(SECRET, f"{live_sandbox}/sandbox", read_timeout=0.3, max_retries=0)
    with pytest.raises(TossNetworkError) as exc:
        quick.confirm(slow.payment_key, slow.order_id, slow.amount, idempotency_key="slow-http")
    assert exc.value.code == "READ_TIMEOUT"
    assert exc.value.outcome_unknown
    # The payment went through anyway: a lookup by orderId settles it.
    assert toss.get_payment_by_order(slow.order_id).status == "DONE"
    wait_until_answered(sandbox)

    wrong = TossClient("test_gsk_not_ours", f"{live_sandbox}/sandbox", max_retries=0)
    with pytest.raises(TossError) as exc:
        wrong.get_payment(slow.payment_key)
    assert (exc.value.code, exc.value.http_status) == ("UNAUTHORIZED_KEY", 401)


def test_sandbox_ids_are_uniform_over_their_alphabet() -> None:
    """Ids are drawn uniformly from their alphabet (no modulo bias), shaped like Toss's."""
    sample = "".join(_random("abc", 30) for _ in range(2000))
    counts = {ch: sample.count(ch) for ch in "abc"}
    assert set(sample) == {"a", "b", "c"}
    assert all(abs(n - 20_000) < 1_000 for n in counts.values()), counts
    assert re.fullmatch(r"tviva[A-Za-z0-9]{24}", new_payment_key())
    assert re.fullmatch(r"[0-9]{8}", digits(8))
    assert len({new_payment_key() for _ in range(1000)}) == 1000
