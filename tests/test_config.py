"""Start-up configuration: `payments.config.load_config` accepts safe setups and refuses the rest.

Every call passes `environ` explicitly, so neither the real environment nor `.env` is read.
"""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path
from typing import Any

import pytest
from dotenv import dotenv_values

from payments import config as config_module
from payments import create_app
from payments.config import ConfigError, load_config, variables_read
from payments.ops.sandbox import INPROCESS_TOSS
from payments.sandbox import SandboxSettings
from payments.sandbox.settings import SettingsError
from payments.shop.catalog import seed_catalog
from tests.helpers import BUYER_FORM, dispose, make_app

ROOT = Path(__file__).resolve().parents[1]

# Key-shaped fakes, built short so a secret scanner never flags this file: real keys (even the
# public docs ones) live only in README and .env.example.
DOCS_CLIENT_KEY = "test_gck_fake_key_for_tests"
DOCS_SECRET_KEY = "test_gsk_fake_key_for_tests"
TEST_GCK = "test_gck_abc"
TEST_GSK = "test_gsk_abc"
TEST_CK = "test_ck_abc"
TEST_SK = "test_sk_abc"
LIVE_GCK = "live_gck_" + "x" * 3 + "y"
LIVE_GSK = "live_gsk_" + "x" * 3 + "y"
LIVE_CK = "live_ck_abc"
LIVE_SK = "live_sk_abc"
PROD_SECRET = "prod-" + "s" * 40

PROD_OK: dict[str, str] = {
    "APP_ENV": "production",
    "SECRET_KEY": PROD_SECRET,
    "TOSS_CLIENT_KEY": LIVE_GCK,
    "TOSS_SECRET_KEY": LIVE_GSK,
    "PUBLIC_BASE_URL": "https://shop.example.kr",
    # Behind one buffering proxy (docs/deploy/nginx.conf).
    "TRUSTED_PROXY_COUNT": "1",
}


def load(
    tmp_path: Path, env: dict[str, str], overrides: dict[str, Any] | None = None
) -> dict[str, Any]:
    return load_config(overrides, environ=env, instance_path=str(tmp_path / "instance"))


def names_variable(message: str, name: str) -> bool:
    """True when `name` appears as a whole variable name (SECRET_KEY is not TOSS_SECRET_KEY)."""
    return re.search(rf"(?<![A-Z0-9_]){re.escape(name)}(?![A-Z0-9_])", message) is not None


@pytest.fixture(autouse=True)
def _no_dotenv_in_config_tests(monkeypatch: pytest.MonkeyPatch) -> None:
    """Belt and braces: a developer's `.env` must never leak into these tests."""
    monkeypatch.setattr(config_module, "load_dotenv", lambda *args, **kwargs: False)


# -- refusals ---------------------------------------------------------------------------------

