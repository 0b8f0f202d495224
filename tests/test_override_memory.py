"""Override memory through the real app, on SQLite and on a real PostgreSQL server.

A durable override keeps the same rule silent for the same patient until the memory expires; the
patient is stored only as a keyed hash (every table is read back to prove it); later feedback decides.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import inspect, text

from cds_hooks.ops.cli import main
from cds_hooks.protocol.pama import rating_of
from cds_hooks.sandbox.fixtures import fixtures_dir, load_fixture
from cds_hooks.service.hook import today_utc
from cds_hooks.settings.config import Settings
from cds_hooks.settings.types import SettingsError
from cds_hooks.store.memory import subject
from cds_hooks.store.repository import Store
from tests.conftest import migrated_store

SECRET = "test-secret-for-override-memory-0123456789"
DAYS = 30
PATIENT = "pat-lbp-3w"  # the fixture's patient
OTHER = "pat-someone-else"
SERVICE = "lumbar-pathway-order-select"


class Clock:
    """The store's clock, moved by the test (the pathway keeps the real date)."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


def request_for(patient: str) -> dict[str, Any]:
    case = load_fixture(fixtures_dir() / "premature-mri-3-weeks.json", today_utc())
    return orjson.loads(orjson.dumps(case.request).replace(PATIENT.encode(), patient.encode()))


def fire(client: FlaskClient, patient: str = PATIENT) -> dict[str, Any]:
    response = client.post(f"/cds-services/{SERVICE}", json=request_for(patient))
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


def feedback(client: FlaskClient, card: dict[str, Any], outcome: str, when: str, reason: str | None = None) -> None:
    item: dict[str, Any] = {"card": card["uuid"], "outcome": outcome, "outcomeTimestamp": when}
    if outcome == "accepted":
        item["acceptedSuggestions"] = [{"id": card["suggestions"][0]["uuid"]}]
    elif reason:
        coding = next(r for r in card["overrideReasons"] if r["code"] == reason)
        item["overrideReason"] = {"reason": {"code": coding["code"], "system": coding["system"]}}  # as the Sandbox
    response = client.post(f"/cds-services/{SERVICE}/feedback", json={"feedback": [item]})
    assert response.status_code == 200, response.get_data(as_text=True)


@pytest.fixture
def memory_app(database_url: str, make_app: Callable[..., Flask]) -> tuple[Flask, Clock]:
    migrated_store(database_url)
    app = make_app(database_url=database_url, override_memory_days=DAYS, override_memory_secret=SECRET)
    clock = Clock()
    app.extensions["lumbar_cds.store"].clock = clock
    return app, clock


def all_text(store: Store) -> str:
    """Every value in every table, as text."""
    cells: list[str] = []
    with store.engine.connect() as db:
        for table in inspect(db).get_table_names():
            for row in db.execute(text(f'SELECT * FROM "{table}"')):
                cells.extend(str(value) for value in row)
    return "\n".join(cells)


