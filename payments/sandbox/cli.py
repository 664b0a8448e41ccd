"""`toss-sandbox`: run the offline Toss on its own, for this shop or any other app or test suite,
and drive a running one the way Stripe's CLI drives Stripe (`trigger`, `listen`)."""

from __future__ import annotations

import importlib
import importlib.util
import json
import logging
import os
import signal
import sys
from collections.abc import Callable
from datetime import datetime
from types import FrameType
from typing import Any
from urllib.parse import quote

import click
import requests
from flask import Flask
from werkzeug.serving import make_server, run_simple
from werkzeug.wrappers import Request, Response

from .app import API_BASE_PATH, WIDGET_SCRIPT_PATH, create_app
from .db import db
from .settings import SandboxSettings, SettingsError

DEFAULT_URL = "http://127.0.0.1:8787"
URL_HELP = (
    "The running sandbox: a `toss-sandbox serve`, or a shop that mounts it (its own origin, "
    "e.g. http://127.0.0.1:5000)."
)
# The helper route each trigger action calls (REF: a paymentKey or an orderId).
TRIGGER_ROUTES = {
    "deposit": "/sandbox/api/virtual-accounts/{ref}/deposit",
    "deposit-error": "/sandbox/api/virtual-accounts/{ref}/deposit-error",
    "expire": "/sandbox/api/payments/{ref}/expire",
    "cancel": "/sandbox/api/payments/{ref}/cancel",
    "abort": "/sandbox/api/payments/{ref}/abort",
}
# Toss gives a webhook 10 seconds; the relay leaves itself a second to answer the sandbox.
FORWARD_TIMEOUT = 9.0


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
@click.option(
    "--webhook-url",
    help="Where to POST webhooks (none are sent without it, unless `toss-sandbox listen` runs).",
)
@click.option(
    "--latency-ms",
    type=click.IntRange(0, 60_000),
    help="Hold every API answer this long, as a remote Toss would.",
)
@click.option(
    "--worker-class",
    type=click.Choice(["threads", "gevent"]),
    default="threads",
    show_default=True,
    help="threads: one process, a thread per connection (Werkzeug). gevent: gunicorn's gevent "
    "workers, each holding many answers at once (needs gevent; several workers want a database "
    "that takes concurrent writers, e.g. SANDBOX_DATABASE_URL=postgresql://…).",
)
@click.option(
    "--workers",
    default=1,
    show_default=True,
    type=click.IntRange(1, 64),
    help="Worker processes (gevent only).",
)
def serve(
    host: str,
    port: int,
    db_path: str,
    webhook_url: str | None,
    latency_ms: int | None,
    worker_class: str,
    workers: int,
) -> None:
    """Serve the sandbox's API, widget script, payment window and test helpers."""
    if workers > 1 and worker_class == "threads":
        raise click.BadParameter(
            "several workers need --worker-class gevent", param_hint="--workers"
        )
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
    if worker_class == "threads":
        run_simple(host, port, app, threaded=True, use_reloader=False)
        return
    # The workers fork from this process: each opens its own connections (and builds its own
    # app, whose webhook sender starts there), none inherited from here.
    with app.app_context():
        db.engine.dispose()
    _serve_gevent(host, port, workers, lambda: create_app(settings))


