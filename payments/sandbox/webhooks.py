"""The sandbox's webhook sender: a durable outbox (`sandbox_webhooks`) delivered like Toss does.

Rows are written in the same transaction as the status change they report. A daemon thread,
started lazily by the first sandbox request (never at import, never by `flask db …`), delivers
due rows; `deliver_due_webhooks()` does the same synchronously for tests. Claims are conditional
UPDATEs with a lease, so several workers sharing one database never send a row twice at once.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import weakref
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import requests
from flask import Flask, current_app
from sqlalchemy import func, insert, select, update

from ..config import SANDBOX_API_ORIGIN
from ..extensions import db
from .core import new_transmission_id, sandbox_state, toss_time, webhook_created_at
from .models import SandboxWebhook
from .transport import WSGITransport

if TYPE_CHECKING:
    from .models import SandboxPayment

logger = logging.getLogger(__name__)

# Toss retries a failed delivery after these many minutes (7 retries, 8 attempts in all).
RETRY_MINUTES = (1, 4, 16, 64, 256, 1024, 4096)
MAX_ATTEMPTS = 1 + len(RETRY_MINUTES)
# Toss wants a 200 within 10 s.
DELIVERY_TIMEOUT = 10.0
# A claimed row is retried by anyone after this long (its worker may have died mid-delivery).
CLAIM_LEASE = timedelta(seconds=60)
# The app's own webhook route, reached in-process (no socket, no port).
INPROCESS_URL = SANDBOX_API_ORIGIN + "/api/payment/webhook"
POLL_SECONDS = 1.0
_OUTBOX_INSERT = insert(SandboxWebhook.__table__)
MAX_CONSECUTIVE_FAILURES = 5


# -- configuration knobs ---------------------------------------------------------------------------


def _cfg(app: Flask | None = None) -> Any:
    return (app or current_app).config


def _float(value: Any, default: float) -> float:
    try:
        return float(value) if value not in (None, "") else default
    except (TypeError, ValueError):
        return default


def _flag(value: Any, default: bool) -> bool:
    if value is None or value == "":
        return default
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


def webhooks_enabled(app: Flask | None = None) -> bool:
    """SANDBOX_WEBHOOKS_ENABLED (default on): whether the background sender runs."""
    return _flag(_cfg(app).get("SANDBOX_WEBHOOKS_ENABLED"), True)


def webhook_url(app: Flask | None = None) -> str | None:
    """Where deliveries go: SANDBOX_WEBHOOK_URL, else the app's own route in-process
    (a stand-alone sandbox without a URL records nothing)."""
    cfg = _cfg(app)
    url = cfg.get("SANDBOX_WEBHOOK_URL")
    if url:
        return str(url)
    if cfg.get("SANDBOX_STANDALONE"):
        return None
    return INPROCESS_URL


def retry_delay(attempts: int, app: Flask | None = None) -> timedelta:
    """Wait after the `attempts`-th failed attempt: Toss's schedule × SANDBOX_WEBHOOK_SCALE."""
    scale = _float(_cfg(app).get("SANDBOX_WEBHOOK_SCALE"), 1.0)
    minutes = RETRY_MINUTES[min(attempts, len(RETRY_MINUTES)) - 1]
    return timedelta(minutes=minutes * scale)


# -- enqueue ---------------------------------------------------------------------------------------


def enqueue_status_changed(payment: SandboxPayment, data: dict[str, Any]) -> None:
    """Queue PAYMENT_STATUS_CHANGED for `payment` (its Payment object as `data`); caller commits."""
    body = {
        "eventType": "PAYMENT_STATUS_CHANGED",
        "createdAt": webhook_created_at(sandbox_state().now()),
        "data": data,
    }
    _enqueue("PAYMENT_STATUS_CHANGED", body, payment)


