"""A matrix of bad values against every route of the core flow: always a 4xx with a code and
a message, never a 5xx, never a call to Toss, never a changed order."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

import pytest
import responses
from flask import Flask
from flask.testing import FlaskClient

from tests.helpers import audit, get_order

GOOD_KEY = "tpk_test_0001"
BAD_AMOUNTS: list[Any] = [
    None,
    "",
    "abc",
    -1,
    0,
    1.5,
    "1.5",
    "１０",
    "-5",
    " 5",
    True,
    [],
    {},
    10**13,
    "1e5",
    "0x10",
]
BAD_ORDER_IDS: list[Any] = [
    None,
    "",
    "short",
    "has space 000000",
    "x" * 65,
    "ü" * 10,
    123,
    "../etc",
]
BAD_KEYS: list[Any] = [None, "", "k" * 201, "has space", "<script>", 42, ["a"]]


def bodies(order_id: str, amount: int) -> list[Any]:
    base = {"paymentKey": GOOD_KEY, "orderId": order_id, "amount": amount}
    out: list[Any] = [{}, [], "string", 5, None]
    out += [{**base, "amount": v} for v in BAD_AMOUNTS]
    out += [{**base, "orderId": v} for v in BAD_ORDER_IDS]
    out += [{**base, "paymentKey": v} for v in BAD_KEYS]
    out += [{k: v for k, v in base.items() if k != missing} for missing in base]
    return out


@pytest.fixture
def order(app: Flask, place_order: Callable[..., str]) -> tuple[str, int]:
    order_id = place_order()
    return order_id, get_order(app, order_id).amount


def snapshot(app: Flask, order_id: str) -> tuple[str, int]:
    """The order's status and how many audit rows it has."""
    return get_order(app, order_id).status, len(audit(app, order_id))


@pytest.mark.parametrize("path", ["/api/payment/verify", "/api/payment/confirm"])
def test_api_rejects_every_bad_body(
    app: Flask,
    client: FlaskClient,
    toss: responses.RequestsMock,
    order: tuple[str, int],
    path: str,
) -> None:
    order_id, amount = order
    before = snapshot(app, order_id)
    for body in bodies(order_id, amount):
        resp = client.post(path, data=json.dumps(body), content_type="application/json")
        assert resp.status_code == 400, (body, resp.get_data(as_text=True))
        payload = resp.get_json()
        assert payload["code"] == "INVALID_REQUEST", body
        assert payload["message"]
    assert len(toss.calls) == 0
    assert snapshot(app, order_id) == before


@pytest.mark.parametrize(
    ("data", "content_type"),
    [
        ("paymentKey=a&orderId=b&amount=1", "application/x-www-form-urlencoded"),
        ('{"paymentKey": "a"', "application/json"),
        ("\xff\xfe", "application/json"),
        ('{"paymentKey": "tpk", "orderId": "abcdef", "amount": 1}', "text/plain"),
        ("", None),
    ],
)
def test_api_requires_a_json_object(
    client: FlaskClient, toss: responses.RequestsMock, data: str, content_type: str | None
) -> None:
    resp = client.post("/api/payment/verify", data=data, content_type=content_type)
    assert resp.status_code == 400
    assert resp.get_json()["code"] == "INVALID_REQUEST"
    assert len(toss.calls) == 0


def test_api_unknown_order_and_wrong_method(
    client: FlaskClient, toss: responses.RequestsMock
) -> None:
    resp = client.post(
        "/api/payment/verify",
        json={"paymentKey": GOOD_KEY, "orderId": "no-such-order-000001", "amount": 1000},
    )
    assert resp.status_code == 404
    assert resp.get_json()["code"] == "ORDER_NOT_FOUND"
    assert resp.get_json()["message"] == "주문을 찾을 수 없습니다."
    wrong = client.get("/api/payment/verify")
    assert wrong.status_code in (404, 405)  # GET /api/payment/<key> answers 404 for "verify"
    assert "code" in wrong.get_json()
    assert len(toss.calls) == 0


def test_api_oversized_body_is_413(client: FlaskClient) -> None:
    resp = client.post(
        "/api/payment/verify",
        data=json.dumps({"pad": "x" * 70_000}),
        content_type="application/json",
    )
    assert resp.status_code == 413
    assert resp.get_json()["code"] == "PAYLOAD_TOO_LARGE"


def test_success_redirect_rejects_bad_query(
    app: Flask, client: FlaskClient, toss: responses.RequestsMock, order: tuple[str, int]
) -> None:
    order_id, amount = order
    before = snapshot(app, order_id)
    for body in bodies(order_id, amount):
        # A query string carries only text: non-string JSON values have no URL form.
        if not isinstance(body, dict) or not all(isinstance(v, str) for v in body.values()):
            continue
        query = urlencode(body)
        resp = client.get(f"/checkout/success?{query}")
        assert 400 <= resp.status_code < 500, (body, resp.status_code)
        assert "error-message" in resp.get_data(as_text=True)
    assert len(toss.calls) == 0
    assert snapshot(app, order_id) == before


@pytest.mark.parametrize(
    "path",
    [
        "/checkout/nope",
        "/checkout/" + "x" * 300,
        "/orders/nope",
        "/orders/" + "a" * 64,
        "/orders/..%2f..%2fetc",
        "/api/payment/" + "k" * 500,
        "/api/payment/unknown-key",
        "/no/such/page",
    ],
)
def test_unknown_things_are_404_with_a_message(client: FlaskClient, path: str) -> None:
    resp = client.get(path)
    assert resp.status_code == 404
    text = resp.get_data(as_text=True)
    assert "찾을 수 없습니다" in text or "NOT_FOUND" in text


