"""Delivering the webhook outbox like Toss does: POST, 200 within 10 s or retry on Toss's schedule.

A daemon thread per process (started by the first sandbox request, never at import) delivers
due rows and runs the jobs it was given (expiring overdue payments); `deliver_due` does the same
synchronously for tests. Claims are conditional UPDATEs with a lease, so several processes
sharing one database never send a row twice at once.
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

import requests
from flask import Flask
from sqlalchemy import func, select, update

from .clock import toss_time
from .db import db
from .models import SandboxWebhook
from .settings import SandboxSettings

logger = logging.getLogger(__name__)

# Toss retries a failed delivery after these many minutes (7 retries, 8 attempts in all).
RETRY_MINUTES = (1, 4, 16, 64, 256, 1024, 4096)
MAX_ATTEMPTS = 1 + len(RETRY_MINUTES)
# Toss wants a 200 within 10 s.
DELIVERY_TIMEOUT = 10.0
# A claimed row is retried by anyone after this long (its sender may have died mid-delivery).
CLAIM_LEASE = timedelta(seconds=60)
POLL_SECONDS = 1.0
MAX_CONSECUTIVE_FAILURES = 5


def retry_delay(attempts: int, settings: SandboxSettings) -> timedelta:
    """Wait after the `attempts`-th failed attempt: Toss's schedule × webhook_scale."""
    minutes = RETRY_MINUTES[min(attempts, len(RETRY_MINUTES)) - 1]
    return timedelta(minutes=minutes * settings.webhook_scale)


def deliver_due(
    app: Flask, settings: SandboxSettings, http: requests.Session, limit: int = 100
) -> int:
    """Deliver every webhook due by the sandbox clock, now, in this thread; how many were tried."""
    with app.app_context():
        t = settings.clock.now()
        order = SandboxWebhook.id.desc() if settings.webhook_reorder else SandboxWebhook.id.asc()
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
                _attempt(row, settings, http)
                tried += 1
        return tried


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
        return None  # another sender has it
    return db.session.get(SandboxWebhook, row_id, populate_existing=True)


def _attempt(row: SandboxWebhook, settings: SandboxSettings, http: requests.Session) -> None:
    clock = settings.clock
    attempts, url, body = row.attempts, row.url, row.body.encode()
    headers = {
        "Content-Type": "application/json",
        "tosspayments-webhook-transmission-id": row.transmission_id,
        "tosspayments-webhook-transmission-time": toss_time(clock.now()) or "",
        # A duplicate copy looks like a retry of a delivery the receiver already got.
        "tosspayments-webhook-transmission-retried-count": str(attempts - 1 + row.copy),
    }
    row_id, transmission_id, event_type = row.id, row.transmission_id, row.event_type
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
        values |= {"next_attempt_at": t + retry_delay(attempts, settings)}
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
            "transmission_id": transmission_id,
            "event_type": event_type,
            "attempt": attempts,
            "http_status": status,
            "error": error,
        },
    )


def seconds_until_next_due(app: Flask, settings: SandboxSettings) -> float | None:
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
        return (nxt - settings.clock.now()).total_seconds()


class Sender:
    """One daemon thread per process: runs its jobs, then delivers due webhooks, in a loop.

    Started lazily by `kick()`; holds the app only weakly, so a discarded app lets it end.
    """

    def __init__(
        self,
        app: Flask,
        settings: SandboxSettings,
        http: Callable[[], requests.Session] = requests.Session,
        jobs: Sequence[Callable[[], object]] = (),
    ) -> None:
        self._app = weakref.ref(app)
        self._settings = settings
        self._http = http
        self._jobs = tuple(jobs)
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pid: int | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and self._pid == os.getpid()

    def session(self) -> requests.Session:
        """A new HTTP session for deliveries (the in-process shop's transport, when mounted)."""
        return self._http()

    def kick(self) -> None:
        """Start the thread if webhooks are enabled and it is not running; wake it up."""
        if not self._settings.webhooks_enabled or self._app() is None:
            return
        with self._lock:
            if not self.running:
                self._stop.clear()
                self._pid = os.getpid()  # a forked server process starts its own thread
                self._thread = threading.Thread(
                    target=self._run, name="sandbox-webhooks", daemon=True
                )
                self._thread.start()
        self._wake.set()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the thread; it finishes the delivery in hand first."""
        self._stop.set()
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def _run(self) -> None:
        failures = 0
        http = self._http()
        while not self._stop.is_set():
            app = self._app()
            if app is None:
                return
            wait = POLL_SECONDS
            try:
                for job in self._jobs:
                    with app.app_context():
                        job()
                deliver_due(app, self._settings, http)
                due = seconds_until_next_due(app, self._settings)
                if due is not None:
                    wait = max(0.01, min(POLL_SECONDS, due))
                failures = 0
            except Exception:
                failures += 1
                logger.exception("sandbox webhook sender failed", extra={"failures": failures})
                if failures >= MAX_CONSECUTIVE_FAILURES:
                    # The database is gone or broken: stop; the next sandbox request starts a
                    # fresh thread if the app is still serving.
                    return
                wait = POLL_SECONDS * 2**failures
            del app
            self._wake.wait(wait)
            self._wake.clear()
