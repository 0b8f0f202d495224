"""The `database_url` setting: the embedded SQLite default's URL, and whether a configured URL is usable."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.engine import make_url

SUPPORTED_BACKENDS = ("sqlite", "postgresql")


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


def backend_problem(url: str) -> str | None:
    """Why this database URL cannot be used, or None."""
    try:
        parsed = make_url(url)
    except Exception:  # sqlalchemy raises ArgumentError, but any unparsable URL is the same problem
        return "database_url is not a database URL (e.g. postgresql+psycopg://user:password@host/db)"
    if parsed.get_backend_name() not in SUPPORTED_BACKENDS:
        return f"database_url must be sqlite or postgresql+psycopg, not {parsed.drivername!r}"
    return None
