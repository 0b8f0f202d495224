"""The sandbox page's server side, over HTTP: the setting, the page and its assets,
the menus, the scenario list, and what-if requests fired at the real endpoint."""

from __future__ import annotations

import re
import shutil
import uuid
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from fhir.resources.R4B import get_fhir_model_class
from flask import Flask
from flask.testing import FlaskClient

from cds_hooks.pathway.rules import SANDBOX_ORDER_KINDS, Rules
from cds_hooks.sandbox.fixtures import fixture_paths, load_fixture
from cds_hooks.settings.config import Settings, SettingsError, TrustedIssuer
from tests.conformance import assert_conformant

REPO = Path(__file__).resolve().parent.parent
STATIC = REPO / "cds_hooks" / "sandbox" / "static"
FIXTURES = fixture_paths(REPO / "fixtures")


@pytest.fixture
def sandbox(make_app: Callable[..., Flask]) -> FlaskClient:
    return make_app(sandbox=True).test_client()


def build(client: FlaskClient, scenario: str = "premature-mri-3-weeks", **what_if: Any) -> dict[str, Any]:
    response = client.post("/sandbox/api/request", json={"scenario": scenario, **what_if})
    assert response.status_code == 200, response.get_data(as_text=True)
    return orjson.loads(response.get_data())


def fire(client: FlaskClient, built: dict[str, Any]) -> list[dict[str, Any]]:
    """POST the built request to the service, as the page does; check the answer is conformant."""
    response = client.post(f"/cds-services/{built['service']}", json=built["request"])
    assert response.status_code == 200, response.get_data(as_text=True)
    body = orjson.loads(response.get_data())
    assert_conformant(body, built["request"])
    return body["cards"]


def topics(cards: list[dict[str, Any]]) -> list[str]:
    return sorted(c["source"]["topic"]["code"] for c in cards)


# --------------------------------------------------------------------------- setting, page, assets


def test_the_sandbox_is_off_unless_turned_on(make_app: Callable[..., Flask]) -> None:
    for setting in (None, False):
        client = make_app(sandbox=setting).test_client()
        for path in ("/sandbox", "/sandbox/api/catalog", "/sandbox/static/sandbox.js", "/static/sandbox.js"):
            response = client.get(path)
            assert response.status_code == 404, path
            assert response.json["resourceType"] == "OperationOutcome"
    assert make_app(sandbox=True).test_client().get("/sandbox").status_code == 200


def test_the_sandbox_cannot_be_combined_with_jwt_authentication(tmp_path: Path) -> None:
    # Its browser calls carry no JWT, so with issuers configured every one of them would be a 401.
    issuer = TrustedIssuer(iss="https://ehr.example.org", jwks=str(tmp_path / "jwks.json"))
    with pytest.raises(SettingsError, match="sandbox page cannot run with JWT authentication"):
        Settings(sandbox=True, auth_issuers=(issuer,), public_base_url="https://cds.example.org")


@pytest.mark.parametrize(("value", "expected"), [("1", True), ("true", True), ("0", False), ("off", False)])
def test_sandbox_setting_from_the_environment(monkeypatch: pytest.MonkeyPatch, value: str, expected: bool) -> None:
    monkeypatch.setenv("LUMBAR_CDS_SANDBOX", value)
    monkeypatch.setenv("LUMBAR_CDS_FIXTURES_DIR", "/srv/scenarios")
    settings = Settings.from_env()
    assert settings.sandbox is expected
    assert settings.fixtures_dir == Path("/srv/scenarios")


