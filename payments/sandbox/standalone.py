"""The sandbox alone, as a fake Toss on its own port for another app or test suite."""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from typing import Any

from flask import Flask

from ..config import SANDBOX_CLIENT_KEY, SANDBOX_SECRET_KEY
from ..extensions import db
from . import init_app
from .models import SANDBOX_TABLES
from .views import TEMPLATE_DIR


def create_sandbox_app(config: Mapping[str, Any] | None = None) -> Flask:
    """A Flask app serving only the sandbox, on its own database (SQLite file by default)."""
    app = Flask("payments.sandbox", template_folder=TEMPLATE_DIR, static_folder=None)
    app.config.update(
        # Never in production: init_app refuses when APP_ENV says so.
        APP_ENV=os.environ.get("APP_ENV", "development"),
        SECRET_KEY=secrets.token_urlsafe(32),
        SQLALCHEMY_DATABASE_URI="sqlite:///"
        + os.path.abspath(os.path.join("instance", "toss-sandbox.sqlite3")),
        SQLALCHEMY_ENGINE_OPTIONS={"pool_pre_ping": True},
        TOSS_CLIENT_KEY=SANDBOX_CLIENT_KEY,
        TOSS_SECRET_KEY=SANDBOX_SECRET_KEY,
        TOSS_SANDBOX=True,
        SANDBOX_STANDALONE=True,
        MAX_CONTENT_LENGTH=64 * 1024,
    )
    app.config.update(config or {})
    uri = app.config["SQLALCHEMY_DATABASE_URI"]
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:///:memory:"):
        os.makedirs(os.path.dirname(uri[len("sqlite:///") :]) or ".", exist_ok=True)
    db.init_app(app)
    init_app(app)
    with app.app_context():
        db.metadata.create_all(db.engine, tables=list(SANDBOX_TABLES))
    return app
