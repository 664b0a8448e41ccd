"""Rate limits (Flask-Limiter) on the endpoints abuse would target.

Counters live in Redis when REDIS_URL (or RATELIMIT_STORAGE_URI) is set, so every worker and
instance shares them; otherwise in the memory of each process (config.py refuses that in
production with several workers). The client is the remote address, which ProxyFix
(TRUSTED_PROXY_COUNT) corrects behind trusted proxies only. A 429 renders the app's Korean error
(JSON under /api/).
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlsplit

from flask import Flask
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address

from ..config import unshared_rate_limits

log = logging.getLogger(__name__)

# endpoint → (config key, default limit), per client IP. Korean mobile carriers put many
# shoppers behind one NAT address, so the shopper-facing limits leave room for a crowd at a
# sale's peak while still stopping a script; Toss retries a refused webhook later.
LIMITS: dict[str, tuple[str, str]] = {
    "api.verify": ("RATELIMIT_CONFIRM", "120 per minute;1200 per hour"),
    "checkout.success": ("RATELIMIT_CONFIRM", "120 per minute;1200 per hour"),
    # Public: anyone who knows an orderId can call it (only the owner's session writes a row).
    "checkout.fail": ("RATELIMIT_FAIL", "60 per minute"),
    "hooks.receive": ("RATELIMIT_WEBHOOK", "1200 per minute"),
    "admin.login_submit": ("ADMIN_LOGIN_LIMIT", "5 per minute"),
    "shop.update_cart": ("RATELIMIT_SHOP", "300 per minute"),
    "shop.create": ("RATELIMIT_SHOP", "300 per minute"),
    # A guest's orderId + e-mail: a script guessing e-mails for a known orderId is slowed to
    # a crawl, a shopper who mistypes a few times is not.
    "shop.lookup_submit": ("RATELIMIT_LOOKUP", "10 per minute;60 per hour"),
}


def init_rate_limits(app: Flask) -> Limiter | None:
    """Wrap the listed views with their limits; call after every blueprint is registered.

    One Limiter per app: Flask-Limiter keeps its storage and switch on the instance, and tests
    build many apps. RATELIMIT_ENABLED=False turns limiting off.
    """
    if not app.config.setdefault("RATELIMIT_ENABLED", True):
        return None
    storage = app.config.get("RATELIMIT_STORAGE_URI") or "memory://"
    unshared = unshared_rate_limits(app.config.get("WEB_CONCURRENCY", 1), storage)
    if unshared:
        log.warning("%s; acceptable only in development", unshared)
    elif not storage.startswith("memory://"):
        log.info(
            "rate limits counted in %s; while it is unreachable each worker falls back to "
            "counting alone (Flask-Limiter logs 'Rate limit storage unreachable')",
            _without_credentials(storage),
        )
    limiter = Limiter(
        get_remote_address,
        storage_uri=storage,
        key_prefix=app.config.get("RATELIMIT_KEY_PREFIX", "shop"),
        # Redis down: keep limiting per worker rather than failing every request (logged above
        # at start and by Flask-Limiter when it happens).
        in_memory_fallback_enabled=True,
    )
    limiter.init_app(app)
    for endpoint, (key, default) in LIMITS.items():
        view: Any = app.view_functions.get(endpoint)
        if view is not None:
            app.view_functions[endpoint] = limiter.limit(app.config.get(key) or default)(view)
    app.extensions["shop_limiter"] = limiter
    return limiter


def _without_credentials(uri: str) -> str:
    """The storage URI for a log line: scheme, host, port and path; no user or password."""
    parts = urlsplit(uri)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}{parts.path}"
