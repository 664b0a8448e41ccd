"""Payment confirmation: the one operation behind the success redirect and the JSON API.

Phases (each a commit): validate against the stored order → commit the intent (CONFIRMING with
the paymentKey and Idempotency-Key) → call Toss → commit what Toss said. A crash between phases
leaves a CONFIRMING/NEEDS_RECONCILE row that a lookup by orderId settles.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from . import metrics, toss_client
from .errors import ServiceError, invalid, message_for
from .extensions import commit_as_written, db
from .models import Order, utcnow
from .orders import ORDER_ID_RE, claim_pending, find_order, record, transition
from .states import SETTLED, OrderStatus, Source
from .sync import apply_payment, settle_by_lookup
from .toss import TossError

logger = logging.getLogger(__name__)

S = OrderStatus
PAYMENT_KEY_RE = re.compile(r"^[A-Za-z0-9_\-.:]{1,200}$")
MAX_AMOUNT = 10**12

# Definitive Toss refusals after which the shopper may simply pay again (another card, a new
# window): the order goes back to PENDING with the failure recorded. Anything else definitive
# ends the order FAILED.
SHOPPER_RETRYABLE = frozenset(
    {
        "REJECT_CARD_PAYMENT",
        "REJECT_CARD_COMPANY",
        "NOT_ENOUGH_BALANCE",
        "INVALID_CARD_NUMBER",
        "INVALID_CARD_EXPIRATION",
        "INVALID_STOPPED_CARD",
        "INVALID_CARD_LOST_OR_STOLEN",
        "INVALID_PASSWORD",
        "EXCEED_MAX_DAILY_PAYMENT_COUNT",
        "EXCEED_MAX_CARD_INSTALLMENT_PLAN",
        "NOT_SUPPORTED_INSTALLMENT_PLAN_CARD_OR_MERCHANT",
        "INVALID_CARD_INSTALLMENT_PLAN",
        "NOT_FOUND_PAYMENT_SESSION",
        "PAY_PROCESS_ABORTED",
        "PAY_PROCESS_CANCELED",
        "REJECT_ACCOUNT_PAYMENT",
        "REJECT_TOSSPAY_INVALID_ACCOUNT",
        "EXCEED_MAX_PAYMENT_AMOUNT",
        "FDS_ERROR",
    }
)


@dataclass(frozen=True)
class ConfirmRequest:
    payment_key: str
    order_id: str
    amount: int


def parse_confirm_request(data: Mapping[str, object]) -> ConfirmRequest:
    """Validate {paymentKey, orderId, amount} from a query string or JSON; INVALID_REQUEST else."""
    payment_key = data.get("paymentKey")
    order_id = data.get("orderId")
    amount = data.get("amount")
    if not isinstance(payment_key, str) or not PAYMENT_KEY_RE.match(payment_key):
        raise invalid("paymentKey가 없거나 올바르지 않습니다. (paymentKey is missing or malformed)")
    if not isinstance(order_id, str) or not ORDER_ID_RE.match(order_id):
        raise invalid("orderId가 없거나 올바르지 않습니다. (orderId is missing or malformed)")
    parsed: int | None = None
    if isinstance(amount, int) and not isinstance(amount, bool):
        parsed = amount
    elif isinstance(amount, str) and re.fullmatch(r"[0-9]{1,13}", amount):
        parsed = int(amount)
    if parsed is None or not 0 < parsed < MAX_AMOUNT:
        raise invalid("amount는 양의 정수여야 합니다. (amount must be a positive integer)")
    return ConfirmRequest(payment_key, order_id, parsed)


def confirm_idempotency_key(order_id: str, payment_key: str) -> str:
    """Derived from what is being done, so every retry of this confirmation reuses it and
    another payment can never replay this one's answer (Toss ignores the body)."""
    digest = hashlib.sha256(f"{order_id}\n{payment_key}".encode()).hexdigest()
    return f"confirm-{digest}"


def confirm_payment(req: ConfirmRequest, source: Source) -> Order:
    """Confirm a payment with Toss exactly once and return the order in its resulting state.

    Raises ServiceError for every refusal; by then the order's state is committed.
    """
    try:
        order = _confirm(req, source)
    except ServiceError as exc:
        metrics.CONFIRMATIONS.labels("error", metrics.code_label(exc.code)).inc()
        raise
    metrics.CONFIRMATIONS.labels(order.status.lower(), "").inc()
    return order


def _confirm(req: ConfirmRequest, source: Source) -> Order:
    key = confirm_idempotency_key(req.order_id, req.payment_key)
    intent = {
        "payment_key": req.payment_key,
        "confirm_idempotency_key": key,
        "confirm_started_at": utcnow(),
        "failure_code": None,
        "failure_message": None,
    }
    # The common case, a first confirmation of a PENDING order, is claimed without a read.
    order = claim_pending(
        req.order_id,
        S.CONFIRMING,
        source,
        amount=req.amount,
        payment_key=req.payment_key,
        values=intent,
    )
    if order is None:
        order = _claim_after_reading(req, intent, source)
        if order.status != S.CONFIRMING:
            return order  # a refresh or a second tab: the stored result, no Toss call
    commit_as_written()  # the order stays loaded for Toss's answer
    return _confirm_with_toss(order, req, key, source)


