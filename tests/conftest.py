"""Shared fixtures: a real app on a temporary SQLite database, and the rules."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from cds_hooks.app import create_app
from cds_hooks.pathway.rules import Rules, load_rules
from cds_hooks.service.hook import today_utc
from cds_hooks.settings.config import Settings
from cds_hooks.store.migrate import upgrade
from cds_hooks.store.repository import Store
from tests.postgres import PostgresServer

REPO = Path(__file__).resolve().parent.parent


def migrated_store(target: str | Path) -> Store:
    """A store on a database (URL, or SQLite file) brought to the current schema."""
    store = Store(target)
    upgrade(store.engine)
    return store


@pytest.fixture(scope="session")
def rules() -> Rules:
    return load_rules(REPO / "rules")


@pytest.fixture(scope="session")
def today() -> date:
    return today_utc()


@pytest.fixture
def make_app(tmp_path: Path) -> Callable[..., Flask]:
    def make(**overrides: object) -> Flask:
        # A fresh SQLite file per test, given its schema at start-up as `lumbar-cds serve` does.
        settings = Settings(data_dir=tmp_path / "data", rules_dir=REPO / "rules", auto_migrate=True)
        fields = {**settings.__dict__, **overrides}
        return create_app(Settings(**fields))  # type: ignore[arg-type]

    return make


@pytest.fixture
def app(make_app: Callable[..., Flask]) -> Flask:
    return make_app()


@pytest.fixture
def client(app: Flask) -> Iterator[FlaskClient]:
    with app.test_client() as c:
        yield c


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A real PostgreSQL server for the whole session, started on first use; fails if not installed."""
    server = PostgresServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A new, empty database on each backend: an SQLite file, or a database on the real PostgreSQL server."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.sqlite3'}"
    return request.getfixturevalue("postgres").create_database()
