"""`lumbar-cds db ...`: the database schema (Alembic migrations)."""

from __future__ import annotations

import argparse

from sqlalchemy import Engine

from cds_hooks.settings.config import Settings
from cds_hooks.store.database import create_db_engine, safe_url
from cds_hooks.store.migrate import current_revision, head_revision, revision_at, upgrade


def register(sub: argparse._SubParsersAction) -> None:
    db = sub.add_parser("db", help="database schema (LUMBAR_CDS_DATABASE_URL, default SQLite under the data dir)")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    db_sub.add_parser("upgrade", help="apply the schema migrations (safe to repeat)").set_defaults(func=_db_upgrade)
    db_sub.add_parser("current", help="show the schema revision; exit 1 when an upgrade is needed").set_defaults(
        func=_db_current
    )


def service_engine() -> Engine:
    """The service's database, from the same settings as the service."""
    return create_db_engine(Settings.from_env().store_url)


def _db_upgrade(args: argparse.Namespace) -> int:
    engine = service_engine()
    try:
        before = current_revision(engine)
        after = upgrade(engine)
    finally:
        engine.dispose()  # closed now, so SQLite's journal is folded into the file before the command ends
    change = "already at" if before == after else f"upgraded from {before or 'empty'} to"
    print(f"database {safe_url(engine.url)}: {change} revision {after}")
    return 0


def _db_current(args: argparse.Namespace) -> int:
    url = Settings.from_env().store_url
    found, needed = revision_at(url), head_revision()  # only looks: creates and changes nothing
    state = "up to date" if found == needed else f"needs `lumbar-cds db upgrade` to {needed}"
    print(f"database {safe_url(url)}: revision {found or 'none'} ({state})")
    return 0 if found == needed else 1
