"""Security properties that hold for every route: CSRF, cookies, headers, errors, secrets."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from flask_talisman import Talisman

from payments.extensions import csrf
from payments.ops.security import PRODUCTION_HEADERS, SECURITY_HEADERS
from tests.helpers import make_app

ROOT = Path(__file__).resolve().parents[1]
LIVE = {
    "APP_ENV": "production",
    "TOSS_CLIENT_KEY": "live_gck_" + "prodkey",
    "TOSS_SECRET_KEY": "live_gsk_" + "prodkey",
    "TOSS_SANDBOX": "0",
}
# Endpoints that take unsafe methods without a CSRF token, and why it is safe for each.
CSRF_EXEMPT = {
    # JSON for script clients: checked against the stored order and Toss, and rate-limited.
    "api.verify",
    # Toss webhooks: stored, then re-checked with Toss (or signature/secret-checked).
    "hooks.receive",
}
SANDBOX_PREFIX = "sandbox"  # the offline Toss, absent in production


def exempt(app: Flask, endpoint: str) -> bool:
    view = app.view_functions[endpoint]
    name = f"{view.__module__}.{view.__name__}"
    blueprint = app.blueprints.get(endpoint.split(".")[0]) if "." in endpoint else None
    return name in csrf._exempt_views or blueprint in csrf._exempt_blueprints


def test_only_the_json_api_and_webhooks_skip_csrf(database_url: str) -> None:
    app = make_app(database_url, TOSS_SANDBOX="1", TOSS_CLIENT_KEY="", TOSS_SECRET_KEY="",
                   TOSS_API_BASE="", WTF_CSRF_ENABLED=True)  # fmt: skip
    unsafe = {
        rule.endpoint
        for rule in app.url_map.iter_rules()
        if rule.methods and rule.methods & {"POST", "PUT", "PATCH", "DELETE"}
    }
    skipped = {e for e in unsafe if exempt(app, e) and not e.startswith(SANDBOX_PREFIX)}
    assert skipped == CSRF_EXEMPT, "a new CSRF-exempt endpoint appeared: justify it here"
    for endpoint in unsafe - skipped:
        if not endpoint.startswith(SANDBOX_PREFIX):
            assert not exempt(app, endpoint)


def test_production_has_no_sandbox_and_no_other_exemption(database_url: str) -> None:
    app = make_app(database_url, **LIVE)
    assert not any(r.rule.startswith("/sandbox") for r in app.url_map.iter_rules())
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


NONCE = re.compile(r"'nonce-[^']+'")
PAGES = ["/", "/cart", "/checkout/fail?code=X", "/no-such-page", "/metrics", "/healthz"]


def talisman_headers(resp: Any) -> dict[str, str]:
    names = set(SECURITY_HEADERS) | set(PRODUCTION_HEADERS) | {"Location"}
    return {k: NONCE.sub("'nonce-N'", v) for k, v in resp.headers.items() if k in names}


@pytest.mark.parametrize("env", ["development", "production"])
def test_cached_security_headers_are_talismans_own(
    database_url: str, monkeypatch: pytest.MonkeyPatch, env: str
) -> None:
    """Every page, over HTTP and HTTPS, carries exactly what plain Talisman would add."""
    config = {**LIVE, "SECRET_KEY": "a-long-production-secret-key"} if env == "production" else {}
    cached = make_app(database_url, **config)
    monkeypatch.setattr("payments.security.HeaderCachingTalisman", Talisman)
    plain = make_app(database_url, **config)
    for base in ("http://shop.example", "https://shop.example"):
        for path in PAGES:
            for _ in range(2):  # the second answer comes from the cache
                ours = cached.test_client().get(path, base_url=base)
                theirs = plain.test_client().get(path, base_url=base)
                assert ours.status_code == theirs.status_code
                assert talisman_headers(ours) == talisman_headers(theirs), (base, path)


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
        from payments.shop.catalog import seed_catalog

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
