"""The checkout page as Chromium sees it matches the inventory in payments/ops/security.py.

Change detection (PCI DSS 11.6.1): a new, removed or moved script, or a changed security header,
fails this test until the inventory (with the reason for the change) is updated too.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urljoin

import pytest
from playwright.sync_api import ConsoleMessage, Page, expect

from payments.ops.security import (
    CHECKOUT_SCRIPTS,
    SECURITY_HEADERS,
    checkout_scripts,
    content_security_policy,
)
from tests.browser.conftest import fill_cart_and_checkout

pytestmark = pytest.mark.browser

SANDBOX_CONFIG = {"TOSS_SANDBOX": True, "TOSS_WIDGET_SCRIPT_URL": "/sandbox/widget/v2/standard"}


def csp_directives(header: str) -> dict[str, list[str]]:
    out = {}
    for part in header.split(";"):
        words = part.split()
        if words:
            out[words[0]] = [w for w in words[1:] if not w.startswith("'nonce-")]
    return out


def test_checkout_page_matches_the_script_and_header_inventory(page: Page, base_url: str) -> None:
    documents: list[Any] = []
    page.on(
        "response", lambda r: documents.append(r) if r.request.resource_type == "document" else None
    )
    fill_cart_and_checkout(page)
    expect(page.locator("#pay-button")).to_be_enabled()
    checkout = [r for r in documents if re.search(r"/checkout/[A-Za-z0-9_-]{20,}$", r.url)][-1]

    scripts = page.eval_on_selector_all(
        "script",
        "els => els.map(e => ({src: e.getAttribute('src'), inline: e.textContent.trim()}))",
    )
    assert [s["inline"] for s in scripts] == ["" for _ in scripts], "an inline script appeared"
    seen = [urljoin(base_url + "/", s["src"]) for s in scripts]
    expected = [urljoin(base_url + "/", src) for src in checkout_scripts(SANDBOX_CONFIG)]
    assert seen == expected, "scripts differ from payments.ops.security.CHECKOUT_SCRIPTS"
    assert all(entry.why for entry in CHECKOUT_SCRIPTS)

    headers = checkout.all_headers()
    for name in SECURITY_HEADERS:
        assert name.lower() in headers, f"{name} missing from the checkout page"
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["referrer-policy"] == "strict-origin-when-cross-origin"
    assert headers["x-frame-options"] == "DENY"
    served = csp_directives(headers["content-security-policy"])
    wanted = {
        k: v if isinstance(v, list) else [v]
        for k, v in content_security_policy(SANDBOX_CONFIG).items()
    }
    assert served == wanted
    nonce = re.search(r"'nonce-([^']+)'", headers["content-security-policy"]).group(1)  # type: ignore[union-attr]
    tags = page.eval_on_selector_all("script", "els => els.map(e => e.nonce)")
    assert tags == [nonce] * len(tags)


def test_an_injected_inline_script_is_blocked(page: Page) -> None:
    violations: list[str] = []
    page.on("console", lambda m: violations.append(m.text) if m.type == "error" else None)
    fill_cart_and_checkout(page)
    # What an XSS would do: add a script element with inline code to the payment page.
    page.evaluate(
        """() => { const s = document.createElement('script');
                   s.textContent = 'window.__skimmed = true;';
                   document.body.appendChild(s); }"""
    )
    page.wait_for_timeout(200)
    assert page.evaluate("window.__skimmed === undefined")
    assert any("Content Security Policy" in v for v in violations), violations


def test_the_whole_checkout_runs_without_a_csp_violation(page: Page) -> None:
    messages: list[ConsoleMessage] = []
    page.on("console", lambda m: messages.append(m))
    fill_cart_and_checkout(page)
    page.locator("#pay-button").click()
    page.frame_locator("iframe[data-toss-sandbox-window]").locator(
        '[data-scenario="approve"]'
    ).click()
    expect(page.get_by_test_id("order-status")).to_have_attribute("data-status", "PAID")
    assert [m.text for m in messages if "Content Security Policy" in m.text] == []
