"""/metrics: counters move with real work, access is limited, several workers add up."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests
import responses
from flask import Flask
from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families

from payments.admin.refunds import request_refund
from payments.webhooks.worker import run_once
from tests.helpers import (
    BUYER_FORM,
    CONFIRM_URL,
    TOSS,
    csrf_token,
    free_port,
    get_order,
    make_app,
    payment_json,
    success_url,
)

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(snapshot: dict, name: str, **labels: str) -> float:
    return snapshot.get((name, tuple(sorted(labels.items()))), 0.0)


def scrape(client: FlaskClient) -> dict:
    resp = client.get("/metrics")
    assert resp.status_code == 200
    assert resp.mimetype == "text/plain"
    return samples(resp.get_data(as_text=True))


def test_counters_move_with_a_checkout_a_webhook_and_a_refund(
    app: Flask, client: FlaskClient, toss: responses.RequestsMock, place_order: Callable[..., str]
) -> None:
    before = scrape(client)
    order_id = place_order()
    amount = get_order(app, order_id).amount
    pk = "tpk_metrics_0001"
    toss.post(CONFIRM_URL, json=payment_json(order_id, amount, pk))
    client.get(success_url(order_id, pk, 1))
    client.get(success_url(order_id, pk, amount))
    toss.get(f"{TOSS}/v1/payments/{pk}", json=payment_json(order_id, amount, pk))
    body = {"eventType": "PAYMENT_STATUS_CHANGED", "createdAt": "2026-11-22T10:00:00.000000",
            "data": payment_json(order_id, amount, pk)}  # fmt: skip
    client.post("/api/payment/webhook", data=json.dumps(body), content_type="application/json")
    client.post("/api/payment/webhook", data=json.dumps(body), content_type="application/json")
    with app.app_context():
        assert run_once("metrics-test") == 1
    toss.post(
        f"{TOSS}/v1/payments/{pk}/cancel",
        json=payment_json(
            order_id, amount, pk, status="PARTIAL_CANCELED", balanceAmount=amount - 1000
        ),
    )
    with app.app_context():
        request_refund(order_id, 1000, "테스트", None, "op")

    after = scrape(client)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("shop_confirmations_total", outcome="paid", code="") == 1
    assert delta("shop_confirmations_total", outcome="error", code="AMOUNT_MISMATCH") == 1
    assert delta("shop_amount_mismatches_total") == 1
    assert delta("shop_toss_confirm_seconds_count") == 1
    assert delta("shop_webhooks_received_total", kind="PAYMENT_STATUS_CHANGED", duplicate="no") == 1
    assert (
        delta("shop_webhooks_received_total", kind="PAYMENT_STATUS_CHANGED", duplicate="yes") == 1
    )
    assert delta("shop_webhooks_processed_total", kind="PAYMENT_STATUS_CHANGED", status="DONE") == 1
    assert delta("shop_webhook_lag_seconds_count") == 1
    assert delta("shop_refunds_total", outcome="done") == 1
    assert delta("shop_refunded_won_total") == 1000


def test_unknown_webhook_kinds_do_not_mint_series(client: FlaskClient) -> None:
    body = {"eventType": "EVIL_" + "X" * 30, "createdAt": "now"}
    client.post("/api/payment/webhook", data=json.dumps(body), content_type="application/json")
    text = client.get("/metrics").get_data(as_text=True)
    assert "EVIL_" not in text
    assert 'kind="other"' in text


def test_metrics_are_not_public(database_url: str) -> None:
    app = make_app(database_url, METRICS_TOKEN="scrape-token-123")
    client = app.test_client()
    assert client.get("/metrics").status_code == 403  # loopback, but a token is configured
    remote = {"REMOTE_ADDR": "203.0.113.9"}
    assert client.get("/metrics", environ_base=remote).status_code == 403
    bad = client.get("/metrics", environ_base=remote, headers={"Authorization": "Bearer nope"})
    assert bad.status_code == 403
    ok = client.get(
        "/metrics", environ_base=remote, headers={"Authorization": "Bearer scrape-token-123"}
    )
    assert ok.status_code == 200

    open_app = make_app(database_url)
    local = open_app.test_client()
    assert local.get("/metrics").status_code == 200  # a direct local scraper
    relayed = local.get("/metrics", headers={"X-Forwarded-For": "198.51.100.7"})
    assert relayed.status_code == 403  # the same, relayed by a local proxy: not trusted


# -- several gunicorn workers ---------------------------------------------------------------


@pytest.fixture
def two_workers(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TOSS_", "DATABASE_URL", "SANDBOX_"))
    }
    env.update(
        APP_ENV="development",
        DATABASE_URL=f"sqlite:///{tmp_path / 'shop.sqlite3'}",
        SECRET_KEY="metrics-test-secret-key",
        PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "metrics"),
        # The sandbox (on: no Toss keys) keeps its own database, here beside the shop's.
        SANDBOX_DATABASE_URL=f"sqlite:///{tmp_path / 'sandbox.sqlite3'}",
        SANDBOX_WEBHOOKS_ENABLED="0",
    )
    for command in (["db", "upgrade"], ["seed"]):
        subprocess.run([str(BIN / "flask"), "--app", "app", *command], cwd=ROOT, env=env,
                       check=True, capture_output=True, timeout=60)  # fmt: skip
    port = free_port()
    server = subprocess.Popen(
        [str(BIN / "gunicorn"), "app:app", "-c", "gunicorn.conf.py", "-w", "2",
         "-b", f"127.0.0.1:{port}"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                requests.get(base + "/", timeout=5)
                break
            except (requests.ConnectionError, requests.Timeout):
                time.sleep(0.2)
        yield base, tmp_path / "metrics"
    finally:
        server.terminate()
        server.wait(15)


def test_several_workers_add_up(two_workers: tuple[str, Path]) -> None:
    """Requests spread over two worker processes; /metrics (from either) counts all of them."""
    base, metrics_dir = two_workers
    mismatches = 12
    for _ in range(mismatches):
        # A fresh connection each time so both workers take turns.
        shopper = requests.Session()
        page = shopper.get(base + "/", timeout=10).text
        token = csrf_token(page)
        shopper.post(base + "/cart", data={"product_id": "1", "csrf_token": token}, timeout=10)
        cart = shopper.get(base + "/cart", timeout=10).text
        token = csrf_token(cart)
        order_id = shopper.post(base + "/orders", data={"csrf_token": token, **BUYER_FORM},
                                timeout=10).url.rsplit("/", 1)[-1]  # fmt: skip
        resp = requests.post(
            base + "/api/payment/verify",
            json={"paymentKey": "tpk_x", "orderId": order_id, "amount": 1},
            headers={"Connection": "close"},
            timeout=10,
        )
        assert resp.json()["code"] == "AMOUNT_MISMATCH"
    totals = [
        value(
            samples(
                requests.get(base + "/metrics", headers={"Connection": "close"}, timeout=10).text
            ),  # fmt: skip
            "shop_amount_mismatches_total",
        )
        for _ in range(4)
    ]
    assert totals == [mismatches] * 4
    # Both workers wrote samples of their own (files are named <type>_<pid>.db).
    pids = {f.stem.rsplit("_", 1)[-1] for f in metrics_dir.glob("counter_*.db")}
    assert len(pids) >= 2
