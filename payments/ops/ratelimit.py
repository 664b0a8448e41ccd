"""Rate limits (Flask-Limiter) on the endpoints abuse would target.

Counters live in Redis when REDIS_URL is set, so every instance shares them; otherwise in
memory. The client is the remote address, which ProxyFix (TRUSTED_PROXY_COUNT) corrects behind
trusted proxies only. A 429 renders the app's Korean error (JSON under /api/).
"""

from __future__ import annotations

from typing import Any

from flask import Flask
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address

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
}


def init_rate_limits(app: Flask) -> Limiter | None:
    """Wrap the listed views with their limits; call after every blueprint is registered.

    One Limiter per app: Flask-Limiter keeps its storage and switch on the instance, and tests
    build many apps. RATELIMIT_ENABLED=False turns limiting off.
    """
    if not app.config.setdefault("RATELIMIT_ENABLED", True):
        return None
    limiter = Limiter(
        get_remote_address,
        storage_uri=app.config.get("RATELIMIT_STORAGE_URI")
        or app.config.get("REDIS_URL")
        or "memory://",
        key_prefix=app.config.get("RATELIMIT_KEY_PREFIX", "shop"),
        # Redis down: keep limiting per instance rather than failing every request.
        in_memory_fallback_enabled=True,
    )
    limiter.init_app(app)
    for endpoint, (key, default) in LIMITS.items():
        view: Any = app.view_functions.get(endpoint)
        if view is not None:
            app.view_functions[endpoint] = limiter.limit(app.config.get(key) or default)(view)
    app.extensions["shop_limiter"] = limiter
    return limiter
