"""The one place that reads the environment and refuses unsafe combinations.

`load_config()` turns environment variables (and `.env`, when present) plus explicit overrides into
a flat dict for `app.config`; `ConfigError` carries one line naming the offending variable.
"""

from __future__ import annotations

import math
import os
import re
import secrets
from collections.abc import Mapping
from email.utils import parseaddr
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from dotenv import load_dotenv

TOSS_API_BASE_DEFAULT = "https://api.tosspayments.com"
TOSS_WIDGET_SCRIPT_DEFAULT = "https://js.tosspayments.com/v2/standard"
# The keys the built-in sandbox answers to unless others are configured.
SANDBOX_CLIENT_KEY = "test_gck_sandbox"
SANDBOX_SECRET_KEY = "test_gsk_sandbox"

ENVS = ("development", "testing", "production")
# The proxy configuration production runs behind (buffers slow clients, sets X-Forwarded-*).
NGINX_DOC = "docs/deploy/nginx.conf"


class _ReadEnv(dict[str, str]):
    """The environment, remembering which names the config read (so overrides named like
    one of them stand in for it, and any other override goes straight into the config)."""

    def __init__(self, data: Mapping[str, str]) -> None:
        super().__init__(data)
        self.read: set[str] = set()

    def get(self, key: str, default: Any = None) -> Any:
        self.read.add(key)
        return super().get(key, default)


_KEY_RE = re.compile(r"^(test|live)_(gck|gsk|ck|sk)_[A-Za-z0-9_]+$")


class ConfigError(RuntimeError):
    """Start-up refusal: one line that names the variable at fault."""


def _flag(value: str | None) -> bool | None:
    if value is None or value.strip() == "":
        return None
    v = value.strip().lower()
    if v in ("1", "true", "yes", "on"):
        return True
    if v in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"TOSS_SANDBOX must be 1 or 0, got {value!r}")


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 0) -> int:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {value}")
    return value


def _float(env: Mapping[str, str], name: str, default: float, minimum: float) -> float:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None
    if not math.isfinite(value) or value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {value}")
    return value


def _flag_named(env: Mapping[str, str], name: str, default: bool = False) -> bool:
    raw = (env.get(name) or "").strip().lower()
    if raw == "":
        return default
    if raw not in ("0", "1", "true", "false"):
        raise ConfigError(f"{name} must be 1 or 0, got {raw!r}")
    return raw in ("1", "true")


def _embedded_default(env: Mapping[str, str], app_env: str) -> bool:
    raw = env.get("WEBHOOK_WORKER_EMBEDDED")
    if raw is None or raw.strip() == "":
        return app_env == "development"
    flag = raw.strip().lower()
    if flag not in ("0", "1", "true", "false"):
        raise ConfigError(f"WEBHOOK_WORKER_EMBEDDED must be 1 or 0, got {raw!r}")
    return flag in ("1", "true")


def key_parts(key: str) -> tuple[str, str]:
    """(mode, family) of a Toss key, e.g. ("test", "gck"); ConfigError if it is not key-shaped."""
    m = _KEY_RE.match(key)
    if not m:
        raise ConfigError("not a Toss key")
    return m.group(1), m.group(2)


def check_toss_keys(client_key: str, secret_key: str) -> None:
    """Refuse a client/secret pair Toss would reject: mixed families or mixed test/live."""
    try:
        c_mode, c_family = key_parts(client_key)
    except ConfigError:
        raise ConfigError(
            "TOSS_CLIENT_KEY is not a Toss client key "
            "(expected test_gck_/live_gck_/test_ck_/live_ck_)"
        ) from None
    try:
        s_mode, s_family = key_parts(secret_key)
    except ConfigError:
        raise ConfigError(
            "TOSS_SECRET_KEY is not a Toss secret key "
            "(expected test_gsk_/live_gsk_/test_sk_/live_sk_)"
        ) from None
    if c_family not in ("gck", "ck"):
        raise ConfigError(
            f"TOSS_CLIENT_KEY holds a secret key ({c_family}); it must be a client key"
        )
    if s_family not in ("gsk", "sk"):
        raise ConfigError(
            f"TOSS_SECRET_KEY holds a client key ({s_family}); it must be a secret key"
        )
    if (c_family == "gck") != (s_family == "gsk"):
        raise ConfigError(
            "TOSS_CLIENT_KEY and TOSS_SECRET_KEY mix key families: widget keys (gck/gsk) "
            "only pair with each other, API keys (ck/sk) likewise"
        )
    if c_mode != s_mode:
        raise ConfigError(
            f"TOSS_CLIENT_KEY is a {c_mode} key but TOSS_SECRET_KEY is a {s_mode} key; "
            "use a matching pair"
        )


