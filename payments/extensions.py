"""Extensions created without an app; `create_app` binds them."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from flask_wtf.csrf import CSRFProtect
from sqlalchemy import MetaData, Table, Update, bindparam, event, insert
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.engine import Engine, Row
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.orm import DeclarativeBase, make_transient_to_detached
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.sql import Executable

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


db = SQLAlchemy(model_class=Base)


def commit_as_written() -> None:
    """Commit, keeping the session's objects as this transaction wrote them.

    A plain commit expires every object, and the next attribute read costs a SELECT of what we
    just wrote. Use it only where every write went through a conditional UPDATE mirrored in
    memory (`orders.transition`, the sandbox's `_move`) or an INSERT: those conditions, not the
    in-memory copy, decide races with other writers, and a lost race expires the object.
    """
    session = db.session()
    session.expire_on_commit = False
    try:
        session.commit()
    finally:
        session.expire_on_commit = True


def update_if_status(
    table: Table,
    row_id: int,
    status: str,
    values: Mapping[str, Any],
    *,
    increment: tuple[str, ...] = (),
) -> bool:
    """UPDATE `table` SET `values` (and `increment` columns + 1) WHERE id = `row_id` AND
    status = `status`; True when the row matched. The caller commits.

    The conditional write behind every state change (orders and the sandbox's payments). The
    statement is built once per set of columns and run as Core: building and running it through
    the ORM cost three times as much as the round trip. Pending ORM changes are flushed first,
    so writes keep the order they were made in.
    """
    db.session.flush()
    params = status_params(row_id, status, values)
    result = db.session.execute(status_update(table, tuple(values), increment), params)
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


def status_params(row_id: int, status: str, values: Mapping[str, Any]) -> dict[str, Any]:
    """The parameters of `status_update`'s statement: :w_id, :w_status and :v_<name>."""
    return {"w_id": row_id, "w_status": status, **bound("v_", values)}


def bound(prefix: str, values: Mapping[str, Any]) -> dict[str, Any]:
    """`values` as bind parameters named `prefix` + column name."""
    return {prefix + name: value for name, value in values.items()}


def execute_alone(statement: Executable, params: Mapping[str, Any]) -> list[Row[Any]]:
    """Run one write as a transaction of its own (autocommit) and return its rows.

    One round trip where the session would spend three (BEGIN, the statement, COMMIT): for a
    write that stands alone, such as the webhook inbox INSERT and the sandbox's Idempotency-Key
    reservation. It uses its own pooled connection, so it is not part of the session's
    transaction: call it before the session writes anything (SQLite would wait on that lock).
    """
    with _autocommit(db.engine).connect() as conn:
        result = conn.execute(statement, params)
        return list(result.all()) if result.returns_rows else []


@lru_cache(maxsize=8)
def _autocommit(engine: Engine) -> Engine:
    # Shares the engine's pool and event listeners; the pool restores the isolation level.
    return engine.execution_options(isolation_level="AUTOCOMMIT")


def insert_loaded(obj: Any) -> Any:
    """INSERT the new ORM object `obj` now, as one Core statement, and keep it in the session
    as loaded (persistent, nothing pending); the caller commits. Returns `obj`.

    For rows written once and not changed in the same transaction: the unit of work spent
    several times the round trip on a single new row (a sixth of a confirmation's CPU,
    bench/run.py). The row comes back whole (RETURNING), so the object holds exactly what was
    written, database and column defaults included, and reading it costs no SELECT.
    """
    mapper = sa_inspect(type(obj))
    table = mapper.local_table
    given: dict[str, Any] = {}
    for attr in mapper.column_attrs:
        column, value = attr.columns[0], obj.__dict__.get(attr.key)
        if attr.key in obj.__dict__ and not (column.primary_key and value is None):
            given[column.key] = value
    row = db.session.execute(_insert_returning(table), given).one()._mapping
    for attr in mapper.column_attrs:
        set_committed_value(obj, attr.key, row[attr.columns[0]])
    make_transient_to_detached(obj)
    db.session.add(obj)
    return obj


@lru_cache(maxsize=32)
def _insert_returning(table: Table) -> Any:
    return insert(table).returning(*table.c)


@lru_cache(maxsize=128)
def status_update(table: Table, names: tuple[str, ...], increment: tuple[str, ...]) -> Update:
    """UPDATE … SET the `names` (:v_<name>) and `increment` columns + 1 WHERE id = :w_id AND
    status = :w_status, built once per set of columns (`update_if_status` runs it)."""
    sets: dict[str, Any] = {n: bindparam(f"v_{n}", type_=table.c[n].type) for n in names}
    sets.update({n: table.c[n] + 1 for n in increment})
    return (
        table.update()
        .where(table.c.id == bindparam("w_id"), table.c.status == bindparam("w_status"))
        .values(sets)
    )


migrate = Migrate()
csrf = CSRFProtect()


@event.listens_for(Engine, "connect")
def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    """WAL lets readers and one writer overlap (the in-process sandbox writes while a request
    reads); busy_timeout waits for a lock instead of failing; SQLite enforces FKs only on ask."""
    if isinstance(dbapi_conn, sqlite3.Connection):
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA busy_timeout=10000")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()


# A pooled connection unused for longer than this is pinged before it is handed out. Pinging
# every checkout (pool_pre_ping) cost a round trip per transaction: 8 per confirmation.
IDLE_PING_SECONDS = 5.0


def ping_idle_connections(engine: Engine, idle_seconds: float = IDLE_PING_SECONDS) -> None:
    """Replace a server-side dropped connection (database restart, idle timeout, failover)
    before use, pinging only connections that sat idle; a busy pool's connections were just
    used. A failed ping makes the pool discard the connection and take a fresh one."""
    if engine.dialect.name == "sqlite":
        return  # a file does not hang up

    def _fresh(_dbapi_conn: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    def _checkout(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        if time.monotonic() - record.info.get("idle_since", 0.0) < idle_seconds:
            return
        try:
            engine.dialect.do_ping(dbapi_conn)
        except Exception as exc:
            raise DisconnectionError("pooled connection failed its ping") from exc

    event.listen(engine, "connect", _fresh)
    event.listen(engine, "checkin", _fresh)
    event.listen(engine, "checkout", _checkout)
