"""Connection settings the ORM does not make for us: SQLite's pragmas, and a ping for pooled
PostgreSQL connections that sat idle."""

from __future__ import annotations

import sqlite3
import time
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DisconnectionError

# A pooled connection unused for longer than this is pinged before it is handed out; one used
# more recently is trusted, so a busy pool costs no extra round trip per transaction.
IDLE_PING_SECONDS = 5.0


@event.listens_for(Engine, "connect")
def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    """WAL lets readers and one writer overlap; busy_timeout waits for a lock instead of
    failing; SQLite enforces foreign keys only when asked."""
    if isinstance(dbapi_conn, sqlite3.Connection):
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA busy_timeout=10000")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()


def ping_idle_connections(engine: Engine, idle_seconds: float = IDLE_PING_SECONDS) -> None:
    """Replace a server-side dropped connection (database restart, idle timeout, failover)
    before use. A failed ping makes the pool discard the connection and take a fresh one."""
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
