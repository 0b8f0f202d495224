"""Basis pages through the real app, on SQLite and on a real PostgreSQL server.

Each card shown links first to its whole basis: a page served for `basis_minutes`, found by an unguessable
token that names nothing about the patient, sealed in the database (every table is read back to prove it
holds neither the token nor the basis in clear), served to no other origin's script, then gone.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from cds_hooks.sandbox.fixtures import fixtures_dir, load_fixture
from cds_hooks.service.hook import today_utc
from cds_hooks.settings.config import MAX_BASIS_MINUTES, ServiceSettings, Settings
from cds_hooks.settings.types import SettingsError
from cds_hooks.store.repository import Store
from tests.conftest import migrated_store
from tests.test_override_memory import PATIENT, SECRET, SERVICE, Clock, all_text, fire, request_for

MINUTES = 20
TWO_CARDS = "order-sign-mri-and-ortho-referral-two-cards"


@pytest.fixture
def basis_app(database_url: str, make_app: Callable[..., Flask]) -> tuple[Flask, Clock]:
    migrated_store(database_url)
    app = make_app(database_url=database_url, basis_minutes=MINUTES)
    clock = Clock()
    app.extensions["lumbar_cds.store"].clock = clock
    return app, clock


def basis_link(card: dict[str, Any]) -> dict[str, Any]:
    link = card["links"][0]
    assert link["label"].startswith("Full basis") and link["type"] == "absolute", card["links"]
    return link


def page_text(client: FlaskClient, url: str) -> tuple[int, str]:
    response = client.get(urlsplit(url).path)
    words = html.unescape(re.sub(r"<[^>]+>", " ", response.get_data(as_text=True))).split()
    return response.status_code, " ".join(words)


def pages_kept(store: Store) -> int:
    with store.engine.connect() as db:
        return db.execute(text("SELECT count(*) FROM basis_pages")).scalar_one()


def test_the_page_lasts_its_minutes_and_the_database_holds_it_sealed(basis_app: tuple[Flask, Clock]) -> None:
    app, clock = basis_app
    client = app.test_client()
    store: Store = app.extensions["lumbar_cds.store"]
    [card] = fire(client)["cards"]
    url = basis_link(card)["url"]
    token = url.rsplit("/", 1)[1]
    assert url == f"http://localhost/basis/{token}" and re.fullmatch(r"[A-Za-z0-9_-]{43}", token)
    assert PATIENT not in url

    status, page = page_text(client, url)
    assert status == 200
    # The whole basis: the order, the facts with their codes and dates, what was checked, the NSAID
    # cautions of the full recommendation, every reference, and when the page goes.
    assert "MRI lumbar spine without contrast (CPT 72148)" in page
    assert "Low back pain, unspecified (ICD-10-CM M54.50), onset" in page
    assert "Red flags were looked for in" in page and "peptic ulcer" in page
    assert "American College of Radiology" in page and "expires at" in page

    stored = all_text(store)
    for secret in (token, "M54.50", "Low back pain", "Red flags were looked for", PATIENT):
        assert secret not in stored, secret

    clock.now += timedelta(minutes=MINUTES, seconds=-1)
    assert page_text(client, url)[0] == 200
    clock.now += timedelta(seconds=1)
    status, gone = page_text(client, url)
    assert status == 404 and "expired or never existed" in gone
    # An expired link, a token never issued and a malformed one answer alike.
    assert page_text(client, f"http://localhost/basis/{token[:-1]}A") == (404, gone)
    assert page_text(client, "http://localhost/basis/not-a-token") == (404, gone)
    # The next hook call forgets expired pages.
    assert pages_kept(store) == 1
    fire(client)
    assert pages_kept(store) == 1


def test_a_wrong_token_cannot_open_anothers_page(basis_app: tuple[Flask, Clock]) -> None:
    """The row is found by a hash of the token and opened by a key derived from it: a row moved under
    another id (a tampered database) does not open."""
    app, _ = basis_app
    client = app.test_client()
    store: Store = app.extensions["lumbar_cds.store"]
    first = basis_link(fire(client)["cards"][0])["url"]
    second = basis_link(fire(client)["cards"][0])["url"]
    with store.engine.begin() as db:
        rows = db.execute(text("SELECT id, sealed FROM basis_pages ORDER BY id")).all()
        assert len(rows) == 2
        db.execute(text("UPDATE basis_pages SET sealed = :s WHERE id = :i"), {"s": rows[1].sealed, "i": rows[0].id})
        db.execute(text("UPDATE basis_pages SET sealed = :s WHERE id = :i"), {"s": rows[0].sealed, "i": rows[1].id})
    assert page_text(client, first)[0] == 404 and page_text(client, second)[0] == 404


def test_the_page_is_a_document_for_the_clinician_and_nothing_more(make_app: Callable[..., Flask]) -> None:
    app = make_app(cors_origins=("https://ehr.example",))
    client = app.test_client()
    [card] = fire(client)["cards"]
    response = client.get(urlsplit(basis_link(card)["url"]).path, headers={"Origin": "https://ehr.example"})
    assert response.status_code == 200 and response.mimetype == "text/html"
    assert "Access-Control-Allow-Origin" not in response.headers  # no other origin's script reads it
    policy = response.headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "script-src" not in policy and "frame-ancestors 'none'" in policy
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert "noindex" in response.headers["X-Robots-Tag"]
    # The API itself still answers that origin.
    api = client.options(f"/cds-services/{SERVICE}", headers={
        "Origin": "https://ehr.example", "Access-Control-Request-Method": "POST"})
    assert api.headers["Access-Control-Allow-Origin"] == "https://ehr.example"


def test_record_text_is_escaped_on_the_page(make_app: Callable[..., Flask]) -> None:
    client = make_app().test_client()
    body = request_for(PATIENT)
    conditions = body["prefetch"]["conditions"]["entry"]
    conditions[0]["resource"]["code"]["coding"][0]["display"] = '<script>alert(1)</script><img src=x onerror=alert(1)>'
    card = client.post(f"/cds-services/{SERVICE}", json=body).get_json()["cards"][0]
    raw = client.get(urlsplit(basis_link(card)["url"]).path).get_data(as_text=True)
    assert "<script>" not in raw and "<img" not in raw and "&lt;script&gt;alert(1)&lt;/script&gt;" in raw


def test_no_page_when_basis_pages_are_off_or_the_service_is_silent(
    database_url: str, make_app: Callable[..., Flask]
) -> None:
    migrated_store(database_url)
    off = make_app(database_url=database_url, basis_minutes=0)
    [card] = fire(off.test_client())["cards"]
    assert [link["label"] for link in card["links"]] == ["ACR Appropriateness Criteria: Low Back Pain (2021)"]
    silent = make_app(database_url=database_url, services={SERVICE: ServiceSettings(mode="silent")})
    assert fire(silent.test_client())["cards"] == []
    assert pages_kept(silent.extensions["lumbar_cds.store"]) == 0  # a card nobody sees leaves no basis behind


def test_a_page_that_cannot_be_kept_leaves_the_card_without_its_link(
    make_app: Callable[..., Flask], monkeypatch: pytest.MonkeyPatch
) -> None:
    app = make_app()
    store: Store = app.extensions["lumbar_cds.store"]

    def broken(*_: object) -> None:
        raise OperationalError("INSERT", {}, Exception("disk full"))

    monkeypatch.setattr(store, "keep_basis", broken)
    [card] = fire(app.test_client())["cards"]
    assert not any(link["label"].startswith("Full basis") for link in card["links"])
    assert card["summary"].startswith("Lumbar MRI likely premature")  # the card itself still goes out


def test_the_page_says_which_card_override_memory_withheld(database_url: str, make_app: Callable[..., Flask]) -> None:
    """Two cards; the imaging one overridden for a durable reason: on the next call only the referral card
    shows, and its basis page says the imaging card was withheld and why."""
    migrated_store(database_url)
    app = make_app(database_url=database_url, override_memory_days=30, override_memory_secret=SECRET)
    client = app.test_client()
    case = load_fixture(fixtures_dir() / f"{TWO_CARDS}.json", today_utc())
    path = f"/cds-services/{case.service}"
    cards = client.post(path, json=case.request).get_json()["cards"]
    imaging = next(c for c in cards if c["source"]["topic"]["code"] == "imaging-premature")
    status, before = page_text(client, basis_link(imaging)["url"])
    assert status == 200 and "Withheld by override memory" not in before
    reason = next(r for r in imaging["overrideReasons"] if r["code"] == "conservative-care-elsewhere")
    stored = client.post(f"{path}/feedback", json={"feedback": [{
        "card": imaging["uuid"], "outcome": "overridden", "outcomeTimestamp": "2026-11-21T10:00:00Z",
        "overrideReason": {"reason": {"code": reason["code"], "system": reason["system"]}}}]})
    assert stored.status_code == 200
    [referral] = client.post(path, json=case.request).get_json()["cards"]
    assert referral["source"]["topic"]["code"] == "referral-premature"
    status, page = page_text(client, basis_link(referral)["url"])
    assert status == 200
    assert "Withheld by override memory" in page and "Premature lumbar spine imaging" in page and "30 day(s)" in page


@pytest.mark.parametrize(("minutes", "ok"), [(-1, False), (0, True), (MAX_BASIS_MINUTES, True),
                                             (MAX_BASIS_MINUTES + 1, False)])
def test_basis_minutes_are_bounded(minutes: int, ok: bool) -> None:
    if ok:
        assert Settings(basis_minutes=minutes).basis_minutes == minutes
    else:
        with pytest.raises(SettingsError, match="basis_minutes must be between 0"):
            Settings(basis_minutes=minutes)


def test_basis_minutes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LUMBAR_CDS_BASIS_MINUTES", "15")
    assert Settings.from_env().basis_minutes == 15
