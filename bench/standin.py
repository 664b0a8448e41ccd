"""The Toss stand-in every confirmation of the bench goes to: `toss-sandbox serve` in a process
of its own (gunicorn with gevent workers, its state in a PostgreSQL database of its own, each API
answer held --latency-ms), and the payment windows shoppers finish on it before the load."""

from __future__ import annotations

import base64
import os
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from harness import BIN, Proc, free_port, sqlalchemy_url, start

from payments.sandbox import API_BASE_PATH
from payments.sandbox.testing import SandboxDriver

# The stand-in's default keys (widget family): the product and the peers confirm with these.
CLIENT_KEY = "test_gck_sandbox"
SECRET_KEY = "test_gsk_sandbox"
AUTHORIZATION = "Basic " + base64.b64encode(f"{SECRET_KEY}:".encode()).decode()


@dataclass(frozen=True)
class Order:
    order_id: str
    amount: int
    order_name: str = "벤치 주문"
    customer_key: str | None = None


def serve(database_url: str, latency_ms: int, workers: int, logs: Path, port: int = 0) -> Proc:
    """`toss-sandbox serve` holding each API answer `latency_ms` (on `port`, else a free one).
    Its webhooks are off: the product's webhook acknowledgement is measured on its own, and the
    peers get none."""
    port = port or free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SANDBOX_", "TOSS_"))}
    env.update(
        SANDBOX_DATABASE_URL=sqlalchemy_url(database_url),
        SANDBOX_WEBHOOKS_ENABLED="0",
        APP_ENV="development",
    )
    cmd = [
        str(BIN / "toss-sandbox"),
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--latency-ms",
        str(latency_ms),
        "--worker-class",
        "gevent",
        "--workers",
        str(workers),
    ]
    return start(
        f"standin-{latency_ms}ms",
        cmd,
        env,
        logs,
        port=port,
        ready_path="/sandbox/widget/v2/standard",
        min_children=workers,
    )


def api_base(standin: Proc) -> str:
    """TOSS_API_BASE for a server that confirms on the stand-in (its /v1/… under this)."""
    return standin.base + API_BASE_PATH


def open_windows(
    standin_base: str, orders: Sequence[Order], success_base: str, threads: int = 8
) -> list[str]:
    """Finish a payment window for each order (the shopper approved): the success paths the
    browser is sent to, `/checkout/success?paymentType&orderId&paymentKey&amount`. The stand-in
    accepts their confirmation for 10 minutes."""
    local = threading.local()

    def one(order: Order) -> str:
        if not hasattr(local, "driver"):
            local.driver = SandboxDriver.over_http(standin_base, client_key=CLIENT_KEY)
        extra = {"customerKey": order.customer_key} if order.customer_key else {}
        window = local.driver.open_window(
            order.order_id,
            order.amount,
            order_name=order.order_name,
            success_url=success_base + "/checkout/success",
            fail_url=success_base + "/checkout/fail",
            **extra,
        )
        parts = urlsplit(window.redirect_url)
        if parts.path != "/checkout/success":
            raise SystemExit(f"the stand-in did not approve: {window.redirect_url}")
        return f"{parts.path}?{parts.query}"

    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(one, orders))
