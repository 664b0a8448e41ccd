"""Payment confirmation: the one operation behind the success redirect, the JSON API and the
reconciler.

Three phases, each its own commit, all of them in this module:
1. claim: read the order, check it against the request, move it PENDING → CONFIRMING with the
   paymentKey and an Idempotency-Key derived from both (the intent);
2. call Toss's confirm with that key;
3. record what Toss said (`settle.apply_payment`).
A crash between phases leaves a CONFIRMING or NEEDS_RECONCILE order; `finish_unknown` (run by
`flask payments reconcile`) settles it by asking Toss, or by confirming again with the same key.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.exc import SQLAlchemyError

from ..core import metrics
from ..core.clock import utcnow
from ..core.errors import ServiceError, invalid, message_for
from ..core.models import Order
from ..core.orders import ORDER_ID_RE, PAYMENT_KEY_RE, find_order, record, transition
from ..core.states import IN_FLIGHT, SETTLED, OrderStatus, Source
from ..extensions import db, toss
from ..toss import Payment as TossPayment
from ..toss import TossError
from .settle import apply_payment, fetch, lookup

logger = logging.getLogger(__name__)

S = OrderStatus
MAX_AMOUNT = 10**12
# Toss refuses a confirm this long after the shopper authenticated the payment.
CONFIRM_WINDOW = timedelta(minutes=10)

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


# Toss's word that the paymentKey presented is no payment of this order our key may confirm:
# unknown (NOT_FOUND_PAYMENT), not ours to ask about (FORBIDDEN_REQUEST), ill-formed or not
# matching the orderId and amount we sent, which we check first (INVALID_REQUEST), or of the
# other key family (INVALID_API_KEY: start-up refuses a mixed key configuration, so only the
# payment can be of the other family). The success URL is public and anyone who knows an
# orderId and its amount can present any paymentKey there, so these leave the order payable and
# go on its timeline only; the rightful shopper's own payment still confirms.
NOT_THIS_ORDERS_PAYMENT = frozenset(
    {"NOT_FOUND_PAYMENT", "FORBIDDEN_REQUEST", "INVALID_REQUEST", "INVALID_API_KEY"}
)


@dataclass(frozen=True)
class ConfirmRequest:
    payment_key: str
    order_id: str
    amount: int

    @property
    def idempotency_key(self) -> str:
        return confirm_idempotency_key(self.order_id, self.payment_key)


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
    order, claimed = _claim(req, source)
    if not claimed:
        return order  # a refresh or a second tab: the stored result, no Toss call
    # The claim's commit returned the database connection to the pool and expired the order:
    # nothing here may read it before Toss answers, or a new transaction would hold a pooled
    # connection for as long as Toss takes.
    try:
        with metrics.CONFIRM_SECONDS.time():
            payment = toss.client.confirm(
                req.payment_key, req.order_id, req.amount, idempotency_key=req.idempotency_key
            )
    except TossError as exc:
        return _refused(order, req, exc, source)
    try:
        apply_payment(order, payment, source, answer_to_confirm=True)
        db.session.commit()
    except SQLAlchemyError:
        # Toss took the money but we could not record it: the order stays CONFIRMING and
        # `reconcile` finishes it by lookup. Never report failure to the shopper here.
        db.session.rollback()
        logger.exception("commit after confirm failed", extra={"order_id": req.order_id})
        raise ServiceError("PAYMENT_PENDING", http_status=409) from None
    _raise_if_unsuccessful(order)
    return order


def _claim(req: ConfirmRequest, source: Source) -> tuple[Order, bool]:
    """(the order, True) once this call moved it to CONFIRMING (committed), or (the order as it
    stands, False) for a refresh of a payment already settled; every other state is a
    ServiceError."""
    for _ in range(2):
        order = find_order(req.order_id)
        if order is None:
            raise ServiceError("ORDER_NOT_FOUND", http_status=404)
        if req.amount != order.amount:
            _amount_mismatch(order, req, source)
        same_payment = order.payment_key == req.payment_key
        if order.status in SETTLED:
            if same_payment:
                return order, False
            raise ServiceError("ORDER_NOT_PAYABLE", http_status=409)
        if order.status == S.NEEDS_RECONCILE and same_payment:
            if settle_by_lookup(order, source) in SETTLED:
                return order, False
            raise ServiceError("PAYMENT_PENDING", http_status=409)
        if order.status in IN_FLIGHT:
            raise ServiceError("PAYMENT_PENDING", http_status=409)
        if order.status != S.PENDING:
            raise ServiceError("ORDER_NOT_PAYABLE", http_status=409)
        intent = {
            "payment_key": req.payment_key,
            "confirm_idempotency_key": req.idempotency_key,
            "confirm_started_at": utcnow(),
            "failure_code": None,
            "failure_message": None,
        }
        if transition(order, S.CONFIRMING, source, payment_key=req.payment_key, values=intent):
            db.session.commit()
            return order, True
        db.session.rollback()  # another request moved it first: read what it wrote
    raise ServiceError("PAYMENT_PENDING", http_status=409)


def _amount_mismatch(order: Order, req: ConfirmRequest, source: Source) -> None:
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
        extra={"order_id": req.order_id, "expected": order.amount, "got": req.amount},
    )
    raise ServiceError("AMOUNT_MISMATCH", http_status=400)


def _refused(order: Order, req: ConfirmRequest, exc: TossError, source: Source) -> Order:
    """Toss did not answer with a payment: decide what the order becomes, commit, and raise
    (or return the order when a lookup shows the payment went through after all)."""
    code = exc.code
    if code == "ALREADY_PROCESSED_PAYMENT":
        # Usually an earlier try of ours succeeded: believe only Toss's record of it.
        record(order, "toss_error", source, payment_key=req.payment_key, code=code)
        db.session.commit()
        try:
            payment = toss.client.get_payment(req.payment_key)
        except TossError:
            _to_reconcile(order, source, code)
            raise ServiceError("PAYMENT_PENDING", http_status=409) from None
        if payment.order_id != order.order_id:
            # Another order's payment presented with this orderId: nothing of this order.
            _not_this_orders_payment(order, req, code, source, "a payment of another order")
            raise ServiceError("NOT_FOUND_PAYMENT", message_for("NOT_FOUND_PAYMENT"), 404)
        apply_payment(order, payment, source)
        if order.status == S.CONFIRMING and payment.status == "ABORTED":
            # Toss refused this confirm as processed and its record of the attempt is ABORTED:
            # the attempt is over, the shopper may pay again.
            failure = payment.failure_code or "PAYMENT_ABORTED"
            transition(
                order,
                S.PENDING,
                source,
                payment_key=req.payment_key,
                code=failure,
                values={
                    "payment_key": None,
                    "failure_code": failure,
                    "failure_message": message_for(failure),
                },
            )
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
            order, S.PENDING, source, code=code, detail=exc.message[:200],
            values={"payment_key": None},
        )  # fmt: skip
        db.session.commit()
        raise ServiceError("PROVIDER_UNAVAILABLE", http_status=503) from None

    if code in NOT_THIS_ORDERS_PAYMENT:
        _not_this_orders_payment(order, req, code, source, exc.message)
        raise ServiceError(code, message_for(code), _api_status(exc.http_status)) from None

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


def _not_this_orders_payment(
    order: Order, req: ConfirmRequest, code: str, source: Source, detail: str
) -> None:
    """Release the claim of a paymentKey that is no payment of this order: payable again, the
    refusal on the timeline (not on the order, whose shopper may never have seen it)."""
    transition(
        order, S.PENDING, source, payment_key=req.payment_key, code=code,
        detail=detail[:200], values={"payment_key": None},
    )  # fmt: skip
    db.session.commit()
    logger.warning(
        "confirm refused: the paymentKey is not this order's payment",
        extra={"order_id": req.order_id, "toss_code": code},
    )


def _to_reconcile(order: Order, source: Source, code: str | None) -> None:
    if order.status == S.CONFIRMING:
        transition(order, S.NEEDS_RECONCILE, source, code=code)
        db.session.commit()


def _raise_if_unsuccessful(order: Order) -> None:
    if order.status in SETTLED:
        return
    if order.status in IN_FLIGHT:
        raise ServiceError("PAYMENT_PENDING", http_status=409)
    raise ServiceError(order.failure_code or "PAYMENT_FAILED", http_status=409)


def _api_status(toss_status: int | None) -> int:
    # Toss's 401/5xx are about our keys or Toss itself, not the caller's request.
    if toss_status in (400, 403, 404, 409, 422):
        return toss_status
    return 502


def window_failed(order_id: str, code: str, *, by_owner: bool) -> Order | None:
    """Toss sent the shopper to the fail URL: note it on a payable order's timeline (the order
    stays payable); the order, or None for an unknown orderId.

    Only the order's own session (`by_owner`) leaves a note: the URL is public, and anyone who
    knows an orderId could otherwise fill its timeline."""
    order = find_order(order_id)
    if by_owner and order is not None and order.status == S.PENDING:
        record(order, "payment_failed", Source.REDIRECT, code=code)
        db.session.commit()
    return order


# -- unknown outcomes ------------------------------------------------------------------------------


def settle_by_lookup(order: Order, source: Source) -> OrderStatus:
    """Ask Toss for the order's payment and apply it; the order's status afterwards (unchanged
    when Toss has none or cannot be asked).

    Toss's answer by orderId may be another window's payment: then the attempt's own payment
    is asked for by its paymentKey too. Nothing here makes the order payable again on an
    ABORTED answer (reconcile decides that after Toss's confirm window).
    """
    order_id = order.order_id
    # Nothing is pending here: end the read so no pooled connection waits on Toss's answer.
    db.session.commit()
    _answered, found = lookup(order_id)
    if found is not None:
        apply_payment(order, found, source, by_order=True)
        db.session.commit()
    attempt = order.payment_key
    if order.status in IN_FLIGHT and found is not None and attempt and found.payment_key != attempt:
        _known, mine = _attempt_payment(order, attempt)
        if mine is not None:
            apply_payment(order, mine, source)
            db.session.commit()
    return order.status


def _attempt_payment(order: Order, payment_key: str) -> tuple[bool, TossPayment | None]:
    """Toss's word about the attempt's own payment: (answered, payment or None when Toss has no
    payment of this order under that key)."""
    known, payment = fetch(payment_key)
    if payment is not None and payment.order_id != order.order_id:
        # The success URL's paymentKey belongs to another order: none of this order under it.
        logger.warning(
            "attempt's paymentKey is another order's payment",
            extra={"order_id": order.order_id, "toss_order_id": payment.order_id},
        )
        return True, None
    return known, payment


def finish_unknown(order: Order, now: datetime) -> OrderStatus:
    """Settle a CONFIRMING/NEEDS_RECONCILE order nobody finished (a crash, a lost answer).

    Toss's record decides first: by orderId (money in another window settles the order too),
    then the attempt's own payment by its paymentKey (GET /v1/payments/{paymentKey}):
    - DONE, WAITING_FOR_DEPOSIT, (PARTIAL_)CANCELED: Toss approved it; the order follows;
    - EXPIRED: Toss gave up on it and can no longer approve it; the order is payable again;
    - READY / IN_PROGRESS, ABORTED, no such payment, or no answer: while Toss's confirm window
      lasts, the confirmation is repeated with its own Idempotency-Key (Toss runs it at most
      once and may still approve it); after the window, only Toss's word that the attempt's
      payment was not approved (ABORTED, or no such payment) makes the order payable again.
      An IN_PROGRESS payment waits for Toss to expire it, and silence never gives up.
    """
    answered, found = lookup(order.order_id)
    if found is not None:
        apply_payment(order, found, Source.RECONCILE, by_order=True)
        db.session.commit()
    if order.status not in IN_FLIGHT:
        return order.status
    known, mine = False, None
    if answered and order.payment_key:  # when Toss cannot be asked, the next run asks again
        known, mine = _attempt_payment(order, order.payment_key)
    if mine is not None:
        apply_payment(order, mine, Source.RECONCILE)
        db.session.commit()
        if order.status not in IN_FLIGHT:
            return order.status
    started = order.confirm_started_at or order.updated_at
    if order.payment_key and order.confirm_idempotency_key and now - started < CONFIRM_WINDOW:
        try:
            payment = toss.client.confirm(
                order.payment_key,
                order.order_id,
                order.amount,
                idempotency_key=order.confirm_idempotency_key,
            )
        except TossError as exc:
            if not (exc.retryable or exc.outcome_unknown):
                code = exc.code
                if mine is not None and mine.status == "ABORTED" and mine.failure_code:
                    code = mine.failure_code  # Toss's reason rather than "already processed"
                _attempt_over(order, code)
            return order.status
        apply_payment(order, payment, Source.RECONCILE, answer_to_confirm=True)
        db.session.commit()
    elif mine is not None and mine.status == "ABORTED" and now - started >= CONFIRM_WINDOW:
        _attempt_over(order, mine.failure_code or "PAYMENT_ABORTED")
    elif known and mine is None and now - started >= CONFIRM_WINDOW + timedelta(minutes=1):
        _attempt_over(order, "NOT_FOUND_PAYMENT_SESSION")
    return order.status


def _attempt_over(order: Order, code: str) -> None:
    if order.status == S.CONFIRMING:
        transition(order, S.NEEDS_RECONCILE, Source.RECONCILE, code=code)
    transition(
        order,
        S.PENDING,
        Source.RECONCILE,
        code=code,
        values={"payment_key": None, "failure_code": code, "failure_message": message_for(code)},
    )
    db.session.commit()
