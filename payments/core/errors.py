"""Errors the services raise and the one table of shopper-facing Korean messages."""

from __future__ import annotations

# Toss codes (and our own) → what a shopper reads. Anything else gets DEFAULT_MESSAGE.
TOSS_MESSAGES_KO: dict[str, str] = {
    "INVALID_REQUEST": "잘못된 요청입니다. 다시 시도해주세요.",
    "INVALID_CARD_NUMBER": "유효하지 않은 카드번호입니다.",
    "NOT_ENOUGH_BALANCE": "잔액이 부족합니다.",
    "REJECT_CARD_PAYMENT": "잔액이 부족합니다.",
    "EXCEED_MAX_AMOUNT": "결제 가능 금액을 초과했습니다.",
    "UNAUTHORIZED_KEY": "인증에 실패했습니다.",
    "NOT_FOUND_PAYMENT": "존재하지 않는 결제입니다.",
    "REJECT_CARD_COMPANY": "카드사에서 결제를 거절했습니다. 다른 카드로 시도해주세요.",
    "INVALID_CARD_EXPIRATION": "카드 유효기간이 올바르지 않습니다.",
    "INVALID_STOPPED_CARD": "정지된 카드입니다. 다른 카드로 시도해주세요.",
    "EXCEED_MAX_DAILY_PAYMENT_COUNT": "하루 결제 가능 횟수를 초과했습니다.",
    "BELOW_MINIMUM_AMOUNT": "최소 결제 금액보다 적습니다.",
    "FDS_ERROR": "위험 거래로 감지되어 결제가 제한되었습니다. 고객센터로 문의해주세요.",
    "NOT_FOUND_PAYMENT_SESSION": "결제 시간이 만료되었습니다. 다시 결제해주세요.",
    "PAY_PROCESS_CANCELED": "결제를 취소하셨습니다. 언제든 다시 결제할 수 있습니다.",
    "PAY_PROCESS_ABORTED": "결제가 중단되었습니다. 다시 시도해주세요.",
    "ALREADY_PROCESSED_PAYMENT": "이미 처리된 결제입니다.",
    # A payment window left unfinished expires (Toss: "결제가 만료되었습니다. 다시 시도해주세요.").
    "EXPIRED_PAYMENT": "결제 시간이 만료되었습니다. 다시 결제해주세요.",
    # Toss's failure for a temporary error on its side (an ABORTED payment's `failure`).
    "COMMON_ERROR": "일시적인 오류가 발생했습니다. 잠시 후 다시 결제해주세요.",
    # Toss cancel (refund) errors.
    "ALREADY_CANCELED_PAYMENT": "이미 취소된 결제입니다.",
    "INVALID_REFUND_ACCOUNT_INFO": "환불 계좌 정보가 올바르지 않습니다. 은행·계좌번호·예금주를 확인해주세요.",
    "NOT_MATCHES_REFUNDABLE_AMOUNT": "환불 가능 금액이 그사이 바뀌었습니다. 새로고침한 뒤 다시 시도해주세요.",
    "NOT_CANCELABLE_AMOUNT": "환불 가능 금액을 초과했습니다.",
    "NOT_CANCELABLE_PAYMENT": "취소할 수 없는 결제입니다.",
    "FORBIDDEN_CONSECUTIVE_REQUEST": "요청이 너무 잦습니다. 잠시 후 다시 시도해주세요.",
    "FAILED_REFUND_PROCESS": "환불 처리 중 은행 응답에 문제가 있었습니다. 잠시 후 다시 시도해주세요.",
    # Our own codes.
    "REFUND_NOT_ALLOWED": "결제 완료(또는 부분 환불)된 주문만 환불할 수 있습니다.",
    "REFUND_EXCEEDS_BALANCE": "환불 가능 금액을 초과했습니다.",
    "REFUND_ACCOUNT_REQUIRED": "가상계좌 결제는 환불 받을 계좌(은행·계좌번호·예금주)가 필요합니다.",
    "REFUND_IN_PROGRESS": "이 주문의 다른 환불이 처리 중입니다. 잠시 후 다시 시도해주세요.",
    "REFUND_PENDING": "환불 요청을 보냈고 결과를 확인하고 있습니다. 잠시 후 주문을 다시 확인해주세요.",
    "REFUND_NOT_APPLIED": "환불이 반영되지 않았습니다. 고객센터로 문의해주세요.",
    "ORDER_NOT_FOUND": "주문을 찾을 수 없습니다.",
    "AMOUNT_MISMATCH": "결제 금액이 주문 금액과 일치하지 않습니다.",
    "ORDER_NOT_PAYABLE": "결제할 수 없는 주문입니다. 이미 결제되었거나 취소·만료된 주문입니다.",
    "PAYMENT_PENDING": "결제를 확인하고 있습니다. 잠시 후 다시 확인해주세요.",
    "PROVIDER_UNAVAILABLE": "결제사와 통신이 원활하지 않습니다. 잠시 후 다시 시도해주세요.",
    "PAYMENT_MISMATCH": "결제 정보가 주문과 달라 결제를 취소했습니다. 고객센터로 문의해주세요.",
    # A payment that ended without a failure code from Toss.
    "PAYMENT_EXPIRED": "결제 시간이 만료되었습니다. 다시 결제해주세요.",
    "PAYMENT_ABORTED": "결제가 완료되지 않았습니다. 다시 결제해주세요.",
}
DEFAULT_MESSAGE = "결제 처리 중 오류가 발생했습니다. 고객센터로 문의해주세요."


def message_for(code: str | None) -> str:
    return TOSS_MESSAGES_KO.get(code or "", DEFAULT_MESSAGE)


class ServiceError(Exception):
    """A refusal a caller can show: stable `code`, Korean `message`, fitting HTTP status."""

    def __init__(self, code: str, message: str | None = None, http_status: int = 400) -> None:
        self.code = code
        self.message = message or message_for(code)
        self.http_status = http_status
        super().__init__(f"{code}: {self.message}")


def invalid(message: str) -> ServiceError:
    return ServiceError("INVALID_REQUEST", message, 400)
