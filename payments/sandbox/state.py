"""What a running sandbox holds besides its database: settings, keys, clock and webhook sender."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from flask import Flask, current_app

from .keys import MerchantKeys
from .sender import Sender
from .settings import SandboxSettings


@dataclass
class SandboxState:
    settings: SandboxSettings
    keys: MerchantKeys
    sender: Sender

    def now(self) -> datetime:
        """Sandbox time (its clock may have been moved)."""
        return self.settings.clock.now()

    def advance(self, seconds: float) -> None:
        """Move sandbox time forward (or back)."""
        self.settings.clock.advance(seconds)


def state(app: Flask | None = None) -> SandboxState:
    """The sandbox running as `app` (default: the current app)."""
    found: SandboxState = (app or current_app).extensions["toss_sandbox"]
    return found
