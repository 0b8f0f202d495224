"""Rules governance: the version, status and approval in rules/governance.yaml are checked, start-up
serves only what it may, every card and every issued-card record carries the version, and the
committee report splits by it."""

from __future__ import annotations

import json
import shutil
import sqlite3
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from flask import Flask

from cds_hooks.app import create_app
from cds_hooks.ops.cli import main
from cds_hooks.pathway.cards import RULES_EXTENSION
from cds_hooks.pathway.rules import RulesError, load_rules
from cds_hooks.sandbox.fixtures import fixtures_dir, load_fixture
from cds_hooks.service.hook import today_utc
from cds_hooks.settings.config import Settings
from cds_hooks.store.migrate import upgrade
from cds_hooks.store.repository import Store
from tests.conftest import REPO
from tests.test_rules import _replace

GOVERNANCE = "governance.yaml"


@pytest.fixture
def rules_copy(tmp_path: Path) -> Path:
    target = tmp_path / "rules"
    shutil.copytree(REPO / "rules", target)
    return target


def _problems(rules_dir: Path) -> list[str]:
    with pytest.raises(RulesError) as caught:
        load_rules(rules_dir)
    return caught.value.problems


@pytest.mark.parametrize(
    ("old", "new", "expected", "exact"),
    [
        ("\nstatus: active", "\nstatus: published", "status: Input should be 'draft', 'active' or 'retired'", True),
        ("\nversion: 1.1.0", "\nversion: one", "version: String should match pattern", True),
        ("approval:\n  committee:", "approval_:\n  committee:", "approval_: Extra inputs are not permitted", True),
        ("  date: 2026-11-26", "  date: 2026-11-27",
         "approval date 2026-11-27 is after the effective date 2026-11-26", True),
        ("      - imaging.min_symptom_weeks\n", "      - imaging.min_symptom_days\n",
         "rules.imaging-premature: 'imaging.min_symptom_days' is not a profile setting", True),
        ("    unless: [surgery-fusion, referral-premature]", "    unless: [surgery-window]",
         "rules.surgery-window: a rule cannot take precedence over itself", True),
        ("  imaging-duplicate:\n    orders: [lumbar-imaging]\n    settings: [imaging.duplicate_lookback_months, "
         "imaging.repeat_modalities]\n", "", "rules: rule imaging-duplicate has no entry", False),
    ],
)
def test_governance_mistakes_are_reported_with_file_and_line(
    rules_copy: Path, old: str, new: str, expected: str, exact: bool
) -> None:
    line = _replace(rules_copy / GOVERNANCE, old, new)
    hits = [p for p in _problems(rules_copy) if expected in p]
    assert hits, _problems(rules_copy)
    assert all(p.startswith(f"rules/{GOVERNANCE}:") for p in hits), hits
    # The problem points at the edited line (a "\n"-anchored edit starts one line above it).
    assert not exact or any(int(p.split(":")[1]) in (line, line + 1) for p in hits), (line, hits)


def test_an_active_version_needs_an_approval_and_a_draft_does_not(rules_copy: Path) -> None:
    text = (rules_copy / GOVERNANCE).read_text()
    start, end = text.index("approval:"), text.index("# What each rule judges")
    (rules_copy / GOVERNANCE).write_text(text[:start] + text[end:])
    assert any("status 'active' needs an approval record" in p for p in _problems(rules_copy))
    _replace(rules_copy / GOVERNANCE, "\nstatus: active", "\nstatus: draft")
    assert load_rules(rules_copy).governance.approval is None


def test_governance_file_is_required(rules_copy: Path) -> None:
    (rules_copy / GOVERNANCE).unlink()
    assert "rules/governance.yaml: file is missing" in _problems(rules_copy)
    # ... except for comparing against rules written before it existed.
    assert load_rules(rules_copy, require_governance=False).governance.version == "0"


def _settings(tmp_path: Path, rules_dir: Path, **overrides: object) -> Settings:
    return Settings(data_dir=tmp_path / "data", rules_dir=rules_dir, auto_migrate=True, log_level="WARNING",
                    **overrides)  # type: ignore[arg-type]


def test_start_up_refuses_retired_rules_even_when_drafts_are_allowed(rules_copy: Path, tmp_path: Path) -> None:
    _replace(rules_copy / GOVERNANCE, "\nstatus: active", "\nstatus: retired")
    for allow in (False, True):
        with pytest.raises(RulesError, match="is retired"):
            create_app(_settings(tmp_path, rules_copy, allow_draft_rules=allow))


def test_start_up_serves_a_draft_only_when_allowed(rules_copy: Path, tmp_path: Path) -> None:
    _replace(rules_copy / GOVERNANCE, "\nstatus: active", "\nstatus: draft")
    with pytest.raises(RulesError, match="LUMBAR_CDS_ALLOW_DRAFT_RULES=1"):
        create_app(_settings(tmp_path, rules_copy))
    card = _first_card(create_app(_settings(tmp_path, rules_copy, allow_draft_rules=True)))
    assert card["extension"][RULES_EXTENSION] == {"version": "1.1.0", "status": "draft", "profile": "seeds"}


