"""Random and hostile input at every route: never a 5xx, never a traceback in the logs, and a
rejected request changes nothing.

Runs on the test database (SQLite, or PostgreSQL under TEST_DATABASE_URL, where NUL bytes and
integer ranges bite), as an anonymous shopper and as a logged-in operator. Bounded: a fixed
number of examples per test (and a wall-clock budget for the webhook parser fuzz), so the whole
file stays well under a minute per database.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from werkzeug.routing import Rule
from werkzeug.security import generate_password_hash

from payments.core.errors import ServiceError
from payments.core.models import Order, Payment, Refund, WebhookEvent
from payments.extensions import db
from payments.shop.catalog import seed_catalog
from payments.webhooks.inbox import classify, parse_body
from tests.helpers import BUYER_FORM, dispose, sandbox_app

SETTINGS = settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    derandomize=True,
)

# Text no database column holds (NUL, lone surrogates), header-splitting CR/LF, numbers beyond
# 32 and 64 bits, and overlong strings.
HOSTILE_TEXT = ["\x00", "a\x00b", "\ud800", "x\udfffy", "\r\nX-Injected: 1", "9" * 25,
                str(2**31), str(2**63), "-" + "9" * 20, "x" * 5000]  # fmt: skip
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=2**31, max_value=10**40)
    | st.floats(allow_nan=False)
    | st.text(max_size=40)
    | st.sampled_from(HOSTILE_TEXT),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=12), children, max_size=5)
    ),
    max_leaves=20,
)
field_names = st.sampled_from(
    ["paymentKey", "orderId", "amount", "product_id", "quantity", "action", "code", "message",
     "eventType", "data", "secret", "status", "t", "q", "reason", "csrf_token", "return_to",
     "buyer_name", "buyer_email", "buyer_phone", "postcode", "address", "address_detail",
     "order_id", "email", "step", "carrier", "tracking_number", "restock", "receipt_type",
     "identity_number"]
)  # fmt: skip
field_values = st.one_of(
    st.text(max_size=80),
    st.integers(min_value=-(10**15), max_value=10**15).map(str),
    st.sampled_from(["", "0", "-1", "1", "99", "100", "1e9", "NaN", "null", "%00", "../..", "９"]),
    # Surrogates cannot be sent in a URL or form (no UTF-8 for them); the rest can.
    st.sampled_from([t for t in HOSTILE_TEXT if not any("\ud800" <= c <= "\udfff" for c in t)]),
)


PASSWORD = "fuzz operator password"
PASSWORD_HASH = generate_password_hash(PASSWORD)


@dataclass
class Fuzz:
    app: Flask
    shopper: FlaskClient  # an anonymous browser session that owns `order_id`
    operator: FlaskClient  # logged in to the console
    order_id: str

    def login(self) -> None:
        resp = self.operator.post("/admin/login", data={"password": PASSWORD})
        assert resp.status_code == 303, resp.status_code

    def client(self, who: str) -> FlaskClient:
        return self.operator if who == "operator" else self.shopper


@pytest.fixture
def fuzz(database_url: str) -> Iterator[Fuzz]:
    """The shop on the test database with the sandbox mounted (its routes are fuzzed too), the
    console enabled, rate limits off; a shopper with an order and a logged-in operator."""
    app = sandbox_app(
        database_url, sandbox={"slow_confirm_seconds": 0}, ADMIN_PASSWORD_HASH=PASSWORD_HASH
    )
    with app.app_context():
        seed_catalog()
    shopper = app.test_client()
    assert shopper.post("/cart", data={"action": "add", "product_id": "1"}).status_code == 303
    created = shopper.post("/orders", data=BUYER_FORM)
    assert created.status_code == 303
    found = Fuzz(app, shopper, app.test_client(), created.headers["Location"].rsplit("/", 1)[-1])
    found.login()
    yield found
    dispose(app)


@pytest.fixture
def fuzz_app(fuzz: Fuzz) -> Flask:
    return fuzz.app


def routes(app: Flask) -> list[tuple[Rule, str]]:
    """Every route of the shop and of its mounted sandbox (reached through the shop)."""
    out = []
    for served in (app, app.extensions["sandbox_app"]):
        for rule in served.url_map.iter_rules():
            out.extend((rule, m) for m in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}))
    return out


def state(app: Flask) -> tuple[Any, ...]:
    with app.app_context():
        orders = tuple(db.session.execute(db.select(Order.order_id, Order.status)).all())
        counts = tuple(
            db.session.scalar(db.select(db.func.count()).select_from(m))
            for m in (Payment, Refund, WebhookEvent)
        )
        return orders, counts


@SETTINGS
@given(data=st.data())
def test_random_requests_never_5xx_and_rejections_change_nothing(
    fuzz: Fuzz, data: st.DataObject
) -> None:
    fuzz_app = fuzz.app
    rule, method = data.draw(st.sampled_from(routes(fuzz_app)), label="route")
    who = data.draw(st.sampled_from(["anonymous", "operator"]), label="who")
    params = {arg: data.draw(st.text(min_size=1, max_size=70).filter(lambda s: "/" not in s))
              for arg in rule.arguments}  # fmt: skip
    try:
        path = rule.build(params, append_unknown=False)[1]
    except Exception:  # noqa: BLE001 — a converter refused the value: nothing to send
        event("unbuildable path")
        return
    query = data.draw(st.dictionaries(field_names, field_values, max_size=4), label="query")
    body_kind = data.draw(st.sampled_from(["none", "form", "json", "raw", "deep"]), label="body")
    kwargs: dict[str, Any] = {"query_string": query}
    if method != "GET":
        if body_kind == "form":
            kwargs["data"] = data.draw(st.dictionaries(field_names, field_values, max_size=5))
        elif body_kind == "json":
            # json.dumps escapes lone surrogates, as a hostile client would send them.
            kwargs["data"] = json.dumps(data.draw(json_values))
            kwargs["content_type"] = "application/json"
        elif body_kind == "deep":
            depth = data.draw(st.integers(min_value=500, max_value=30_000))
            kwargs["data"] = data.draw(st.sampled_from(["[", '{"a":', '{"paymentKey":['])) * depth
            kwargs["content_type"] = "application/json"
        elif body_kind == "raw":
            kwargs["data"] = data.draw(st.binary(max_size=200))
            kwargs["content_type"] = data.draw(
                st.sampled_from(["application/json", "text/plain", "application/octet-stream"])
            )
    event(f"{method} {rule.rule}")
    before = state(fuzz_app)
    client = fuzz.operator if who == "operator" else fuzz_app.test_client()
    resp = client.open(path, method=method, **kwargs)
    if who == "operator" and rule.endpoint == "admin.logout":
        fuzz.login()
    event(f"status {resp.status_code // 100}xx")
    assert resp.status_code < 500, (method, path, kwargs, resp.get_data(as_text=True)[:300])
    if resp.status_code >= 400:
        assert state(fuzz_app) == before, (method, path, kwargs)


WEBHOOK_HEADERS = [
    "tosspayments-webhook-transmission-id",
    "tosspayments-webhook-transmission-time",
    "tosspayments-webhook-transmission-retried-count",
    "tosspayments-webhook-signature",
]
header_values = st.text(max_size=120).filter(lambda s: "\n" not in s and "\r" not in s)


@SETTINGS
@given(
    body=json_values,
    headers=st.dictionaries(st.sampled_from(WEBHOOK_HEADERS), header_values, max_size=4),
)
def test_webhook_endpoint_takes_any_json(
    fuzz_app: Flask, body: Any, headers: dict[str, str]
) -> None:
    before = state(fuzz_app)
    safe = {k: v.encode("latin-1", "ignore").decode("latin-1") for k, v in headers.items()}
    resp = fuzz_app.test_client().post(
        "/api/payment/webhook", data=json.dumps(body), content_type="application/json", headers=safe
    )
    assert resp.status_code in (200, 400, 401), resp.get_data(as_text=True)[:300]
    if resp.status_code != 200:
        assert state(fuzz_app) == before
    else:
        assert isinstance(body, dict)


def test_webhook_parser_fuzz_for_ten_seconds() -> None:
    """Random bytes and mangled JSON at the parser: it accepts an object or raises a 4xx.
    At most 4000 examples or 10 s, whichever comes first."""
    budget = time.monotonic() + 10
    examples = 0

    @settings(max_examples=4000, deadline=None, derandomize=True, database=None)
    @given(raw=st.one_of(
        st.binary(max_size=300),
        json_values.map(lambda v: json.dumps(v).encode()),
        json_values.map(lambda v: json.dumps(v).encode()[: len(json.dumps(v)) // 2]),
        st.integers(min_value=1, max_value=3000).map(lambda n: b"[" * n),
    ))  # fmt: skip
    def check(raw: bytes) -> None:
        nonlocal examples
        if time.monotonic() > budget:
            return
        examples += 1
        try:
            body = parse_body(raw)
        except ServiceError as exc:
            status = exc.http_status
            body = None
        else:
            status = 200
        if body is None:
            assert 400 <= status < 500
            return
        assert isinstance(body, dict)
        assert isinstance(classify(body), str)

    check()
    assert examples > 500


# -- 2,000+ hostile requests over every route ------------------------------------------------------

# Path segments as they arrive on the wire (percent-encoded): NUL, a lone surrogate's bytes
# (CESU-8), bytes that are no UTF-8, numbers beyond 32 and 64 bits, CR/LF, overlong, traversal.
BAD_SEGMENTS = ["a%00b", "%00", "%ED%A0%80", "%FF%FE", str(2**31), "9" * 25, "-1", "x" * 3000,
                "a%0D%0AX-Injected:%201", "..%2F..%2Fetc", "%25", "%E2%80%AE"]  # fmt: skip
# Query and form values, percent-encoded.
BAD_VALUES = ["%00", "a%00b", "%ED%A0%80", "%FF", "%0D%0ASet-Cookie:%20x=1", "9" * 30,
              "-" + "9" * 20, "1e400", "x" * 3000, "%5B%5D", ""]  # fmt: skip
FIELDS = ["paymentKey", "orderId", "amount", "paymentType", "code", "message", "q", "status",
          "from", "to", "page", "next", "password", "product_id", "quantity", "action",
          "reason", "bank", "account_number", "holder_name", "refund_token", "return_to",
          "scenario", "clientKey", "customerKey", "orderName", "method", "cancelAmount",
          "cancelReason", "secret", "webhookUrl", "card_number", "t", "key", "buyer_name",
          "buyer_email", "buyer_phone", "postcode", "address", "address_detail", "order_id",
          "email", "step", "carrier", "tracking_number", "restock", "receipt_type",
          "identity_number"]  # fmt: skip
BAD_JSON = [
    "[" * 30_000,
    '{"a":' * 5_000,
    '{"paymentKey":' + "[" * 10_000,
    '{"paymentKey": "\\u0000", "orderId": "a\\u0000b", "amount": 1000}',
    '{"paymentKey": "\\ud800", "orderId": "\\udfffabcdef", "amount": 1000, "secret": "\\ud800"}',
    '{"paymentKey": "tpk", "orderId": "abcdefgh", "amount": 1e400}',
    '{"amount": 123456789012345678901234567890, "cancelAmount": -99999999999999999999}',
    '{"eventType": "PAYMENT_STATUS_CHANGED", "data": {"orderId": "\\u0000", "status": "\\ud800"}}',
    '["paymentKey", "orderId"]',
    '{"orderName": "' + "x" * 20_000 + '"}',
]
# (body, content type) pairs that do not match what the route reads.
WRONG_TYPES: list[tuple[bytes | str, str | None]] = [
    (b"<xml>&lt;</xml>", "text/xml"),
    (b"\xff\xfe\x00{", "application/json"),
    ('{"a": 1}', "application/json; charset=utf-16"),
    (b"--x\r\ngarbage", "multipart/form-data"),
    (b"a=1", None),
]


def _query(value: str) -> str:
    return "&".join(f"{name}={value}" for name in FIELDS)


def _path_with(rule: Rule, values: dict[str, Any], segment: str | None = None) -> str:
    """The rule's path for `values`; with `segment`, that raw (percent-encoded) text in place of
    every parameter, as a client would send it (a converter would refuse or re-encode it)."""
    if segment is None:
        return rule.build(values, append_unknown=False)[1]
    marks = {a: 7_000_000 + i for i, a in enumerate(sorted(rule.arguments))}
    path = rule.build(marks, append_unknown=False)[1]
    for mark in marks.values():
        path = path.replace(str(mark), segment, 1)
    return path


def hostile_requests(rule: Rule, method: str, fuzz: Fuzz) -> Iterator[tuple[str, str, Any]]:
    """(method, path, test-client arguments) for one route: bad path parameters, bad queries,
    bad form and JSON bodies, wrong content types and wrong methods."""
    good = {"order_id": fuzz.order_id, "event_id": 1, "payment_key": "tviva2026fuzz0001",
            "token": "tok_fuzz", "ref": "tviva2026fuzz0001", "action": "cancel",
            "filename": "css/site.css", "message_id": 1, "receipt_key": "cr_fuzz"}  # fmt: skip
    path = _path_with(rule, {a: good[a] for a in rule.arguments})
    if rule.arguments:
        for segment in BAD_SEGMENTS:
            yield method, _path_with(rule, {}, segment), {}
    for value in BAD_VALUES:
        yield method, f"{path}?{_query(value)}", {}
    if method != "GET":
        for value in BAD_VALUES:
            form = {"data": _query(value), "content_type": "application/x-www-form-urlencoded"}
            yield method, path, form
        yield method, path, {"data": {n: "a\x00b" for n in FIELDS}}  # multipart
        for body in BAD_JSON:
            yield method, path, {"data": body, "content_type": "application/json"}
        for raw, content_type in WRONG_TYPES:
            yield method, path, {"data": raw, "content_type": content_type}
    for wrong in ("PATCH", "DELETE"):
        yield wrong, path, {}


def test_two_thousand_hostile_requests_over_every_route_are_never_5xx(
    fuzz: Fuzz, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every route of the shop and the mounted sandbox, as an anonymous shopper (who owns an
    order) and as a logged-in operator: no 5xx, and nothing logged at ERROR or with a
    traceback."""
    caplog.set_level(logging.INFO)
    statuses: Counter[int] = Counter()
    every = routes(fuzz.app)
    sent = 0
    for who in ("anonymous", "operator"):
        client = fuzz.client(who)
        for rule, method in every:
            for verb, path, kwargs in hostile_requests(rule, method, fuzz):
                resp = client.open(path, method=verb, **kwargs)
                sent += 1
                statuses[resp.status_code] += 1
                assert resp.status_code < 500, (who, verb, path, str(kwargs)[:200],
                                                resp.get_data(as_text=True)[:300])  # fmt: skip
                if who == "operator" and rule.endpoint == "admin.logout":
                    fuzz.login()
    bad_logs = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert not bad_logs, [(r.name, r.getMessage(), r.exc_text) for r in bad_logs[:3]]
    assert "Traceback" not in caplog.text
    database = fuzz.app.config["SQLALCHEMY_DATABASE_URI"].split(":", 1)[0]
    with capsys.disabled():
        print(f"\nfuzz ({database}): {sent} hostile requests over {len(every)} routes, "
              f"2 identities; statuses {dict(sorted(statuses.items()))}")  # fmt: skip
    assert sent >= 2000
