"""Ids shaped like Toss's, and Toss's VAT arithmetic."""

from __future__ import annotations

import secrets
import string

_ALNUM = string.ascii_letters + string.digits
_LOWER_ALNUM = string.ascii_lowercase + string.digits


def _random(alphabet: str, n: int) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(n))


def new_payment_key() -> str:
    """Shaped like Toss's: a merchant prefix and random alphanumerics (≤ 200, [A-Za-z0-9_-])."""
    return "tviva" + _random(_ALNUM, 24)


def new_transaction_key() -> str:
    return "txrd_" + _random(_LOWER_ALNUM, 25)


def new_secret() -> str:
    return "ps_" + _random(_ALNUM, 27)


def new_transmission_id() -> str:
    return "whtrans_" + _random(_LOWER_ALNUM, 24)


def new_session_token() -> str:
    return secrets.token_urlsafe(24)


def digits(n: int) -> str:
    return _random(string.digits, n)


def vat_of(total: int, tax_free: int) -> int:
    """round((total − taxFree) / 11), half up, in integers (no float drift on large sums)."""
    taxable = total - tax_free
    return (2 * taxable + 11) // 22