def test_start_up_refuses_active_rules_before_their_effective_date(rules_copy: Path, tmp_path: Path) -> None:
    tomorrow = today_utc() + timedelta(days=1)
    _replace(rules_copy / GOVERNANCE, "effective: 2026-11-26", f"effective: {tomorrow.isoformat()}")
    with pytest.raises(RulesError, match=f"takes effect on {tomorrow.isoformat()}"):
        create_app(_settings(tmp_path, rules_copy))
    _replace(rules_copy / GOVERNANCE, f"effective: {tomorrow.isoformat()}", f"effective: {today_utc().isoformat()}")
    assert create_app(_settings(tmp_path, rules_copy))  # in effect from its first day


def test_the_draft_setting_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LUMBAR_CDS_CONFIG", raising=False)
    monkeypatch.setenv("LUMBAR_CDS_ALLOW_DRAFT_RULES", "1")
    assert Settings.from_env().allow_draft_rules is True
    monkeypatch.setenv("LUMBAR_CDS_ALLOW_DRAFT_RULES", "0")
    assert Settings.from_env().allow_draft_rules is False


def _first_card(app: Flask, fixture: str = "premature-mri-3-weeks") -> dict[str, object]:
    case = load_fixture(fixtures_dir() / f"{fixture}.json", today_utc())
    response = app.test_client().post(f"/cds-services/{case.service}", json=case.request)
    assert response.status_code == 200, response.get_json()
    return response.get_json()["cards"][0]


def _rows(database: Path) -> list[tuple[str, str, str | None]]:
    with sqlite3.connect(database) as db:
        return db.execute("SELECT uuid, rule_id, rules_version FROM issued_cards ORDER BY issued_at").fetchall()


def test_every_card_and_its_record_carry_the_rules_version(rules_copy: Path, tmp_path: Path) -> None:
    _replace(rules_copy / GOVERNANCE, "\nversion: 1.1.0", "\nversion: 2.3.1")
    app = create_app(_settings(tmp_path, rules_copy, profile="payer"))
    cards = [_first_card(app, f) for f in ("premature-mri-3-weeks", "referral-orthopedic-surgeon-no-pt")]
    for card in cards:
        assert card["extension"] == {RULES_EXTENSION: {"version": "2.3.1", "status": "active", "profile": "payer"}}
    rows = _rows(tmp_path / "data" / "lumbar-cds.sqlite3")
    assert [(uuid, version) for uuid, _, version in rows] == [(c["uuid"], "2.3.1") for c in cards]
    assert app.test_client().get("/healthz").get_json()["rulesVersion"] == "2.3.1"  # what an operator checks


def test_migration_0002_keeps_earlier_cards_without_a_version(tmp_path: Path) -> None:
    database = tmp_path / "old.sqlite3"
    store = Store(database)
    with store.engine.begin() as connection:
        from alembic import command

        from cds_hooks.store.migrate import _config

        command.upgrade(_config(connection), "0001")
    with sqlite3.connect(database) as db:
        db.execute("INSERT INTO issued_cards VALUES ('u1', 'imaging-premature', 'warning', 's', 'order-select', "
                   "'h', 'seeds', '[]', '2026-01-01T00:00:00.000Z')")
    upgrade(store.engine)
    assert _rows(database) == [("u1", "imaging-premature", None)]


def test_report_splits_by_rules_version(
    rules_copy: Path, tmp_path: Path, make_app: Callable[..., Flask], monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The same rule under two versions is two rows; the committee sees a change's effect."""
    database_url = f"sqlite:///{tmp_path / 'shared.sqlite3'}"
    old_app = make_app(database_url=database_url)
    _replace(rules_copy / GOVERNANCE, "\nversion: 1.1.0", "\nversion: 1.10.0")
    new_app = make_app(database_url=database_url, rules_dir=rules_copy)
    old_cards = [_first_card(old_app) for _ in range(2)]
    new_card = _first_card(new_app)
    for card, outcome in ((old_cards[0], "accepted"), (new_card, "overridden")):
        item = {"card": card["uuid"], "outcome": outcome, "outcomeTimestamp": "2026-11-21T10:00:00Z"}
        if outcome == "accepted":
            item["acceptedSuggestions"] = [{"id": card["suggestions"][0]["uuid"]}]
        service = "lumbar-pathway-order-select"
        assert old_app.test_client().post(f"/cds-services/{service}/feedback",
                                          json={"feedback": [item]}).status_code == 200
    monkeypatch.delenv("LUMBAR_CDS_CONFIG", raising=False)
    monkeypatch.setenv("LUMBAR_CDS_DATABASE_URL", database_url)
    capsys.readouterr()
    assert main(["report", "--format", "json"]) == 0
    rows = [(r["rulesVersion"], r["rule"], r["issued"], r["accepted"], r["overridden"])
            for r in json.loads(capsys.readouterr().out)["rules"]]
    assert rows == [("1.1.0", "imaging-premature", 2, 1, 0), ("1.10.0", "imaging-premature", 1, 0, 1)]
    assert main(["report"]) == 0
    text = capsys.readouterr().out
    assert text.index("rules version 1.1.0:") < text.index("rules version 1.10.0:")
