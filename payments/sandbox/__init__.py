"""The offline Toss sandbox (being built)."""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    """Register the sandbox on `app` (never in production)."""
