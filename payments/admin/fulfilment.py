"""Operator delivery steps: 배송 준비 → 배송 중 (carrier and tracking number) → 배송 완료.

Only an order whose money is in (PAID, or PARTIALLY_REFUNDED: what was not refunded still
ships) moves. Each step is a conditional UPDATE from the step before it, so a double click or
two operators at once cannot repeat or skip one; every step writes an audit row.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping

from sqlalchemy import update

from ..core.clock import utcnow
from ..core.errors import ServiceError, invalid
from ..core.models import Order
from ..core.orders import find_order, record
from ..core.states import (
    FULFILMENT_LABELS_KO,
    FULFILMENT_NEXT,
    SHIPPABLE,
    FulfilmentStatus,
    Source,
)
from ..extensions import db
from ..mail import outbox

logger = logging.getLogger(__name__)

F = FulfilmentStatus
# Each step and the one it must come from.
PREVIOUS = {step: before for before, step in FULFILMENT_NEXT.items()}
# Korean carriers' tracking numbers are digits (10–14), some with letters or hyphens.
_TRACKING_RE = re.compile(r"^[A-Za-z0-9-]{6,40}$")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")


def parse_step_form(form: Mapping[str, str]) -> tuple[FulfilmentStatus, str | None, str | None]:
    """(step, carrier, tracking number) from the operator's form; INVALID_REQUEST naming the
    field. Carrier and tracking number are required for 배송 중 and ignored otherwise."""
    try:
        step = FulfilmentStatus((form.get("step") or "").strip())
    except ValueError:
        raise invalid("알 수 없는 배송 단계입니다. (unknown step)") from None
    if step not in PREVIOUS:
        raise invalid("알 수 없는 배송 단계입니다. (unknown step)")
    if step != F.SHIPPED:
        return step, None, None
    carrier = (form.get("carrier") or "").strip()
    if not carrier or len(carrier) > 40 or _CONTROL_RE.search(carrier):
        raise invalid("택배사를 40자 이내로 입력해주세요. (carrier: 1-40 characters)")
    tracking = (form.get("tracking_number") or "").strip().replace(" ", "")
    if not _TRACKING_RE.match(tracking):
        raise invalid(
            "운송장 번호는 영문·숫자·하이픈 6~40자로 입력해주세요. (tracking number: 6-40 chars)"
        )
    return step, carrier, tracking


def advance(
    order_id: str,
    step: FulfilmentStatus,
    operator: str,
    *,
    carrier: str | None = None,
    tracking_number: str | None = None,
) -> Order:
    """Move a paid order to `step` from the step before it, with an audit row; 409 when the
    order is not paid or no longer (or not yet) at that step."""
    order = find_order(order_id)
    if order is None:
        raise ServiceError("ORDER_NOT_FOUND", http_status=404)
    before = PREVIOUS[step]
    values: dict[str, object] = {"fulfilment": step, "updated_at": utcnow()}
    if step == F.SHIPPED:
        if not carrier or not tracking_number:
            raise invalid("택배사와 운송장 번호를 입력해주세요.")
        values.update(carrier=carrier, tracking_number=tracking_number)
    moved = db.session.execute(
        update(Order)
        .where(
            Order.id == order.id,
            Order.fulfilment == before,
            Order.status.in_(SHIPPABLE),
        )
        .values(values)
    )
    if moved.rowcount != 1:  # type: ignore[attr-defined]
        db.session.rollback()
        current = find_order(order_id)
        assert current is not None
        if current.status not in SHIPPABLE:
            raise ServiceError(
                "FULFILMENT_NOT_ALLOWED",
                "결제가 완료된 주문만 배송을 진행할 수 있습니다.",
                409,
            )
        raise ServiceError(
            "FULFILMENT_STEP_TAKEN",
            f"이미 {current.fulfilment_label} 단계입니다. 페이지를 새로고침해 확인해주세요.",
            409,
        )
    detail = f"{before.value} → {step.value} ({FULFILMENT_LABELS_KO[step]}) by {operator}"
    if step == F.SHIPPED:
        detail += f": {carrier} {tracking_number}"
    record(order, "fulfilment", Source.ADMIN, detail=detail)
    if step == F.SHIPPED:
        # The buyer's e-mail joins this step's transaction; the worker sends it.
        db.session.refresh(order)
        outbox.enqueue(order, "shipped", ref=tracking_number)
    db.session.commit()
    logger.info("fulfilment step", extra={"order_id": order.order_id, "step": step.value})
    return order