def _serve_gevent(host: str, port: int, workers: int, make_app: Callable[[], Flask]) -> None:
    """gunicorn with gevent workers: the latency sleep and every socket and database wait
    yield, so one worker holds hundreds of answers at once, as Toss's servers do."""
    if importlib.util.find_spec("gevent") is None:
        raise click.ClickException("--worker-class gevent needs gevent (pip install gevent)")
    gunicorn: Any = importlib.import_module("gunicorn.app.base")

    class Server(gunicorn.BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            settings = {
                "bind": f"{host}:{port}",
                "workers": workers,
                "worker_class": "gevent",
                "worker_connections": 2000,
                # A held answer may take up to the 60 s --latency-ms allows.
                "timeout": 120,
                "graceful_timeout": 10,
                "accesslog": None,
            }
            for name, value in settings.items():
                self.cfg.set(name, value)

        def load(self) -> Flask:
            return make_app()

    Server().run()


@main.command()
@click.argument("action", type=click.Choice(list(TRIGGER_ROUTES)))
@click.argument("ref")
@click.option(
    "--url",
    default=DEFAULT_URL,
    show_default=True,
    envvar="TOSS_SANDBOX_URL",
    show_envvar=True,
    help=URL_HELP,
)
@click.option("--amount", type=click.IntRange(1), help="cancel: cancel only this much (partial).")
@click.option("--code", help="abort: the failure code (default REJECT_CARD_PAYMENT).")
@click.option("--json", "as_json", is_flag=True, help="Print the whole Payment as JSON.")
def trigger(
    action: str, ref: str, url: str, amount: int | None, code: str | None, as_json: bool
) -> None:
    """Make something happen to a payment of a running sandbox, as a buyer, a bank or Toss would.

    REF is a paymentKey, or an orderId (the payment Toss's lookup by orderId answers for it).

    \b
      deposit        the buyer pays a waiting virtual account (→ DONE)
      deposit-error  the bank reports an error on that deposit (DONE → WAITING_FOR_DEPOSIT)
      expire         the window or confirm deadline passes (→ EXPIRED); a virtual account's
                     due date passes (stays WAITING_FOR_DEPOSIT, expired, nothing sent)
      cancel         cancelled from the merchant's console, not the shop (→ CANCELED)
      abort          the approval of an authenticated payment fails (IN_PROGRESS → ABORTED)

    Runs through the sandbox's helper routes over HTTP (--url); each change sends Toss's
    webhooks. Prints the resulting status; a refusal prints Toss-style code and message and
    exits 1.
    """
    body: dict[str, Any] = {}
    if amount is not None:
        if action != "cancel":
            raise click.UsageError("--amount applies to cancel only")
        body["cancelAmount"] = amount
    if code is not None:
        if action != "abort":
            raise click.UsageError("--code applies to abort only")
        body["code"] = code
    target = url.rstrip("/") + TRIGGER_ROUTES[action].format(ref=quote(ref, safe=""))
    try:
        resp = requests.post(target, json=body, timeout=30)
    except requests.RequestException as exc:
        raise click.ClickException(f"cannot reach the sandbox at {url}: {exc}") from None
    try:
        data = resp.json()
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise click.ClickException(f"{target} answered {resp.status_code}, not a sandbox answer")
    if resp.status_code != 200:
        click.echo(
            f"refused: {resp.status_code} {data.get('code')}: {data.get('message')}", err=True
        )
        sys.exit(1)
    if as_json:
        click.echo(json.dumps(data, ensure_ascii=False, indent=2))
        return
    click.echo(f"{action}: {data.get('status')}  " + _describe_payment(data))


def _describe_payment(data: dict[str, Any]) -> str:
    parts = [f"paymentKey={data.get('paymentKey')}", f"orderId={data.get('orderId')}"]
    total, balance = data.get("totalAmount"), data.get("balanceAmount")
    if isinstance(total, int) and isinstance(balance, int):
        parts.append(f"total={total:,} balance={balance:,}")
    failure = data.get("failure")
    if isinstance(failure, dict):
        parts.append(f"failure={failure.get('code')}")
    account = data.get("virtualAccount")
    if isinstance(account, dict):
        if account.get("expired"):
            parts.append("virtualAccount.expired")
        if account.get("refundStatus") not in (None, "NONE"):
            parts.append(f"refundStatus={account.get('refundStatus')}")
    return " ".join(parts)


# -- listen ----------------------------------------------------------------------------------------

_FORWARDED_HEADERS = (
    "Content-Type",
    "tosspayments-webhook-transmission-id",
    "tosspayments-webhook-transmission-time",
    "tosspayments-webhook-transmission-retried-count",
)


class Relay:
    """The WSGI app `listen` serves: each webhook the sandbox delivers to it goes on to
    `forward_to` with the same bytes and headers, and the sandbox gets that answer (200, or the
    failure that makes it retry on Toss's schedule)."""

    def __init__(self, forward_to: str, echo: Any = click.echo) -> None:
        self.forward_to = forward_to
        self.echo = echo
        self.http = requests.Session()
        self.http.trust_env = False  # a local URL never goes through a proxy

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        if request.method != "POST":
            return Response("toss-sandbox listen relays POSTed webhooks\n", 405)(
                environ, start_response
            )
        body = request.get_data()
        headers = {
            name: request.headers[name] for name in _FORWARDED_HEADERS if name in request.headers
        }
        status: int | None = None
        try:
            answer = self.http.post(
                self.forward_to, data=body, headers=headers, timeout=FORWARD_TIMEOUT
            )
            status = answer.status_code
            outcome = str(status)
        except requests.RequestException as exc:
            outcome = type(exc).__name__
        self.echo(f"{describe_delivery(body, headers)}  -> {outcome}")
        if status == 200:
            relayed = 200
        elif status is not None and 400 <= status < 600:
            relayed = status
        else:
            relayed = 502
        return Response(f"{self.forward_to} answered {outcome}\n", relayed)(environ, start_response)


def describe_delivery(body: bytes, headers: dict[str, str]) -> str:
    """One line for a delivery: time, event type, transmission id, orderId, paymentKey,
    status (and the retry count once Toss retries)."""
    try:
        event = json.loads(body)
    except ValueError:
        event = None
    if not isinstance(event, dict):
        event = {}
    inner = event.get("data")
    data: dict[str, Any] = inner if isinstance(inner, dict) else event
    # DEPOSIT_CALLBACK names no eventType: its body is {createdAt, secret, status, …}.
    kind = event.get("eventType") or ("DEPOSIT_CALLBACK" if "secret" in event else "?")
    retried = headers.get("tosspayments-webhook-transmission-retried-count", "0")
    parts = [
        datetime.now().strftime("%H:%M:%S"),
        str(kind),
        headers.get("tosspayments-webhook-transmission-id", "-"),
        f"orderId={data.get('orderId', '-')}",
        f"paymentKey={data.get('paymentKey', '-')}",
        f"status={data.get('status', '-')}",
    ]
    if retried not in ("", "0"):
        parts.append(f"(retry {retried})")
    return "  ".join(parts)


def _stop_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


@main.command()
@click.option("--forward-to", required=True, help="Where to deliver the webhooks (http(s) URL).")
@click.option(
    "--url",
    default=DEFAULT_URL,
    show_default=True,
    envvar="TOSS_SANDBOX_URL",
    show_envvar=True,
    help=URL_HELP,
)
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address of the relay the sandbox delivers to (it must reach it).",
)
@click.option(
    "--port",
    default=0,
    type=click.IntRange(0, 65535),
    help="Port of that relay (default: any free port).",
)
def listen(forward_to: str, url: str, host: str, port: int) -> None:
    """Deliver the sandbox's webhooks to FORWARD_TO, printing each delivery and its answer.

    Leave it running: it serves a small relay, makes it the running sandbox's webhook URL
    (PUT /sandbox/api/webhook-url) and hands every webhook on, byte for byte with Toss's
    headers; the sandbox gets FORWARD_TO's answer, so anything but 200 is retried on Toss's
    schedule (1, 4, 16, … minutes). Webhooks queued before it started keep their URL. Ctrl-C
    (or SIGTERM) gives the sandbox back the webhook URL it had.
    """
    if not forward_to.startswith(("http://", "https://")):
        raise click.BadParameter("must be an http(s) URL", param_hint="--forward-to")
    api = url.rstrip("/") + "/sandbox/api/webhook-url"
    server = make_server(host, port, Relay(forward_to), threaded=True)
    relay_url = f"http://{host}:{server.server_port}/"
    try:
        resp = requests.put(api, json={"webhookUrl": relay_url}, timeout=10)
        resp.raise_for_status()
        previous = resp.json().get("previous")
    except (requests.RequestException, ValueError) as exc:
        server.server_close()
        raise click.ClickException(f"cannot reach the sandbox at {url}: {exc}") from None
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    click.echo(
        f"Ready: the sandbox at {url} now sends its webhooks to {relay_url}, forwarded to "
        f"{forward_to} (was: {previous or 'none'}). Ctrl-C to stop."
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        _give_back(api, relay_url, previous)


def _give_back(api: str, relay_url: str, previous: str | None) -> None:
    """Restore the sandbox's webhook URL, unless someone else changed it since."""
    try:
        resp = requests.put(api, json={"webhookUrl": previous, "expected": relay_url}, timeout=10)
    except requests.RequestException as exc:
        click.echo(f"Stopped; could not restore the sandbox's webhook URL: {exc}", err=True)
        return
    if resp.status_code == 200:
        click.echo(f"Stopped; the sandbox's webhook URL is {previous or 'none'} again.")
    else:
        click.echo("Stopped; the sandbox's webhook URL was changed meanwhile: left as it is.")
