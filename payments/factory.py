"""The application factory.

`create_app` only wires things together: configuration, extensions, the Toss client, the
blueprints of each feature, error pages, logging, security headers, rate limits and commands.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from .admin.routes import bp as admin_bp
from .checkout.api import bp as api_bp
from .checkout.routes import bp as checkout_bp
from .config import load_config
from .core.formats import FILTERS
from .extensions import csrf, db, migrate, toss
from .mail.views import bp as mail_dev_bp
from .ops.cli import register_cli
from .ops.database import ping_idle_connections
from .ops.errors import register_error_handlers
from .ops.logs import configure_logging
from .ops.ratelimit import init_rate_limits
from .ops.routes import bp as ops_bp
from .ops.security import init_security
from .shop.routes import bp as shop_bp
from .toss import TossClient
from .webhooks.routes import bp as hooks_bp
from .webhooks.worker import start_embedded_worker

MIGRATIONS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "migrations")


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build the app: defaults → environment (and `.env`) → `config` overrides."""
    app = Flask(
        __name__,
        template_folder="../templates",
        static_folder="../static",
        instance_relative_config=True,
    )
    app.config.update(load_config(config, instance_path=app.instance_path))
    # JSON answers carry Korean messages as UTF-8, not \u escapes.
    app.json.ensure_ascii = False  # type: ignore[attr-defined]
    configure_logging(app)
    init_security(app)
    if app.config["TRUSTED_PROXY_COUNT"]:
        n = app.config["TRUSTED_PROXY_COUNT"]
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n, x_host=n)  # type: ignore[method-assign]

    db.init_app(app)
    with app.app_context():
        ping_idle_connections(db.engine)
    migrate.init_app(app, db, directory=MIGRATIONS)
    csrf.init_app(app)
    sandbox = None
    if app.config["TOSS_SANDBOX"]:
        # Imported here: a deployment with Toss keys never loads the sandbox.
        from .ops.sandbox import mount_sandbox

        sandbox = mount_sandbox(app)
    toss.init_app(app, app.config.get("TOSS_CLIENT") or _toss_client(app, sandbox))

    for bp in (shop_bp, checkout_bp, api_bp, hooks_bp, admin_bp, ops_bp, mail_dev_bp):
        app.register_blueprint(bp)
    # Checked against the stored order and Toss (api) or re-checked with Toss (hooks) instead.
    csrf.exempt(api_bp)
    csrf.exempt(hooks_bp)
    for name, template_filter in FILTERS.items():
        app.add_template_filter(template_filter, name)
    register_error_handlers(app)
    if app.config["WEBHOOK_WORKER_EMBEDDED"]:
        app.before_request(lambda: start_embedded_worker(app))
    init_rate_limits(app)
    register_cli(app)
    return app


def _toss_client(app: Flask, sandbox: Flask | None) -> TossClient:
    cfg = app.config
    client = TossClient(
        cfg["TOSS_SECRET_KEY"],
        cfg["TOSS_API_BASE"],
        connect_timeout=cfg["TOSS_CONNECT_TIMEOUT"],
        read_timeout=cfg["TOSS_READ_TIMEOUT"],
        max_retries=cfg["TOSS_MAX_RETRIES"],
        backoff=cfg["TOSS_RETRY_BACKOFF"],
    )
    if sandbox is not None:
        from .ops.sandbox import INPROCESS_TOSS, inprocess_session

        if cfg["TOSS_API_BASE"].startswith(INPROCESS_TOSS):
            client.session = inprocess_session(INPROCESS_TOSS, sandbox)
    return client
