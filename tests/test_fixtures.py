"""Every scenario in fixtures/ through the real HTTP app, checked against its
expected outcome and against the CDS Hooks response rules."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import orjson
import pytest
from flask import Flask

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


def _matches(expected: dict[str, Any], card: dict[str, Any], fixture: Fixture) -> bool:
    if card["source"]["topic"]["code"] != expected["rule"]:
        return False
    if card["indicator"] != expected["indicator"]:
        return False
    order = expected.get("order")
    if order:
        targets = _targets(card)
        if targets and order not in targets:
            return False
        if not targets and _order_name(fixture.request, order)[:40] not in card["summary"]:
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
    unmatched = list(cards)
    for expected in expected_cards:
        card = next((c for c in unmatched if _matches(expected, c, fixture)), None)
        assert card is not None, f"no card matches {expected}; got {[c['summary'] for c in unmatched]}"
        unmatched.remove(card)
        if "suggestions" in expected:
            assert [s["label"] for s in card.get("suggestions", [])] == expected["suggestions"]
        for text in expected.get("detail_contains", []):
            assert text in card["detail"], f"{text!r} not in detail:\n{card['detail']}"
