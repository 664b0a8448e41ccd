"""`gunicorn app:app -w 1` (one sync worker) completes a sandbox checkout.

Calling our own port from inside the only worker would deadlock; the sandbox is reached
in-process, so confirmation and the webhooks it triggers all complete.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from payments.sandbox.testing import SandboxDriver
from tests.helpers import csrf_token, free_port

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


@pytest.fixture
def gunicorn_shop(tmp_path: Path) -> Iterator[str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TOSS_", "DATABASE_URL", "APP_ENV", "SECRET_KEY", "SANDBOX_"))
    }
    env.update(
        APP_ENV="development",
        DATABASE_URL=f"sqlite:///{tmp_path / 'shop.sqlite3'}",
        SECRET_KEY="gunicorn-test-secret-key",
        # The sandbox (on: no Toss keys) keeps its own database, here beside the shop's.
        SANDBOX_DATABASE_URL=f"sqlite:///{tmp_path / 'sandbox.sqlite3'}",
    )
    for command in (["db", "upgrade"], ["seed"]):
        subprocess.run(
            [str(BIN / "flask"), "--app", "app", *command],
            cwd=ROOT, env=env, check=True, capture_output=True, timeout=60,
        )  # fmt: skip
    port = free_port()
    server = subprocess.Popen(
        [str(BIN / "gunicorn"), "app:app", "-w", "1", "-k", "sync", "-b", f"127.0.0.1:{port}",
         "--timeout", "20"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
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
        yield base
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()


@pytest.mark.parametrize("scenario", ["approve", "virtual_account"])
def test_single_sync_worker_completes_a_checkout(gunicorn_shop: str, scenario: str) -> None:
    shopper = requests.Session()
    catalog = shopper.get(gunicorn_shop + "/", timeout=10).text
    product_id = re.search(r'data-product-id="(\d+)"', catalog).group(1)  # type: ignore[union-attr]
    shopper.post(
        gunicorn_shop + "/cart",
        data={"product_id": product_id, "quantity": "2", "csrf_token": csrf_token(catalog)},
        timeout=10,
    )
    cart = shopper.get(gunicorn_shop + "/cart", timeout=10).text
    checkout = shopper.post(
        gunicorn_shop + "/orders", data={"csrf_token": csrf_token(cart)}, timeout=10
    )
    assert re.search(r"/checkout/[A-Za-z0-9_-]{20,}$", checkout.url)
    page = checkout.text
    data = dict(re.findall(r'data-([a-z-]+)="([^"]*)"', page))
    assert data["success-url"] == gunicorn_shop + "/checkout/success"

    # What the widget and payment window do when the shopper picks the outcome.
    toss = SandboxDriver.over_http(gunicorn_shop, client_key=data["client-key"])
    window = toss.open_window(
        data["order-id"],
        int(data["amount"]),
        scenario=scenario,
        order_name=data["order-name"],
        method="가상계좌" if scenario == "virtual_account" else "카드",
        success_url=data["success-url"],
        fail_url=data["fail-url"],
    )
    landed = shopper.get(window.redirect_url, timeout=30)

    expected = "AWAITING_DEPOSIT" if scenario == "virtual_account" else "PAID"
    assert landed.status_code == 200
    assert f"/orders/{data['order-id']}" in landed.url
    assert f'data-status="{expected}"' in landed.text
    assert f"{int(data['amount']):,}원" in landed.text

    if scenario == "virtual_account":
        deposit = toss.deposit(data["order-id"])
        assert deposit.status == 200, deposit.body
        deadline = time.monotonic() + 20
        status = ""
        while time.monotonic() < deadline and status != "PAID":
            time.sleep(0.3)
            html = shopper.get(landed.url, timeout=10).text
            status = re.search(r'data-status="([A-Z_]+)"', html).group(1)  # type: ignore[union-attr]
        assert status == "PAID"