REFUSALS: list[Any] = [
    pytest.param(
        {"APP_ENV": "production", "TOSS_CLIENT_KEY": LIVE_GCK, "TOSS_SECRET_KEY": LIVE_GSK},
        ("SECRET_KEY",),
        id="production-without-SECRET_KEY",
    ),
    pytest.param(
        {**PROD_OK, "SECRET_KEY": "   "},
        ("SECRET_KEY",),
        id="production-blank-SECRET_KEY",
    ),
    pytest.param(
        {**PROD_OK, "SECRET_KEY": "short"},
        ("SECRET_KEY",),
        id="production-short-SECRET_KEY",
    ),
    pytest.param(
        {**PROD_OK, "TOSS_CLIENT_KEY": TEST_GCK, "TOSS_SECRET_KEY": TEST_GSK},
        ("TOSS_CLIENT_KEY",),
        id="production-with-test-widget-keys",
    ),
    pytest.param(
        {**PROD_OK, "TOSS_CLIENT_KEY": DOCS_CLIENT_KEY, "TOSS_SECRET_KEY": DOCS_SECRET_KEY},
        ("TOSS_SECRET_KEY",),
        id="production-with-docs-keys",
    ),
    pytest.param(
        {**PROD_OK, "TOSS_CLIENT_KEY": TEST_CK, "TOSS_SECRET_KEY": TEST_SK},
        ("TOSS_CLIENT_KEY",),
        id="production-with-test-api-keys",
    ),
    pytest.param(
        {**PROD_OK, "TOSS_SANDBOX": "1"},
        ("TOSS_SANDBOX",),
        id="production-with-sandbox-and-live-keys",
    ),
    pytest.param(
        {"APP_ENV": "production", "SECRET_KEY": PROD_SECRET, "TOSS_SANDBOX": "1"},
        ("TOSS_SANDBOX",),
        id="production-with-sandbox-no-keys",
    ),
    pytest.param(
        {"APP_ENV": "production", "SECRET_KEY": PROD_SECRET},
        ("TOSS_CLIENT_KEY", "TOSS_SECRET_KEY"),
        id="production-without-keys",
    ),
    pytest.param(
        {"TOSS_CLIENT_KEY": TEST_GCK, "TOSS_SECRET_KEY": TEST_SK},
        ("TOSS_CLIENT_KEY", "TOSS_SECRET_KEY"),
        id="widget-client-with-api-secret",
    ),
    pytest.param(
        {"TOSS_CLIENT_KEY": TEST_CK, "TOSS_SECRET_KEY": TEST_GSK},
        ("TOSS_CLIENT_KEY", "TOSS_SECRET_KEY"),
        id="api-client-with-widget-secret",
    ),
    pytest.param(
        {**PROD_OK, "TOSS_CLIENT_KEY": LIVE_CK, "TOSS_SECRET_KEY": LIVE_GSK},
        ("TOSS_CLIENT_KEY", "TOSS_SECRET_KEY"),
        id="production-live-api-client-with-live-widget-secret",
    ),
    pytest.param(
        {"TOSS_CLIENT_KEY": TEST_GCK, "TOSS_SECRET_KEY": LIVE_GSK},
        ("TOSS_CLIENT_KEY", "TOSS_SECRET_KEY"),
        id="test-client-with-live-secret",
    ),
    pytest.param(
        {"TOSS_CLIENT_KEY": LIVE_GCK, "TOSS_SECRET_KEY": TEST_GSK},
        ("TOSS_CLIENT_KEY", "TOSS_SECRET_KEY"),
        id="live-client-with-test-secret",
    ),
    pytest.param(
        {**PROD_OK, "TOSS_CLIENT_KEY": LIVE_CK, "TOSS_SECRET_KEY": TEST_SK},
        ("TOSS_CLIENT_KEY", "TOSS_SECRET_KEY"),
        id="production-live-api-client-with-test-api-secret",
    ),
    pytest.param(
        {"TOSS_CLIENT_KEY": TEST_GCK, "TOSS_SECRET_KEY": TEST_GCK},
        ("TOSS_SECRET_KEY",),
        id="client-key-in-secret-slot",
    ),
    pytest.param(
        {"TOSS_CLIENT_KEY": TEST_SK, "TOSS_SECRET_KEY": TEST_SK},
        ("TOSS_CLIENT_KEY",),
        id="secret-key-in-client-slot",
    ),
    pytest.param(
        {"TOSS_CLIENT_KEY": "pk_abc", "TOSS_SECRET_KEY": TEST_GSK},
        ("TOSS_CLIENT_KEY",),
        id="client-key-not-key-shaped",
    ),
    pytest.param(
        {"TOSS_CLIENT_KEY": TEST_GCK, "TOSS_SECRET_KEY": "hunter2"},
        ("TOSS_SECRET_KEY",),
        id="secret-key-not-key-shaped",
    ),
    pytest.param(
        {"TOSS_CLIENT_KEY": TEST_GCK},
        ("TOSS_SECRET_KEY",),
        id="only-client-key",
    ),
    pytest.param(
        {"TOSS_SECRET_KEY": TEST_GSK},
        ("TOSS_CLIENT_KEY",),
        id="only-secret-key",
    ),
    pytest.param(
        {"TOSS_SANDBOX": "1", "TOSS_CLIENT_KEY": LIVE_GCK, "TOSS_SECRET_KEY": LIVE_GSK},
        ("TOSS_SANDBOX",),
        id="sandbox-with-live-keys",
    ),
    pytest.param({"TOSS_SANDBOX": "maybe"}, ("TOSS_SANDBOX",), id="garbage-TOSS_SANDBOX"),
    pytest.param({"TOSS_SANDBOX": "2"}, ("TOSS_SANDBOX",), id="TOSS_SANDBOX-2"),
    pytest.param(
        {"TOSS_SANDBOX": "0"},
        ("TOSS_CLIENT_KEY", "TOSS_SECRET_KEY"),
        id="sandbox-forbidden-without-keys",
    ),
    pytest.param({"APP_ENV": "staging"}, ("APP_ENV",), id="APP_ENV-unknown"),
    pytest.param({"APP_ENV": "prod"}, ("APP_ENV",), id="APP_ENV-abbreviated"),
    pytest.param({"TOSS_READ_TIMEOUT": "thirty"}, ("TOSS_READ_TIMEOUT",), id="read-timeout-word"),
    pytest.param({"TOSS_READ_TIMEOUT": "30s"}, ("TOSS_READ_TIMEOUT",), id="read-timeout-unit"),
    pytest.param({"TOSS_READ_TIMEOUT": "0"}, ("TOSS_READ_TIMEOUT",), id="read-timeout-zero"),
    pytest.param(
        {"TOSS_CONNECT_TIMEOUT": "fast"}, ("TOSS_CONNECT_TIMEOUT",), id="connect-timeout-word"
    ),
    pytest.param({"TOSS_MAX_RETRIES": "two"}, ("TOSS_MAX_RETRIES",), id="max-retries-word"),
    pytest.param({"TOSS_MAX_RETRIES": "-1"}, ("TOSS_MAX_RETRIES",), id="max-retries-negative"),
    pytest.param(
        {**PROD_OK, "TOSS_READ_TIMEOUT": "10"},
        ("TOSS_READ_TIMEOUT",),
        id="production-read-timeout-below-30",
    ),
    pytest.param(
        {**PROD_OK, "TOSS_API_BASE": "http://api.tosspayments.com"},
        ("TOSS_API_BASE",),
        id="production-api-base-not-https",
    ),
    pytest.param(
        {"TOSS_API_BASE": "api.tosspayments.com"}, ("TOSS_API_BASE",), id="api-base-no-scheme"
    ),
    pytest.param(
        {"PUBLIC_BASE_URL": "https://shop.example/checkout"},
        ("PUBLIC_BASE_URL",),
        id="public-base-with-path",
    ),
    # Live keys move real money: only a production deployment may hold them.
    pytest.param(
        {"TOSS_CLIENT_KEY": LIVE_GCK, "TOSS_SECRET_KEY": LIVE_GSK},
        ("TOSS_CLIENT_KEY", "APP_ENV"),
        id="development-with-live-widget-keys",
    ),
    pytest.param(
        {"APP_ENV": "testing", "TOSS_CLIENT_KEY": LIVE_CK, "TOSS_SECRET_KEY": LIVE_SK},
        ("TOSS_CLIENT_KEY", "APP_ENV"),
        id="testing-with-live-api-keys",
    ),
    pytest.param(
        {"TOSS_SANDBOX": "0", "TOSS_CLIENT_KEY": LIVE_GCK, "TOSS_SECRET_KEY": LIVE_GSK},
        ("TOSS_CLIENT_KEY", "APP_ENV"),
        id="development-sandbox-off-with-live-keys",
    ),
    # The sandbox's keys must never travel to the real Toss.
    pytest.param(
        {"TOSS_API_BASE": "https://api.tosspayments.com"},
        ("TOSS_API_BASE",),
        id="sandbox-by-default-with-real-toss-api-base",
    ),
    pytest.param(
        {
            "TOSS_SANDBOX": "1",
            "TOSS_CLIENT_KEY": TEST_GCK,
            "TOSS_SECRET_KEY": TEST_GSK,
            "TOSS_API_BASE": "https://API.TossPayments.com/",
        },
        ("TOSS_API_BASE",),
        id="sandbox-forced-with-real-toss-api-base",
    ),  # fmt: skip
    # Redirects and Toss's return URLs come from configuration, never from the Host header.
    pytest.param(
        {**PROD_OK, "PUBLIC_BASE_URL": ""},
        ("PUBLIC_BASE_URL",),
        id="production-without-PUBLIC_BASE_URL",
    ),
    pytest.param(
        {**PROD_OK, "PUBLIC_BASE_URL": "http://shop.example.kr"},
        ("PUBLIC_BASE_URL",),
        id="production-PUBLIC_BASE_URL-not-https",
    ),
    # Slow clients: production sits behind a buffering proxy.
    pytest.param(
        {**PROD_OK, "TRUSTED_PROXY_COUNT": "0"},
        ("TRUSTED_PROXY_COUNT",),
        id="production-without-a-proxy",
    ),
    pytest.param(
        {k: v for k, v in PROD_OK.items() if k != "TRUSTED_PROXY_COUNT"},
        ("TRUSTED_PROXY_COUNT",),
        id="production-proxy-count-unset",
    ),
    # Several workers that each count alone multiply every limit.
    pytest.param(
        {**PROD_OK, "WEB_CONCURRENCY": "4"},
        ("WEB_CONCURRENCY", "REDIS_URL"),
        id="production-several-workers-without-shared-limits",
    ),
    pytest.param(
        {
            **PROD_OK,
            "WEB_CONCURRENCY": "2",
            "REDIS_URL": "redis://cache:6379/0",
            "RATELIMIT_STORAGE_URI": "memory://",
        },
        ("WEB_CONCURRENCY", "RATELIMIT_STORAGE_URI"),
        id="production-several-workers-storage-forced-to-memory",
    ),  # fmt: skip
    pytest.param({"WEB_CONCURRENCY": "0"}, ("WEB_CONCURRENCY",), id="web-concurrency-zero"),
    pytest.param({"WEB_CONCURRENCY": "four"}, ("WEB_CONCURRENCY",), id="web-concurrency-word"),
]


