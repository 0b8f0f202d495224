"""Every scenario in fixtures/ through the real HTTP app, checked against its expected outcome, against
the CDS Hooks response rules, and against the card budgets: every card's summary and detail fit them, and
its basis page (the card's first link) answers and keeps the facts the fixture names."""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson
import pytest
from flask import Flask
from flask.testing import FlaskClient

from cds_hooks.pathway.rules import Rules
from cds_hooks.sandbox.fixtures import Fixture, load_fixture
from tests.conformance import assert_conformant

FIXTURES = sorted((Path(__file__).resolve().parent.parent / "fixtures").glob("*.json"))


def test_there_are_enough_fixtures() -> None:
    assert len(FIXTURES) >= 90


def _order_name(request: dict[str, Any], ref: str) -> str:
    for entry in request["context"]["draftOrders"].get("entry", []):
        res = entry["resource"]
        if f"{res['resourceType']}/{res['id']}" == ref:
            code = res.get("code") or (res.get("performerType") or {})
            return code.get("text") or code["coding"][0]["display"]
    raise AssertionError(f"{ref} is not a draft order")


def _targets(card: dict[str, Any]) -> set[str]:
    refs = set()
    for suggestion in card.get("suggestions", []):
        for action in suggestion["actions"]:
            if action["type"] == "delete":
                refs.add(action["resourceId"])
            elif action["type"] == "update":
                refs.add(f"{action['resource']['resourceType']}/{action['resource']['id']}")
    return refs


def basis_page(client: FlaskClient, card: dict[str, Any]) -> str:
    """The text of the card's basis page, its first link."""
    link = card["links"][0]
    assert link["label"].startswith("Full basis") and link["type"] == "absolute", link
    response = client.get(urlsplit(link["url"]).path)
    assert response.status_code == 200 and response.mimetype == "text/html"
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", response.get_data(as_text=True))).split())


def assert_within_budgets(card: dict[str, Any], rules: Rules) -> None:
    """The card as a clinician reads it: a summary and a few short lines, whatever the record held."""
    budget, labels = rules.cards.budgets, rules.cards.card.labels
    assert len(card["summary"]) <= budget.summary_chars, card["summary"]
    lines = card["detail"].splitlines()
    assert 1 <= len(lines) <= budget.detail_lines, card["detail"]
    for line in lines:
        label, _, text = line.removeprefix("- **").partition(":** ")
        assert label in labels.values() and text, line
        if label == labels["record"]:
            assert len(text.split("; ")) <= budget.facts + 1, line  # the facts, then "and N more"
        else:
            assert len(f"{label}: {text}") <= budget.line_chars, line
    assert all(len(link["label"]) <= budget.link_label_chars for link in card["links"])


def _matches(expected: dict[str, Any], card: dict[str, Any], fixture: Fixture, page: str) -> bool:
    if card["source"]["topic"]["code"] != expected["rule"]:
        return False
    if card["indicator"] != expected["indicator"]:
        return False
    order = expected.get("order")
    if order:
        targets = _targets(card)
        if targets and order not in targets:
            return False
        if not targets and f"{_order_name(fixture.request, order)} (" not in page:  # its basis names the order
            return False
    return True


@pytest.mark.parametrize("path", FIXTURES, ids=[p.stem for p in FIXTURES])
def test_fixture(path: Path, make_app: Callable[..., Flask], today: date) -> None:
    fixture = load_fixture(path, today)
    app = make_app(profile=fixture.profile) if fixture.profile else make_app()
    response = app.test_client().post(f"/cds-services/{fixture.service}", json=fixture.request)
    expect = fixture.expect
    assert response.status_code == expect["status"], response.get_data(as_text=True)
    body = orjson.loads(response.get_data())
    if response.status_code != 200:
        assert body["resourceType"] == "OperationOutcome"
        assert body["issue"][0]["diagnostics"]
        return
    assert_conformant(body, fixture.request)
    cards = body["cards"]
    expected_cards = expect["cards"]
    assert len(cards) == len(expected_cards), [c["summary"] for c in cards]
    client = app.test_client()
    pages = {c["uuid"]: basis_page(client, c) for c in cards}
    for card in cards:
        assert_within_budgets(card, app.extensions["lumbar_cds.rules"])
    unmatched = list(cards)
    for expected in expected_cards:
        card = next((c for c in unmatched if _matches(expected, c, fixture, pages[c["uuid"]])), None)
        assert card is not None, f"no card matches {expected}; got {[c['summary'] for c in unmatched]}"
        unmatched.remove(card)
        if "suggestions" in expected:
            assert [s["label"] for s in card.get("suggestions", [])] == expected["suggestions"]
        for text in expected.get("detail_contains", []):
            assert text in card["detail"], f"{text!r} not in detail:\n{card['detail']}"
        for text in expected.get("basis_contains", []):
            assert text in pages[card["uuid"]], f"{text!r} not on the basis page:\n{pages[card['uuid']]}"
