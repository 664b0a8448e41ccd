"""JSON API for script clients; errors are {"code", "message"} (payments.ops.errors)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, jsonify, request
from werkzeug.wrappers import Response

from ..access import can_view
from ..core.errors import invalid
from ..core.models import Order
from ..core.orders import find_order_by_payment_key
from ..core.states import Source
from .confirm import confirm_payment, parse_confirm_request

bp = Blueprint("api", __name__, url_prefix="/api/payment")


@bp.after_request
def _no_store(response: Response) -> Response:
    # Payment details (a virtual account's number, the customer's name) are never cached.
    response.headers["Cache-Control"] = "no-store"
    return response


def _json_body() -> dict[str, Any]:
    if not request.is_json:
        raise invalid("Content-Type은 application/json이어야 합니다. (JSON body required)")
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        raise invalid("JSON 객체 본문이 필요합니다. (a JSON object body is required)")
    return data


@bp.post("/verify")
@bp.post("/confirm")
def verify() -> Response:
    """The full confirmation; idempotent (a repeat returns the stored result)."""
    order = confirm_payment(parse_confirm_request(_json_body()), Source.API)
    return jsonify(order_json(order))


@bp.get("/<payment_key>")
def show(payment_key: str) -> Response:
    order = find_order_by_payment_key(payment_key)
    # Others get the same 404 as an unknown key: existence is not disclosed.
    if order is None or not can_view(order):
        abort(404)
    return jsonify(order_json(order))


def order_json(order: Order) -> dict[str, Any]:
    p = order.payment
    return {
        "orderId": order.order_id,
        "orderName": order.order_name,
        "status": order.status,
        "amount": order.amount,
        "failure": (
            {"code": order.failure_code, "message": order.failure_message}
            if order.failure_code
            else None
        ),
        "payment": None
        if p is None
        else {
            "paymentKey": p.payment_key,
            "status": p.status,
            "method": p.method,
            "totalAmount": p.total_amount,
            "balanceAmount": p.balance_amount,
            "approvedAt": p.approved_at,
            "receiptUrl": p.receipt_url,
            "card": {"number": p.card_number} if p.card_number else None,
            "virtualAccount": {
                "bankCode": p.va_bank_code,
                "accountNumber": p.va_account_number,
                "customerName": p.va_customer_name,
                "dueDate": p.va_due_date,
            }
            if p.va_account_number
            else None,
        },
        "lines": [
            {
                "name": line.product_name,
                "unitPrice": line.unit_price,
                "quantity": line.quantity,
                "total": line.line_total,
            }
            for line in order.lines
        ],
    }
