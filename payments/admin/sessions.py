"""Operator sessions on the server: one row per login, so logging out ends the session
everywhere, in copies of the cookie too.

The cookie carries a random token; the table keeps its SHA-256, with when it began, was last
used and was revoked. A session is live while its row exists, is not revoked, and neither the
idle timeout (ADMIN_IDLE_MINUTES) nor the maximum age (ADMIN_SESSION_HOURS) has run out here,
whatever the cookie's own timestamps say.
`payments.access` calls these; this module owns their commits.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import delete, update

from ..core.clock import utcnow
from ..core.models import OperatorSession
from ..extensions import db

# last_seen_at is written at most once a minute: enough for a timeout counted in minutes,
# without a write on every page of the console.
TOUCH_EVERY = timedelta(minutes=1)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _longest() -> timedelta:
    return timedelta(hours=current_app.config["ADMIN_SESSION_HOURS"])


def begin(replacing: str | None = None) -> str:
    """A new session; returns the token for the cookie. `replacing` (this browser's previous
    token, if any) is revoked with it: a login never continues an earlier session."""
    now = utcnow()
    if replacing:
        _revoke(replacing, now)
    # Rows past the maximum age can never be live again.
    db.session.execute(delete(OperatorSession).where(OperatorSession.created_at < now - _longest()))
    token = secrets.token_urlsafe(32)
    db.session.add(OperatorSession(id=_digest(token), created_at=now, last_seen_at=now))
    db.session.commit()
    return token


def state(token: str) -> str:
    """ "live", "expired" (idle too long or too old) or "ended" (revoked, or no such session)."""
    row = db.session.get(OperatorSession, _digest(token))
    if row is None or row.revoked_at is not None:
        return "ended"
    now = utcnow()
    idle = timedelta(minutes=current_app.config["ADMIN_IDLE_MINUTES"])
    if now - row.last_seen_at > idle or now - row.created_at > _longest():
        return "expired"
    return "live"


def touch(token: str) -> None:
    """Record activity on a live session, at most once a minute."""
    now = utcnow()
    row = db.session.get(OperatorSession, _digest(token))  # read by is_live: no second query
    if row is None or row.revoked_at is not None or now - row.last_seen_at < TOUCH_EVERY:
        return
    db.session.execute(
        update(OperatorSession)
        .where(OperatorSession.id == row.id, OperatorSession.revoked_at.is_(None))
        .values(last_seen_at=now)
    )
    db.session.commit()


def revoke(token: str) -> None:
    """End the session for every copy of its cookie (a revoked one stays revoked)."""
    _revoke(token, utcnow())
    db.session.commit()


def _revoke(token: str, now: datetime) -> None:
    db.session.execute(
        update(OperatorSession)
        .where(OperatorSession.id == _digest(token), OperatorSession.revoked_at.is_(None))
        .values(revoked_at=now)
    )
