"""Schema migrations (Alembic, shipped in cds_hooks/migrations): upgrade, current revision, start-up check."""

from __future__ import annotations

import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, inspect

from cds_hooks.store.database import create_db_engine, safe_url, sqlite_file

log = logging.getLogger("cds_hooks.store.migrate")
MIGRATIONS_DIR = Path(__file__).with_name("migrations")


class SchemaNotCurrent(RuntimeError):
    """The database is not at the schema revision this version of the service needs."""


def _config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None, "cds_hooks/migrations has no revisions"
    return head


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def upgrade(engine: Engine) -> str:
    """Bring the schema to the newest revision (a no-op when it is there); returns that revision."""
    with engine.begin() as connection:
        command.upgrade(_config(connection), "head")
    return head_revision()


def is_empty_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite" and not inspect(engine).get_table_names()


def check_schema(engine: Engine, auto_migrate: bool = False) -> None:
    """Refuse a database whose schema is missing or not the one this code needs.

    With `auto_migrate`, a brand-new, empty SQLite database is migrated first: that keeps the
    embedded default one command. PostgreSQL, and any database with tables, needs
    `lumbar-cds db upgrade`, so that schema changes on shared data are a deliberate step.
    """
    if auto_migrate and is_empty_sqlite(engine):
        log.info("new SQLite database %s: creating schema revision %s", safe_url(engine.url), upgrade(engine))
    _require(safe_url(engine.url), current_revision(engine))


def looking_engine(url: str) -> Engine | None:
    """A read-only engine on the database at `url`, or None when it is an SQLite file that does not exist:
    for what only looks at the database (`db current`, `report`, gunicorn's start-up check), so that
    looking never creates or changes one."""
    path = sqlite_file(url)
    if path is not None and not path.is_file():
        return None
    return create_db_engine(url, read_only=True)


def revision_at(url: str) -> str | None:
    """The schema revision of the database at `url` (None: none yet), without creating or changing it."""
    engine = looking_engine(url)
    if engine is None:
        return None
    try:
        return current_revision(engine)
    finally:
        engine.dispose()


def check_schema_at(url: str) -> None:
    """check_schema without creating or changing anything (SchemaNotCurrent when the schema is not current)."""
    _require(safe_url(url), revision_at(url))


def _require(where: str, found: str | None) -> None:
    needed = head_revision()
    if found != needed:
        state = "is not migrated" if found is None else f"is at schema revision {found}"
        raise SchemaNotCurrent(
            f"the database {where} {state}; this version of lumbar-cds needs revision {needed}. "
            "Run `lumbar-cds db upgrade` with the same settings (LUMBAR_CDS_DATABASE_URL or "
            "LUMBAR_CDS_DATA_DIR), then start the service again."
        )
