"""The keys the sandbox merchant accepts, as Toss checks them."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass

from .settings import SandboxSettings

_KEY_RE = re.compile(r"^(test|live)_(gck|gsk|ck|sk)_([A-Za-z0-9_]+)$")


@dataclass(frozen=True)
class MerchantKeys:
    """The sandbox merchant's two key pairs: widget (gck/gsk) and API (ck/sk).

    Both authenticate, as at Toss; the API pair exists so the classic mistake (confirming a
    widget payment with an API secret key) can be reproduced.
    """

    widget_client: str
    widget_secret: str
    api_client: str
    api_secret: str

    def secret_family(self, key: str) -> str | None:
        """ "gsk" or "sk" for this merchant's secret keys; None for anything else."""
        if secrets.compare_digest(key.encode(), self.widget_secret.encode()):
            return "gsk"
        if secrets.compare_digest(key.encode(), self.api_secret.encode()):
            return "sk"
        return None

    def client_family(self, key: str) -> str | None:
        """ "gck" or "ck" for this merchant's client keys; None for anything else."""
        if key == self.widget_client:
            return "gck"
        if key == self.api_client:
            return "ck"
        return None


def _sibling(key: str, family: str) -> str:
    m = _KEY_RE.match(key)
    if not m:
        return key
    return f"{m.group(1)}_{family}_{m.group(3)}"


def merchant_keys(settings: SandboxSettings) -> MerchantKeys:
    """The widget pair from the settings and its other-family twins (test_gck_X ↔ test_ck_X,
    test_gsk_X ↔ test_sk_X) unless the settings name the API pair."""
    return MerchantKeys(
        widget_client=_sibling(settings.client_key, "gck"),
        widget_secret=_sibling(settings.secret_key, "gsk"),
        api_client=settings.api_client_key or _sibling(settings.client_key, "ck"),
        api_secret=settings.api_secret_key or _sibling(settings.secret_key, "sk"),
    )
