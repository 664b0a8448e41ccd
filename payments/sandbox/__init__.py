"""The offline Toss Payments sandbox: Toss's API, a widget stand-in, a payment window, webhooks.

A product of its own that happens to live in this repository: its own Flask app, settings and
database, importing nothing of the shop. The shop mounts it in-process when it has no Toss keys
(`make run`); `toss-sandbox serve` runs it alone for any app or test suite.

Routes (all under /sandbox)
  /sandbox/v1/payments/confirm, /sandbox/v1/payments/{paymentKey},
  /sandbox/v1/payments/orders/{orderId}, /sandbox/v1/payments/{paymentKey}/cancel
      Toss's core API (Basic auth, Idempotency-Key, TossPayments-Test-Code, Toss's errors).
  /sandbox/widget/v2/standard      the widget script stand-in (window.TossPayments)
  /sandbox/window/<token>          the payment window: the shopper picks an outcome
  /sandbox/receipt/<paymentKey>    the receipt page `receipt.url` points at
  /sandbox/api/sessions, /sandbox/api/virtual-accounts/<orderId>/deposit,
  /sandbox/api/virtual-accounts/<orderId>/deposit-error,
  /sandbox/api/payments/<paymentKey>, /sandbox/api/payments/<paymentKey>/expire
      scriptable test helpers (no auth); `testing.py` drives them from Python.
  /sandbox/api/payments/<ref>/cancel, /sandbox/api/payments/<ref>/abort,
  /sandbox/api/webhook-url, /sandbox/dashboard
      the developer tools (`dashboard.py`): what `toss-sandbox trigger` and `toss-sandbox
      listen` call, and the page listing the payments with a button per action.

Scenarios (window buttons, or `scenario` in POST /sandbox/api/sessions): see
`windows.SCENARIOS`. Settings: `settings.SandboxSettings` (`SANDBOX_*` variables).
"""

from .app import API_BASE_PATH, WIDGET_SCRIPT_PATH, create_app
from .clock import Clock
from .settings import SandboxSettings, SettingsError
from .state import SandboxState, state

__all__ = [
    "API_BASE_PATH",
    "WIDGET_SCRIPT_PATH",
    "Clock",
    "SandboxSettings",
    "SandboxState",
    "SettingsError",
    "create_app",
    "state",
]
