"""`lumbar-cds report` on data stored through the real app, on both backends."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from cds_hooks.ops.cli import main
from cds_hooks.sandbox.fixtures import fixtures_dir, load_fixture
from cds_hooks.service.hook import today_utc
from tests.conftest import migrated_store


def _card(client: FlaskClient, fixture: str) -> dict[str, Any]:
    """The fixture's first card, with the service that issued it under "service" (feedback goes there)."""
    case = load_fixture(fixtures_dir() / f"{fixture}.json", today_utc())
    response = client.post(f"/cds-services/{case.service}", json=case.request)
    assert response.status_code == 200
    return {**response.get_json()["cards"][0], "service": case.service}


def _feedback(client: FlaskClient, card: dict[str, Any], accept: bool = False, reason: int | None = None,
              with_display: bool = True, when: str = "10:00") -> None:
    item: dict[str, Any] = {"card": card["uuid"], "outcomeTimestamp": f"2026-11-21T{when}:00Z"}
    if accept:
        item |= {"outcome": "accepted", "acceptedSuggestions": [{"id": card["suggestions"][0]["uuid"]}]}
    else:
        item["outcome"] = "overridden"
        if reason is not None:
            coding = dict(card["overrideReasons"][reason])
            if not with_display:
                del coding["display"]  # as the CDS Hooks Sandbox sends it
            item["overrideReason"] = {"reason": coding}
    response = client.post(f"/cds-services/{card['service']}/feedback", json={"feedback": [item]})
    assert response.status_code == 200


