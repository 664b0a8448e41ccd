"""POST /api/payment/webhook: store the raw event durably and answer 200 fast."""

from __future__ import annotations

from flask import Blueprint, jsonify, request
from werkzeug.wrappers import Response

from ..core.errors import ServiceError, invalid
from .inbox import MAX_BODY, accept_webhook

bp = Blueprint("hooks", __name__)


@bp.post("/api/payment/webhook")
def receive() -> Response:
    if not request.is_json:
        raise invalid("Content-Type은 application/json이어야 합니다. (JSON body required)")
    # Raw bytes: a signature covers them exactly. A chunked body (no Content-Length) is cut
    # silently at the request's limit, so allow one byte more and judge the size here.
    request.max_content_length = MAX_BODY + 1
    raw = request.stream.read(MAX_BODY + 1)
    if len(raw) > MAX_BODY:
        raise ServiceError("PAYLOAD_TOO_LARGE", "요청이 너무 큽니다. (Payload too large)", 413)
    accepted = accept_webhook(raw, {k.lower(): v for k, v in request.headers.items()})
    return jsonify(received=True, duplicate=accepted.duplicate)
