"""The webhook worker under failure: SIGKILL mid-event, and a race with the success redirect."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import responses
from flask import Flask
from flask.testing import FlaskClient

from payments.core.models import WebhookEvent
from payments.extensions import db
from payments.shop.catalog import seed_catalog
from payments.webhooks.worker import run_once
from tests.helpers import (
    CLIENT_KEY,
    CONFIRM_URL,
    SECRET_KEY,
    TOSS,
    Shopper,
    dispose,
    get_order,
    make_app,
    payment_json,
    race,
    status_changed,
    success_url,
    transitions_to,
)

ROOT = Path(__file__).resolve().parents[1]


class SlowToss:
    """A fake Toss on loopback whose first payment lookup hangs (the worker is killed there)."""

    def __init__(self, answer: dict[str, Any]) -> None:
        self.answer = answer
        self.lookups = 0
        self.first_arrived = threading.Event()
        release = self.release = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 — http.server's naming
                outer.lookups += 1
                if outer.lookups == 1:
                    outer.first_arrived.set()
                    release.wait(30)
                body = json.dumps(outer.answer).encode()
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:
                    pass  # the worker that asked is dead

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}"

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()


@pytest.fixture
def slow_toss() -> Iterator[Callable[[dict[str, Any]], SlowToss]]:
    made: list[SlowToss] = []

    def make(answer: dict[str, Any]) -> SlowToss:
        made.append(SlowToss(answer))
        return made[-1]

    yield make
    for fake in made:
        fake.close()


def worker_process(database_url: str, toss_base: str, *args: str) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "APP_ENV": "testing",
        "SECRET_KEY": "test-secret-key-not-for-production",
        "DATABASE_URL": database_url,
        "TOSS_CLIENT_KEY": CLIENT_KEY,
        "TOSS_SECRET_KEY": SECRET_KEY,
        "TOSS_SANDBOX": "0",
        "TOSS_API_BASE": toss_base,
        "TOSS_MAX_RETRIES": "0",
        "WEBHOOK_LEASE_SECONDS": "2",
    }
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "flask",
            "--app",
            "app",
            "payments",
            "worker",
            "--poll",
            "0.2",
            *args,
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def test_worker_killed_mid_event_is_processed_once_after_restart(
    database_url: str, slow_toss: Callable[[dict[str, Any]], SlowToss], toss: responses.RequestsMock
) -> None:
    app = make_app(database_url)
    with app.app_context():
        seed_catalog()
    client = app.test_client()
    order_id = Shopper(app, client).place_order()
    amount = get_order(app, order_id).amount
    answer = payment_json(order_id, amount, "tpk_killed_0001")
    fake = slow_toss(answer)
    toss.add_passthru(fake.base)
    raw, headers = status_changed(order_id, amount, "tpk_killed_0001", "whtrans_kill_0001")
    assert client.post("/api/payment/webhook", data=raw, headers=headers).status_code == 200

    first = worker_process(database_url, fake.base)
    try:
        assert fake.first_arrived.wait(30), first.stdout.read() if first.stdout else ""
        with app.app_context():
            event = db.session.scalars(db.select(WebhookEvent)).one()
            assert (event.status, event.attempts) == ("PROCESSING", 1)
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    finally:
        if first.poll() is None:
            first.kill()

    with app.app_context():
        event = db.session.scalars(db.select(WebhookEvent)).one()
        assert event.status == "PROCESSING"  # held by a dead worker until its lease ends
    assert get_order(app, order_id).status == "PENDING"

    second = worker_process(database_url, fake.base)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with app.app_context():
                event = db.session.scalars(db.select(WebhookEvent)).one()
                if event.status == "DONE":
                    break
            time.sleep(0.2)
        second.send_signal(signal.SIGTERM)
        assert second.wait(15) == 0  # graceful stop
    finally:
        if second.poll() is None:
            second.kill()

    with app.app_context():
        event = db.session.scalars(db.select(WebhookEvent)).one()
        assert (event.status, event.attempts) == ("DONE", 2)
    assert get_order(app, order_id).status == "PAID"
    assert transitions_to(app, order_id, "PAID") == 1
    assert fake.lookups == 2
    dispose(app)


@pytest.mark.parametrize("round_", range(4))
def test_success_redirect_and_webhook_race_to_one_paid_transition(
    app: Flask,
    client: FlaskClient,
    toss: responses.RequestsMock,
    place_order: Callable[..., str],
    round_: int,
) -> None:
    order_id = place_order()
    amount = get_order(app, order_id).amount
    key = f"tpk_race_{round_:04d}"
    toss.post(CONFIRM_URL, json=payment_json(order_id, amount, key))
    toss.get(f"{TOSS}/v1/payments/{key}", json=payment_json(order_id, amount, key))
    raw, headers = status_changed(order_id, amount, key, f"whtrans_race_{round_}")
    hook_client = app.test_client()

    def redirect() -> dict[str, int]:
        return {"redirect": client.get(success_url(order_id, key, amount)).status_code}

    def webhook() -> dict[str, int]:
        ack = hook_client.post("/api/payment/webhook", data=raw, headers=headers).status_code
        with app.app_context():
            return {"ack": ack, "processed": run_once("race-worker")}

    paid, hooked = race([redirect, webhook])
    results = {**paid, **hooked}

    assert results == {"redirect": 303, "ack": 200, "processed": 1}
    assert transitions_to(app, order_id, "PAID") == 1
    assert get_order(app, order_id).status == "PAID"
    with app.app_context():
        events = db.session.execute(db.select(WebhookEvent.status, WebhookEvent.last_error)).all()
        assert [tuple(e) for e in events] == [("DONE", None)]
