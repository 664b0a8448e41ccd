"""Shared fixtures: an app per test on a fresh database, Toss faked with `responses`, a shopper.

Helpers that are not fixtures live in `tests/helpers.py`.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import responses
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import create_engine, select, text
from sqlalchemy.engine import make_url

import payments.config
from payments.core.models import Order, Product
from payments.extensions import db
from payments.shop.catalog import create_order, seed_catalog
from tests.helpers import BUYER, Shopper, WebhookReceiver, make_app


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--database-tests-only",
        action="store_true",
        help="run only the tests that use the test database (pg_base_url and the fixtures on it)",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """With --database-tests-only (the PostgreSQL pass of `make test`), leave out the tests
    that never reach the test database: TEST_DATABASE_URL is read only by `pg_base_url`, so
    such a test runs exactly as it did in the SQLite pass and a second run shows nothing new."""
    if not config.getoption("database_tests_only"):
        return
    kept, left_out = [], []
    for item in items:
        uses_database = "pg_base_url" in getattr(item, "fixturenames", ())
        (kept if uses_database else left_out).append(item)
    if left_out:
        config.hook.pytest_deselected(items=left_out)
        items[:] = kept


@pytest.fixture(autouse=True, scope="session")
def _no_dotenv() -> Iterator[None]:
    """A developer's .env must never leak into tests."""
    original = payments.config.load_dotenv
    payments.config.load_dotenv = lambda *a, **k: False  # type: ignore[assignment]
    yield
    payments.config.load_dotenv = original


@pytest.fixture(scope="session")
def pg_base_url() -> str | None:
    """TEST_DATABASE_URL (PostgreSQL) when set; each test then gets a fresh database."""
    return os.environ.get("TEST_DATABASE_URL") or None


def _create_pg_database(base: str) -> tuple[str, Any]:
    url = make_url(base.replace("postgresql://", "postgresql+psycopg://", 1))
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    return url.set(database=name).render_as_string(hide_password=False), (admin, name)


def _drop_pg_database(handle: Any) -> None:
    admin, name = handle
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session")
def _pg_session_database(pg_base_url: str | None) -> Iterator[str | None]:
    """One PostgreSQL database for the run (creating one per test costs ~0.2 s each)."""
    if not pg_base_url:
        yield None
        return
    url, handle = _create_pg_database(pg_base_url)
    yield url
    _drop_pg_database(handle)


@pytest.fixture
def database_url(tmp_path: Any, _pg_session_database: str | None) -> Iterator[str]:
    """A clean database per test: a new SQLite file, or the session's PostgreSQL database
    emptied after the test."""
    if not _pg_session_database:
        yield f"sqlite:///{tmp_path / 'test.sqlite3'}"
        return
    yield _pg_session_database
    engine = create_engine(_pg_session_database)
    with engine.begin() as conn:
        tables = [
            row[0]
            for row in conn.execute(
                text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
            )
        ]
        if tables:
            quoted = ", ".join(f'"{t}"' for t in tables)
            conn.execute(text(f"TRUNCATE {quoted} RESTART IDENTITY CASCADE"))
    engine.dispose()


@pytest.fixture
def fresh_database_url(tmp_path: Any, pg_base_url: str | None) -> Iterator[str]:
    """An empty database of its own (for migrations, which must start from nothing)."""
    if not pg_base_url:
        yield f"sqlite:///{tmp_path / 'fresh.sqlite3'}"
        return
    url, handle = _create_pg_database(pg_base_url)
    yield url
    _drop_pg_database(handle)


@pytest.fixture
def app(database_url: str) -> Iterator[Flask]:
    app = make_app(database_url)
    with app.app_context():
        seed_catalog()
    yield app
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def toss() -> Iterator[responses.RequestsMock]:
    """Every HTTP call is faked; an unexpected one fails the test."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


@pytest.fixture
def products(app: Flask) -> list[Product]:
    with app.app_context():
        items = list(db.session.scalars(select(Product).order_by(Product.id)))
        db.session.expunge_all()
        return items


@pytest.fixture
def shopper(app: Flask, client: FlaskClient) -> Shopper:
    """The `client` browser as a shopper: add to cart, place an order, return from Toss."""
    return Shopper(app, client)


@pytest.fixture
def place_order(shopper: Shopper) -> Callable[..., str]:
    """Create an order through the shop as the `client` browser; returns its orderId."""
    return shopper.place_order


@pytest.fixture
def order_factory(app: Flask) -> Callable[..., Order]:
    """An order created directly by the service (no browser session owns it)."""

    def make(cart: dict[str, int] | None = None) -> Order:
        with app.app_context():
            ids = list(db.session.scalars(select(Product.id).order_by(Product.id)))
            order = create_order(cart or {str(ids[0]): 1}, "cust_test_customer", BUYER)
            db.session.refresh(order)
            db.session.expunge(order)
            return order

    return make


@pytest.fixture
def webhook_receiver() -> Iterator[WebhookReceiver]:
    """A webhook endpoint on a loopback port that records what arrives (tests.helpers)."""
    receiver = WebhookReceiver()
    receiver.thread.start()
    yield receiver
    receiver.server.shutdown()
    receiver.thread.join(5)
