"""The sandbox as a Flask app of its own: its settings, database, routes, clock and sender."""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from typing import Any

import requests
from flask import Flask
from flask.json.provider import DefaultJSONProvider
from sqlalchemy import inspect
from sqlalchemy.exc import SQLAlchemyError

from . import api, dashboard, views
from .db import configure_engine, db
from .keys import merchant_keys
from .models import SCHEMA_VERSION, SandboxSchema
from .payments import sweep
from .sender import Sender
from .settings import SandboxSettings, SettingsError
from .state import SandboxState

logger = logging.getLogger(__name__)

# The sandbox's routes all live under this prefix, as its Toss API base and widget script do.
PREFIX = "/sandbox"
API_BASE_PATH = PREFIX
WIDGET_SCRIPT_PATH = PREFIX + "/widget/v2/standard"


class _JSONProvider(DefaultJSONProvider):
    """JSON nested too deeply to parse is malformed JSON (a ValueError, so `get_json` answers
    400 or None) rather than a RecursionError and a 500."""

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        try:
            return super().loads(s, **kwargs)
        except RecursionError:
            raise json.JSONDecodeError("JSON nested too deeply", "", 0) from None


def create_app(
    settings: SandboxSettings | None = None,
    *,
    instance_path: str | None = None,
    webhook_session: Callable[[], requests.Session] = requests.Session,
) -> Flask:
    """The offline Toss as a WSGI app, on its own database (created here if new).

    `webhook_session` makes the HTTP sessions webhooks are delivered with (a shop running the
    sandbox in its own process passes one that reaches it without a socket).
    """
    settings = settings or SandboxSettings.load()
    if os.environ.get("APP_ENV") == "production":
        raise SettingsError("the Toss sandbox does not run when APP_ENV=production")
    app = Flask(__name__, static_folder=None, instance_path=instance_path)
    app.json = _JSONProvider(app)
    database_url = settings.database_url or _default_database(app.instance_path)
    app.config.update(
        SQLALCHEMY_DATABASE_URI=database_url,
        MAX_CONTENT_LENGTH=64 * 1024,
        JSON_SORT_KEYS=False,
    )
    db.init_app(app)
    app.register_blueprint(api.bp)
    app.register_blueprint(views.bp)
    app.register_blueprint(dashboard.bp)
    app.extensions["toss_sandbox"] = SandboxState(
        settings=settings,
        keys=merchant_keys(settings),
        sender=Sender(app, settings, http=webhook_session, jobs=[sweep]),
    )
    with app.app_context():
        configure_engine(db.engine)
        _create_tables()
    return app


def _create_tables(attempts: int = 5) -> None:
    """Create the sandbox's tables unless they exist, starting afresh on a database an older
    sandbox made (its state is test data, and the sandbox keeps no migrations). Several server
    processes starting at once race to create them; the loser's CREATE fails, and its next look
    finds them there."""
    for attempt in range(attempts):
        try:
            if _made_by_another_version():
                logger.warning("sandbox database made by another version: starting it afresh")
                db.drop_all()
            db.create_all()
            if db.session.get(SandboxSchema, 1) is None:
                db.session.add(SandboxSchema(id=1, version=SCHEMA_VERSION))
            db.session.commit()
            return
        except SQLAlchemyError:
            db.session.rollback()
            if attempt == attempts - 1:
                raise
            time.sleep(0.1 * (attempt + 1))


def _made_by_another_version() -> bool:
    tables = set(inspect(db.engine).get_table_names())
    if SandboxSchema.__tablename__ in tables:
        row = db.session.get(SandboxSchema, 1)
        db.session.commit()
        return row is not None and row.version != SCHEMA_VERSION
    return bool(tables & set(db.metadata.tables))  # tables from before versions were kept


def _default_database(instance_path: str) -> str:
    os.makedirs(instance_path, exist_ok=True)
    return "sqlite:///" + os.path.join(os.path.abspath(instance_path), "toss-sandbox.sqlite3")
