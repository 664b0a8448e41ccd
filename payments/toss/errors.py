"""One exception family for everything that can go wrong talking to Toss."""

from __future__ import annotations

# Codes worth retrying with the same Idempotency-Key (docs/toss.md, "Errors").
RETRYABLE_CODES = frozenset(
    {
        "PROVIDER_ERROR",
        "CARD_PROCESSING_ERROR",
        "FAILED_INTERNAL_SYSTEM_PROCESSING",
        "FAILED_PAYMENT_INTERNAL_SYSTEM_PROCESSING",
        "IDEMPOTENT_REQUEST_PROCESSING",
        "FORBIDDEN_CONSECUTIVE_REQUEST",
        "TOO_MANY_REQUESTS",
    }
)


class TossError(Exception):
    """An answer from Toss that is not a success, or no usable answer at all.

    `retryable`: asking again with the same Idempotency-Key may succeed.
    `outcome_unknown`: Toss may have done the work (timeout, reset, 5xx, unreadable answer), so
    the caller must look the payment up before deciding anything.
    """

    def __init__(
        self,
        code: str,
        message: str,
        http_status: int | None = None,
        *,
        retryable: bool = False,
        outcome_unknown: bool = False,
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.http_status = http_status
        self.retryable = retryable
        self.outcome_unknown = outcome_unknown

    def __repr__(self) -> str:
        return (
            f"TossError(code={self.code!r}, http_status={self.http_status!r}, "
            f"retryable={self.retryable}, outcome_unknown={self.outcome_unknown})"
        )


class TossNetworkError(TossError):
    """No answer from Toss: connect failure, reset or timeout."""


def error_from_response(status: int, body: object) -> TossError:
    """Turn a non-2xx Toss answer into a TossError; unreadable bodies leave the outcome unknown."""
    code = message = None
    if isinstance(body, dict):
        code = body.get("code") if isinstance(body.get("code"), str) else None
        message = body.get("message") if isinstance(body.get("message"), str) else None
    server_side = status >= 500
    if code is None:
        # An HTML error page or truncated JSON: we cannot tell what happened.
        return TossError(
            "INVALID_RESPONSE" if not server_side else "PROVIDER_UNAVAILABLE",
            f"Toss answered HTTP {status} without a readable error body",
            status,
            retryable=server_side or status == 429,
            outcome_unknown=server_side,
        )
    retryable = server_side or status == 429 or code in RETRYABLE_CODES
    return TossError(
        code,
        message or code,
        status,
        retryable=retryable,
        outcome_unknown=server_side or code == "IDEMPOTENT_REQUEST_PROCESSING",
    )
