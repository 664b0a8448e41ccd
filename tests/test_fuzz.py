"""Random input at every route: never a 5xx, and a rejected request changes nothing.

Bounded: a fixed number of examples per test (and a wall-clock budget for the webhook parser
fuzz), so the whole file stays well under a minute.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from werkzeug.routing import Rule

from payments.core.errors import ServiceError
from payments.core.models import Order, Payment, Refund, WebhookEvent
from payments.extensions import db
from payments.shop.catalog import seed_catalog
from payments.webhooks.inbox import classify, parse_body
from tests.helpers import dispose, sandbox_app

SETTINGS = settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    derandomize=True,
)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=12), children, max_size=5)
    ),
    max_leaves=20,
)
field_names = st.sampled_from(
    ["paymentKey", "orderId", "amount", "product_id", "quantity", "action", "code", "message",
     "eventType", "data", "secret", "status", "t", "q", "reason", "csrf_token", "return_to"]
)  # fmt: skip
field_values = st.one_of(
    st.text(max_size=80),
    st.integers(min_value=-(10**15), max_value=10**15).map(str),
    st.sampled_from(["", "0", "-1", "1", "99", "100", "1e9", "NaN", "null", "%00", "../..", "９"]),
)


@pytest.fixture(scope="module")
def fuzz_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Flask]:
    """The shop with the sandbox mounted (its routes are fuzzed too), rate limits off."""
    db_file = tmp_path_factory.mktemp("fuzz") / "fuzz.sqlite3"
    app = sandbox_app(f"sqlite:///{db_file}", sandbox={"slow_confirm_seconds": 0})
    with app.app_context():
        seed_catalog()
    yield app
    dispose(app)


def routes(app: Flask) -> list[tuple[Rule, str]]:
    """Every route of the shop and of its mounted sandbox (reached through the shop)."""
    out = []
    for served in (app, app.extensions["sandbox_app"]):
        for rule in served.url_map.iter_rules():
            if rule.endpoint == "static" or rule.rule.startswith("/sandbox/static"):
                continue
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
    fuzz_app: Flask, data: st.DataObject
) -> None:
    rule, method = data.draw(st.sampled_from(routes(fuzz_app)), label="route")
    params = {arg: data.draw(st.text(min_size=1, max_size=70).filter(lambda s: "/" not in s))
              for arg in rule.arguments}  # fmt: skip
    try:
        path = rule.build(params, append_unknown=False)[1]
    except Exception:  # noqa: BLE001 — a converter refused the value: nothing to send
        event("unbuildable path")
        return
    query = data.draw(st.dictionaries(field_names, field_values, max_size=4), label="query")
    body_kind = data.draw(st.sampled_from(["none", "form", "json", "raw"]), label="body")
    kwargs: dict[str, Any] = {"query_string": query}
    if method != "GET":
        if body_kind == "form":
            kwargs["data"] = data.draw(st.dictionaries(field_names, field_values, max_size=5))
        elif body_kind == "json":
            kwargs["json"] = data.draw(json_values)
        elif body_kind == "raw":
            kwargs["data"] = data.draw(st.binary(max_size=200))
            kwargs["content_type"] = data.draw(
                st.sampled_from(["application/json", "text/plain", "application/octet-stream"])
            )
    event(f"{method} {rule.rule}")
    before = state(fuzz_app)
    resp = fuzz_app.test_client().open(path, method=method, **kwargs)
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
