"""POST /api/payment/webhook: store the raw event durably and answer 200 fast."""

from __future__ import annotations

from flask import Blueprint, jsonify, request
from werkzeug.wrappers import Response

from ..errors import invalid
from ..webhooks import accept_webhook

bp = Blueprint("hooks", __name__)


@bp.post("/api/payment/webhook")
def receive() -> Response:
    if not request.is_json:
        raise invalid("Content-Type은 application/json이어야 합니다. (JSON body required)")
    # Raw bytes: a signature covers them exactly; MAX_CONTENT_LENGTH turns >64 KiB into 413.
    accepted = accept_webhook(request.get_data(cache=False), request.headers)
    return jsonify(received=True, duplicate=accepted.duplicate)
