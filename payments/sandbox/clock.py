"""Sandbox time, and the ways Toss writes times."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta, timezone

KST = timezone(timedelta(hours=9))


class Clock:
    """Real time plus an offset that tests (or `toss-sandbox`) move with `advance`, or frozen
    at `start`.

    Every deadline reads it (10-minute confirm, 30-minute window, virtual-account due date,
    idempotency TTL, webhook schedule), so a test jumps instead of sleeping.
    """

    def __init__(self, start: datetime | None = None) -> None:
        if start is not None and start.tzinfo is None:
            raise ValueError("Clock start must be timezone-aware")
        self._lock = threading.Lock()
        self._offset = timedelta(0)
        self._frozen = start

    def now(self) -> datetime:
        """The current sandbox time (timezone-aware UTC)."""
        with self._lock:
            if self._frozen is not None:
                return self._frozen.astimezone(UTC)
            return datetime.now(UTC) + self._offset

    def advance(self, seconds: float) -> None:
        """Move sandbox time forward (or back, with a negative number)."""
        with self._lock:
            if self._frozen is not None:
                self._frozen += timedelta(seconds=seconds)
            else:
                self._offset += timedelta(seconds=seconds)


def toss_time(value: datetime | None) -> str | None:
    """ISO-8601 in Korea time, as Toss writes it: 2026-11-22T10:00:00+09:00."""
    if value is None:
        return None
    return value.astimezone(KST).isoformat(timespec="seconds")


def webhook_created_at(value: datetime) -> str:
    """Webhook `createdAt`: Korea time without an offset, e.g. 2026-11-22T10:00:00.000000."""
    return value.astimezone(KST).replace(tzinfo=None).isoformat(timespec="microseconds")
