"""Toss's error answers: each code with the HTTP status Toss gives it and a Korean message."""

from __future__ import annotations

import re

CODE_RE = re.compile(r"^[A-Z0-9_]{1,64}$")

# Toss's codes with the status it answers them with and a Korean message in its style.
ERRORS: dict[str, tuple[int, str]] = {
    "INVALID_REQUEST": (400, "잘못된 요청입니다."),
    "ALREADY_PROCESSED_PAYMENT": (400, "이미 처리된 결제 입니다."),
    "PROVIDER_ERROR": (400, "일시적인 오류가 발생했습니다. 잠시 후 다시 시도해주세요."),
    "INVALID_CARD_NUMBER": (400, "카드번호를 다시 확인해주세요."),
    "INVALID_CARD_EXPIRATION": (400, "카드 정보를 다시 확인해주세요. (유효기간)"),
    "INVALID_STOPPED_CARD": (400, "정지된 카드 입니다."),
    "INVALID_CARD_LOST_OR_STOLEN": (400, "분실 혹은 도난 카드입니다."),
    "EXCEED_MAX_DAILY_PAYMENT_COUNT": (400, "하루 결제 가능 횟수를 초과했습니다."),
    "EXCEED_MAX_AMOUNT": (400, "거래금액 한도를 초과했습니다."),
    "EXCEED_MAX_PAYMENT_AMOUNT": (400, "하루 결제 가능 금액을 초과했습니다."),
    "CARD_PROCESSING_ERROR": (400, "카드사에서 오류가 발생했습니다."),
    "BELOW_MINIMUM_AMOUNT": (
        400,
        "신용카드는 결제금액이 100원 이상, 계좌는 200원 이상부터 결제가 가능합니다.",
    ),
    "DUPLICATED_ORDER_ID": (
        400,
        "이미 승인 및 취소가 진행된 중복된 주문번호 입니다. 다른 주문번호로 진행해주세요.",
    ),
    "INVALID_IDEMPOTENCY_KEY": (400, "멱등키(Idempotency-Key)는 300자 이하로 입력해주세요."),
    "ALREADY_CANCELED_PAYMENT": (400, "이미 취소된 결제 입니다."),
    "INVALID_REFUND_ACCOUNT_INFO": (400, "환불 계좌번호와 예금주명이 일치하지 않습니다."),
    "NOT_MATCHES_REFUNDABLE_AMOUNT": (400, "잔액 결과가 일치하지 않습니다."),
    "INVALID_CLIENT_KEY": (
        400,
        "결제위젯 연동 키의 클라이언트 키(test_gck_/live_gck_)로 연동해주세요. "
        "API 개별 연동 키는 결제위젯에서 사용할 수 없습니다.",
    ),
    "UNAUTHORIZED_KEY": (401, "인증되지 않은 시크릿 키 혹은 클라이언트 키 입니다."),
    "INCORRECT_BASIC_AUTH_FORMAT": (
        403,
        "잘못된 요청입니다. ':' 를 포함해 인코딩해주세요. (Basic base64(\"시크릿키:\"))",
    ),
    "FORBIDDEN_REQUEST": (403, "허용되지 않은 요청입니다."),
    "REJECT_CARD_PAYMENT": (403, "한도초과 혹은 잔액부족으로 결제에 실패했습니다."),
    "REJECT_CARD_COMPANY": (403, "결제 승인이 거절되었습니다."),
    "REJECT_ACCOUNT_PAYMENT": (403, "잔액부족으로 결제에 실패했습니다."),
    "FDS_ERROR": (403, "[토스페이먼츠] 위험거래가 감지되어 결제가 제한됩니다."),
    "INVALID_PASSWORD": (403, "결제 비밀번호가 일치하지 않습니다."),
    "NOT_CANCELABLE_AMOUNT": (403, "취소 할 수 없는 금액 입니다."),
    "NOT_CANCELABLE_PAYMENT": (403, "취소 할 수 없는 결제 입니다."),
    "FORBIDDEN_CONSECUTIVE_REQUEST": (
        403,
        "반복적인 요청은 허용되지 않습니다. 잠시 후 다시 시도해주세요.",
    ),
    "NOT_FOUND_PAYMENT": (404, "존재하지 않는 결제 정보 입니다."),
    "NOT_FOUND_PAYMENT_SESSION": (
        404,
        "결제 시간이 만료되어 결제 진행 데이터가 존재하지 않습니다.",
    ),
    "NOT_FOUND": (404, "존재하지 않는 정보 입니다."),
    "IDEMPOTENT_REQUEST_PROCESSING": (
        409,
        "이전 멱등 요청이 처리중 입니다. 잠시 후 다시 시도해주세요.",
    ),
    "TOO_MANY_REQUESTS": (429, "요청이 너무 많습니다. 잠시 후 다시 시도해주세요."),
    "FAILED_PAYMENT_INTERNAL_SYSTEM_PROCESSING": (
        500,
        "결제가 완료되지 않았어요. 다시 시도해주세요.",
    ),
    "FAILED_INTERNAL_SYSTEM_PROCESSING": (
        500,
        "내부 시스템 처리 작업이 실패했습니다. 잠시 후 다시 시도해주세요.",
    ),
    "UNKNOWN_PAYMENT_ERROR": (
        500,
        "결제에 실패했어요. 같은 문제가 반복된다면 은행이나 카드사로 문의해주세요.",
    ),
    "FAILED_REFUND_PROCESS": (
        500,
        "은행 응답시간 지연이나 일시적인 오류로 환불요청에 실패했습니다.",
    ),
    # Window (redirect) codes: only ever in a failUrl.
    "PAY_PROCESS_CANCELED": (400, "사용자에 의해 결제가 취소되었습니다."),
    "PAY_PROCESS_ABORTED": (400, "결제 진행 중 승인에 실패하여 결제가 중단되었습니다."),
    "EXPIRED_PAYMENT": (400, "결제가 만료되었습니다. 다시 시도해주세요."),
}


def status_for_code(code: str) -> int:
    """A plausible HTTP status for a Toss error code (TossPayments-Test-Code may name any)."""
    if code in ERRORS:
        return ERRORS[code][0]
    if code.startswith(("FAILED_", "UNKNOWN_")) or code.endswith("_ERROR_500"):
        return 500
    if code.startswith("NOT_FOUND"):
        return 404
    if code.startswith("UNAUTHORIZED"):
        return 401
    if code.startswith(("REJECT_", "FORBIDDEN_", "NOT_CANCELABLE")):
        return 403
    return 400


class SandboxError(Exception):
    """A Toss error answer: `{"code", "message"}` with its HTTP status."""

    def __init__(self, code: str, message: str | None = None, status: int | None = None) -> None:
        known = ERRORS.get(code)
        self.code = code
        self.message = message or (known[1] if known else f"{code} 오류가 발생했습니다.")
        self.status = status or status_for_code(code)
        super().__init__(f"{self.status} {code}: {self.message}")

    def body(self) -> dict[str, str]:
        """The JSON body Toss sends with this error."""
        return {"code": self.code, "message": self.message}