def is_real_toss(url: str) -> bool:
    """True for an URL on Toss's own hosts (tosspayments.com and its subdomains)."""
    host = (urlsplit(url).hostname or "").lower()
    return host == "tosspayments.com" or host.endswith(".tosspayments.com")


def unshared_rate_limits(workers: int, storage_uri: str) -> str | None:
    """Why the rate limits would not hold, or None: several processes that each count in
    memory let a client through once per process (5 logins a minute become 20 with 4 workers)."""
    if workers <= 1 or not storage_uri.startswith("memory://"):
        return None
    return (
        f"WEB_CONCURRENCY={workers} runs several worker processes but the rate limits are "
        "counted in memory, by each worker alone: set REDIS_URL (or RATELIMIT_STORAGE_URI) to a "
        "shared store, e.g. redis://127.0.0.1:6379/0"
    )


def variables_read() -> set[str]:
    """Every environment variable the config consults (for docs and the .env.example test)."""
    env = _ReadEnv({})
    load_config(
        environ=env, instance_path=os.path.join(os.path.dirname(__file__), "..", "instance")
    )
    return set(env.read)


def load_config(
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    instance_path: str = "instance",
    *,
    server: str | None = None,
) -> dict[str, Any]:
    """Build the app config: defaults, then the environment, then `overrides`; validate it.

    `server` names a multi-process server about to fork workers from this configuration
    (gunicorn.conf.py passes "gunicorn"): those need one SECRET_KEY between them.
    """
    if environ is None:
        load_dotenv(override=False)
        environ = os.environ
    overrides = dict(overrides or {})
    env = (
        environ
        if isinstance(environ, _ReadEnv)
        else _ReadEnv({k: v for k, v in environ.items() if isinstance(v, str)})
    )
    # String overrides are offered as environment variables (tests use this); the ones the
    # config never reads, and all non-string ones, are set on the final config as they are.
    env.update({k: v for k, v in overrides.items() if isinstance(v, str)})

    app_env = env.get("APP_ENV", "development").strip() or "development"
    if app_env not in ENVS:
        raise ConfigError(f"APP_ENV must be one of {', '.join(ENVS)}, got {app_env!r}")
    production = app_env == "production"

    secret_key = env.get("SECRET_KEY", "").strip()
    if not secret_key:
        if production:
            raise ConfigError("SECRET_KEY is required when APP_ENV=production")
        if server:
            # Each worker would mint a key of its own: sessions and CSRF tokens signed by one
            # worker fail on the next. Flask's one-process dev server may still make one up.
            raise ConfigError(
                f"SECRET_KEY is required under {server}: its worker processes must share one "
                "key, else sessions and CSRF tokens fail at random (set a long random value)"
            )
        secret_key = secrets.token_urlsafe(32)
    elif production and len(secret_key) < 16:
        raise ConfigError("SECRET_KEY is too short for production (use at least 16 characters)")

    client_key = env.get("TOSS_CLIENT_KEY", "").strip()
    toss_secret = env.get("TOSS_SECRET_KEY", "").strip()
    if bool(client_key) != bool(toss_secret):
        missing = "TOSS_SECRET_KEY" if client_key else "TOSS_CLIENT_KEY"
        raise ConfigError(f"{missing} is missing: set both Toss keys or neither (sandbox)")
    has_keys = bool(client_key)

    sandbox_flag = _flag(env.get("TOSS_SANDBOX"))
    sandbox = (not has_keys and not production) if sandbox_flag is None else sandbox_flag
    if production and sandbox:
        raise ConfigError("TOSS_SANDBOX cannot be on when APP_ENV=production")

    if has_keys:
        check_toss_keys(client_key, toss_secret)
        mode = key_parts(client_key)[0]
        if production and mode == "test":
            raise ConfigError(
                "TOSS_CLIENT_KEY/TOSS_SECRET_KEY are test keys but APP_ENV=production"
            )
        if sandbox and mode == "live":
            raise ConfigError(
                "TOSS_SANDBOX is on but TOSS_CLIENT_KEY/TOSS_SECRET_KEY are live keys"
            )
        if not production and mode == "live":
            # Live keys move real money: never from a laptop's or a test run's configuration.
            raise ConfigError(
                f"TOSS_CLIENT_KEY/TOSS_SECRET_KEY are live keys but APP_ENV={app_env}: live keys "
                "are accepted only with APP_ENV=production"
            )
    elif not sandbox:
        raise ConfigError(
            "TOSS_CLIENT_KEY and TOSS_SECRET_KEY are required when the sandbox is off"
            + (" (APP_ENV=production)" if production else " (TOSS_SANDBOX=0)")
        )
    else:
        client_key, toss_secret = SANDBOX_CLIENT_KEY, SANDBOX_SECRET_KEY

    api_base = env.get("TOSS_API_BASE", "").strip().rstrip("/")
    if sandbox and api_base and is_real_toss(api_base):
        # The sandbox's keys (or a developer's test keys) would go to the real Toss and every
        # checkout would fail there, with no internet or with keys Toss does not know.
        raise ConfigError(
            f"TOSS_API_BASE points at the real Toss ({api_base}) but the sandbox is on "
            "(TOSS_SANDBOX, or no Toss keys): leave TOSS_API_BASE empty for the built-in sandbox"
        )
    if not api_base and not sandbox:
        api_base = TOSS_API_BASE_DEFAULT
    # Left empty in sandbox mode: the in-process sandbox is mounted and sets it (ops/sandbox.py).
    if api_base and not re.match(r"^https?://[^/\s]+", api_base):
        raise ConfigError(f"TOSS_API_BASE must be an http(s) URL, got {api_base!r}")
    if production and not api_base.startswith("https://"):
        raise ConfigError("TOSS_API_BASE must use https when APP_ENV=production")

    public_base = env.get("PUBLIC_BASE_URL", "").strip().rstrip("/")
    if public_base and not re.match(r"^https?://[^/\s]+$", public_base):
        raise ConfigError(
            f"PUBLIC_BASE_URL must be an origin like https://shop.example, got {public_base!r}"
        )
    if production and not public_base.startswith("https://"):
        # Toss's successUrl/failUrl and the https redirect are built from it, never from the
        # Host header a client chose.
        raise ConfigError(
            "PUBLIC_BASE_URL is required when APP_ENV=production: the shop's https origin, "
            "e.g. https://shop.example.kr"
        )

    trusted_proxies = _int(env, "TRUSTED_PROXY_COUNT", 0)
    if production and trusted_proxies < 1:
        # gunicorn's threads would wait on slow clients' headers and bodies; a buffering proxy
        # hands them complete requests.
        raise ConfigError(
            "TRUSTED_PROXY_COUNT must be at least 1 when APP_ENV=production: run the app behind "
            f"a buffering reverse proxy (nginx, see {NGINX_DOC}) and count it here"
        )

    workers = _int(env, "WEB_CONCURRENCY", 1, 1)
    limit_storage = (
        env.get("RATELIMIT_STORAGE_URI", "").strip()
        or env.get("REDIS_URL", "").strip()
        or "memory://"
    )
    unshared = unshared_rate_limits(workers, limit_storage)
    if production and unshared:
        raise ConfigError(unshared + " (required when APP_ENV=production)")

    database_url = env.get("DATABASE_URL", "").strip()
    if not database_url:
        os.makedirs(instance_path, exist_ok=True)
        database_url = "sqlite:///" + os.path.join(os.path.abspath(instance_path), "shop.sqlite3")
    elif database_url.startswith("postgres://"):
        database_url = "postgresql+psycopg://" + database_url[len("postgres://") :]
    elif database_url.startswith("postgresql://"):
        database_url = "postgresql+psycopg://" + database_url[len("postgresql://") :]

    config: dict[str, Any] = {
        "APP_ENV": app_env,
        "TESTING": app_env == "testing",
        "SECRET_KEY": secret_key,
        "SQLALCHEMY_DATABASE_URI": database_url,
        "TOSS_CLIENT_KEY": client_key,
        "TOSS_SECRET_KEY": toss_secret,
        "TOSS_API_BASE": api_base,
        "TOSS_SANDBOX": sandbox,
        "TOSS_WIDGET_SCRIPT_URL": env.get("TOSS_WIDGET_SCRIPT_URL", "").strip()
        or (None if sandbox else TOSS_WIDGET_SCRIPT_DEFAULT),
        "TOSS_WEBHOOK_SECURITY_KEY": env.get("TOSS_WEBHOOK_SECURITY_KEY", "").strip() or None,
        "TOSS_CONNECT_TIMEOUT": _float(env, "TOSS_CONNECT_TIMEOUT", 5.0, 0.1),
        "TOSS_READ_TIMEOUT": _float(env, "TOSS_READ_TIMEOUT", 30.0, 0.1),
        "TOSS_MAX_RETRIES": _int(env, "TOSS_MAX_RETRIES", 2),
        "TOSS_RETRY_BACKOFF": _float(env, "TOSS_RETRY_BACKOFF", 0.5, 0.0),
        "REDIS_URL": env.get("REDIS_URL", "").strip() or None,
        "PUBLIC_BASE_URL": public_base or None,
        "ADMIN_PASSWORD_HASH": env.get("ADMIN_PASSWORD_HASH", "").strip() or None,
        "ORDER_LINK_MAX_AGE": _int(env, "ORDER_LINK_MAX_AGE", 60 * 60 * 24 * 30, 60),
        # Unpaid orders expire (via `flask payments reconcile`) this long after creation.
        "ORDER_PAYABLE_MINUTES": _int(env, "ORDER_PAYABLE_MINUTES", 60, 31),
        "WEBHOOK_RETENTION_DAYS": _int(env, "WEBHOOK_RETENTION_DAYS", 30, 1),
        # How long a worker owns a claimed event; a worker that dies leaves it due again after.
        "WEBHOOK_LEASE_SECONDS": _int(env, "WEBHOOK_LEASE_SECONDS", 120, 1),
        # A webhook worker thread inside each web process; the default for the one-command
        # development setup. Production runs `flask payments worker` beside the web servers.
        "WEBHOOK_WORKER_EMBEDDED": _embedded_default(env, app_env),
        # Bearer token for /metrics scrapers; unset → direct loopback scrapers and operators.
        "METRICS_TOKEN": env.get("METRICS_TOKEN", "").strip() or None,
        # Reverse proxies in front of the app whose X-Forwarded-* headers are believed (client
        # IP for rate limits, https for redirects). 0 = none: the headers are ignored.
        "TRUSTED_PROXY_COUNT": trusted_proxies,
        # Processes serving this configuration side by side (gunicorn.conf.py sets it to the
        # worker count); with more than one, rate limits need shared storage.
        "WEB_CONCURRENCY": workers,
        "CSP_REPORT_ONLY": _flag_named(env, "CSP_REPORT_ONLY"),
        "CSP_REPORT_URI": env.get("CSP_REPORT_URI", "").strip() or None,
        # Flask-Limiter strings, e.g. "30 per minute;300 per hour" (defaults in ratelimit.py).
        "RATELIMIT_CONFIRM": env.get("RATELIMIT_CONFIRM", "").strip() or None,
        "RATELIMIT_WEBHOOK": env.get("RATELIMIT_WEBHOOK", "").strip() or None,
        "RATELIMIT_SHOP": env.get("RATELIMIT_SHOP", "").strip() or None,
        "RATELIMIT_FAIL": env.get("RATELIMIT_FAIL", "").strip() or None,
        "RATELIMIT_LOOKUP": env.get("RATELIMIT_LOOKUP", "").strip() or None,
        "ADMIN_LOGIN_LIMIT": env.get("ADMIN_LOGIN_LIMIT", "").strip() or None,
        "ADMIN_IDLE_MINUTES": _int(env, "ADMIN_IDLE_MINUTES", 30, 1),
        "ADMIN_SESSION_HOURS": _int(env, "ADMIN_SESSION_HOURS", 12, 1),
        # Where Flask-Limiter counts: RATELIMIT_STORAGE_URI, else REDIS_URL, else memory.
        "RATELIMIT_STORAGE_URI": limit_storage,
        # Namespace of the counters in Redis (several shops may share one server).
        "RATELIMIT_KEY_PREFIX": env.get("RATELIMIT_KEY_PREFIX", "").strip() or "shop",
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "SESSION_COOKIE_SECURE": production,
        "MAX_CONTENT_LENGTH": 64 * 1024,
        "WTF_CSRF_TIME_LIMIT": None,
    }
    config.update(_mail_config(env, app_env))
    # Escrow (구매안전서비스) on transfer and virtual-account payments: the options Toss's SDK
    # takes in requestPayment; the merchant contract with Toss must include escrow.
    config["TOSS_ESCROW"] = _flag_named(env, "TOSS_ESCROW")
    if production and config["TOSS_READ_TIMEOUT"] < 30:
        raise ConfigError("TOSS_READ_TIMEOUT must be at least 30 seconds in production")
    config.update(
        {k: v for k, v in overrides.items() if not isinstance(v, str) or k not in env.read}
    )
    return config


