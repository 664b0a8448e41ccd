"""Security headers, the Content-Security-Policy, and the checkout page's script inventory.

PCI DSS (SAQ A, 4.0 req. 6.4.3 and 11.6.1) asks a merchant embedding a payment page to keep an
inventory of the scripts on it with the reason for each, to authorise them, and to detect changes
to them and to the security headers. This module is that inventory; a browser test loads the
checkout page and fails when what Chromium sees differs from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from flask import Flask, redirect, request
from flask_talisman import Talisman
from werkzeug.sansio.utils import get_current_url
from werkzeug.urls import iri_to_uri
from werkzeug.wrappers import Response

# Toss hosts the widget needs. The SDK comes from js.tosspayments.com; the payment
# methods, agreement and payment windows render in iframes and call Toss's APIs on subdomains of
# tosspayments.com (inferred from the SDK's behaviour; Toss documents no CSP list).
TOSS_SCRIPT_HOST = "https://js.tosspayments.com"
TOSS_HOSTS = "https://*.tosspayments.com"


@dataclass(frozen=True)
class ScriptEntry:
    src: str  # a URL, or a config key in braces resolved per deployment
    why: str


# Every script the checkout page (GET /checkout/<orderId>) loads, in page order. Nothing else
# may run there: no inline script, no other host (the CSP enforces it; the inventory test checks).
CHECKOUT_SCRIPTS: tuple[ScriptEntry, ...] = (
    ScriptEntry(
        "{TOSS_WIDGET_SCRIPT_URL}",
        "Toss payment widget SDK v2: renders Toss's payment-method and agreement iframes and opens "
        "the payment window; card data is entered only there, never on our page.",
    ),
    ScriptEntry(
        "/static/js/checkout.js",
        "Our bootstrap: reads the server-fixed amount and order from data- attributes, calls "
        "setAmount, renderPaymentMethods, renderAgreement and requestPayment. No inline script.",
    ),
)


def checkout_scripts(config: dict[str, Any] | Any) -> list[str]:
    """The inventory resolved for this deployment (sandbox or real Toss)."""
    url = config["TOSS_WIDGET_SCRIPT_URL"]
    return [e.src.format(TOSS_WIDGET_SCRIPT_URL=url) for e in CHECKOUT_SCRIPTS]


def widget_origin(config: dict[str, Any] | Any) -> list[str]:
    """The origin of an absolute TOSS_WIDGET_SCRIPT_URL that is not Toss's (the stand-alone
    sandbox, `toss-sandbox serve`), else nothing. The browser loads the script and its
    stylesheet from there, posts the payment request there and shows the payment window from
    there in an iframe; the API base is only called by our server, so it needs no place in the
    policy."""
    url = urlsplit(config.get("TOSS_WIDGET_SCRIPT_URL") or "")
    host = url.hostname or ""
    if url.scheme not in ("http", "https") or not host:
        return []
    if host == "tosspayments.com" or host.endswith(".tosspayments.com"):
        return []
    return [f"{url.scheme}://{url.netloc.rpartition('@')[2]}"]


def content_security_policy(config: dict[str, Any] | Any) -> dict[str, str | list[str]]:
    """Same-origin by default; Toss only where the widget needs it; scripts also need the nonce."""
    sandbox = bool(config.get("TOSS_SANDBOX"))
    toss_script = [] if sandbox else [TOSS_SCRIPT_HOST]
    toss = [] if sandbox else [TOSS_HOSTS]
    widget = widget_origin(config)
    return {
        "default-src": "'self'",
        "script-src": ["'self'", *toss_script, *widget],
        "style-src": ["'self'", *widget],
        "img-src": ["'self'", "data:", *toss],
        "font-src": "'self'",
        "connect-src": ["'self'", *toss, *widget],
        "frame-src": ["'self'", *toss, *widget],
        "form-action": "'self'",
        "object-src": "'none'",
        "base-uri": "'none'",
        "frame-ancestors": "'none'",
    }


# The response headers every page carries, and why (the inventory test compares them too).
SECURITY_HEADERS: dict[str, str] = {
    "Content-Security-Policy": "scripts, frames and connections limited to us and Toss; a "
    "per-request nonce on every script tag; no plugins, no <base>, no framing of our pages",
    "X-Content-Type-Options": "nosniff: a file is never run as a type other than it declares",
    "Referrer-Policy": "strict-origin-when-cross-origin: the success URL carries a paymentKey "
    "and must not leak to other sites in a Referer",
    "X-Frame-Options": "DENY: old browsers that ignore frame-ancestors cannot frame us either",
    "Permissions-Policy": "no camera, microphone or geolocation for anything on our pages",
}
PRODUCTION_HEADERS: dict[str, str] = {
    "Strict-Transport-Security": "one year, subdomains included: HTTPS only after first visit",
}


def init_security(app: Flask) -> Talisman:
    """Apply the headers above to every response; HTTPS and HSTS in production.

    One Talisman per app, as its documentation shows (`Talisman(app, …)`): it keeps its options
    on the instance, and tests build apps with different ones.
    """
    production = app.config["APP_ENV"] == "production"
    if production:
        # Talisman's force_https rebuilds the URL from the Host header a client chose (and
        # believes any X-Forwarded-Proto); ours goes to PUBLIC_BASE_URL, and only a trusted
        # proxy (ProxyFix) can say the request came over https.
        app.before_request(_https_redirect(app.config["PUBLIC_BASE_URL"]))
    return Talisman(
        app,
        content_security_policy=content_security_policy(app.config),
        content_security_policy_nonce_in=["script-src"],
        force_https=False,
        strict_transport_security=production,
        strict_transport_security_max_age=31_536_000,
        strict_transport_security_include_subdomains=True,
        frame_options="DENY",
        referrer_policy="strict-origin-when-cross-origin",
        permissions_policy={"camera": "()", "microphone": "()", "geolocation": "()"},
        session_cookie_secure=production,
        session_cookie_http_only=True,
        session_cookie_samesite="Lax",
        x_content_type_options=True,
        # First rollout against the real widget can watch violations without breaking payment.
        content_security_policy_report_only=app.config["CSP_REPORT_ONLY"],
        content_security_policy_report_uri=app.config["CSP_REPORT_URI"],
    )


def _https_redirect(public_base_url: str) -> Any:
    """A before_request hook: a plain-http request goes (301) to the same path and query under
    the configured public origin, whatever Host it named."""
    origin = urlsplit(public_base_url)

    def redirect_to_https() -> Response | None:
        if request.is_secure:
            return None
        url = get_current_url(
            origin.scheme, origin.netloc, request.root_path, request.path, request.query_string
        )
        return redirect(iri_to_uri(url), code=301)

    return redirect_to_https
