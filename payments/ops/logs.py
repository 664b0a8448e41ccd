"""Logging: redaction of every record, JSON lines with a request id in production.

What must never reach a log: Toss secret keys, Authorization headers, card and account numbers,
webhook `secret`s, paymentKeys (in URLs, JSON, or as `payment_key` columns), the virtual
account's customer name, and the row values a database error carries (PostgreSQL's `DETAIL:
Failing row contains (…)` / `Key (…)=(…)`, SQLAlchemy's `[parameters: …]`, though the engines
are also made with `hide_parameters`).

Redaction happens twice: when a record is made (a LogRecord factory, so every handler — ours,
gunicorn's, a test's — sees the redacted message and traceback), and in our handler's filter,
which also covers `extra` fields (attached after the factory runs).
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import sys
from collections.abc import Callable
from typing import Any

from flask import Flask, g, has_request_context, request

MASK = "[REDACTED]"
# The rest of a line; in JSON-encoded text a line ends at an escaped "\n" too.
_REST_OF_LINE = r"(?:(?!\\n)[^\n])*"
# Names whose values are secret or personal, camelCase or snake_case, with any prefix
# (`va_customer_name`, `refundReceiveAccount.accountNumber`): `transactionId` is the
# paymentKey in Toss's receipt URLs.
_SECRET_NAMES = (
    r"\w*(?:payment_?key|secret(?:_?key)?|customer_?name|holder_?name|account_?number"
    r"|card_?number|transaction_?id)"
)


def _mask_value(match: re.Match[str]) -> str:
    value = match.group(2)
    quote = value[0] if value[:1] in ("'", '"') else ""
    return f"{match.group(1)}{quote}{MASK}{quote}"


Replacement = str | Callable[[re.Match[str]], str]
_PATTERNS: tuple[tuple[re.Pattern[str], Replacement], ...] = (
    # Row values in database errors: PostgreSQL's DETAIL line (the failing row, a duplicate
    # key's value) and SQLAlchemy's bound parameters.
    (re.compile(r"DETAIL:" + _REST_OF_LINE), "DETAIL: " + MASK),
    (re.compile(r"Failing row contains" + _REST_OF_LINE), "Failing row contains " + MASK),
    (re.compile(r"\[parameters: " + _REST_OF_LINE), "[parameters: " + MASK + "]"),
    # Toss keys of either family and mode.
    (re.compile(r"\b(?:test|live)_(?:gsk|sk|gck|ck)_[A-Za-z0-9_]+"), MASK),
    # Authorization header values (Basic/Bearer tokens).
    (re.compile(r"(?i)\b(Basic|Bearer)\s+[A-Za-z0-9+/=._~-]{8,}"), r"\1 " + MASK),
    # Secret fields as query parameters, JSON or Python reprs, form fields, key=value text: a
    # quoted value up to its closing quote (names have spaces), else up to a separator.
    (
        re.compile(
            r"(?i)([\"']?\b" + _SECRET_NAMES + r"[\"']?\s*[=:]\s*)"
            r"(\"[^\"\n]*\"?|'[^'\n]*'?|[^\"'&\s,;)}\]]+)"
        ),
        _mask_value,
    ),
    # paymentKeys in Toss API paths: /v1/payments/<key>[/cancel] (not /confirm or /orders).
    (re.compile(r"(/v1/payments/)(?!confirm\b|orders\b)[A-Za-z0-9_\-.:]{6,}"), r"\1" + MASK),
    (
        re.compile(r"(/api/payment/)(?!verify\b|confirm\b|webhook\b)[A-Za-z0-9_\-.:]{6,}"),
        r"\1" + MASK,
    ),
    # Card numbers (13–19 digits, spaces or dashes allowed) and bank account numbers (10–16
    # digits); masked numbers from Toss ("43301234****123*") are left as they are.
    (re.compile(r"(?<![\d*])(?:\d[ -]?){12,18}\d(?![\d*])"), MASK),
    (re.compile(r"(?<![\d*])\d{10,16}(?![\d*])"), MASK),
)


def redact(text: str) -> str:
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def _redact_message(record: logging.LogRecord) -> None:
    """The message (formatted with its args) and the traceback, redacted in place."""
    try:
        message = record.getMessage()
    except Exception:  # noqa: BLE001 — a bad format string must not lose the record
        message = str(record.msg)
    record.msg = redact(message)
    record.args = None
    if record.exc_info and not record.exc_text:
        record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
    elif record.exc_text:
        record.exc_text = redact(record.exc_text)


class RedactingFilter(logging.Filter):
    """Rewrites the message and every string extra field before any handler formats it."""

    def filter(self, record: logging.LogRecord) -> bool:
        _redact_message(record)
        for key, value in list(record.__dict__.items()):
            if key in _STANDARD or key.startswith("_"):
                continue
            if isinstance(value, str):
                record.__dict__[key] = redact(value)
            elif isinstance(value, dict | list | tuple):
                record.__dict__[key] = json.loads(redact(json.dumps(value, default=str)))
        return True


def install_record_redaction() -> None:
    """Redact each record's message and traceback as it is made (once per process)."""
    make = logging.getLogRecordFactory()
    if getattr(make, "_shop_redacting", False):
        return

    def redacting_factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = make(*args, **kwargs)
        _redact_message(record)
        return record

    redacting_factory._shop_redacting = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(redacting_factory)


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = g.get("request_id", "-") if has_request_context() else "-"
        return True


_STANDARD = frozenset(
    logging.LogRecord("x", 0, "x", 0, "x", None, None).__dict__.keys()
    | {"message", "asctime", "request_id", "color_message"}
)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request id and extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", "-"),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                data[key] = value
        if record.exc_text:
            data["exc"] = record.exc_text
        return json.dumps(data, ensure_ascii=False, default=str)


_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{8,64}")


def configure_logging(app: Flask, stream: Any = None) -> logging.Handler:
    """Install the app's handler on the root logger (replacing an earlier one of ours)."""
    install_record_redaction()
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "_shop_handler", False)]:
        root.removeHandler(old)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler._shop_handler = True  # type: ignore[attr-defined]
    handler.addFilter(RequestIdFilter())
    handler.addFilter(RedactingFilter())
    if app.config["APP_ENV"] == "production":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s")
        )
    root.addHandler(handler)
    if root.level == logging.NOTSET or root.level > logging.INFO:
        root.setLevel(logging.INFO)

    @app.before_request
    def _request_id() -> None:
        incoming = request.headers.get("X-Request-Id", "")
        g.request_id = incoming if _REQUEST_ID.fullmatch(incoming) else secrets.token_hex(16)

    @app.after_request
    def _echo_request_id(response: Any) -> Any:
        response.headers["X-Request-Id"] = g.get("request_id", "")
        return response

    return handler