# -- e-mail ------------------------------------------------------------------------------------


def _mail_config(env: Mapping[str, str], app_env: str) -> dict[str, Any]:
    """Where the worker sends e-mail: `MAIL_URL` (smtp:// or smtps://) or the `SMTP_*` variables,
    from `MAIL_FROM`. Without either, development and testing keep the messages in the outbox
    (listed at /dev/mail) and production leaves them waiting there until a server is set."""
    url = env.get("MAIL_URL", "").strip()
    host = env.get("SMTP_HOST", "").strip()
    if url and host:
        raise ConfigError("MAIL_URL and SMTP_HOST are both set: configure e-mail with one of them")
    smtp = _mail_url(url) if url else _smtp_vars(env, host) if host else None
    sender = env.get("MAIL_FROM", "").strip()
    if sender:
        _, address = parseaddr(sender)
        if "@" not in address or any(ord(ch) < 0x20 for ch in sender):
            raise ConfigError(f"MAIL_FROM must be an e-mail address, got {sender!r}")
    elif smtp is not None:
        raise ConfigError("MAIL_FROM is required when MAIL_URL or SMTP_HOST is set")
    clear = smtp is not None and smtp["password"] and not (smtp["ssl"] or smtp["starttls"])
    if clear and app_env == "production":
        raise ConfigError(
            "MAIL_URL/SMTP_STARTTLS: the SMTP password would travel unencrypted; use "
            "starttls=1 (SMTP_STARTTLS=1) or smtps://"
        )
    dev_page = _flag_named(env, "MAIL_DEV_PAGE", default=app_env == "development")
    if dev_page and app_env == "production":
        raise ConfigError("MAIL_DEV_PAGE cannot be on when APP_ENV=production")
    return {
        "MAIL_SMTP": smtp,
        "MAIL_FROM": sender or "no-reply@localhost",
        "MAIL_TIMEOUT": _float(env, "MAIL_TIMEOUT", 10.0, 0.1),
        "MAIL_DEV_PAGE": dev_page,
    }


