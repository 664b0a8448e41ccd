"""Migrations build exactly the models' schema; the CLI seeds and hashes."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask_migrate import upgrade
from werkzeug.security import check_password_hash

from payments import create_app
from payments.extensions import db
from payments.core.models import Product


def test_migrations_match_the_models(fresh_database_url: str) -> None:
    app = create_app(
        {"APP_ENV": "testing", "DATABASE_URL": fresh_database_url, "TOSS_SANDBOX": "1"}
    )
    with app.app_context():
        upgrade()
        with db.engine.connect() as conn:
            ctx = MigrationContext.configure(
                conn, opts={"compare_type": True, "render_as_batch": True}
            )
            diff = compare_metadata(ctx, db.metadata)
        assert diff == [], diff
        db.engine.dispose()


def test_seed_is_repeatable(app: object) -> None:
    runner = app.test_cli_runner()  # type: ignore[attr-defined]
    first = runner.invoke(args=["seed"])
    again = runner.invoke(args=["seed"])
    assert first.exit_code == again.exit_code == 0
    assert "0 created" in again.output
    with app.app_context():  # type: ignore[attr-defined]
        products = list(db.session.scalars(db.select(Product)))
    assert len(products) >= 6
    assert all(p.price > 0 and p.name and p.emoji for p in products)
    assert len({p.slug for p in products}) == len(products)


def test_hash_password_prints_a_verifiable_hash(app: object) -> None:
    runner = app.test_cli_runner()  # type: ignore[attr-defined]
    result = runner.invoke(args=["admin", "hash-password"], input="correct horse\ncorrect horse\n")
    assert result.exit_code == 0, result.output
    hashed = result.output.strip().splitlines()[-1]
    assert check_password_hash(hashed, "correct horse")
    short = runner.invoke(args=["admin", "hash-password"], input="short\nshort\n")
    assert short.exit_code != 0
    assert "at least 10 characters" in short.output
