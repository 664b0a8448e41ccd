"""Security properties that hold for every route: CSRF, cookies, headers, errors, secrets."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from payments.extensions import csrf
from payments.ops.security import (
    PRODUCTION_HEADERS,
    SECURITY_HEADERS,
    content_security_policy,
)
from payments.shop.catalog import seed_catalog
from tests.helpers import dispose, make_app, sandbox_app

ROOT = Path(__file__).resolve().parents[1]
LIVE = {
    "APP_ENV": "production",
    "TOSS_CLIENT_KEY": "live_gck_" + "prodkey",
    "TOSS_SECRET_KEY": "live_gsk_" + "prodkey",
    "TOSS_SANDBOX": "0",
    # Production requires its public origin and a buffering proxy in front (config.py).
    "PUBLIC_BASE_URL": "https://shop.example",
    "TRUSTED_PROXY_COUNT": "1",
}
# Endpoints that take unsafe methods without a CSRF token, and why it is safe for each.
CSRF_EXEMPT = {
    # JSON for script clients: checked against the stored order and Toss, and rate-limited.
    "api.verify",
    # Toss webhooks: stored, then re-checked with Toss (or signature/secret-checked).
    "hooks.receive",
}


def exempt(app: Flask, endpoint: str) -> bool:
    view = app.view_functions[endpoint]
    name = f"{view.__module__}.{view.__name__}"
    blueprint = app.blueprints.get(endpoint.split(".")[0]) if "." in endpoint else None
    return name in csrf._exempt_views or blueprint in csrf._exempt_blueprints


def test_only_the_json_api_and_webhooks_skip_csrf(database_url: str) -> None:
    app = sandbox_app(database_url, WTF_CSRF_ENABLED=True)
    unsafe = {
        rule.endpoint
        for rule in app.url_map.iter_rules()
        if rule.methods and rule.methods & {"POST", "PUT", "PATCH", "DELETE"}
    }
    try:
        skipped = {e for e in unsafe if exempt(app, e)}
        assert skipped == CSRF_EXEMPT, "a new CSRF-exempt endpoint appeared: justify it here"
        # The mounted sandbox is an app of its own: none of its routes is one of the shop's.
        assert not any(e.startswith("sandbox") for e in unsafe)
    finally:
        dispose(app)


def test_production_has_no_sandbox_and_no_other_exemption(database_url: str) -> None:
    app = make_app(database_url, **LIVE)
    assert "sandbox_app" not in app.extensions
    widget = app.test_client().get("/sandbox/widget/v2/standard", base_url="https://shop.example")
    assert widget.status_code == 404
    unsafe = {r.endpoint for r in app.url_map.iter_rules() if r.methods and "POST" in r.methods}
    assert {e for e in unsafe if exempt(app, e)} == CSRF_EXEMPT


@pytest.mark.parametrize("path", ["/", "/cart", "/no-such-page", "/checkout/fail", "/metrics"])
def test_security_headers_on_every_response(client: object, path: str) -> None:
    resp = client.get(path)  # type: ignore[attr-defined]
    for name in SECURITY_HEADERS:
        assert name in resp.headers, f"{name} missing on {path}"
    csp = resp.headers["Content-Security-Policy"]
    for directive in ("object-src 'none'", "base-uri 'none'", "frame-ancestors 'none'"):
        assert directive in csp
    assert resp.headers["Referrer-Policy"] == "strict-origin-when-cross-origin"
    assert "Strict-Transport-Security" not in resp.headers  # development: no HSTS on http


PAGES = ["/", "/cart", "/checkout/fail?code=X", "/no-such-page", "/metrics", "/healthz"]


def csp_directives(header: str) -> dict[str, set[str]]:
    """A Content-Security-Policy header as {directive: its sources}."""
    out = {}
    for part in header.split(";"):
        words = part.split()
        if words:
            out[words[0]] = set(words[1:])
    return out


def expected_csp(app: Flask) -> dict[str, set[str]]:
    """The documented policy (payments.ops.security) for this app's configuration."""
    return {
        name: {value} if isinstance(value, str) else set(value)
        for name, value in content_security_policy(app.config).items()
    }


@pytest.mark.parametrize("env", ["testing", "production"])
def test_every_page_carries_the_documented_headers_and_policy(database_url: str, env: str) -> None:
    """Every page, served over HTTPS, carries each documented security header and exactly the
    documented policy (plus this response's nonce for scripts); production adds HSTS."""
    config = {**LIVE, "SECRET_KEY": "a-long-production-secret-key"} if env == "production" else {}
    app = make_app(database_url, **config)
    for path in PAGES:
        resp = app.test_client().get(path, base_url="https://shop.example")
        assert resp.status_code < 500, path
        for name in SECURITY_HEADERS:
            assert name in resp.headers, f"{name} missing on {path}"
        directives = csp_directives(resp.headers["Content-Security-Policy"])
        nonces = {s for s in directives.get("script-src", set()) if s.startswith("'nonce-")}
        assert len(nonces) == 1, path
        directives["script-src"] -= nonces
        assert directives == expected_csp(app), path
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
        assert resp.headers["X-Frame-Options"] == "DENY"
        assert resp.headers["Referrer-Policy"] == "strict-origin-when-cross-origin"
        for name in PRODUCTION_HEADERS:
            assert (name in resp.headers) == (env == "production"), (name, path)


