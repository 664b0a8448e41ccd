"""The offline Toss Payments sandbox: Toss's API, a widget stand-in, a payment window, webhooks.

With no Toss keys the app runs against this sandbox (CONTRACT.md "The sandbox"). It never loads
in production: `init_app` refuses when APP_ENV=production.

Routes
  /sandbox/v1/payments/confirm, /sandbox/v1/payments/{paymentKey},
  /sandbox/v1/payments/orders/{orderId}, /sandbox/v1/payments/{paymentKey}/cancel
      Toss's core API (Basic auth, Idempotency-Key, TossPayments-Test-Code, Toss's errors).
  /sandbox/widget/v2/standard      the widget script stand-in (window.TossPayments)
  /sandbox/window/<token>          the payment window: the shopper picks an outcome
  /sandbox/receipt/<paymentKey>    the receipt page `receipt.url` points at
  /sandbox/api/sessions, /sandbox/api/virtual-accounts/<orderId>/deposit,
  /sandbox/api/payments/<paymentKey>, /sandbox/api/payments/<paymentKey>/expire
      scriptable test helpers (no auth).

Scenarios (window buttons, or `scenario` in POST /sandbox/api/sessions)
  approve, reject_card, insufficient_balance, cancel_by_user, virtual_account,
  provider_error, slow_confirm — see `service.SCENARIO_HINTS`.

Keys: the app's TOSS_CLIENT_KEY/TOSS_SECRET_KEY (default test_gck_sandbox/test_gsk_sandbox) plus
their API-family twins (test_ck_sandbox/test_sk_sandbox, or SANDBOX_API_CLIENT_KEY /
SANDBOX_API_SECRET_KEY), which authenticate but cannot confirm a widget payment.

Configuration (app.config; defaults in brackets)
  SANDBOX_WEBHOOK_URL         where webhooks go [the app's own /api/payment/webhook, delivered
                              in-process through WSGITransport: no socket needed]
  SANDBOX_WEBHOOKS_ENABLED    run the background sender thread [True]; off, deliveries are still
                              stored and `deliver_due_webhooks()` sends them on demand
  SANDBOX_WEBHOOK_SCALE       factor on Toss's retry schedule 1, 4, 16, 64, 256, 1024, 4096 min
                              [1.0; e.g. 0.001 in tests]
  SANDBOX_WEBHOOK_DUPLICATES  extra copies of every delivery (same transmission id, retried-count
                              raised as a re-send would) [0]
  SANDBOX_WEBHOOK_DELAY       seconds before a delivery's first attempt [0]
  SANDBOX_WEBHOOK_REORDER     send each batch of due deliveries newest first; combine with
                              SANDBOX_WEBHOOK_DELAY so several events are due together [False]
  SANDBOX_SLOW_CONFIRM_SECONDS  how long slow_confirm holds its answer once the payment is
                              DONE [35]
  SANDBOX_IDEMPOTENCY_PROCESSING_TIMEOUT  seconds after which a PROCESSING key whose request
                              died is free again [120]
  SANDBOX_CLOCK               a `Clock` to use instead of real time

Time: `app.extensions["sandbox"]` is a `Sandbox` whose `clock` (`now()`, `advance(seconds)`) drives
every deadline (10-minute confirm, 30-minute window, deposit due date, 15-day idempotency, webhook
schedule), so tests move time instead of sleeping; `Sandbox.now()`/`advance()` are shortcuts.

State: all of it lives in the `sandbox_*` tables (models.py), so several gunicorn workers see one
sandbox; races are settled by conditional UPDATEs and unique constraints.

Stand-alone: `python -m payments.sandbox --port 8787 [--host 127.0.0.1] [--db FILE]
[--webhook-url URL]` serves only the sandbox, on its own SQLite file, as a fake Toss for another
app or test suite (point its Toss API base at http://127.0.0.1:8787/sandbox and its widget script
at http://127.0.0.1:8787/sandbox/widget/v2/standard). Without --webhook-url it sends no webhooks.
"""

from __future__ import annotations

from flask import Flask

from ..config import ConfigError
from ..extensions import csrf
from .core import Clock, Sandbox, sandbox_state
from .webhooks import WebhookWorker, deliver_due_webhooks

__all__ = ["Clock", "Sandbox", "deliver_due_webhooks", "init_app", "sandbox_state"]


def init_app(app: Flask) -> None:
    """Register the sandbox on `app`: its tables, routes and clock (never in production)."""
    if app.config.get("APP_ENV") == "production":
        raise ConfigError("the Toss sandbox cannot run when APP_ENV=production")
    if "sandbox" in app.extensions:
        return
    from . import models  # noqa: F401  (the tables join db.metadata)
    from .api import bp as api_bp
    from .views import bp as views_bp

    clock = app.config.get("SANDBOX_CLOCK") or Clock()
    app.extensions["sandbox"] = Sandbox(clock=clock, worker=WebhookWorker(app))
    app.register_blueprint(api_bp)
    app.register_blueprint(views_bp)
    # The window's forms and the API are called by browsers of other origins and by servers;
    # CSRF tokens cannot apply (Toss has none either).
    csrf.exempt(api_bp)
    csrf.exempt(views_bp)
