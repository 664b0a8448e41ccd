"""Running with the built-in offline Toss: the sandbox's own app mounted under /sandbox in this
process (`make run` is one process), with the Toss client and the sandbox's webhooks reaching
each other without a socket (under a single sync server worker, calling our own port would
deadlock).

The sandbox imports nothing of the shop; this module is the only place that joins them.
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Callable, Iterable
from typing import Any

import requests
from flask import Flask

from ..sandbox import API_BASE_PATH, WIDGET_SCRIPT_PATH, SandboxSettings
from ..sandbox import create_app as create_sandbox_app
from ..sandbox.transport import WSGITransport

# Made-up origins that never reach the network: a transport adapter hands their requests to
# the other app in this process.
INPROCESS_TOSS = "http://toss-sandbox.internal"
INPROCESS_SHOP = "http://shop.internal"
PREFIX = "/sandbox"

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def mount_sandbox(app: Flask) -> Flask:
    """Create the sandbox app for `app`, serve it under /sandbox, and point the shop's Toss
    settings at it unless they were given; the sandbox app."""
    overrides: dict[str, Any] = {
        "client_key": app.config["TOSS_CLIENT_KEY"],
        "secret_key": app.config["TOSS_SECRET_KEY"],
    }
    if not os.environ.get("SANDBOX_WEBHOOK_URL"):
        overrides["webhook_url"] = INPROCESS_SHOP + "/api/payment/webhook"
    # Tests and embedders pass settings of their own (by field name) as SANDBOX.
    overrides.update(app.config.get("SANDBOX") or {})
    shop = weakref.ref(app)  # a discarded shop (a finished test's) must not be kept alive

    def to_shop(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        target = shop()
        if target is None:
            raise RuntimeError("the shop app is gone")
        return target.wsgi_app(environ, start_response)

    def webhook_session() -> requests.Session:
        return inprocess_session(INPROCESS_SHOP, to_shop)

    sandbox = create_sandbox_app(
        SandboxSettings.load(overrides),
        instance_path=app.instance_path,
        webhook_session=webhook_session,
    )
    app.wsgi_app = _by_prefix(app.wsgi_app, sandbox)  # type: ignore[assignment]
    app.config["TOSS_API_BASE"] = app.config["TOSS_API_BASE"] or INPROCESS_TOSS + API_BASE_PATH
    app.config["TOSS_WIDGET_SCRIPT_URL"] = (
        app.config["TOSS_WIDGET_SCRIPT_URL"] or WIDGET_SCRIPT_PATH
    )
    app.extensions["sandbox_app"] = sandbox
    return sandbox


def inprocess_session(origin: str, target: WSGIApp) -> requests.Session:
    """A requests session whose requests to `origin` go to `target` in this process."""
    session = requests.Session()
    session.mount(origin, WSGITransport(target))
    # No proxy, .netrc or CA bundle applies in-process.
    session.trust_env = False
    return session


def _by_prefix(shop: WSGIApp, sandbox: WSGIApp) -> WSGIApp:
    """Requests for /sandbox/… go to the sandbox app, with their paths as they are (its routes
    carry the prefix, as when it runs alone); everything else to the shop."""

    def dispatch(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        target = sandbox if path == PREFIX or path.startswith(PREFIX + "/") else shop
        return target(environ, start_response)

    return dispatch
