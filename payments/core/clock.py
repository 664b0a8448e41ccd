"""Time as the shop stores and shows it: UTC in the database, Korean time on screen."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

KST = timezone(timedelta(hours=9))


def utcnow() -> datetime:
    return datetime.now(UTC)