def _claim_after_reading(req: ConfirmRequest, intent: dict[str, Any], source: Source) -> Order:
    """The order as it stands when it could not be claimed: CONFIRMING when this call moved it
    (uncommitted), settled by this payment already (a refresh), else a ServiceError."""
    order = find_order(req.order_id, with_payment=True)
    if order is None:
        raise ServiceError("ORDER_NOT_FOUND", http_status=404)
    if req.amount != order.amount:
        # The success URL's amount comes from the browser: a difference is tampering or a bug.
        record(
            order,
            "amount_mismatch",
            source,
            payment_key=req.payment_key,
            code="AMOUNT_MISMATCH",
            detail=f"expected={order.amount} got={req.amount}",
        )
        db.session.commit()
        metrics.AMOUNT_MISMATCHES.inc()
        logger.warning(
            "amount mismatch on confirm",
            extra={"order_id": order.order_id, "expected": order.amount, "got": req.amount},
        )
        raise ServiceError("AMOUNT_MISMATCH", http_status=400)

    for _ in range(3):
        status = S(order.status)
        same_payment = order.payment_key == req.payment_key
        if status in SETTLED:
            if same_payment:
                return order
            raise ServiceError("ORDER_NOT_PAYABLE", http_status=409)
        if status is S.CONFIRMING:
            raise ServiceError("PAYMENT_PENDING", http_status=409)
        if status is S.NEEDS_RECONCILE:
            if same_payment and settle_by_lookup(order, source) in SETTLED:
                return order
            raise ServiceError("PAYMENT_PENDING", http_status=409)
        if status is not S.PENDING:
            raise ServiceError("ORDER_NOT_PAYABLE", http_status=409)
        if transition(order, S.CONFIRMING, source, payment_key=req.payment_key, values=intent):
            return order
        db.session.commit()
        db.session.refresh(order)
    raise ServiceError("PAYMENT_PENDING", http_status=409)


def _confirm_with_toss(order: Order, req: ConfirmRequest, key: str, source: Source) -> Order:
    try:
        with metrics.CONFIRM_SECONDS.time():
            payment = toss_client().confirm(
                req.payment_key, req.order_id, req.amount, idempotency_key=key
            )
    except TossError as exc:
        return _confirm_failed(order, req, exc, source)
    try:
        apply_payment(order, payment, source, answer_to_confirm=True)
        commit_as_written()
    except SQLAlchemyError:
        # Toss took the money but we could not record it: the order stays CONFIRMING and
        # `reconcile` finishes it by lookup. Never report failure to the shopper here.
        db.session.rollback()
        logger.exception("commit after confirm failed", extra={"order_id": req.order_id})
        raise ServiceError("PAYMENT_PENDING", http_status=409) from None
    _raise_if_unsuccessful(order)
    return order


def _confirm_failed(order: Order, req: ConfirmRequest, exc: TossError, source: Source) -> Order:
    code = exc.code
    if code == "ALREADY_PROCESSED_PAYMENT":
        # Usually an earlier try of ours succeeded: believe only Toss's record of it.
        record(order, "toss_error", source, payment_key=req.payment_key, code=code)
        db.session.commit()
        try:
            payment = toss_client().get_payment(req.payment_key)
        except TossError:
            _to_reconcile(order, source, code)
            raise ServiceError("PAYMENT_PENDING", http_status=409) from None
        apply_payment(order, payment, source)
        db.session.commit()
        _raise_if_unsuccessful(order)
        return order

    if exc.outcome_unknown:
        logger.warning(
            "confirm outcome unknown; looking up",
            extra={"order_id": req.order_id, "toss_code": code},
        )
        _to_reconcile(order, source, code)
        if settle_by_lookup(order, source) in SETTLED:
            return order
        raise ServiceError("PAYMENT_PENDING", http_status=409) from None

    if exc.retryable:
        # Toss said "not now" and did nothing: the order is payable again and the shopper's
        # next try (a refresh of the success page) confirms with the same key.
        transition(
            order,
            S.PENDING,
            source,
            code=code,
            detail=exc.message[:200],
            values={"payment_key": None},
        )
        db.session.commit()
        raise ServiceError("PROVIDER_UNAVAILABLE", http_status=503) from None

    payable = code in SHOPPER_RETRYABLE
    transition(
        order,
        S.PENDING if payable else S.FAILED,
        source,
        code=code,
        detail=exc.message[:200],
        values={
            "failure_code": code,
            "failure_message": message_for(code),
            **({"payment_key": None} if payable else {}),
        },
    )
    db.session.commit()
    logger.info("confirm refused", extra={"order_id": req.order_id, "toss_code": code})
    raise ServiceError(code, message_for(code), _api_status(exc.http_status)) from None


def _to_reconcile(order: Order, source: Source, code: str | None) -> None:
    if order.status == S.CONFIRMING:
        transition(order, S.NEEDS_RECONCILE, source, code=code)
        db.session.commit()


def _raise_if_unsuccessful(order: Order) -> None:
    if order.status in SETTLED:
        return
    if order.status in (S.CONFIRMING, S.NEEDS_RECONCILE):
        raise ServiceError("PAYMENT_PENDING", http_status=409)
    raise ServiceError(order.failure_code or "PAYMENT_FAILED", http_status=409)


def _api_status(toss_status: int | None) -> int:
    # Toss's 401/5xx are about our keys or Toss itself, not the caller's request.
    if toss_status in (400, 403, 404, 409, 422):
        return toss_status
    return 502
