"""The operator's browser session: logged in, and still live (idle and absolute timeouts)."""

from __future__ import annotations

import time

from flask import current_app, session

SESSION_KEYS = ("operator", "operator_login_at", "operator_seen_at")


def operator_session() -> str:
    """ "active", "expired" (idle too long or too old) or "none" for this browser session."""
    if session.get("operator") is not True:
        return "none"
    seen, started = session.get("operator_seen_at"), session.get("operator_login_at")
    idle = current_app.config["ADMIN_IDLE_MINUTES"] * 60
    longest = current_app.config["ADMIN_SESSION_HOURS"] * 3600
    now = time.time()
    if (
        not isinstance(seen, int | float)
        or not isinstance(started, int | float)
        or now - seen > idle
        or now - started > longest
    ):
        return "expired"
    return "active"


def is_operator() -> bool:
    """An operator whose console session is still live (the idle timeout applies everywhere)."""
    return operator_session() == "active"


def start_operator_session() -> None:
    now = int(time.time())
    session.pop("csrf_token", None)  # a fresh CSRF token for the operator session
    session.update(operator=True, operator_login_at=now, operator_seen_at=now)


def touch_operator_session() -> None:
    session["operator_seen_at"] = int(time.time())


def end_operator_session() -> None:
    for key in SESSION_KEYS:
        session.pop(key, None)