def enqueue_deposit_callback(payment: SandboxPayment) -> None:
    """Queue DEPOSIT_CALLBACK for a deposited virtual account; caller commits."""
    body = {
        "createdAt": webhook_created_at(sandbox_state().now()),
        "secret": payment.secret,
        "status": payment.status,
        "transactionKey": payment.last_transaction_key,
        "orderId": payment.order_id,
    }
    _enqueue("DEPOSIT_CALLBACK", body, payment)


def _enqueue(event_type: str, body: dict[str, Any], payment: SandboxPayment) -> None:
    url = webhook_url()
    if url is None:
        return
    cfg = _cfg()
    t = sandbox_state().now()
    delay = timedelta(seconds=max(0.0, _float(cfg.get("SANDBOX_WEBHOOK_DELAY"), 0.0)))
    copies = max(0, int(_float(cfg.get("SANDBOX_WEBHOOK_DUPLICATES"), 0)))
    raw = json.dumps(body, ensure_ascii=False)
    transmission_id = new_transmission_id()
    # Core, not the ORM's flush: nothing reads these rows back in this request.
    db.session.execute(
        _OUTBOX_INSERT,
        [
            {
                "transmission_id": transmission_id,
                "copy": copy,
                "event_type": event_type,
                "payment_key": payment.payment_key,
                "order_id": payment.order_id,
                "url": url,
                "body": raw,
                "status": "PENDING",
                "attempts": 0,
                "next_attempt_at": t + delay,
                "created_at": t,
            }
            for copy in range(1 + copies)
        ],
    )


# -- delivery --------------------------------------------------------------------------------------


def http_session(app: Flask) -> requests.Session:
    """A session whose requests to the in-process origin go straight into `app`."""
    session = requests.Session()
    ref = weakref.ref(app)

    def wsgi(environ: dict[str, Any], start_response: Any) -> Any:
        target = ref()
        if target is None:
            raise RuntimeError("the app is gone")
        return target.wsgi_app(environ, start_response)

    session.mount(SANDBOX_API_ORIGIN, WSGITransport(wsgi))
    return session


def deliver_due_webhooks(
    app: Flask | None = None, *, session: requests.Session | None = None, limit: int = 100
) -> int:
    """Deliver every webhook due by the sandbox clock, now, in this thread; how many were tried.

    Tests call this (with the clock advanced to walk the retry schedule) instead of waiting for
    the background thread; `session` lets them pass their own `requests.Session`.
    """
    target: Flask = app or current_app._get_current_object()  # type: ignore[attr-defined]
    if session is None:
        with http_session(target) as own:
            return deliver_due_webhooks(target, session=own, limit=limit)
    with target.app_context():
        t = sandbox_state(target).now()
        order = SandboxWebhook.id.desc() if _reorder(target) else SandboxWebhook.id.asc()
        ids = list(
            db.session.scalars(
                select(SandboxWebhook.id)
                .where(SandboxWebhook.status == "PENDING", SandboxWebhook.next_attempt_at <= t)
                .order_by(order)
                .limit(limit)
            )
        )
        db.session.commit()
        tried = 0
        for row_id in ids:
            row = _claim(row_id, t)
            if row is not None:
                _attempt(target, row, session)
                tried += 1
        return tried


def _reorder(app: Flask) -> bool:
    return _flag(app.config.get("SANDBOX_WEBHOOK_REORDER"), False)


def _claim(row_id: int, t: datetime) -> SandboxWebhook | None:
    result = db.session.execute(
        update(SandboxWebhook)
        .where(
            SandboxWebhook.id == row_id,
            SandboxWebhook.status == "PENDING",
            SandboxWebhook.next_attempt_at <= t,
        )
        .values(next_attempt_at=t + CLAIM_LEASE, attempts=SandboxWebhook.attempts + 1)
        .execution_options(synchronize_session=False)
    )
    db.session.commit()
    if result.rowcount != 1:  # type: ignore[attr-defined]
        return None  # another worker has it
    return db.session.get(SandboxWebhook, row_id, populate_existing=True)


