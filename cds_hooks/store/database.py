"""Database engines: SQLite (the embedded default) tuned for several writer processes, or PostgreSQL."""

from __future__ import annotations

import os
import sqlite3
import weakref
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import URL, make_url

# A writer waits this long for another worker's write lock before giving up with "database is locked";
# well under gunicorn's 30 s worker timeout, so a stuck lock is an error answer, not a killed worker.
SQLITE_BUSY_TIMEOUT_MS = 5_000


def safe_url(url: str | URL) -> str:
    """The URL for messages and logs: the password is masked."""
    return make_url(url).render_as_string(hide_password=True)


def _sqlite_connect(dbapi_connection: sqlite3.Connection, _record: Any) -> None:
    # The driver's own implicit BEGIN is turned off; _sqlite_begin starts every transaction instead.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA journal_mode=WAL")
    # FULL: a commit is fsynced before it returns, so acknowledged feedback survives power loss too.
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.close()


def _sqlite_begin(connection: Connection) -> None:
    # IMMEDIATE takes the write lock up front (waiting up to busy_timeout). A deferred transaction
    # that reads and then writes would fail at once with "database is locked" when another worker
    # wrote in between, and busy_timeout cannot help it.
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def sqlite_file(url: str | URL) -> Path | None:
    """The file of an SQLite database URL (None for other backends, memory and `file:` URIs)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:" \
            or parsed.query.get("uri"):
        return None
    return Path(parsed.database)


def create_db_engine(url: str, read_only: bool = False) -> Engine:
    """An engine for the service's database. `read_only` (SQLite): opened read-only, no directory made,
    no journal switch, so that commands that only look create and change nothing; the file must exist."""
    parsed = make_url(url)
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")  # psycopg 3 is the driver we ship
    if parsed.get_backend_name() == "sqlite":
        path = sqlite_file(parsed)
        if read_only and path is not None:
            engine = create_engine(parsed.set(database=f"file:{path.resolve()}", query={"mode": "ro", "uri": "true"}))
        else:
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
            engine = create_engine(parsed)
            event.listen(engine, "connect", _sqlite_connect)
            event.listen(engine, "begin", _sqlite_begin)
    else:
        engine = create_engine(parsed, pool_pre_ping=True)
    # A forked worker (gunicorn --preload) must not share the parent's pooled connections.
    ref = weakref.ref(engine)
    os.register_at_fork(after_in_child=lambda: (e := ref()) is not None and e.dispose(close=False))
    return engine