def _mail_url(url: str) -> dict[str, Any]:
    parts = urlsplit(url)
    if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
        raise ConfigError(
            "MAIL_URL must look like smtp://user:password@host:587?starttls=1 (or smtps://)"
        )
    try:
        port = parts.port or (465 if parts.scheme == "smtps" else 587)
    except ValueError:
        raise ConfigError("MAIL_URL has an invalid port") from None
    query = parse_qs(parts.query)
    flag = (query.get("starttls") or [""])[-1].strip().lower()
    if flag not in ("", "0", "1", "true", "false"):
        raise ConfigError(f"MAIL_URL starttls must be 1 or 0, got {flag!r}")
    user = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password else None
    ssl = parts.scheme == "smtps"
    # Never send a password in clear by default: STARTTLS unless told otherwise.
    starttls = flag in ("1", "true") if flag else bool(password) and not ssl
    return {
        "host": parts.hostname,
        "port": port,
        "user": user,
        "password": password,
        "ssl": ssl,
        "starttls": starttls,
    }


def _smtp_vars(env: Mapping[str, str], host: str) -> dict[str, Any]:
    port = _int(env, "SMTP_PORT", 587, 1)
    if port > 65535:
        raise ConfigError(f"SMTP_PORT must be a TCP port, got {port}")
    user = env.get("SMTP_USER", "").strip() or None
    password = env.get("SMTP_PASSWORD", "") or None
    raw = env.get("SMTP_STARTTLS")
    starttls = (
        _flag_named(env, "SMTP_STARTTLS") if raw is not None and raw.strip() else bool(password)
    )
    return {
        "host": host,
        "port": port,
        "user": user,
        "password": password,
        "ssl": port == 465,
        "starttls": starttls and port != 465,
    }