def _attempt(app: Flask, row: SandboxWebhook, http: requests.Session) -> None:
    clock = sandbox_state(app).clock
    attempts, url, body = row.attempts, row.url, row.body.encode()
    headers = {
        "Content-Type": "application/json",
        "tosspayments-webhook-transmission-id": row.transmission_id,
        "tosspayments-webhook-transmission-time": toss_time(clock.now()) or "",
        # A duplicate copy looks like a retry of a delivery the receiver already got.
        "tosspayments-webhook-transmission-retried-count": str(attempts - 1 + row.copy),
    }
    row_id = row.id
    db.session.commit()  # no transaction stays open across the HTTP call
    status: int | None = None
    error: str | None = None
    try:
        resp = http.post(url, data=body, headers=headers, timeout=DELIVERY_TIMEOUT)
        status = resp.status_code
    except requests.RequestException as exc:
        error = type(exc).__name__
    t = clock.now()
    values: dict[str, Any] = {"last_status_code": status, "last_error": error}
    if status == 200:
        values |= {"status": "DELIVERED", "delivered_at": t}
    elif attempts >= MAX_ATTEMPTS:
        values |= {"status": "FAILED"}
    else:
        values |= {"next_attempt_at": t + retry_delay(attempts, app)}
    db.session.execute(
        update(SandboxWebhook)
        .where(
            SandboxWebhook.id == row_id,
            SandboxWebhook.status == "PENDING",
            SandboxWebhook.attempts == attempts,
        )
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    db.session.commit()
    log = logger.info if status == 200 else logger.warning
    log(
        "sandbox webhook delivery",
        extra={
            "transmission_id": row.transmission_id,
            "event_type": row.event_type,
            "attempt": attempts,
            "http_status": status,
            "error": error,
        },
    )


def seconds_until_next_due(app: Flask) -> float | None:
    """Seconds until the earliest pending delivery is due (None when nothing is pending)."""
    with app.app_context():
        nxt: datetime | None = db.session.scalar(
            select(func.min(SandboxWebhook.next_attempt_at)).where(
                SandboxWebhook.status == "PENDING"
            )
        )
        db.session.commit()
        if nxt is None:
            return None
        return (nxt - sandbox_state(app).now()).total_seconds()


# -- the background sender -------------------------------------------------------------------------


class WebhookWorker:
    """One daemon thread per process delivering due webhooks (and sweeping expiries).

    Started lazily by `kick()`; holds the app only weakly, so a discarded test app lets it end.
    """

    def __init__(self, app: Flask) -> None:
        self._app = weakref.ref(app)
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pid: int | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and self._pid == os.getpid()

    def kick(self) -> None:
        """Start the thread if webhooks are enabled and it is not running; wake it up."""
        app = self._app()
        if app is None or not webhooks_enabled(app):
            return
        with self._lock:
            if not self.running:
                self._stop.clear()
                self._pid = os.getpid()  # a forked worker starts its own thread
                self._thread = threading.Thread(
                    target=self._run, name="sandbox-webhooks", daemon=True
                )
                self._thread.start()
        self._wake.set()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the thread (tests); it finishes the delivery in hand first."""
        self._stop.set()
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def _run(self) -> None:
        from .service import sweep_expired

        failures = 0
        http: requests.Session | None = None
        while not self._stop.is_set():
            app = self._app()
            if app is None or not webhooks_enabled(app):
                return
            http = http or http_session(app)
            wait = POLL_SECONDS
            try:
                with app.app_context():
                    sweep_expired()
                deliver_due_webhooks(app, session=http)
                due = seconds_until_next_due(app)
                if due is not None:
                    wait = max(0.01, min(POLL_SECONDS, due))
                failures = 0
            except Exception:
                failures += 1
                logger.exception("sandbox webhook sender failed", extra={"failures": failures})
                if failures >= MAX_CONSECUTIVE_FAILURES:
                    # The database is gone or broken (e.g. a finished test's): stop; the next
                    # sandbox request starts a fresh thread if the app is still serving.
                    return
                wait = POLL_SECONDS * 2**failures
            del app
            self._wake.wait(wait)
            self._wake.clear()
