"""One set of error pages: JSON `{"code", "message"}` under /api/, the Korean error page elsewhere.

Every refusal a service raises (`ServiceError`) and every HTTP error ends here, so no request
shows a traceback and each answer carries a stable code.
"""

from __future__ import annotations

import logging

from flask import Flask, jsonify, render_template, request
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response

from ..core.errors import ServiceError

logger = logging.getLogger(__name__)

HTTP_MESSAGES = {
    400: ("INVALID_REQUEST", "잘못된 요청입니다. (Bad request)"),
    403: ("FORBIDDEN", "접근 권한이 없습니다. (Forbidden)"),
    404: ("NOT_FOUND", "페이지를 찾을 수 없습니다. (Not found)"),
    405: ("METHOD_NOT_ALLOWED", "허용되지 않는 요청 방식입니다. (Method not allowed)"),
    413: ("PAYLOAD_TOO_LARGE", "요청이 너무 큽니다. (Payload too large)"),
    415: ("INVALID_REQUEST", "지원하지 않는 형식입니다. (Unsupported media type)"),
    429: (
        "TOO_MANY_REQUESTS",
        "요청이 너무 많습니다. 잠시 후 다시 시도해주세요. (Too many requests)",
    ),
    500: (
        "INTERNAL_ERROR",
        "일시적인 오류가 발생했습니다. 잠시 후 다시 시도해주세요. (Internal error)",
    ),
}
CSRF_MESSAGE = (
    "보안 토큰이 만료되었거나 올바르지 않습니다. 페이지를 새로고침한 뒤 다시 시도해주세요."
)


def error_response(code: str, message: str, status: int) -> tuple[Response | str, int]:
    if request.path.startswith("/api/"):
        return jsonify(code=code, message=message), status
    return render_template("error.html", code=code, message=message, status=status), status


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(ServiceError)
    def _service_error(exc: ServiceError) -> tuple[Response | str, int]:
        return error_response(exc.code, exc.message, exc.http_status)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> tuple[Response | str, int] | HTTPException:
        status = exc.code or 500
        if status < 400:
            return exc
        if isinstance(exc, CSRFError):
            return error_response("CSRF_FAILED", CSRF_MESSAGE, 400)
        code, message = HTTP_MESSAGES.get(status, (exc.name.upper().replace(" ", "_"), exc.name))
        return error_response(code, message, status)

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> tuple[Response | str, int]:
        logger.exception("unhandled error", extra={"path": request.path})
        code, message = HTTP_MESSAGES[500]
        return error_response(code, message, 500)
