"""Extension objects, created without an app; `create_app` binds them."""

from __future__ import annotations

from flask import Flask, current_app
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from flask_wtf.csrf import CSRFProtect
from sqlalchemy import MetaData
from sqlalchemy.orm import DeclarativeBase

from .toss import TossClient

# Stable constraint names so Alembic revisions are reproducible on SQLite and PostgreSQL.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Toss:
    """The app's Toss client as an extension: `toss.client` wherever an app context is active
    (a request, the webhook worker, a CLI command)."""

    def init_app(self, app: Flask, client: TossClient) -> None:
        app.extensions["toss"] = client

    @property
    def client(self) -> TossClient:
        client: TossClient = current_app.extensions["toss"]
        return client


# Bound parameters (paymentKeys, secrets, names) never appear in SQLAlchemy's exception
# messages or statement logs.
db = SQLAlchemy(model_class=Base, engine_options={"hide_parameters": True})
migrate = Migrate()
csrf = CSRFProtect()
toss = Toss()
