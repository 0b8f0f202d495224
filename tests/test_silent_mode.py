"""Silent mode for pilots: a service evaluates and records its cards, flagged silent, and shows none.

Run through the real app on both backends; `lumbar-cds report` must show silent and live side by side.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select

from cds_hooks.ops.cli import main
from cds_hooks.sandbox.fixtures import fixtures_dir, load_fixture
from cds_hooks.service.hook import today_utc
from cds_hooks.settings.config import Settings, SettingsError
from cds_hooks.settings.types import ServiceSettings
from cds_hooks.store.repository import Store, issued_cards
from tests.conftest import REPO, migrated_store

SELECT = "lumbar-pathway-order-select"
SIGN = "lumbar-pathway-order-sign"


def _post(app: Flask, fixture: str, service: str | None = None) -> tuple[str, list[dict[str, Any]]]:
    case = load_fixture(fixtures_dir() / f"{fixture}.json", today_utc())
    response = app.test_client().post(f"/cds-services/{service or case.service}", json=case.request)
    assert response.status_code == 200, response.get_data(as_text=True)
    return case.service, response.get_json()["cards"]


def _rows(url: str) -> list[tuple[str, str, int]]:
    with Store(url).engine.connect() as db:
        return sorted(db.execute(select(issued_cards.c.service_id, issued_cards.c.rule_id,
                                        issued_cards.c.silent)).all())


def test_silent_service_records_its_cards_and_shows_none(
    database_url: str, make_app: Callable[..., Flask], monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    migrated_store(database_url)
    silent_app = make_app(database_url=database_url, services={SELECT: ServiceSettings(mode="silent")})
    service, cards = _post(silent_app, "premature-mri-3-weeks")
    assert service == SELECT and cards == []
    # The other service stays live: the clinician gets the cards.
    _, live_cards = _post(silent_app, "order-sign-mri-and-ortho-referral-two-cards")
    assert len(live_cards) == 2
    assert _rows(database_url) == sorted([
        (SELECT, "imaging-premature", 1), (SIGN, "imaging-premature", 0), (SIGN, "referral-premature", 0)])
    # Switching back is a setting, not a code change.
    _, shown = _post(make_app(database_url=database_url), "premature-mri-3-weeks")
    assert [c["source"]["topic"]["code"] for c in shown] == ["imaging-premature"]

    monkeypatch.delenv("LUMBAR_CDS_CONFIG", raising=False)
    monkeypatch.setenv("LUMBAR_CDS_DATABASE_URL", database_url)
    capsys.readouterr()
    assert main(["report", "--format", "json"]) == 0
    rules = {r["rule"]: r for r in json.loads(capsys.readouterr().out)["rules"]}
    assert (rules["imaging-premature"]["issued"], rules["imaging-premature"]["silent"]) == (2, 1)
    assert (rules["referral-premature"]["issued"], rules["referral-premature"]["silent"]) == (1, 0)
    assert main(["report"]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("imaging-premature"))
    assert line.split()[1] == "2" and line.split()[-1] == "1"


def test_a_rule_seen_only_in_silent_mode_is_reported(
    tmp_path: Path, make_app: Callable[..., Flask], monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = f"sqlite:///{tmp_path / 'silent.sqlite3'}"
    migrated_store(url)
    app = make_app(database_url=url, services={SELECT: ServiceSettings(mode="silent")})
    _post(app, "premature-mri-3-weeks")
    monkeypatch.delenv("LUMBAR_CDS_CONFIG", raising=False)
    monkeypatch.setenv("LUMBAR_CDS_DATABASE_URL", url)
    capsys.readouterr()
    assert main(["report", "--format", "csv"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].endswith(",silent")
    assert lines[1].startswith("1.1.0,imaging-premature,0,0,0,0,,") and lines[1].endswith(",0,1")  # silenced, silent


def test_service_modes_from_the_environment_and_the_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("LUMBAR_CDS_CONFIG", raising=False)
    monkeypatch.setenv("LUMBAR_CDS_SERVICE_MODES", f"{SELECT}=silent, {SIGN}=live")
    settings = Settings.from_env()
    assert (settings.service_mode(SELECT), settings.service_mode(SIGN), settings.service_mode("other")) == (
        "silent", "live", "live")
    monkeypatch.setenv("LUMBAR_CDS_SERVICE_MODES", f"{SELECT}=quiet")
    with pytest.raises(SettingsError, match="live or service-id=silent"):
        Settings.from_env()
    monkeypatch.delenv("LUMBAR_CDS_SERVICE_MODES")
    config = tmp_path / "lumbar.toml"
    config.write_text(f'[services.{SELECT}]\nmode = "silent"\n')
    monkeypatch.setenv("LUMBAR_CDS_CONFIG", str(config))
    assert Settings.from_env().service_mode(SELECT) == "silent"
    config.write_text(f'[services.{SELECT}]\nmode = "hidden"\n')
    with pytest.raises(SettingsError, match="services"):
        Settings.from_env()


def test_a_mode_for_a_service_the_rules_lack_is_refused_at_start(tmp_path: Path) -> None:
    from cds_hooks.app import create_app

    settings = Settings(data_dir=tmp_path, rules_dir=REPO / "rules", auto_migrate=True,
                        services={"no-such-service": ServiceSettings(mode="silent")})
    with pytest.raises(SettingsError, match="no-such-service"):
        create_app(settings)
