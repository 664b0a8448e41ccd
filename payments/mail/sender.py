"""Send what the outbox holds, from the worker: lease due messages, deliver them over SMTP,
mark each SENT, or try again later with exponential backoff.

At most once per event: a message is leased (SENDING) before it is handed to the SMTP server
and marked SENT right after. A worker that dies between the server's acceptance and that mark
leaves a SENDING row whose lease runs out, and the message goes out again: the only way a buyer
gets one event twice. Without a mail server, development and testing mark messages KEPT (listed
at /dev/mail); production leaves them PENDING until one is configured.
"""

from __future__ import annotations

import logging
import smtplib
import ssl
from collections.abc import Sequence
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import formataddr, make_msgid, parseaddr
from typing import Any

from flask import current_app
from sqlalchemy import or_, select, update

from ..core.clock import utcnow
from ..core.models import MailMessage, MailStatus
from ..extensions import db

logger = logging.getLogger(__name__)

M = MailStatus
# Seconds before each further attempt after a refusal or an unreachable server; past the last
# one the message parks as FAILED (about a day of trying).
RETRY_DELAYS = (30, 120, 600, 3600, 4 * 3600, 12 * 3600)
LEASE_SECONDS = 120
_warned_no_server = False


class Permanent(Exception):
    """The server refused the message for good (a 5xx answer)."""


def drain(limit: int = 20, now: datetime | None = None) -> int:
    """Send (or keep) up to `limit` due messages; the number handled."""
    now = now or utcnow()
    smtp_config = current_app.config.get("MAIL_SMTP")
    if smtp_config is None:
        return _keep_or_wait(now)
    ids = _claim(limit, now)
    if not ids:
        return 0
    messages = db.session.scalars(
        select(MailMessage).where(MailMessage.id.in_(ids)).order_by(MailMessage.id)
    ).all()
    try:
        with _connect(smtp_config) as server:
            for message in messages:
                _send_one(server, message, now)
    except (OSError, smtplib.SMTPException) as exc:
        # The server could not be reached or dropped us: every message still leased waits.
        db.session.rollback()
        for message_id in ids:
            _retry(message_id, f"{type(exc).__name__}: {exc}", now)
    return len(ids)


def _keep_or_wait(now: datetime) -> int:
    global _warned_no_server
    if current_app.config["APP_ENV"] == "production":
        if not _warned_no_server:
            logger.warning("no mail server configured (MAIL_URL or SMTP_HOST): e-mail waits")
            _warned_no_server = True
        return 0
    kept = db.session.execute(
        update(MailMessage)
        .where(MailMessage.status == M.PENDING)
        .values(status=M.KEPT, sent_at=now)
        .execution_options(synchronize_session=False)
    ).rowcount  # type: ignore[attr-defined]
    db.session.commit()
    return int(kept)


def _claim(limit: int, now: datetime) -> list[int]:
    """Lease due messages (PENDING and due, or SENDING with a lapsed lease) to this worker;
    SKIP LOCKED and the conditional UPDATE keep two workers off one message."""
    due = or_(
        (MailMessage.status == M.PENDING) & (MailMessage.next_attempt_at <= now),
        (MailMessage.status == M.SENDING) & (MailMessage.locked_until < now),
    )
    ids = db.session.scalars(
        select(MailMessage.id)
        .where(due)
        .order_by(MailMessage.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()
    claimed = []
    for message_id in ids:
        moved = db.session.execute(
            update(MailMessage)
            .where(MailMessage.id == message_id, due)
            .values(
                status=M.SENDING,
                locked_until=now + timedelta(seconds=LEASE_SECONDS),
                attempts=MailMessage.attempts + 1,
            )
            .execution_options(synchronize_session=False)
        )
        if moved.rowcount == 1:  # type: ignore[attr-defined]
            claimed.append(message_id)
    db.session.commit()
    return claimed


def _connect(cfg: dict[str, Any]) -> smtplib.SMTP:
    timeout = current_app.config["MAIL_TIMEOUT"]
    server: smtplib.SMTP
    if cfg["ssl"]:
        server = smtplib.SMTP_SSL(
            cfg["host"], cfg["port"], timeout=timeout, context=ssl.create_default_context()
        )
    else:
        server = smtplib.SMTP(cfg["host"], cfg["port"], timeout=timeout)
        if cfg["starttls"]:
            server.starttls(context=ssl.create_default_context())
    if cfg["user"]:
        server.login(cfg["user"], cfg["password"] or "")
    return server


def build(message: MailMessage, sender: str) -> EmailMessage:
    """The MIME message: Korean text with an HTML alternative, UTF-8 headers."""
    mail = EmailMessage()
    name, address = parseaddr(sender)
    mail["From"] = formataddr((name, address)) if name else address
    mail["To"] = message.to_address
    mail["Subject"] = message.subject
    mail["Message-ID"] = make_msgid(idstring=f"order-mail-{message.id}")
    mail.set_content(message.text)
    mail.add_alternative(message.html, subtype="html")
    return mail


def _send_one(server: smtplib.SMTP, message: MailMessage, now: datetime) -> None:
    try:
        server.send_message(build(message, current_app.config["MAIL_FROM"]))
    except smtplib.SMTPRecipientsRefused as exc:
        codes = [code for code, _ in exc.recipients.values()]
        _refused(message.id, codes, str(exc.recipients), now)
        return
    except (smtplib.SMTPSenderRefused, smtplib.SMTPDataError) as exc:
        _refused(message.id, [exc.smtp_code], f"{exc.smtp_code} {exc.smtp_error!r}", now)
        return
    db.session.execute(
        update(MailMessage)
        .where(MailMessage.id == message.id, MailMessage.status == M.SENDING)
        .values(status=M.SENT, sent_at=utcnow(), locked_until=None, last_error=None)
        .execution_options(synchronize_session=False)
    )
    db.session.commit()
    logger.info("mail sent", extra={"mail_id": message.id, "kind": message.kind})


def _refused(message_id: int, codes: Sequence[int], error: str, now: datetime) -> None:
    if codes and all(500 <= code < 600 for code in codes):
        _finish_failed(message_id, f"refused: {error}")
    else:
        _retry(message_id, f"deferred: {error}", now)


def _retry(message_id: int, error: str, now: datetime) -> None:
    message = db.session.get(MailMessage, message_id)
    if message is None or message.status != M.SENDING:
        return
    if message.attempts > len(RETRY_DELAYS):
        _finish_failed(message_id, error)
        return
    delay = RETRY_DELAYS[message.attempts - 1]
    message.status = M.PENDING
    message.next_attempt_at = now + timedelta(seconds=delay)
    message.locked_until = None
    message.last_error = error[:500]
    db.session.commit()
    logger.warning(
        "mail not sent; will retry",
        extra={"mail_id": message_id, "attempt": message.attempts, "delay": delay},
    )


def _finish_failed(message_id: int, error: str) -> None:
    db.session.execute(
        update(MailMessage)
        .where(MailMessage.id == message_id, MailMessage.status == M.SENDING)
        .values(status=M.FAILED, locked_until=None, last_error=error[:500])
        .execution_options(synchronize_session=False)
    )
    db.session.commit()
    logger.error("mail parked as FAILED", extra={"mail_id": message_id, "error": error[:200]})
