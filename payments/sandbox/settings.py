"""The sandbox's settings, read in one place: defaults, then `SANDBOX_*` environment variables,
then explicit overrides (the command line, the shop that mounts it, a test)."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

from .clock import Clock

DEFAULT_CLIENT_KEY = "test_gck_sandbox"
DEFAULT_SECRET_KEY = "test_gsk_sandbox"


class SettingsError(ValueError):
    """A setting the sandbox cannot run with; the message names it."""


@dataclass(frozen=True)
class SandboxSettings:
    # Its own database: never the shop's. None → a SQLite file in the instance folder.
    database_url: str | None = None
    # Widget keys (gck/gsk); the API-family twins (ck/sk) are derived unless given.
    client_key: str = DEFAULT_CLIENT_KEY
    secret_key: str = DEFAULT_SECRET_KEY
    api_client_key: str | None = None
    api_secret_key: str | None = None
    # Where webhooks go; None sends none (they are still recorded for the dashboard).
    webhook_url: str | None = None
    # Run the background sender thread; off, `sender.deliver_due` sends on demand (tests).
    webhooks_enabled: bool = True
    # Factor on Toss's retry schedule (1, 4, 16, … minutes), e.g. 0.001 in tests.
    webhook_scale: float = 1.0
    # Extra copies of every delivery (same transmission id, as a re-send).
    webhook_duplicates: int = 0
    # Seconds before a delivery's first attempt.
    webhook_delay: float = 0.0
    # Send each batch of due deliveries newest first (with a delay, several are due together).
    webhook_reorder: bool = False
    # How long every API answer is held, as a remote Toss's latency would.
    latency_ms: int = 0
    # How long the slow_confirm scenario holds its (already committed) answer.
    slow_confirm_seconds: float = 35.0
    # A PROCESSING Idempotency-Key whose request died is free again after this.
    idempotency_processing_timeout: float = 120.0
    # Days until a virtual account's due date (Toss's default: 7 days).
    virtual_account_days: int = 7
    # Hours after its cancel until a refund to a deposited virtual account completes
    # (refundStatus PENDING → COMPLETED); Toss refunds 2 days after the cancel request.
    virtual_account_refund_hours: float = 48.0
    clock: Clock = field(default_factory=Clock, compare=False)

    @classmethod
    def load(
        cls, overrides: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None
    ) -> SandboxSettings:
        """Defaults ← `SANDBOX_<NAME>` environment variables ← `overrides` (by field name)."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            if f.name == "clock":
                continue
            raw = env.get("SANDBOX_" + f.name.upper(), "").strip()
            if raw:
                values[f.name] = _parse(f.name, raw, f.type)
        for name, value in (overrides or {}).items():
            if name not in {f.name for f in fields(cls)}:
                raise SettingsError(f"unknown sandbox setting {name!r}")
            values[name] = value
        settings = cls(**values)
        settings.check()
        return settings

    def check(self) -> None:
        for name in (
            "webhook_scale",
            "webhook_delay",
            "slow_confirm_seconds",
            "virtual_account_refund_hours",
        ):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise SettingsError(f"SANDBOX_{name.upper()} must be a number ≥ 0, got {value}")
        for name in ("webhook_duplicates", "latency_ms"):
            if getattr(self, name) < 0:
                raise SettingsError(f"SANDBOX_{name.upper()} must be ≥ 0")
        if not 1 <= self.virtual_account_days <= 30:
            # Toss's guide allows a due date at most 30 days out.
            raise SettingsError("SANDBOX_VIRTUAL_ACCOUNT_DAYS must be between 1 and 30")
        if self.webhook_url and not self.webhook_url.startswith(("http://", "https://")):
            raise SettingsError(f"SANDBOX_WEBHOOK_URL must be an http(s) URL: {self.webhook_url}")

    def but(self, **changes: Any) -> SandboxSettings:
        """A copy with `changes` (checked)."""
        settings = replace(self, **changes)
        settings.check()
        return settings


def _parse(name: str, raw: str, kind: object) -> Any:
    kind = str(kind)
    env_name = "SANDBOX_" + name.upper()
    if kind.startswith("bool"):
        if raw.lower() in ("1", "true", "yes", "on"):
            return True
        if raw.lower() in ("0", "false", "no", "off"):
            return False
        raise SettingsError(f"{env_name} must be 1 or 0, got {raw!r}")
    if kind.startswith("int"):
        try:
            return int(raw)
        except ValueError:
            raise SettingsError(f"{env_name} must be an integer, got {raw!r}") from None
    if kind.startswith("float"):
        try:
            return float(raw)
        except ValueError:
            raise SettingsError(f"{env_name} must be a number, got {raw!r}") from None
    return raw
