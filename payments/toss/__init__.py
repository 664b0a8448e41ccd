"""Toss Payments API client: no Flask, no database."""

from .client import RefundAccount, TossClient
from .errors import RETRYABLE_CODES, TossError, TossNetworkError
from .types import Cancel, Card, CashReceipt, Payment, VirtualAccount

__all__ = [
    "RETRYABLE_CODES",
    "Cancel",
    "Card",
    "CashReceipt",
    "Payment",
    "RefundAccount",
    "TossClient",
    "TossError",
    "TossNetworkError",
    "VirtualAccount",
]