def test_a_durable_override_silences_the_rule_for_that_patient_until_it_expires(
    memory_app: tuple[Flask, Clock], database_url: str, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    app, clock = memory_app
    client = app.test_client()
    [card] = fire(client)["cards"]
    assert card["source"]["topic"]["code"] == "imaging-premature"
    feedback(client, card, "overridden", "2026-11-21T10:00:00Z", "conservative-care-elsewhere")

    again = fire(client)
    assert again["cards"] == []
    # The rating is not memory's to change: the order is still not appropriate.
    assert [rating_of(a["resource"]) for a in again["systemActions"]] == ["not-appropriate"]
    assert len(fire(client, OTHER)["cards"]) == 1  # another patient still gets the card

    clock.now += timedelta(days=DAYS - 1)
    assert fire(client)["cards"] == []
    clock.now += timedelta(days=2)
    assert len(fire(client)["cards"]) == 1  # expired

    store: Store = app.extensions["lumbar_cds.store"]
    with store.engine.connect() as db:
        silenced = db.execute(text("SELECT rule_id, remembered_card FROM silenced_cards ORDER BY id")).all()
    assert [tuple(r) for r in silenced] == [("imaging-premature", card["uuid"])] * 2
    # No raw patient id anywhere, only its keyed hash (an unkeyed hash would be reversible by trying ids).
    stored = all_text(store)
    assert PATIENT not in stored and OTHER not in stored
    assert hashlib.sha256(PATIENT.encode()).hexdigest() not in stored
    assert hmac.new(SECRET.encode(), subject(PATIENT).encode(), hashlib.sha256).hexdigest() in stored

    # The committee report says what memory withheld; the overridden card counts once, with its reason.
    monkeypatch.delenv("LUMBAR_CDS_CONFIG", raising=False)
    monkeypatch.setenv("LUMBAR_CDS_DATABASE_URL", database_url)
    capsys.readouterr()
    assert main(["report", "--format", "json"]) == 0
    [row] = json.loads(capsys.readouterr().out)["rules"]
    assert (row["rule"], row["issued"], row["overridden"], row["silencedByMemory"]) == ("imaging-premature", 3, 1, 2)
    assert row["topOverrideReasons"][0]["display"] == "Conservative care completed outside this record"
    assert main(["report"]) == 0
    assert "Override memory silenced 2 card(s)" in capsys.readouterr().out


@pytest.mark.parametrize(("first", "second", "silent"), [
    # (outcome, reason, timestamp) of two feedback posts on one card, and whether the next card is withheld.
    (("overridden", "red-flag-not-coded", "10:00"), None, False),  # not a durable reason
    (("overridden", "conservative-care-elsewhere", "10:00"), ("accepted", None, "10:05"), False),
    (("accepted", None, "10:05"), ("overridden", "specialist-managing", "10:00"), False),  # arrives late, older
    (("accepted", None, "10:00"), ("overridden", "specialist-managing", "10:05"), True),
    (("overridden", "specialist-managing", "10:00"), ("overridden", "patient-specific", "10:05"), False),
    (("overridden", "specialist-managing", "10:00"), ("overridden", "specialist-managing", "10:00"), True),
])
def test_the_latest_feedback_decides(
    memory_app: tuple[Flask, Clock], first: tuple[str, str | None, str], second: tuple[str, str | None, str] | None,
    silent: bool,
) -> None:
    app, _ = memory_app
    client = app.test_client()
    [card] = fire(client)["cards"]
    for outcome, reason, clock_time in filter(None, (first, second)):
        feedback(client, card, outcome, f"2026-11-21T{clock_time}:00Z", reason)
    assert (fire(client)["cards"] == []) is silent


def test_a_repeated_override_does_not_extend_the_memory(memory_app: tuple[Flask, Clock]) -> None:
    app, clock = memory_app
    client = app.test_client()
    [card] = fire(client)["cards"]
    feedback(client, card, "overridden", "2026-11-21T10:00:00Z", "specialist-managing")
    clock.now += timedelta(days=DAYS - 1)
    feedback(client, card, "overridden", "2026-11-21T10:00:00Z", "specialist-managing")  # the client re-sends
    clock.now += timedelta(days=2)
    assert len(fire(client)["cards"]) == 1


def test_memory_off_stores_no_patient_key(database_url: str, make_app: Callable[..., Flask]) -> None:
    migrated_store(database_url)
    client = make_app(database_url=database_url).test_client()
    [card] = fire(client)["cards"]
    feedback(client, card, "overridden", "2026-11-21T10:00:00Z", "conservative-care-elsewhere")
    assert len(fire(client)["cards"]) == 1
    store = Store(database_url)
    with store.engine.connect() as db:
        assert db.execute(text("SELECT count(*) FROM card_patients")).scalar() == 0


def test_the_key_depends_on_the_secret_and_the_calling_ehr() -> None:
    from cds_hooks.store.memory import MemoryPolicy

    one = MemoryPolicy(SECRET, DAYS, frozenset(), "urn:x")
    other = MemoryPolicy(SECRET + "x", DAYS, frozenset(), "urn:x")
    assert one.patient_key(subject(PATIENT)) != other.patient_key(subject(PATIENT))
    assert one.patient_key(subject(PATIENT, "https://ehr-a")) != one.patient_key(subject(PATIENT, "https://ehr-b"))
    assert SECRET not in repr(one)


@pytest.mark.parametrize("secret", [None, "", "too-short"])
def test_memory_is_refused_without_a_proper_secret(secret: str | None, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(SettingsError, match="OVERRIDE_MEMORY_SECRET"):
        Settings(override_memory_days=30, override_memory_secret=secret)
    monkeypatch.delenv("LUMBAR_CDS_CONFIG", raising=False)
    monkeypatch.setenv("LUMBAR_CDS_OVERRIDE_MEMORY_DAYS", "30")
    if secret is None:
        monkeypatch.delenv("LUMBAR_CDS_OVERRIDE_MEMORY_SECRET", raising=False)
    else:
        monkeypatch.setenv("LUMBAR_CDS_OVERRIDE_MEMORY_SECRET", secret)
    with pytest.raises(SettingsError) as refused:
        Settings.from_env()
    assert secret is None or not secret or secret not in str(refused.value)  # the message never echoes it
    assert Settings(override_memory_days=30, override_memory_secret=SECRET).override_memory_enabled
    assert SECRET not in repr(Settings(override_memory_days=30, override_memory_secret=SECRET))
    assert not Settings().override_memory_enabled


def test_memory_survives_in_the_database_across_app_instances(
    memory_app: tuple[Flask, Clock], database_url: str, make_app: Callable[..., Flask],
) -> None:
    """Another worker (a second app on the same database) honours what the first remembered."""
    app, _ = memory_app
    [card] = fire(app.test_client())["cards"]
    feedback(app.test_client(), card, "overridden", "2026-11-21T10:00:00Z", "conservative-care-elsewhere")
    second = make_app(database_url=database_url, override_memory_days=DAYS, override_memory_secret=SECRET)
    assert fire(second.test_client())["cards"] == []
    third = make_app(database_url=database_url, override_memory_days=DAYS, override_memory_secret=SECRET + "!")
    assert len(fire(third.test_client())["cards"]) == 1  # a different secret cannot find the patient
    assert json.dumps(card)  # the card itself carried no memory state