@pytest.mark.parametrize(("env", "names"), REFUSALS)
def test_start_up_refusal_names_the_variable(
    tmp_path: Path, env: dict[str, str], names: tuple[str, ...]
) -> None:
    with pytest.raises(ConfigError) as excinfo:
        load(tmp_path, env)

    message = str(excinfo.value)
    assert "\n" not in message.strip(), "the refusal must be one line"
    for name in names:
        assert names_variable(message, name), f"{name!r} not named in {message!r}"


@pytest.mark.parametrize("name", ["TOSS_READ_TIMEOUT", "TOSS_CONNECT_TIMEOUT"])
@pytest.mark.parametrize("value", ["nan", "inf"])
def test_non_finite_timeouts_are_refused(tmp_path: Path, name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        load(tmp_path, {**PROD_OK, name: value})


def test_config_error_is_a_runtime_error() -> None:
    assert issubclass(ConfigError, RuntimeError)


def test_overrides_named_like_env_vars_stand_in_for_them(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as excinfo:
        load(tmp_path, {}, overrides={"APP_ENV": "production"})

    assert names_variable(str(excinfo.value), "SECRET_KEY")


def test_environ_argument_is_the_only_source(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("APP_ENV", "production")
    monkeypatch.setenv("TOSS_CLIENT_KEY", LIVE_GCK)

    cfg = load(tmp_path, {})

    assert cfg["APP_ENV"] == "development"
    assert cfg["TOSS_SANDBOX"] is True


# -- accepted setups --------------------------------------------------------------------------


def test_development_without_keys_runs_the_sandbox(tmp_path: Path) -> None:
    cfg = load(tmp_path, {})

    assert cfg["APP_ENV"] == "development"
    assert cfg["TOSS_SANDBOX"] is True
    assert cfg["TOSS_CLIENT_KEY"] == "test_gck_sandbox"
    assert cfg["TOSS_SECRET_KEY"] == "test_gsk_sandbox"
    # Left to the mounted sandbox, which points the shop at itself (see the app test below).
    assert cfg["TOSS_API_BASE"] == ""
    assert cfg["SESSION_COOKIE_SECURE"] is False
    assert cfg["SECRET_KEY"]


def test_development_secret_key_is_random_per_start(tmp_path: Path) -> None:
    first = load(tmp_path, {})["SECRET_KEY"]
    second = load(tmp_path, {})["SECRET_KEY"]

    assert first != second
    assert len(first) >= 16


def test_development_with_docs_widget_keys_talks_to_toss(tmp_path: Path) -> None:
    cfg = load(tmp_path, {"TOSS_CLIENT_KEY": DOCS_CLIENT_KEY, "TOSS_SECRET_KEY": DOCS_SECRET_KEY})

    assert cfg["TOSS_SANDBOX"] is False
    assert cfg["TOSS_CLIENT_KEY"] == DOCS_CLIENT_KEY
    assert cfg["TOSS_SECRET_KEY"] == DOCS_SECRET_KEY
    assert cfg["TOSS_API_BASE"] == "https://api.tosspayments.com"
    assert cfg["TOSS_WIDGET_SCRIPT_URL"] == "https://js.tosspayments.com/v2/standard"


def test_keys_are_stripped_of_surrounding_whitespace(tmp_path: Path) -> None:
    cfg = load(
        tmp_path,
        {"TOSS_CLIENT_KEY": f"  {DOCS_CLIENT_KEY}\n", "TOSS_SECRET_KEY": f"{DOCS_SECRET_KEY} "},
    )

    assert cfg["TOSS_CLIENT_KEY"] == DOCS_CLIENT_KEY
    assert cfg["TOSS_SECRET_KEY"] == DOCS_SECRET_KEY


@pytest.mark.parametrize(
    ("client_key", "secret_key"),
    [(TEST_CK, TEST_SK), (TEST_GCK, TEST_GSK)],
    ids=["api-pair", "widget-pair"],
)
def test_development_accepts_matching_test_pairs(
    tmp_path: Path, client_key: str, secret_key: str
) -> None:
    cfg = load(tmp_path, {"TOSS_CLIENT_KEY": client_key, "TOSS_SECRET_KEY": secret_key})

    assert cfg["TOSS_SANDBOX"] is False
    assert (cfg["TOSS_CLIENT_KEY"], cfg["TOSS_SECRET_KEY"]) == (client_key, secret_key)


def test_sandbox_forced_on_with_test_keys(tmp_path: Path) -> None:
    cfg = load(
        tmp_path, {"TOSS_SANDBOX": "1", "TOSS_CLIENT_KEY": TEST_GCK, "TOSS_SECRET_KEY": TEST_GSK}
    )

    assert cfg["TOSS_SANDBOX"] is True
    assert cfg["TOSS_API_BASE"] == ""
    assert cfg["TOSS_CLIENT_KEY"] == TEST_GCK


@pytest.mark.parametrize(
    ("client_key", "secret_key"),
    [(LIVE_GCK, LIVE_GSK), (LIVE_CK, LIVE_SK)],
    ids=["widget-pair", "api-pair"],
)
def test_production_with_live_keys_is_accepted(
    tmp_path: Path, client_key: str, secret_key: str
) -> None:
    env = {**PROD_OK, "TOSS_CLIENT_KEY": client_key, "TOSS_SECRET_KEY": secret_key}

    cfg = load(tmp_path, env)

    assert cfg["APP_ENV"] == "production"
    assert cfg["TESTING"] is False
    assert cfg["SECRET_KEY"] == PROD_SECRET
    assert cfg["SESSION_COOKIE_SECURE"] is True
    assert cfg["SESSION_COOKIE_HTTPONLY"] is True
    assert cfg["TOSS_SANDBOX"] is False
    assert cfg["TOSS_API_BASE"] == "https://api.tosspayments.com"
    assert cfg["TOSS_READ_TIMEOUT"] >= 30


def test_production_with_several_workers_and_shared_limits(tmp_path: Path) -> None:
    cfg = load(tmp_path, {**PROD_OK, "WEB_CONCURRENCY": "4", "REDIS_URL": "redis://cache:6379/0"})

    assert cfg["WEB_CONCURRENCY"] == 4
    assert cfg["RATELIMIT_STORAGE_URI"] == "redis://cache:6379/0"
    assert cfg["PUBLIC_BASE_URL"] == "https://shop.example.kr"
    assert cfg["TRUSTED_PROXY_COUNT"] == 1


def test_rate_limit_storage_defaults(tmp_path: Path) -> None:
    assert load(tmp_path, {})["RATELIMIT_STORAGE_URI"] == "memory://"
    assert load(tmp_path, {})["WEB_CONCURRENCY"] == 1
    both = {"REDIS_URL": "redis://a:6379/0", "RATELIMIT_STORAGE_URI": "redis://b:6379/1"}
    assert load(tmp_path, both)["RATELIMIT_STORAGE_URI"] == "redis://b:6379/1"


def test_development_with_several_workers_and_memory_limits_starts(tmp_path: Path) -> None:
    """Only warned about (ratelimit.py logs it): one developer's gunicorn, nobody to abuse it."""
    cfg = load(tmp_path, {"WEB_CONCURRENCY": "4"})

    assert cfg["RATELIMIT_STORAGE_URI"] == "memory://"


def test_a_single_worker_production_may_count_in_memory(tmp_path: Path) -> None:
    cfg = load(tmp_path, {**PROD_OK, "WEB_CONCURRENCY": "1"})

    assert cfg["RATELIMIT_STORAGE_URI"] == "memory://"


@pytest.mark.parametrize("app_env", ["development", "testing", "production"])
def test_gunicorn_refuses_to_start_without_secret_key(tmp_path: Path, app_env: str) -> None:
    """Each worker would mint a key of its own, and a CSRF token from one fails on another."""
    env = {**PROD_OK, "APP_ENV": app_env} if app_env == "production" else {"APP_ENV": app_env}
    env.pop("SECRET_KEY", None)

    with pytest.raises(ConfigError) as excinfo:
        load_config(environ=env, instance_path=str(tmp_path), server="gunicorn")

    assert names_variable(str(excinfo.value), "SECRET_KEY")
    assert "\n" not in str(excinfo.value)


def test_gunicorn_with_secret_key_and_dev_server_without_one(tmp_path: Path) -> None:
    cfg = load_config(
        environ={"SECRET_KEY": "shared-dev-key"}, instance_path=str(tmp_path), server="gunicorn"
    )
    assert cfg["SECRET_KEY"] == "shared-dev-key"
    # Flask's one-process development server may still make one up.
    assert load_config(environ={}, instance_path=str(tmp_path))["SECRET_KEY"]


def test_a_local_toss_sandbox_server_may_stand_in_for_toss(tmp_path: Path) -> None:
    """`toss-sandbox serve` on another port: only Toss's own hosts are refused."""
    cfg = load(tmp_path, {"TOSS_SANDBOX": "1", "TOSS_API_BASE": "http://127.0.0.1:8001/sandbox"})

    assert cfg["TOSS_API_BASE"] == "http://127.0.0.1:8001/sandbox"


def test_production_with_sandbox_explicitly_off(tmp_path: Path) -> None:
    cfg = load(tmp_path, {**PROD_OK, "TOSS_SANDBOX": "0"})

    assert cfg["TOSS_SANDBOX"] is False


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://shop:pw@db:5432/shop", "postgresql+psycopg://shop:pw@db:5432/shop"),
        ("postgres://shop:pw@db/shop", "postgresql+psycopg://shop:pw@db/shop"),
        ("postgresql+psycopg://shop@db/shop", "postgresql+psycopg://shop@db/shop"),
        ("sqlite:///tmp/x.sqlite3", "sqlite:///tmp/x.sqlite3"),
    ],
)
def test_database_url_driver(tmp_path: Path, url: str, expected: str) -> None:
    cfg = load(tmp_path, {"DATABASE_URL": url})

    assert cfg["SQLALCHEMY_DATABASE_URI"] == expected


def test_default_database_is_sqlite_file_in_instance_path(tmp_path: Path) -> None:
    instance = tmp_path / "instance"
    assert not instance.exists()

    cfg = load(tmp_path, {})

    uri = cfg["SQLALCHEMY_DATABASE_URI"]
    assert uri.startswith("sqlite:///")
    db_file = Path(uri.removeprefix("sqlite:///"))
    assert db_file.is_absolute()
    assert db_file.parent == instance.resolve()
    assert db_file.suffix in {".sqlite3", ".sqlite", ".db"}
    assert instance.is_dir()


def test_numeric_settings_are_parsed(tmp_path: Path) -> None:
    cfg = load(
        tmp_path,
        {
            "TOSS_CONNECT_TIMEOUT": "2.5",
            "TOSS_READ_TIMEOUT": "45",
            "TOSS_MAX_RETRIES": "3",
            "TOSS_RETRY_BACKOFF": "0.25",
        },
    )

    assert cfg["TOSS_CONNECT_TIMEOUT"] == 2.5
    assert cfg["TOSS_READ_TIMEOUT"] == 45.0
    assert cfg["TOSS_MAX_RETRIES"] == 3
    assert cfg["TOSS_RETRY_BACKOFF"] == 0.25


def test_other_overrides_land_on_the_config(tmp_path: Path) -> None:
    cfg = load(tmp_path, {}, overrides={"WTF_CSRF_ENABLED": False, "TOSS_SANDBOX": "1"})

    assert cfg["WTF_CSRF_ENABLED"] is False
    assert cfg["TOSS_SANDBOX"] is True


# -- the app factory --------------------------------------------------------------------------


def test_create_app_refuses_production_without_secret_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("SECRET_KEY", raising=False)
    monkeypatch.setenv("APP_ENV", "development")  # the override below must win
    monkeypatch.setenv("TOSS_CLIENT_KEY", LIVE_GCK)
    monkeypatch.setenv("TOSS_SECRET_KEY", LIVE_GSK)

    with pytest.raises(ConfigError) as excinfo:
        create_app({"APP_ENV": "production"})

    assert names_variable(str(excinfo.value), "SECRET_KEY")


def test_env_example_copied_as_env_runs_the_sandbox_offline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`cp .env.example .env` then `make run`: the environment is exactly the parsed file (its
    databases moved to tmp_path), and the shop talks to its in-process sandbox, never to Toss."""
    values = {k: v or "" for k, v in dotenv_values(ROOT / ".env.example").items()}
    assert values["APP_ENV"] == "development"
    values.update(
        DATABASE_URL=f"sqlite:///{tmp_path / 'shop.sqlite3'}",
        SANDBOX_DATABASE_URL=f"sqlite:///{tmp_path / 'sandbox.sqlite3'}",
        SANDBOX_WEBHOOKS_ENABLED="0",
    )
    monkeypatch.setattr(os, "environ", values)

    app = create_app()
    try:
        assert app.config["TOSS_SANDBOX"] is True
        assert app.config["TOSS_API_BASE"] == INPROCESS_TOSS + "/sandbox"
        assert not config_module.is_real_toss(app.config["TOSS_API_BASE"])
        assert app.config["TOSS_SECRET_KEY"].startswith("test_")
    finally:
        dispose(app)


PROD_APP = {**PROD_OK, "TOSS_SANDBOX": "0"}


def test_production_https_redirect_ignores_a_forged_host(database_url: str) -> None:
    """The redirect to https goes to PUBLIC_BASE_URL, whatever Host (or X-Forwarded-Host from
    an untrusted client) the request named."""
    app = make_app(database_url, **PROD_APP)
    try:
        client = app.test_client()
        plain = client.get(
            "/orders/x%20y?lang=ko&q=%ED%95%9C",
            base_url="http://evil.example",
            headers={"X-Forwarded-Host": "evil2.example"},
        )
        assert plain.status_code == 301
        assert (
            plain.headers["Location"] == "https://shop.example.kr/orders/x%20y?lang=ko&q=%ED%95%9C"
        )
        # A client cannot claim https itself: only the trusted proxy's header counts (the
        # request below reaches the app straight, so its own header is the proxy's slot).
        relayed = client.get(
            "/",
            base_url="http://evil.example",
            headers={"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.9"},
        )
        assert relayed.status_code == 200
        secure = client.get("/", base_url="https://evil.example")
        assert secure.status_code == 200
        assert "Strict-Transport-Security" in secure.headers
    finally:
        dispose(app)


def test_production_toss_return_urls_ignore_a_forged_host(database_url: str) -> None:
    app = make_app(database_url, **PROD_APP)
    try:
        with app.app_context():
            seed_catalog()
        client = app.test_client()
        host = {"base_url": "https://evil.example"}
        client.post("/cart", data={"product_id": "1"}, **host)
        checkout = client.post("/orders", data=BUYER_FORM, follow_redirects=True, **host)
        assert checkout.status_code == 200
        page = checkout.get_data(as_text=True)
        assert 'data-success-url="https://shop.example.kr/checkout/success"' in page
        assert 'data-fail-url="https://shop.example.kr/checkout/fail"' in page
        assert "evil.example" not in page
    finally:
        dispose(app)


def test_sandbox_mode_points_the_shop_at_the_mounted_sandbox(tmp_path: Path) -> None:
    app = create_app(
        {
            "APP_ENV": "testing",
            "DATABASE_URL": f"sqlite:///{tmp_path / 'shop.sqlite3'}",
            "TOSS_SANDBOX": "1",
            "SANDBOX": {
                "database_url": f"sqlite:///{tmp_path / 'sandbox.sqlite3'}",
                "webhooks_enabled": False,
            },
        }
    )
    try:
        assert app.config["TOSS_API_BASE"] == INPROCESS_TOSS + "/sandbox"
        assert app.config["TOSS_WIDGET_SCRIPT_URL"] == "/sandbox/widget/v2/standard"
        sandbox = app.extensions["sandbox_app"]
        assert sandbox.config["SQLALCHEMY_DATABASE_URI"].endswith("sandbox.sqlite3")
        # The sandbox answers to the shop's keys.
        settings = sandbox.extensions["toss_sandbox"].settings
        assert (settings.client_key, settings.secret_key) == (
            app.config["TOSS_CLIENT_KEY"],
            app.config["TOSS_SECRET_KEY"],
        )
    finally:
        dispose(app)


# -- the sandbox's settings ------------------------------------------------------------------------


class ReadEnv(dict[str, str]):
    """An environment that remembers which names were looked up."""

    def __init__(self, data: dict[str, str] | None = None) -> None:
        super().__init__(data or {})
        self.read: set[str] = set()

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        self.read.add(key)
        return super().get(key, default)

    def __getitem__(self, key: str) -> str:
        self.read.add(key)
        return super().__getitem__(key)


def sandbox_variables() -> set[str]:
    """Every environment variable `SandboxSettings.load` reads."""
    env = ReadEnv()
    SandboxSettings.load(environ=env)
    return env.read


def test_sandbox_reads_a_variable_per_setting_but_the_clock() -> None:
    fields = {f.name for f in dataclasses.fields(SandboxSettings)}
    assert sandbox_variables() == {f"SANDBOX_{name.upper()}" for name in fields - {"clock"}}


def test_sandbox_settings_come_from_the_environment() -> None:
    settings = SandboxSettings.load(
        environ={
            "SANDBOX_DATABASE_URL": "sqlite:////tmp/elsewhere.sqlite3",
            "SANDBOX_WEBHOOK_URL": "http://127.0.0.1:5000/api/payment/webhook",
            "SANDBOX_WEBHOOKS_ENABLED": "0",
            "SANDBOX_WEBHOOK_SCALE": "0.001",
            "SANDBOX_LATENCY_MS": "250",
            "SANDBOX_VIRTUAL_ACCOUNT_DAYS": "3",
            "SANDBOX_WEBHOOK_REORDER": "true",
        }
    )
    assert settings.database_url == "sqlite:////tmp/elsewhere.sqlite3"
    assert settings.webhook_url == "http://127.0.0.1:5000/api/payment/webhook"
    assert settings.webhooks_enabled is False
    assert settings.webhook_scale == 0.001
    assert settings.latency_ms == 250
    assert settings.virtual_account_days == 3
    assert settings.webhook_reorder is True


def test_sandbox_defaults_without_an_environment() -> None:
    settings = SandboxSettings.load(environ={})
    assert settings.database_url is None  # its own SQLite file in the instance folder
    assert settings.virtual_account_days == 7
    assert settings.webhooks_enabled is True
    assert settings.latency_ms == 0


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("SANDBOX_LATENCY_MS", "fast"),
        ("SANDBOX_LATENCY_MS", "-1"),
        ("SANDBOX_WEBHOOK_SCALE", "lots"),
        ("SANDBOX_WEBHOOK_SCALE", "nan"),
        ("SANDBOX_WEBHOOK_DELAY", "-0.5"),
        ("SANDBOX_WEBHOOK_DUPLICATES", "2.5"),
        ("SANDBOX_WEBHOOKS_ENABLED", "maybe"),
        ("SANDBOX_WEBHOOK_REORDER", "2"),
        ("SANDBOX_VIRTUAL_ACCOUNT_DAYS", "0"),
        ("SANDBOX_VIRTUAL_ACCOUNT_DAYS", "31"),
        ("SANDBOX_VIRTUAL_ACCOUNT_DAYS", "seven"),
        ("SANDBOX_SLOW_CONFIRM_SECONDS", "inf"),
        ("SANDBOX_WEBHOOK_URL", "shop.example/webhook"),
    ],
)
def test_a_bad_sandbox_setting_names_its_variable(name: str, value: str) -> None:
    with pytest.raises(SettingsError) as excinfo:
        SandboxSettings.load(environ={name: value})
    assert names_variable(str(excinfo.value), name), str(excinfo.value)


def test_sandbox_overrides_win_over_the_environment() -> None:
    env = {"SANDBOX_LATENCY_MS": "900", "SANDBOX_WEBHOOK_URL": "http://env.example/hook"}
    settings = SandboxSettings.load(
        {"latency_ms": 5, "webhook_url": "http://override.example/hook"}, environ=env
    )
    assert settings.latency_ms == 5
    assert settings.webhook_url == "http://override.example/hook"
    # An override is checked like the environment is.
    with pytest.raises(SettingsError, match="SANDBOX_VIRTUAL_ACCOUNT_DAYS"):
        SandboxSettings.load({"virtual_account_days": 90}, environ={})
    with pytest.raises(SettingsError, match="no_such_setting"):
        SandboxSettings.load({"no_such_setting": 1}, environ={})


def test_the_shop_no_longer_reads_sandbox_variables(tmp_path: Path) -> None:
    assert not {name for name in variables_read() if name.startswith("SANDBOX_")}
    cfg = load(tmp_path, {"SANDBOX_LATENCY_MS": "not a number"})
    assert not any(key.startswith("SANDBOX_") for key in cfg)


# -- documentation ---------------------------------------------------------------------------------


def test_env_example_lists_every_variable() -> None:
    """Every variable the shop's config, the sandbox's settings and gunicorn.conf.py read is
    documented in .env.example."""
    root = Path(__file__).resolve().parents[1]
    example = (root / ".env.example").read_text()
    listed = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", example, re.M))
    gunicorn = set(
        re.findall(
            r'os\.environ\.(?:get|setdefault)\(\s*"([A-Z_]+)"',
            (root / "gunicorn.conf.py").read_text(),
        )
    )
    sandbox = sandbox_variables()
    assert "SANDBOX_DATABASE_URL" in sandbox
    missing = (variables_read() | sandbox | gunicorn) - listed
    assert missing == set()
