"""The shop's Prometheus metrics, counted by the services and served at /metrics (ops.routes).

With PROMETHEUS_MULTIPROC_DIR set (gunicorn.conf.py sets it), every worker writes its samples to
files there and /metrics merges them; without it (tests, `flask run`) the process registry is
used. Label values come from fixed sets only, so a caller cannot mint new series.
"""

from __future__ import annotations

import os
import re

from prometheus_client import Counter, Histogram

# Multiprocess mode writes sample files as soon as a metric exists: the folder must be there
# (a CLI worker or reconcile run may start before any web process created it).
if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.makedirs(os.environ["PROMETHEUS_MULTIPROC_DIR"], exist_ok=True)

CONFIRMATIONS = Counter(
    "shop_confirmations_total",
    "Payment confirmations by outcome (order status or error) and code",
    ["outcome", "code"],
)
CONFIRM_SECONDS = Histogram(
    "shop_toss_confirm_seconds",
    "Latency of the Toss confirm call, retries included",
    buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60),
)
AMOUNT_MISMATCHES = Counter(
    "shop_amount_mismatches_total", "Confirmations refused because the amount differed"
)
WEBHOOKS_RECEIVED = Counter(
    "shop_webhooks_received_total", "Webhooks accepted by the endpoint", ["kind", "duplicate"]
)
WEBHOOKS_PROCESSED = Counter(
    "shop_webhooks_processed_total", "Webhook events processed by verdict", ["kind", "status"]
)
WEBHOOK_LAG = Histogram(
    "shop_webhook_lag_seconds",
    "Time from receiving a webhook to its verdict",
    buckets=(0.1, 0.5, 1, 5, 15, 60, 300, 1800, 7200),
)
REFUNDS = Counter("shop_refunds_total", "Refund requests by outcome", ["outcome"])
REFUNDED_WON = Counter("shop_refunded_won_total", "Money refunded, in KRW")

KNOWN_KINDS = frozenset(
    {
        "PAYMENT_STATUS_CHANGED",
        "DEPOSIT_CALLBACK",
        "CANCEL_STATUS_CHANGED",
        "payout.changed",
        "seller.changed",
    }
)
_CODE_RE = re.compile(r"^[A-Z][A-Z0-9_]{0,63}$")


def kind_label(kind: str) -> str:
    return kind if kind in KNOWN_KINDS else "other"


def code_label(code: str | None) -> str:
    return code if code and _CODE_RE.match(code) else ""
