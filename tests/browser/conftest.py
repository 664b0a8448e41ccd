"""Browser tests: Debian's chromium driven by Playwright against a live server in sandbox mode."""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from werkzeug.serving import make_server

from payments.shop.catalog import seed_catalog
from payments.extensions import db
from tests.helpers import make_app

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if shutil.which("chromium") or os.path.exists(CHROMIUM):
        return
    if os.environ.get("CI") == "true":
        return  # let them fail loudly: CI must run the browser tests
    skip = pytest.mark.skip(reason="Debian's chromium is not installed (apt-get install chromium)")
    for item in items:
        if "browser" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict[str, Any]) -> dict[str, Any]:
    return {**browser_type_launch_args, "executable_path": CHROMIUM, "args": CHROMIUM_ARGS}


@pytest.fixture(scope="session")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The app in sandbox mode on a loopback port, as `make run` serves it."""
    db_file = tmp_path_factory.mktemp("browser") / "shop.sqlite3"
    app = make_app(
        f"sqlite:///{db_file}",
        TOSS_CLIENT_KEY="",
        TOSS_SECRET_KEY="",
        TOSS_SANDBOX="1",
        TOSS_API_BASE="",
        WTF_CSRF_ENABLED=True,
        # As in `make run`: the sandbox sends webhooks in-process, a worker thread applies them.
        WEBHOOK_WORKER_EMBEDDED="1",
    )
    with app.app_context():
        seed_catalog()
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    with app.app_context():
        db.engine.dispose()


@pytest.fixture(scope="session")
def base_url(live_server: str) -> str:
    return live_server


@pytest.fixture
def screenshot_dir() -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS
