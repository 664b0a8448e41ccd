"""Migrations build exactly the models' schema (and nothing of the sandbox's, which keeps its own
database); the CLI seeds and hashes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask import Flask
from flask_migrate import upgrade
from werkzeug.security import check_password_hash

from payments import create_app
from payments.core.models import AuditEntry, Order, OrderLine, Product
from payments.extensions import db
from payments.sandbox.db import db as sandbox_db
from tests.helpers import dispose

# The last revision before the sandbox got a database of its own (its tables lived in the shop's).
BEFORE_OWN_SANDBOX_DATABASE = "a75c2b7e5b7d"
OLD_SANDBOX_TABLES = (
    "sandbox_payments",
    "sandbox_cancels",
    "sandbox_idempotency_keys",
    "sandbox_webhooks",
)


@pytest.fixture
def migrated_app(fresh_database_url: str, tmp_path: Path) -> Iterator[Flask]:
    """The shop on an empty database that nothing but migrations has touched, with the sandbox
    mounted as `make run` mounts it (on a database of its own)."""
    app = create_app(
        {
            "APP_ENV": "testing",
            "DATABASE_URL": fresh_database_url,
            "TOSS_SANDBOX": "1",
            "SANDBOX": {
                "database_url": f"sqlite:///{tmp_path / 'sandbox.sqlite3'}",
                "webhooks_enabled": False,
            },
        }
    )
    yield app
    dispose(app)


def tables(app: Flask) -> set[str]:
    with app.app_context():
        return set(sa.inspect(db.engine).get_table_names())


def schema_diff(app: Flask) -> list[Any]:
    """What differs between the database and the models (empty when they match)."""
    with app.app_context(), db.engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True, "render_as_batch": True})
        return list(compare_metadata(ctx, db.metadata))


def test_migrations_match_the_models(migrated_app: Flask) -> None:
    with migrated_app.app_context():
        upgrade()
    assert schema_diff(migrated_app) == []


def test_db_upgrade_on_an_empty_database_creates_no_sandbox_table(migrated_app: Flask) -> None:
    result = migrated_app.test_cli_runner().invoke(args=["db", "upgrade"])
    assert result.exit_code == 0, result.output

    created = tables(migrated_app)
    assert {"orders", "payments", "webhook_events", "refunds"} <= created
    assert {t for t in created if t.startswith("sandbox_")} == set()
    # The sandbox's tables are in its own database.
    with migrated_app.extensions["sandbox_app"].app_context():
        assert set(OLD_SANDBOX_TABLES) <= set(sa.inspect(sandbox_db.engine).get_table_names())


def create_old_sandbox_tables(app: Flask) -> None:
    """The sandbox's four tables as an older version left them in the shop's database (only
    the columns that matter here), with a payment and its cancel in them."""
    meta = sa.MetaData()
    payments = sa.Table(
        "sandbox_payments",
        meta,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("payment_key", sa.String(200)),
    )
    cancels = sa.Table(
        "sandbox_cancels",
        meta,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("payment_id", sa.Integer, sa.ForeignKey("sandbox_payments.id"), nullable=False),
    )
    sa.Table("sandbox_idempotency_keys", meta, sa.Column("id", sa.Integer, primary_key=True))
    sa.Table("sandbox_webhooks", meta, sa.Column("id", sa.Integer, primary_key=True))
    with app.app_context(), db.engine.begin() as conn:
        meta.create_all(conn)
        conn.execute(sa.insert(payments).values(id=1, payment_key="tpk_old_sandbox_0001"))
        conn.execute(sa.insert(cancels).values(id=1, payment_id=1))


def shop_rows(app: Flask) -> dict[str, int]:
    with app.app_context():
        return {
            model.__tablename__: db.session.scalar(sa.select(sa.func.count()).select_from(model))
            or 0
            for model in (Product, Order, OrderLine, AuditEntry)
        }


def insert_old_order(app: Flask) -> str:
    """A product and a PENDING order of 2 written with only the columns an old schema had (the
    models describe the newest one); the order's orderId."""
    with app.app_context(), db.engine.begin() as conn:
        now = sa.func.current_timestamp()
        meta = sa.MetaData()
        meta.reflect(conn, only=["products", "orders", "order_lines"])
        products, orders, lines = (meta.tables[t] for t in ("products", "orders", "order_lines"))
        conn.execute(
            sa.insert(products).values(
                id=1,
                slug="old",
                name="옛 상품",
                description="",
                price=1000,
                emoji="x",
                color="#ffffff",
                active=True,
                created_at=now,
            )
        )
        conn.execute(
            sa.insert(orders).values(
                id=1,
                order_id="order_before_upgrade_0001",
                order_name="옛 상품",
                customer_key="cust_before_upgrade",
                amount=2000,
                status="PENDING",
                created_at=now,
                updated_at=now,
            )
        )
        conn.execute(
            sa.insert(lines).values(
                order_pk=1,
                product_id=1,
                product_name="옛 상품",
                unit_price=1000,
                quantity=2,
                line_total=2000,
            )
        )
    return "order_before_upgrade_0001"


def test_upgrade_drops_the_old_sandbox_tables_and_keeps_the_shops_data(
    migrated_app: Flask,
) -> None:
    with migrated_app.app_context():
        upgrade(revision=BEFORE_OWN_SANDBOX_DATABASE)
        db.session.remove()
    order_id = insert_old_order(migrated_app)
    create_old_sandbox_tables(migrated_app)
    assert set(OLD_SANDBOX_TABLES) <= tables(migrated_app)
    before = shop_rows(migrated_app)

    with migrated_app.app_context():
        upgrade()

    assert {t for t in tables(migrated_app) if t.startswith("sandbox_")} == set()
    assert shop_rows(migrated_app) == before
    assert before["orders"] == 1
    with migrated_app.app_context():
        order = db.session.scalars(sa.select(Order).filter_by(order_id=order_id)).one()
        assert order.status == "PENDING"
        assert [line.quantity for line in order.lines] == [2]
        # Rows from before buyers, stock and fulfilment stay valid: no buyer, no stock held
        # (releasing the order returns nothing), nothing shipped, the product sold out.
        assert order.buyer_email is None
        assert order.stock_reserved is False
        assert order.fulfilment == "NONE"
        assert db.session.get(Product, 1).stock == 0  # type: ignore[union-attr]
    assert schema_diff(migrated_app) == []


def test_seed_is_repeatable(app: Flask) -> None:
    runner = app.test_cli_runner()
    first = runner.invoke(args=["seed"])
    again = runner.invoke(args=["seed"])
    assert first.exit_code == again.exit_code == 0
    assert "0 created" in again.output
    with app.app_context():
        products = list(db.session.scalars(db.select(Product)))
    assert len(products) >= 6
    assert all(p.price > 0 and p.name and p.emoji for p in products)
    assert len({p.slug for p in products}) == len(products)


def test_hash_password_prints_a_verifiable_hash(app: Flask) -> None:
    runner = app.test_cli_runner()
    result = runner.invoke(args=["admin", "hash-password"], input="correct horse\ncorrect horse\n")
    assert result.exit_code == 0, result.output
    hashed = result.output.strip().splitlines()[-1]
    assert check_password_hash(hashed, "correct horse")
    short = runner.invoke(args=["admin", "hash-password"], input="short\nshort\n")
    assert short.exit_code != 0
    assert "at least 10 characters" in short.output
