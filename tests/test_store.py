"""The store on both backends: a new SQLite file and a database on a real PostgreSQL server."""

from __future__ import annotations

import multiprocessing
import sqlite3
import threading
from pathlib import Path

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError

from cds_hooks.app import create_app
from cds_hooks.ops.cli import main
from cds_hooks.pathway.rules import Rules
from cds_hooks.protocol.wire import FeedbackItem
from cds_hooks.sandbox.fixtures import fixtures_dir, load_fixture
from cds_hooks.service.hook import evaluate_hook, today_utc
from cds_hooks.settings.config import Settings
from cds_hooks.store.migrate import SchemaNotCurrent, current_revision, head_revision
from cds_hooks.store.repository import Store, jti_seen
from tests.conftest import REPO, migrated_store
from tests.postgres import PASSWORD
from tests.store_worker import WRITES_PER_WORKER, overridden, write_feedback

WORKERS = 4


def _issue(rules: Rules, store: Store, fixture: str) -> list[str]:
    """Evaluate a real fixture and record its cards as the API does; their uuids."""
    case = load_fixture(fixtures_dir() / f"{fixture}.json", today_utc())
    service = rules.services[case.service]
    outcome = evaluate_hook(rules, service, case.request, today_utc())
    store.record_cards(service.id, service.hook, outcome.request.hookInstance, rules.profile_id, outcome.issued)
    return [i.card.uuid for i in outcome.issued]


def test_issued_cards_and_feedback_round_trip(database_url: str, rules: Rules) -> None:
    store = migrated_store(database_url)
    [card] = _issue(rules, store, "premature-mri-3-weeks")
    results = store.record_feedback("svc", [overridden(card, "reason-a"), overridden("never-issued")])
    assert [r["knownCard"] for r in results] == [True, False]
    # A second engine (another worker) reads what the first committed.
    rows = Store(database_url).feedback_rows()
    assert [(r["card_uuid"], r["known_card"], r["rule_id"], r["override_code"]) for r in rows] == [
        (card, 1, "imaging-premature", "reason-a"), ("never-issued", 0, None, None),
    ]
    assert rows[0]["id"] < rows[1]["id"]


def test_a_feedback_batch_is_all_or_nothing(database_url: str) -> None:
    store = migrated_store(database_url)
    # Fault injection: the second item breaks a NOT NULL constraint in the database itself.
    broken = FeedbackItem.model_construct(card=None, outcome="overridden", acceptedSuggestions=None,
                                          overrideReason=None, outcomeTimestamp="2026-11-21T10:00:00Z")
    with pytest.raises(IntegrityError):
        store.record_feedback("svc", [overridden("card-1"), broken])
    assert store.feedback_rows() == []
    assert store.writable()  # the failed transaction left nothing locked