@pytest.fixture
def stored(database_url: str, make_app: Callable[..., Flask], monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Seven cards through the app and their feedback; the report reads the same database from the environment."""
    migrated_store(database_url)
    client = make_app(database_url=database_url).test_client()
    imaging = [_card(client, "premature-mri-3-weeks") for _ in range(5)]
    referral = [_card(client, "referral-orthopedic-surgeon-no-pt") for _ in range(2)]
    _feedback(client, imaging[0], accept=True)
    _feedback(client, imaging[1], reason=1)
    _feedback(client, imaging[1], reason=1)  # a duplicate post counts once
    _feedback(client, imaging[2], reason=1, with_display=False)
    # Accepted, then dismissed (as the CDS Hooks Sandbox allows, without a display): the later one counts.
    _feedback(client, imaging[3], accept=True, when="10:00")
    _feedback(client, imaging[3], reason=3, with_display=False, when="10:05")
    # Overridden, then accepted; the acceptance reaches the service first but is the later decision.
    _feedback(client, imaging[4], accept=True, when="10:05")
    _feedback(client, imaging[4], reason=0, when="10:00")
    _feedback(client, referral[0], reason=0)
    _feedback(client, referral[0], reason=2)  # the same card overridden again, at the same time: the last post counts
    response = client.post(f"/cds-services/{imaging[0]['service']}/feedback", json={"feedback": [
        {"card": "never-issued", "outcome": "overridden", "outcomeTimestamp": "2026-11-21T10:00:00Z"}]})
    assert response.status_code == 200
    monkeypatch.delenv("LUMBAR_CDS_CONFIG", raising=False)
    monkeypatch.setenv("LUMBAR_CDS_DATABASE_URL", database_url)
    return {"imaging": imaging, "referral": referral}


def test_report_csv_quotes_caller_text_that_a_spreadsheet_would_run(
    database_url: str, make_app: Callable[..., Flask], monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    migrated_store(database_url)
    client = make_app(database_url=database_url).test_client()
    card = _card(client, "premature-mri-3-weeks")
    item = {"card": card["uuid"], "outcome": "overridden", "outcomeTimestamp": "2026-11-21T10:00:00Z",
            "overrideReason": {"reason": {"code": "=HYPERLINK(\"http://evil.test\")", "system": "urn:x"}}}
    assert client.post(f"/cds-services/{card['service']}/feedback", json={"feedback": [item]}).status_code == 200
    monkeypatch.delenv("LUMBAR_CDS_CONFIG", raising=False)
    monkeypatch.setenv("LUMBAR_CDS_DATABASE_URL", database_url)
    [row] = list(csv.DictReader(io.StringIO(_report(capsys, "--format", "csv"))))
    assert row["top_override_reasons"].startswith("'=HYPERLINK")


def _report(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    capsys.readouterr()
    assert main(["report", *args]) == 0
    return capsys.readouterr().out


def test_report_json(stored: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    imaging, referral = stored["imaging"], stored["referral"]
    rules = {r["rule"]: r for r in json.loads(_report(capsys, "--format", "json"))["rules"]}
    assert set(rules) == {imaging[0]["source"]["topic"]["code"], referral[0]["source"]["topic"]["code"]}
    first = rules[imaging[0]["source"]["topic"]["code"]]
    # Each card once, by its latest feedback: accepted 0 and 4, overridden 1, 2 and 3.
    assert (first["issued"], first["accepted"], first["overridden"], first["withFeedback"]) == (5, 2, 3, 5)
    assert first["overrideRate"] == pytest.approx(3 / 5)
    reason, late = imaging[1]["overrideReasons"][1], imaging[3]["overrideReasons"][3]
    assert first["topOverrideReasons"] == [
        {"system": reason["system"], "code": reason["code"], "display": reason["display"], "cards": 2},
        # Sent as a bare code: the display is the rules' own.
        {"system": late["system"], "code": late["code"], "display": late["display"], "cards": 1},
    ]
    assert first["silencedByMemory"] == 0
    second = rules[referral[0]["source"]["topic"]["code"]]
    assert (second["issued"], second["accepted"], second["overridden"], second["withFeedback"]) == (2, 0, 1, 1)
    assert second["overrideRate"] == 1.0
    codes = [r["code"] for r in referral[0]["overrideReasons"]]
    assert [(r["code"], r["cards"]) for r in second["topOverrideReasons"]] == [(codes[2], 1)]
    top_one = json.loads(_report(capsys, "--format", "json", "--top", "1"))["rules"]
    assert all(len(r["topOverrideReasons"]) == 1 for r in top_one)


def test_report_csv_and_text(stored: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    imaging = stored["imaging"]
    rule = imaging[0]["source"]["topic"]["code"]
    reason = imaging[1]["overrideReasons"][1]
    late = imaging[3]["overrideReasons"][3]
    rows = {r["rule"]: r for r in csv.DictReader(io.StringIO(_report(capsys, "--format", "csv")))}
    assert (rows[rule]["issued"], rows[rule]["accepted"], rows[rule]["overridden"]) == ("5", "2", "3")
    assert rows[rule]["override_rate"] == "0.6000"
    assert rows[rule]["top_override_reasons"] == (
        f"{reason['code']} ({reason['display']}): 2; {late['code']} ({late['display']}): 1")
    assert rows[rule]["silenced_by_memory"] == "0"
    text = _report(capsys)
    line = next(line for line in text.splitlines() if line.startswith(rule))
    assert line.split() == [rule, "5", "2", "3", "5", "60.0%", "0", "0"]
    assert f"2  {reason['code']} ({reason['display']})" in text
    assert "Override memory" not in text


def test_report_since(stored: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    today = today_utc()
    assert len(json.loads(_report(capsys, "--format", "json", "--since", today.isoformat()))["rules"]) == 2
    later = json.loads(_report(capsys, "--format", "json", "--since", (today + timedelta(days=1)).isoformat()))
    assert later == {"since": (today + timedelta(days=1)).isoformat(), "rules": []}
    assert "(no cards issued)" in _report(capsys, "--since", (today + timedelta(days=1)).isoformat())


def test_report_refuses_an_unmigrated_database(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("LUMBAR_CDS_CONFIG", raising=False)
    monkeypatch.setenv("LUMBAR_CDS_DATABASE_URL", f"sqlite:///{tmp_path / 'empty.sqlite3'}")
    assert main(["report"]) == 2
    assert "lumbar-cds db upgrade" in capsys.readouterr().err