def test_sandbox_setting_unset_or_wrong(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LUMBAR_CDS_SANDBOX", raising=False)
    assert Settings.from_env().sandbox is None  # the server decides: see ops/commands/serve.py
    monkeypatch.setenv("LUMBAR_CDS_SANDBOX", "maybe")
    with pytest.raises(ValueError, match="LUMBAR_CDS_SANDBOX must be 1 or 0"):
        Settings.from_env()


def test_page_loads_only_its_own_assets(sandbox: FlaskClient) -> None:
    """Works offline: every asset is served by this app; no CDN, no web fonts, a strict CSP."""
    response = sandbox.get("/sandbox")
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    csp = response.headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "script-src 'self'" in csp and "unsafe-inline" not in csp
    html = response.get_data(as_text=True)
    assets = re.findall(r'(?:src|href)="([^"#]+)"', html)
    assert {a.rsplit("/", 1)[-1] for a in assets} >= {"sandbox.js", "markdown.js", "sandbox.css", "favicon.svg"}
    for asset in assets:
        assert asset.startswith("/sandbox/static/"), asset
        assert sandbox.get(asset).status_code == 200, asset
    assert "<script>" not in html and " style=" not in html  # nothing inline: the CSP allows none
    css = (STATIC / "sandbox.css").read_text()
    assert "@import" not in css and "url(" not in css and "@font-face" not in css


def test_scripts_never_parse_text_as_html() -> None:
    """Card and server text only ever becomes text nodes (the XSS guard the browser test exercises)."""
    for path in STATIC.glob("*.js"):
        source = path.read_text()
        for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
            assert sink not in source, f"{path.name} uses {sink}"
        # The only absolute URL is the SVG namespace; everything fetched is this server's.
        assert set(re.findall(r"https?://[^\s\"']+", source)) <= {"http://www.w3.org/2000/svg"}


# --------------------------------------------------------------------------- menus and scenarios


def test_catalog_codes_come_from_the_rules(sandbox: FlaskClient, rules: Rules) -> None:
    catalog = sandbox.get("/sandbox/api/catalog").json
    assert catalog["profile"] == rules.profile_id
    assert {s["hook"] for s in catalog["services"]} == {"order-select", "order-sign"}
    orders = {o["id"]: o for o in catalog["orders"]}
    assert list(orders) == [c.id for c in rules.sandbox.orders]
    for choice in rules.sandbox.orders:
        coding = orders[choice.id]["coding"]
        assert (coding["system"], coding["code"]) == (choice.system, choice.code)
        matches = rules.index.lookup(coding["system"], coding["code"])
        assert len(matches) == 1 and matches[0].valueset.kind in SANDBOX_ORDER_KINDS, choice.id
        assert matches[0].code.display == coding["display"]
    flags = {f["category"]: f for f in catalog["redFlags"]}
    assert list(flags) == list(rules.pathway.red_flag_categories)
    for category, flag in flags.items():
        matched = {m.valueset.category for m in rules.index.lookup(flag["coding"]["system"], flag["coding"]["code"])
                   if m.valueset.kind == "red-flag"}
        assert category in matched


def test_scenarios_list_every_fixture_with_its_expected_outcome(sandbox: FlaskClient, today: date) -> None:
    listed = sandbox.get("/sandbox/api/scenarios").json["scenarios"]
    assert [s["name"] for s in listed] == list(FIXTURES)
    for scenario in listed:
        fixture = load_fixture(FIXTURES[scenario["name"]], today)
        assert scenario["title"] == fixture.title
        assert scenario["expected"]["status"] == fixture.expect["status"]
        expected_rules = [c["rule"] for c in fixture.expect.get("cards", [])]
        assert [c["rule"] for c in scenario["expected"]["cards"]] == expected_rules
        assert scenario["profileMatches"] == (fixture.profile in (None, "seeds"))


def test_fixtures_dir_setting(make_app: Callable[..., Flask], tmp_path: Path) -> None:
    own = tmp_path / "scenarios"
    own.mkdir()
    shutil.copy(FIXTURES["red-flag-fever-mri"], own / "only-one.json")
    (own / "broken.json").write_text('{"title": "no request"}')
    client = make_app(sandbox=True, fixtures_dir=own).test_client()
    assert [s["name"] for s in client.get("/sandbox/api/scenarios").json["scenarios"]] == ["only-one"]
    assert client.post("/sandbox/api/request", json={"scenario": "premature-mri-3-weeks"}).status_code == 404
    broken = client.post("/sandbox/api/request", json={"scenario": "broken"})
    assert broken.status_code == 422
    assert "broken.json could not be read" in broken.json["issue"][0]["diagnostics"]


@pytest.mark.parametrize("body", [
    {"scenario": "no-such-scenario"},
    {"scenario": "../rules/pathway"},
])
def test_unknown_scenario_is_404(sandbox: FlaskClient, body: dict[str, Any]) -> None:
    response = sandbox.post("/sandbox/api/request", json=body)
    assert response.status_code == 404
    assert "GET /sandbox/api/scenarios" in response.json["issue"][0]["diagnostics"]


@pytest.mark.parametrize(("what_if", "words"), [
    ({"onsetDaysAgo": -1}, "onsetDaysAgo"),
    ({"ptWeeks": 99}, "ptWeeks"),
    ({"ptWeeks": "3"}, "ptWeeks"),
    ({"hook": "patient-view"}, "hook"),
    ({"order": "hip-replacement"}, "unknown draft order 'hip-replacement'"),
    ({"redFlag": "headache"}, "unknown red-flag category 'headache'"),
    ({"colour": "red"}, "colour"),
])
def test_bad_what_ifs_are_422_with_a_reason(sandbox: FlaskClient, what_if: dict[str, Any], words: str) -> None:
    response = sandbox.post("/sandbox/api/request", json={"scenario": "premature-mri-3-weeks", **what_if})
    assert response.status_code == 422
    assert response.json["resourceType"] == "OperationOutcome"
    assert words in response.json["issue"][0]["diagnostics"]


# --------------------------------------------------------------------------- what-if requests


def test_without_what_ifs_the_request_is_the_scenarios(sandbox: FlaskClient, today: date) -> None:
    first, second = build(sandbox), build(sandbox)
    recorded = load_fixture(FIXTURES["premature-mri-3-weeks"], today).request
    for built in (first, second):
        assert built["changes"] == []
        assert {**built["request"], "hookInstance": recorded["hookInstance"]} == recorded
        uuid.UUID(built["request"]["hookInstance"])
    assert first["request"]["hookInstance"] != second["request"]["hookInstance"]  # unique per call
    assert topics(fire(sandbox, first)) == ["imaging-premature"]


@pytest.mark.parametrize(("scenario", "what_if", "expected"), [
    ("premature-mri-3-weeks", {"onsetDaysAgo": 70}, ["imaging-premature"]),  # long enough, but no PT
    ("premature-mri-3-weeks", {"onsetDaysAgo": 70, "ptWeeks": 5}, ["imaging-premature"]),  # PT trial too short
    ("premature-mri-3-weeks", {"onsetDaysAgo": 70, "ptWeeks": 7}, []),  # pathway done: MRI appropriate
    ("premature-mri-3-weeks", {"order": "mri-with-contrast", "onsetDaysAgo": 70, "ptWeeks": 8}, ["imaging-contrast"]),
    ("premature-mri-3-weeks", {"order": "ct"}, ["imaging-premature"]),
    ("premature-mri-3-weeks", {"order": "xray", "hook": "order-sign"}, ["imaging-premature"]),
    ("premature-mri-3-weeks", {"order": "orthopedic-referral", "ptWeeks": 3}, ["referral-premature"]),
    ("premature-mri-3-weeks", {"order": "neurosurgery-referral", "onsetDaysAgo": 200, "ptWeeks": 6},
     ["surgery-window"]),  # PT complete, but conservative care (from the first PT) under 3 months
    ("premature-mri-3-weeks", {"order": "laminectomy", "hook": "order-sign", "onsetDaysAgo": 200, "ptWeeks": 14},
     []),
    ("red-flag-cauda-equina-mri", {"redFlag": "remove"}, ["imaging-premature"]),
    ("red-flag-saddle-numbness-reason-code-mri", {"redFlag": "remove"}, ["imaging-premature"]),
    ("mri-after-7-weeks-failed-pt", {"ptWeeks": 0}, ["imaging-premature"]),
    ("sandbox-pama-ct-intent-plan", {"onsetDaysAgo": 10, "hook": "order-sign"}, ["imaging-premature"]),
])
def test_what_ifs_change_the_cards(
    sandbox: FlaskClient, scenario: str, what_if: dict[str, Any], expected: list[str]
) -> None:
    built = build(sandbox, scenario, **what_if)
    assert built["changes"]
    assert topics(fire(sandbox, built)) == expected


def test_every_red_flag_category_silences_the_warning(sandbox: FlaskClient, rules: Rules) -> None:
    for category in rules.pathway.red_flag_categories:
        built = build(sandbox, redFlag=category)
        assert any(e["lane"] == "red-flag" for e in built["timeline"]["events"]), category
        assert fire(sandbox, built) == [], category


def test_changing_the_hook(sandbox: FlaskClient) -> None:
    built = build(sandbox, hook="order-sign")
    request = built["request"]
    assert (built["service"], request["hook"]) == ("lumbar-pathway-order-sign", "order-sign")
    assert "selections" not in request["context"]
    back = build(sandbox, "premature-ct-lumbar-loinc-order-sign", hook="order-select")
    entries = back["request"]["context"]["draftOrders"]["entry"]
    assert back["request"]["context"]["selections"] == [f"ServiceRequest/{entries[0]['resource']['id']}"]
    assert topics(fire(sandbox, back)) == ["imaging-premature"]


def test_order_panel_replaces_only_what_is_ordered(sandbox: FlaskClient, today: date) -> None:
    recorded = load_fixture(FIXTURES["premature-mri-3-weeks"], today).request["context"]["draftOrders"]["entry"][0]
    built = build(sandbox, order="orthopedic-referral")
    [entry] = built["request"]["context"]["draftOrders"]["entry"]
    order = entry["resource"]
    assert (order["id"], order["status"], order["intent"]) == ("mri-1", "draft", "order")
    assert order["subject"] == recorded["resource"]["subject"]
    assert order["reasonCode"] == recorded["resource"]["reasonCode"]
    assert order["code"]["coding"][0]["code"] != recorded["resource"]["code"]["coding"][0]["code"]


def _all_resources(request: dict[str, Any]) -> list[dict[str, Any]]:
    found = [e["resource"] for e in request["context"]["draftOrders"].get("entry", [])]
    for value in request["prefetch"].values():
        if isinstance(value, dict) and value.get("resourceType") == "Bundle":
            found += [e["resource"] for e in value.get("entry", [])]
        elif isinstance(value, dict):
            found.append(value)
    return found


@pytest.mark.parametrize("scenario", ["premature-mri-3-weeks", "sandbox-pama-ct-intent-plan"])
def test_generated_requests_are_valid_fhir_r4(sandbox: FlaskClient, rules: Rules, scenario: str) -> None:
    """Every resource and prefetch Bundle of a what-if request validates with fhir.resources R4B."""
    combos = [{"order": c.id, "onsetDaysAgo": 50, "ptWeeks": 4} for c in rules.sandbox.orders]
    combos += [{"redFlag": category} for category in rules.pathway.red_flag_categories]
    combos += [{"redFlag": "remove", "ptWeeks": 0, "hook": "order-sign"}]
    generated = 0
    for what_if in combos:
        request = build(sandbox, scenario, **what_if)["request"]
        for resource in _all_resources(request):
            get_fhir_model_class(resource["resourceType"]).model_validate(resource)
            generated += resource.get("id", "").startswith("whatif-")
        for value in request["prefetch"].values():
            if isinstance(value, dict) and value.get("resourceType") == "Bundle":
                get_fhir_model_class("Bundle").model_validate(value)
        draft = request["context"]["draftOrders"]
        get_fhir_model_class("Bundle").model_validate({"type": "collection", **draft})
    assert generated > len(combos)  # the what-ifs did add resources


# --------------------------------------------------------------------------- timeline


def test_timeline_shows_what_the_service_reads(sandbox: FlaskClient, today: date) -> None:
    timeline = build(sandbox)["timeline"]
    assert timeline["today"] == today.isoformat()
    events = {(e["lane"], e["start"]) for e in timeline["events"]}
    assert events == {
        ("episode", (today - timedelta(days=21)).isoformat()),  # low back pain
        ("care:nsaid", (today - timedelta(days=20)).isoformat()),  # ibuprofen
        ("draft-order", today.isoformat()),  # the MRI being ordered
    }  # the hypertension Condition is not something the pathway reads

    pt = build(sandbox, ptWeeks=3)["timeline"]["events"]
    sessions = sorted(e["start"] for e in pt if e["lane"] == "care:formal-pt")
    first = today - timedelta(days=3 * 7 + 2)
    assert sessions == [(first + timedelta(weeks=k)).isoformat() for k in range(4)]

    flagged = build(sandbox, redFlag="fever")["timeline"]["events"]
    assert [e["laneLabel"] for e in flagged if e["lane"] == "red-flag"] == ["Red flag: Fever"]


def test_timeline_reports_what_was_not_checked(sandbox: FlaskClient) -> None:
    missing = build(sandbox, "missing-conditions-prefetch-412")["timeline"]
    assert "problems and diagnoses" in missing["notChecked"]
    messy = build(sandbox, "messy-ehr-input-still-warns")["timeline"]
    assert messy["skipped"]
