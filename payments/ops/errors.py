"""One set of error pages: JSON `{"code", "message"}` under /api/, the Korean error page elsewhere.

Every refusal a service raises (`ServiceError`) and every HTTP error ends here, so no request
shows a traceback and each answer carries a stable code.

Two kinds of bad input are refused here for every route at once, before any view runs:
- text no database column can hold: a NUL (PostgreSQL refuses it in text) or a lone surrogate
  (not encodable as UTF-8) anywhere in the path, the query string or a form field is
  `400 INVALID_REQUEST`;
- JSON nested deeper than Python's parser can follow (a `RecursionError`, which werkzeug's
  `get_json(silent=True)` does not catch) is malformed JSON like any other: 400, or None when
  silent.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

from flask import Flask, jsonify, render_template, request
from flask.json.provider import DefaultJSONProvider
from flask_wtf.csrf import CSRFError
from werkzeug.datastructures import MultiDict
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response

from ..core.errors import ServiceError, invalid

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


UNUSABLE_TEXT = re.compile("[\x00\ud800-\udfff]")
UNUSABLE_MESSAGE = (
    "요청에 사용할 수 없는 문자(NUL 등)가 있습니다. "
    "(the request contains characters that cannot be used, such as NUL)"
)
FORM_TYPES = frozenset({"application/x-www-form-urlencoded", "multipart/form-data"})


class NestingSafeJSONProvider(DefaultJSONProvider):
    """Flask's JSON, with JSON too deeply nested to parse reported as malformed (ValueError):
    werkzeug's `get_json` then answers 400, or None when silent."""

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        try:
            return super().loads(s, **kwargs)
        except RecursionError:
            raise json.JSONDecodeError("JSON nested too deeply", "", 0) from None


def refuse_unusable_text() -> None:
    """400 INVALID_REQUEST when the path, the query or a form field holds a NUL or a lone
    surrogate (a route that matched nothing stays 404)."""
    if request.routing_exception is not None:
        return
    texts = [request.path, *_pairs(request.args)]
    if request.mimetype in FORM_TYPES:
        # Read the body through the cache first, so a view that wants the raw bytes
        # (get_data) still gets them after the form was parsed here.
        request.get_data(cache=True)
        texts += _pairs(request.form)
    if any(UNUSABLE_TEXT.search(text) for text in texts):
        raise invalid(UNUSABLE_MESSAGE)


def _pairs(values: MultiDict[str, str]) -> list[str]:
    return [text for pair in values.items(multi=True) for text in pair]


def error_response(code: str, message: str, status: int) -> tuple[Response | str, int]:
    if request.path.startswith("/api/"):
        return jsonify(code=code, message=message), status
    return render_template("error.html", code=code, message=message, status=status), status


def register_error_handlers(app: Flask) -> None:
    provider = NestingSafeJSONProvider(app)
    provider.__dict__.update(vars(app.json))  # keep the settings made so far (ensure_ascii)
    app.json = provider
    app.before_request(refuse_unusable_text)

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
