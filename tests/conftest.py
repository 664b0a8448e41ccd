"""Shared fixtures: an app per test on a fresh database, Toss faked with `responses`."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import responses
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

import payments.config
from payments import create_app
from payments.cli import seed_catalog
from payments.extensions import db
from payments.models import Order, Product
from payments.orders import create_order

TOSS = "https://api.tosspayments.com"
CONFIRM_URL = f"{TOSS}/v1/payments/confirm"
# Keys the sandbox accepts; tests never carry real or docs keys.
CLIENT_KEY = "test_gck_sandbox"
SECRET_KEY = "test_gsk_sandbox"


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


def make_app(database_url: str, **overrides: Any) -> Flask:
    config: dict[str, Any] = {
        "APP_ENV": "testing",
        "SECRET_KEY": "test-secret-key-not-for-production",
        "DATABASE_URL": database_url,
        "TOSS_CLIENT_KEY": CLIENT_KEY,
        "TOSS_SECRET_KEY": SECRET_KEY,
        "TOSS_SANDBOX": "0",
        "TOSS_API_BASE": TOSS,
        "TOSS_RETRY_BACKOFF": "0",
        "TOSS_READ_TIMEOUT": "30",
        "WTF_CSRF_ENABLED": False,
        "PUBLIC_BASE_URL": "",
        # Tests fire far more requests than a shopper; test_ratelimit.py turns limits on.
        "RATELIMIT_ENABLED": False,
    }
    config.update(overrides)
    app = create_app(config)
    with app.app_context():
        db.create_all()
    return app


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
        items = list(db.session.scalars(db.select(Product).order_by(Product.id)))
        db.session.expunge_all()
        return items


@pytest.fixture
def place_order(app: Flask, client: FlaskClient) -> Callable[..., str]:
    """Create an order through the shop as the `client` browser; returns its orderId."""

    def place(cart: dict[int, int] | None = None) -> str:
        with app.app_context():
            ids = [p.id for p in db.session.scalars(db.select(Product).order_by(Product.id))]
        for product_id, qty in (cart or {ids[0]: 2, ids[1]: 1}).items():
            resp = client.post(
                "/cart", data={"action": "add", "product_id": product_id, "quantity": qty}
            )
            assert resp.status_code == 303, resp.get_data(as_text=True)
        resp = client.post("/orders")
        assert resp.status_code == 303
        return resp.headers["Location"].rsplit("/", 1)[-1]

    return place


@pytest.fixture
def order_factory(app: Flask) -> Callable[..., Order]:
    """An order created directly by the service (no browser session owns it)."""

    def make(cart: dict[str, int] | None = None) -> Order:
        with app.app_context():
            ids = [p.id for p in db.session.scalars(db.select(Product).order_by(Product.id))]
            order = create_order(cart or {str(ids[0]): 1}, "cust_test_customer")
            db.session.refresh(order)
            db.session.expunge(order)
            return order

    return make


def payment_json(
    order_id: str,
    amount: int,
    payment_key: str = "tpk_test_0001",
    status: str = "DONE",
    **extra: Any,
) -> dict[str, Any]:
    """A Toss Payment object as confirm/lookup would return it."""
    body: dict[str, Any] = {
        "mId": "tosspayments",
        "version": "2022-11-16",
        "paymentKey": payment_key,
        "type": "NORMAL",
        "orderId": order_id,
        "orderName": "테스트 주문",
        "currency": "KRW",
        "method": "카드",
        "totalAmount": amount,
        "balanceAmount": amount,
        "suppliedAmount": amount - round(amount / 11),
        "vat": round(amount / 11),
        "taxFreeAmount": 0,
        "status": status,
        "requestedAt": "2026-11-22T10:00:00+09:00",
        "approvedAt": "2026-11-22T10:00:05+09:00" if status == "DONE" else None,
        "lastTransactionKey": "txkey_0001",
        "card": {"number": "43301234****123*", "approveNo": "00000000", "cardType": "신용"},
        "receipt": {"url": "https://dashboard.tosspayments.com/receipt/sample"},
        "cancels": None,
        "secret": None,
        "unknownFutureField": {"ignored": True},
    }
    body.update(extra)
    return body
