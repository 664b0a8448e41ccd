"""Flask checkout paid through Toss Payments: the application factory."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Flask, current_app

from .config import SANDBOX_API_ORIGIN, ConfigError, load_config
from .extensions import csrf, db, migrate, ping_idle_connections
from .toss import TossClient

__all__ = ["ConfigError", "create_app", "toss_client"]


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
    from .logs import configure_logging

    configure_logging(app)

    from .security import init_security

    init_security(app)
    if app.config["TRUSTED_PROXY_COUNT"]:
        from werkzeug.middleware.proxy_fix import ProxyFix

        n = app.config["TRUSTED_PROXY_COUNT"]
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n, x_host=n)  # type: ignore[method-assign]
    db.init_app(app)
    with app.app_context():
        for engine in db.engines.values():
            ping_idle_connections(engine)
    migrate.init_app(app, db, directory=_migrations_dir())
    csrf.init_app(app)

    if app.config["TOSS_SANDBOX"]:
        from .sandbox import init_app as init_sandbox

        init_sandbox(app)
    app.extensions["toss"] = app.config.get("TOSS_CLIENT") or _build_toss_client(app)

    from .blueprints.admin import bp as admin_bp
    from .blueprints.api import bp as api_bp
    from .blueprints.checkout import bp as checkout_bp
    from .blueprints.hooks import bp as hooks_bp
    from .blueprints.shop import bp as shop_bp
    from .web import register_web

    app.register_blueprint(shop_bp)
    app.register_blueprint(checkout_bp)
    app.register_blueprint(api_bp)
    app.register_blueprint(hooks_bp)
    app.register_blueprint(admin_bp)
    from .blueprints.health import bp as health_bp
    from .metrics import bp as metrics_bp

    app.register_blueprint(metrics_bp)
    app.register_blueprint(health_bp)
    # Checked against the stored order and Toss (api) or re-checked with Toss (hooks) instead.
    csrf.exempt(api_bp)
    csrf.exempt(hooks_bp)
    if app.config["WEBHOOK_WORKER_EMBEDDED"]:
        from .webhooks import start_embedded_worker

        app.before_request(lambda: start_embedded_worker(app))
    register_web(app)

    from .ratelimit import init_rate_limits

    init_rate_limits(app)

    from .cli import register_cli

    register_cli(app)
    return app


def toss_client() -> TossClient:
    """The app's Toss client (real Toss, or the sandbox mounted in-process)."""
    client: TossClient = current_app.extensions["toss"]
    return client


def _build_toss_client(app: Flask) -> TossClient:
    cfg = app.config
    client = TossClient(
        cfg["TOSS_SECRET_KEY"],
        cfg["TOSS_API_BASE"],
        connect_timeout=cfg["TOSS_CONNECT_TIMEOUT"],
        read_timeout=cfg["TOSS_READ_TIMEOUT"],
        max_retries=cfg["TOSS_MAX_RETRIES"],
        backoff=cfg["TOSS_RETRY_BACKOFF"],
    )
    if cfg["TOSS_API_BASE"].startswith(SANDBOX_API_ORIGIN):
        from .sandbox.transport import WSGITransport

        client.session.mount(SANDBOX_API_ORIGIN, WSGITransport(app.wsgi_app))
        # No proxy, .netrc or CA bundle applies in-process; requests would still look them up
        # in the environment on every call (a tenth of a sandbox confirmation's CPU).
        client.session.trust_env = False
    return client


def _migrations_dir() -> str:
    import os

    return os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "migrations")
