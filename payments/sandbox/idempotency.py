"""Idempotency-Key, as Toss applies it to every POST.

Identity = (key, secret key, method, URL); the body is not part of it, so a reused key replays
the first answer even for another payment (Toss's header reference,
https://docs.tosspayments.com/reference/using-api/authorization: "멱등키와 API 키, API 주소,
HTTP 메서드 조합"). The key's row is inserted (PROCESSING) under a unique constraint before the
work runs: a repeat in any worker meanwhile gets 409 IDEMPOTENT_REQUEST_PROCESSING (ibid.).
Answers are kept 15 days (ibid.) and replayed byte for byte.

Which error answers are kept is not found in Toss's docs. They say a repeat gets "the first
request's answer" and that retrying an error under a *new* key is risky: ask Toss why first
(ibid.). A "try again" error kept under its key could never be retried, so the sandbox keeps
definitive answers (success and 4xx refusals: a replay tells the truth) and releases the key
after an answer that says nothing was done and to try again: every 5xx, 409, 429, and the
"temporary, try again" codes in `RELEASING_CODES`. The retry with the same key then does the
work, which is what a client's retry rule (retry those, with the same key) relies on.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from flask import Response
from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from .db import db
from .errors import SandboxError
from .models import SandboxIdempotencyKey
from .payments import now
from .state import state

logger = logging.getLogger(__name__)

MAX_IDEMPOTENCY_KEY = 300
IDEMPOTENCY_TTL = timedelta(days=15)
# 4xx answers Toss words as "temporary, try again" (https://docs.tosspayments.com/reference/error-codes):
# they release the key like a 5xx.
RELEASING_CODES = frozenset(
    {"PROVIDER_ERROR", "CARD_PROCESSING_ERROR", "FORBIDDEN_CONSECUTIVE_REQUEST"}
)


def releases_key(status: int, code: str | None) -> bool:
    """An answer after which the same key may do the work: nothing was done, try again."""
    return status >= 500 or status in (409, 429) or code in RELEASING_CODES


def check_key(key: str | None) -> None:
    """400 INVALID_IDEMPOTENCY_KEY for a key Toss would refuse."""
    if key is not None and (key == "" or len(key) > MAX_IDEMPOTENCY_KEY):
        raise SandboxError("INVALID_IDEMPOTENCY_KEY")


def identity(key: str, secret_key: str, method: str, url: str) -> str:
    """The stored identity: a digest, so neither the key nor the secret key is kept in clear."""
    raw = "\n".join((key, secret_key, method.upper(), url))
    return hashlib.sha256(raw.encode()).hexdigest()


def _processing_timeout() -> timedelta:
    # A PROCESSING row older than this belongs to a request that died: the key is free again.
    return timedelta(seconds=state().settings.idempotency_processing_timeout)


def run(
    key: str | None, secret_key: str, method: str, url: str, work: Callable[[], Response]
) -> Response:
    """Run `work` at most once per identity; replay or 409 for repeats.

    Writes `work` leaves uncommitted commit together with the stored answer, so the payment
    and the answer a retry replays are one transaction. A refusal (SandboxError) or a 5xx
    commits nothing of the work's own; a "try again" answer releases the key.
    """
    if key is None:
        return _finish(None, work)
    check_key(key)
    ident = identity(key, secret_key, method, url)
    reserved = _reserve(ident)
    if isinstance(reserved, Response):
        return reserved  # the first answer, replayed
    return _finish(reserved, work)


def _finish(row_id: int | None, work: Callable[[], Response]) -> Response:
    code: str | None = None
    try:
        response = work()
    except SandboxError as exc:
        db.session.rollback()
        code = exc.code
        response = _json_response(exc.status, exc.body())
    except BaseException:
        _release(row_id)
        raise
    if releases_key(response.status_code, code):
        _release(row_id)
        return response
    if row_id is not None:
        db.session.execute(
            update(SandboxIdempotencyKey)
            .where(SandboxIdempotencyKey.id == row_id)
            .values(
                state="DONE",
                response_status=response.status_code,
                response_body=response.get_data(as_text=True),
            )
        )
    db.session.commit()
    return response


def _reserve(ident: str) -> int | Response:
    for _ in range(5):
        t = now()
        try:
            # Committed on its own connection before the work, so a repeat meanwhile (in any
            # process) sees PROCESSING.
            with db.engine.begin() as conn:
                row_id = conn.execute(
                    insert(SandboxIdempotencyKey)
                    .values(
                        identity=ident,
                        state="PROCESSING",
                        created_at=t,
                        expires_at=t + IDEMPOTENCY_TTL,
                    )
                    .returning(SandboxIdempotencyKey.id)
                ).scalar_one()
            return int(row_id)
        except IntegrityError:
            pass
        existing = db.session.scalar(
            select(SandboxIdempotencyKey).where(SandboxIdempotencyKey.identity == ident)
        )
        db.session.commit()
        if existing is None:
            continue  # released between our insert and our read
        if _stale(existing, t):
            db.session.execute(
                delete(SandboxIdempotencyKey).where(
                    SandboxIdempotencyKey.id == existing.id,
                    SandboxIdempotencyKey.created_at == existing.created_at,
                )
            )
            db.session.commit()
            continue
        if existing.state == "PROCESSING":
            raise SandboxError("IDEMPOTENT_REQUEST_PROCESSING")
        return Response(
            existing.response_body or "",
            status=existing.response_status or 200,
            mimetype="application/json",
        )
    raise SandboxError("IDEMPOTENT_REQUEST_PROCESSING")


def _stale(row: SandboxIdempotencyKey, t: datetime) -> bool:
    if row.expires_at <= t:
        return True
    return row.state == "PROCESSING" and row.created_at + _processing_timeout() <= t


def _release(row_id: int | None) -> None:
    db.session.rollback()
    if row_id is not None:
        with db.engine.begin() as conn:
            conn.execute(delete(SandboxIdempotencyKey).where(SandboxIdempotencyKey.id == row_id))


def _json_response(status: int, body: object) -> Response:
    return Response(
        json.dumps(body, ensure_ascii=False), status=status, mimetype="application/json"
    )
