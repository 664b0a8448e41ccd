"""`toss-sandbox`: run the offline Toss on its own, for this shop or any other app or test suite."""

from __future__ import annotations

import logging
import os

import click
from werkzeug.serving import run_simple

from .app import API_BASE_PATH, WIDGET_SCRIPT_PATH, create_app
from .settings import SandboxSettings, SettingsError


@click.group(help="The offline Toss Payments sandbox.")
def main() -> None:
    pass


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", default=8787, show_default=True, type=click.IntRange(1, 65535))
@click.option(
    "--db",
    "db_path",
    default=os.path.join("instance", "toss-sandbox.sqlite3"),
    show_default=True,
    help="SQLite file holding the sandbox's state (SANDBOX_DATABASE_URL overrides).",
)
@click.option("--webhook-url", help="Where to POST webhooks (none are sent without it).")
@click.option(
    "--latency-ms",
    type=click.IntRange(0, 60_000),
    help="Hold every API answer this long, as a remote Toss would.",
)
def serve(
    host: str, port: int, db_path: str, webhook_url: str | None, latency_ms: int | None
) -> None:
    """Serve the sandbox's API, widget script, payment window and test helpers."""
    overrides: dict[str, object] = {}
    if webhook_url:
        overrides["webhook_url"] = webhook_url
    if latency_ms is not None:
        overrides["latency_ms"] = latency_ms
    if not os.environ.get("SANDBOX_DATABASE_URL"):
        os.makedirs(os.path.dirname(os.path.abspath(db_path)), exist_ok=True)
        overrides["database_url"] = "sqlite:///" + os.path.abspath(db_path)
    try:
        settings = SandboxSettings.load(overrides)
        app = create_app(settings)
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from None
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    origin = f"http://{host}:{port}"
    click.echo(
        f"Toss sandbox: API {origin}{API_BASE_PATH}/v1 · widget {origin}{WIDGET_SCRIPT_PATH} · "
        f"keys {settings.client_key} / {settings.secret_key} · webhooks "
        f"{settings.webhook_url or 'off'}"
    )
    run_simple(host, port, app, threaded=True, use_reloader=False)