@pytest.mark.parametrize(
    "query",
    [
        "",
        "code=",
        "code=%3Cscript%3Ealert(1)%3C/script%3E&orderId=x",
        "code=PAY_PROCESS_CANCELED&orderId=" + "x" * 500,
        "code=" + "A" * 500,
        "message=" + "m" * 5000,
        "orderId[]=1&code[]=2",
    ],
)
def test_fail_page_survives_any_query(client: FlaskClient, query: str) -> None:
    resp = client.get(f"/checkout/fail?{query}")
    assert resp.status_code == 200
    html = resp.get_data(as_text=True)
    assert "<script>alert(1)" not in html
    assert "결제 처리 중 오류가 발생했습니다" in html or "결제" in html


def test_wrong_methods_are_405_not_500(client: FlaskClient) -> None:
    for method, path in [
        ("PUT", "/cart"),
        ("DELETE", "/orders"),
        ("GET", "/orders"),
        ("POST", "/"),
    ]:
        resp = client.open(path, method=method)
        assert resp.status_code == 405, (method, path)
        assert "허용되지 않는" in resp.get_data(as_text=True)


# -- text no database can hold, JSON no parser can follow ----------------------------------------

DEEP = ["[" * 5000, "[" * 60_000, '{"a":' * 5000, '{"paymentKey": ' + "[" * 20_000]


@pytest.mark.parametrize("path", ["/api/payment/verify", "/api/payment/confirm"])
@pytest.mark.parametrize("body", DEEP, ids=["list5k", "list60k", "dict5k", "field20k"])
def test_deeply_nested_json_is_400_not_a_recursion_error(
    app: Flask,
    client: FlaskClient,
    toss: responses.RequestsMock,
    order: tuple[str, int],
    caplog: pytest.LogCaptureFixture,
    path: str,
    body: str,
) -> None:
    order_id, _amount = order
    before = snapshot(app, order_id)
    resp = client.post(path, data=body, content_type="application/json")
    assert resp.status_code == 400
    assert resp.get_json()["code"] == "INVALID_REQUEST"
    assert resp.get_json()["message"]
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"
    assert len(toss.calls) == 0
    assert snapshot(app, order_id) == before


NUL_PATHS = [
    "/api/payment/a%00b",
    "/api/payment/tviva20261122%00abcdefgh",
    "/checkout/a%00b",
    "/checkout/order%00abcdefghijk",
    "/orders/a%00b",
    "/orders/order%00abcdefghijklm",
    "/checkout/success?paymentType=NORMAL&orderId=abcdef%00ghijk&paymentKey=tpk%00&amount=1000",
    "/checkout/fail?code=PAY_PROCESS_CANCELED&orderId=abcdefghijk%00lmn",
    "/?q=%00",
    "/cart?x%00=1",
]


@pytest.mark.parametrize("path", NUL_PATHS)
def test_a_nul_in_the_path_or_query_is_400_with_a_message(
    client: FlaskClient, toss: responses.RequestsMock, path: str
) -> None:
    """PostgreSQL cannot store or even compare text with a NUL: refused before any view."""
    resp = client.get(path)
    assert resp.status_code == 400, resp.get_data(as_text=True)[:300]
    if path.startswith("/api/"):
        assert resp.get_json()["code"] == "INVALID_REQUEST"
        assert "NUL" in resp.get_json()["message"]
    else:
        page = resp.get_data(as_text=True)
        assert "INVALID_REQUEST" in page
        assert "사용할 수 없는 문자" in page
    assert len(toss.calls) == 0


@pytest.mark.parametrize(
    "form",
    [
        {"action": "add", "product_id": "1\x00", "quantity": "1"},
        {"action": "add", "product_id": "1", "quantity": "1", "note\x00": "x"},
    ],
)
def test_a_nul_in_a_form_is_400(app: Flask, client: FlaskClient, form: dict[str, str]) -> None:
    resp = client.post("/cart", data=form)
    assert resp.status_code == 400
    assert "사용할 수 없는 문자" in resp.get_data(as_text=True)
    resp = client.post("/orders", data=form)
    assert resp.status_code == 400


@pytest.mark.parametrize(
    "raw",
    ["action=add%ED%A0%80&product_id=1&quantity=1", "action=add&product_id=%ED%B0%80&quantity=1"],
)
def test_a_surrogate_encoded_in_a_form_is_a_4xx(client: FlaskClient, raw: str) -> None:
    """A lone surrogate cannot travel as UTF-8; its bytes (CESU-8) decode as U+FFFD."""
    resp = client.post("/cart", data=raw, content_type="application/x-www-form-urlencoded")
    assert 400 <= resp.status_code < 500


def test_unknown_path_with_a_nul_stays_404(client: FlaskClient) -> None:
    assert client.get("/no/such/%00page").status_code == 404


def test_a_form_checked_for_nul_still_reaches_a_view_reading_raw_bytes(
    client: FlaskClient,
) -> None:
    """The guard parses form bodies through the request's cache: the webhook endpoint, which
    reads the raw body, sees the same bytes (and refuses a non-JSON body as before)."""
    resp = client.post(
        "/api/payment/webhook",
        data="eventType=PAYMENT_STATUS_CHANGED",
        content_type="application/x-www-form-urlencoded",
    )
    assert 400 <= resp.status_code < 500
    assert resp.get_json()["code"]