def test_the_policy_allows_toss_only_when_talking_to_toss(database_url: str) -> None:
    real = make_app(database_url)
    sandbox = sandbox_app(database_url)
    try:
        with_toss = csp_directives(real.test_client().get("/").headers["Content-Security-Policy"])
        offline = csp_directives(sandbox.test_client().get("/").headers["Content-Security-Policy"])
    finally:
        dispose(sandbox)
    assert "https://js.tosspayments.com" in with_toss["script-src"]
    assert "https://*.tosspayments.com" in with_toss["frame-src"]
    assert not any("tosspayments" in src for srcs in offline.values() for src in srcs)


def test_each_response_gets_its_own_nonce_in_header_and_page(
    client: FlaskClient, place_order: Callable[..., str]
) -> None:
    order_id = place_order()
    seen = set()
    for _ in range(2):
        resp = client.get(f"/checkout/{order_id}")
        nonce = re.search(r"'nonce-([^']+)'", resp.headers["Content-Security-Policy"])
        assert nonce is not None
        tags = re.findall(r'<script nonce="([^"]+)"', resp.get_data(as_text=True))
        assert tags == [nonce.group(1)] * 2
        seen.add(nonce.group(1))
    assert len(seen) == 2


def test_api_errors_carry_headers_too(client: object) -> None:
    resp = client.post("/api/payment/verify", json={})  # type: ignore[attr-defined]
    assert resp.status_code == 400
    assert resp.headers["X-Content-Type-Options"] == "nosniff"


def test_production_forces_https_with_hsts(database_url: str) -> None:
    app = make_app(database_url, **LIVE, SECRET_KEY="a-long-production-secret-key")
    plain = app.test_client().get("/", base_url="http://shop.example")
    assert plain.status_code in (301, 302, 308)
    assert plain.headers["Location"].startswith("https://")
    secure = app.test_client().get("/", base_url="https://shop.example")
    hsts = secure.headers["Strict-Transport-Security"]
    assert int(re.search(r"max-age=(\d+)", hsts).group(1)) >= 31_536_000  # type: ignore[union-attr]
    for name in PRODUCTION_HEADERS:
        assert name in secure.headers


def test_session_cookie_flags(client: object, database_url: str) -> None:
    dev = client
    dev.post("/cart", data={"product_id": "1"})  # type: ignore[attr-defined]
    cookie = dev.get_cookie("session")  # type: ignore[attr-defined]
    assert cookie is not None
    assert cookie.http_only
    assert cookie.same_site == "Lax"
    assert not cookie.secure

    prod = make_app(database_url, **LIVE, SECRET_KEY="a-long-production-secret-key")
    with prod.app_context():
        seed_catalog()
    client = prod.test_client()
    resp = client.post("/cart", data={"product_id": "1"}, base_url="https://shop.example")
    header = resp.headers.get("Set-Cookie", "")
    assert "Secure" in header
    assert "HttpOnly" in header
    assert "SameSite=Lax" in header


def test_production_errors_show_no_traceback_or_config(database_url: str) -> None:
    app = make_app(database_url, **LIVE, SECRET_KEY="a-long-production-secret-key")

    @app.get("/boom")
    def boom() -> str:
        raise RuntimeError("secret internals: " + app.config["TOSS_SECRET_KEY"])

    client = app.test_client()
    for path, status, korean in [
        ("/boom", 500, "일시적인 오류"),
        ("/nowhere", 404, "찾을 수 없습니다"),
    ]:
        resp = client.get(path, base_url="https://shop.example")
        text = resp.get_data(as_text=True)
        assert resp.status_code == status
        assert korean in text
        for leak in ("Traceback", "RuntimeError", "secret internals", "live_gsk_", "SECRET_KEY"):
            assert leak not in text
    api = client.post("/api/payment/verify", data="x" * 70_000, content_type="application/json",
                      base_url="https://shop.example")  # fmt: skip
    assert api.status_code == 413
    assert api.get_json()["code"] == "PAYLOAD_TOO_LARGE"


# A real Toss key: prefix, an optional word (e.g. "docs_"), then a random tail of 16+ letters
# and digits with both cases or digits in it (fakes like test_gsk_fake_key stay out of it).
KEY_SHAPE = re.compile(
    r"(?:live|test)_(?:g?sk|g?ck)_(?:[a-z]+_)?(?=[A-Za-z0-9]*[0-9A-Z])[A-Za-z0-9]{16,}"
)
# Fakes anyone may see: the sandbox's own keys. Toss's public docs keys may appear only in the
# README and .env.example.
ALLOWED_ANYWHERE = {"test_gck_sandbox", "test_gsk_sandbox", "test_ck_sandbox", "test_sk_sandbox"}
DOCS_ONLY = {"README.md", ".env.example"}


def tracked_files() -> list[Path]:
    try:
        out = subprocess.run(
            ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout
        return [ROOT / line for line in out.splitlines() if line]
    except (OSError, subprocess.CalledProcessError):
        return [p for p in ROOT.rglob("*") if p.is_file() and ".venv" not in p.parts]


def test_no_key_shaped_strings_in_tracked_files() -> None:
    offenders = []
    for path in tracked_files():
        if path.suffix in (".png", ".ico") or not path.exists():
            continue
        text = path.read_text(errors="ignore")
        for match in KEY_SHAPE.findall(text):
            if match in ALLOWED_ANYWHERE:
                continue
            if path.name in DOCS_ONLY and "_docs_" in match:
                continue
            offenders.append(f"{path.relative_to(ROOT)}: {match[:14]}…")
    assert offenders == []


def test_env_file_is_ignored() -> None:
    ignored = subprocess.run(
        ["git", "check-ignore", "-q", ".env"], cwd=ROOT, capture_output=True
    ).returncode
    assert ignored == 0
    assert (ROOT / ".env.example").exists()