def test_jti_first_use_is_atomic_across_connections(database_url: str) -> None:
    stores = [migrated_store(database_url) for _ in range(8)]  # one engine each, like separate workers
    results: list[bool] = []
    barrier = threading.Barrier(len(stores))

    def race(store: Store) -> None:
        barrier.wait()
        results.append(store.first_use_of_jti("iss", "jti-1", expires_at=2000.0, now=1000.0))

    threads = [threading.Thread(target=race, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [False] * 7 + [True]
    assert not stores[1].first_use_of_jti("iss", "jti-1", expires_at=2500.0, now=1999.0)  # still valid
    assert stores[1].first_use_of_jti("iss", "jti-1", expires_at=3000.0, now=2001.0)  # expired: taken over
    assert stores[2].first_use_of_jti("other-iss", "jti-1", expires_at=3000.0, now=2001.0)  # keyed by issuer too
    fresh = migrated_store(database_url)
    fresh.first_use_of_jti("iss", "jti-2", expires_at=5000.0, now=4000.0)  # prunes rows expired by then
    with fresh.engine.connect() as db:
        assert db.execute(select(jti_seen.c.iss, jti_seen.c.jti)).all() == [("iss", "jti-2")]


def test_concurrent_writers_from_several_processes(database_url: str) -> None:
    store = migrated_store(database_url)
    spawn = multiprocessing.get_context("spawn")  # fresh interpreters, as gunicorn workers are separate processes
    with spawn.Pool(WORKERS) as pool:
        pool.starmap(write_feedback, [(database_url, w) for w in range(WORKERS)])
    cards = sorted(r["card_uuid"] for r in store.feedback_rows())
    assert cards == sorted(f"w{w}-{i}" for w in range(WORKERS) for i in range(WRITES_PER_WORKER))
    with store.engine.connect() as db:
        assert db.execute(text("SELECT count(*) FROM jti_seen")).scalar() == WORKERS * WRITES_PER_WORKER


def test_unmigrated_database_is_refused(database_url: str) -> None:
    settings = Settings(database_url=database_url, rules_dir=REPO / "rules")
    with pytest.raises(SchemaNotCurrent) as refused:
        create_app(settings)
    message = str(refused.value)
    assert "is not migrated" in message and "lumbar-cds db upgrade" in message
    assert PASSWORD not in message and ("***" in message or database_url.startswith("sqlite"))


def test_auto_migrate_only_creates_a_new_sqlite_database(database_url: str) -> None:
    settings = Settings(database_url=database_url, rules_dir=REPO / "rules", auto_migrate=True)
    if database_url.startswith("sqlite"):
        app = create_app(settings)
        assert current_revision(app.extensions["lumbar_cds.store"].engine) == head_revision()
        return
    with pytest.raises(SchemaNotCurrent, match="is not migrated"):  # PostgreSQL: always explicit
        create_app(settings)


def test_outdated_database_is_refused(database_url: str) -> None:
    store = migrated_store(database_url)
    with store.engine.begin() as db:
        db.execute(text("UPDATE alembic_version SET version_num = 'older'"))
    settings = Settings(database_url=database_url, rules_dir=REPO / "rules", auto_migrate=True)
    with pytest.raises(SchemaNotCurrent, match=r"is at schema revision older.*lumbar-cds db upgrade"):
        create_app(settings)


def test_db_upgrade_and_current_commands(
    database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("LUMBAR_CDS_CONFIG", raising=False)
    monkeypatch.setenv("LUMBAR_CDS_DATABASE_URL", database_url)
    assert main(["db", "current"]) == 1
    assert main(["db", "upgrade"]) == 0
    assert main(["db", "upgrade"]) == 0  # idempotent
    assert main(["db", "current"]) == 0
    out = capsys.readouterr().out.splitlines()
    head = head_revision()
    assert out[0].endswith(f"revision none (needs `lumbar-cds db upgrade` to {head})")
    assert out[1].endswith(f"upgraded from empty to revision {head}")
    assert out[2].endswith(f"already at revision {head}")
    assert out[3].endswith(f"revision {head} (up to date)")
    assert all(PASSWORD not in line for line in out)
    app = create_app(Settings(database_url=database_url, rules_dir=REPO / "rules"))
    assert app.test_client().get("/healthz").status_code == 200


def test_pre_alembic_sqlite_database_is_adopted(tmp_path: Path) -> None:
    """A database written by the earlier sqlite3 store keeps its rows through `db upgrade`."""
    path = tmp_path / "old.sqlite3"
    with sqlite3.connect(path) as old:
        old.executescript((Path(__file__).parent / "data" / "pre_alembic_schema.sql").read_text())
        old.execute("INSERT INTO feedback (service_id, card_uuid, known_card, outcome, outcome_timestamp,"
                    " received_at) VALUES ('svc', 'c1', 0, 'overridden', 't', 't')")
    with pytest.raises(SchemaNotCurrent, match="is not migrated"):  # not empty: auto_migrate leaves it alone
        create_app(Settings(database_url=f"sqlite:///{path}", rules_dir=REPO / "rules", auto_migrate=True))
    store = migrated_store(path)
    assert current_revision(store.engine) == head_revision()
    assert [r["card_uuid"] for r in store.feedback_rows()] == ["c1"]
    store.record_feedback("svc", [overridden("c2")])
    assert [r["card_uuid"] for r in store.feedback_rows()] == ["c1", "c2"]
