"""`lumbar-cds rules export --format fhir`: every resource valid R4 (fhir.resources R4B), the Bundle
describes every rule, value set, code and citation, and it loads into a real FHIR server (sekmet-fhir)
as a transaction from which every value set reads back with every code of rules/."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from fhir.resources.R4B import get_fhir_model_class

from cds_hooks.ops.cli import main
from cds_hooks.pathway.rules import Rules, load_rules
from tests.conftest import REPO
from tests.sekmet import TOKEN, sekmet_server


def _export(tmp_path: Path, *args: str) -> dict[str, Any]:
    out = tmp_path / "bundle.json"
    assert main(["rules", "export", "--format", "fhir", "--output", str(out), *args]) == 0
    return json.loads(out.read_text())


def _by_type(bundle: dict[str, Any], resource_type: str) -> dict[str, dict[str, Any]]:
    return {e["resource"]["id"]: e["resource"] for e in bundle["entry"]
            if e["resource"]["resourceType"] == resource_type}


def _codes(valueset: dict[str, Any]) -> set[tuple[str, str, str]]:
    return {(inc["system"], c["code"], c["display"]) for inc in valueset["compose"]["include"]
            for c in inc.get("concept", [])}


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return _export(tmp_path_factory.mktemp("export"), "--rules-dir", str(REPO / "rules"))


def test_every_exported_resource_is_valid_r4(exported: dict[str, Any]) -> None:
    assert exported["type"] == "collection"
    get_fhir_model_class("Bundle").model_validate(exported)
    for entry in exported["entry"]:
        resource = entry["resource"]
        get_fhir_model_class(resource["resourceType"]).model_validate(resource)  # raises when not R4
        assert entry["fullUrl"].endswith(f"/{resource['resourceType']}/{resource['id']}")


def test_the_library_cites_every_citation_and_names_every_rule_and_value_set(
    exported: dict[str, Any], rules: Rules
) -> None:
    [library] = _by_type(exported, "Library").values()
    gov = rules.governance
    assert (library["version"], library["status"], library["approvalDate"]) == (
        gov.version, gov.status, gov.approval.date.isoformat() if gov.approval else None)
    related = library["relatedArtifact"]
    citations = {a["label"]: a for a in related if a["type"] == "citation"}
    assert set(citations) == set(rules.citations)
    assert all(citations[ref]["url"] == c.url for ref, c in rules.citations.items())
    parts = {a["resource"].rsplit("/", 2)[-2:][1] for a in related if a["type"] == "composed-of"}
    assert parts == set(rules.cards.rules)
    depends = {a["resource"].rsplit("/", 1)[1] for a in related if a["type"] == "depends-on"}
    assert depends == set(rules.valuesets)


def _settings_of(plan: dict[str, Any]) -> dict[str, Any]:
    [action] = plan["action"]
    for condition in action["condition"]:
        data = json.loads(condition["expression"]["expression"])
        if data["gate"] == "settings":
            return data["settings"]
    raise AssertionError("no settings condition")


def test_one_eca_rule_plan_definition_per_rule_with_triggers_conditions_and_actions(
    exported: dict[str, Any], rules: Rules
) -> None:
    plans = _by_type(exported, "PlanDefinition")
    assert set(plans) == set(rules.cards.rules)
    hooks = {s.hook for s in rules.services.values()}
    activities = _by_type(exported, "ActivityDefinition")
    for rule_id, plan in plans.items():
        assert plan["type"]["coding"][0]["code"] == "eca-rule"
        [action] = plan["action"]
        assert {(t["type"], t["name"]) for t in action["trigger"]} == {("named-event", h) for h in hooks}
        assert all(c["kind"] == "applicability" and c["expression"]["description"] for c in action["condition"])
        text = rules.card_text(rule_id)
        assert action["code"][0]["coding"][0] == {"system": rules.cards.topic_system, "code": rule_id,
                                                   "display": text.topic}
        assert text.headline in action["textEquivalent"]
        assert [a["title"] for a in action.get("action", [])] == [rules.cards.suggestions[k].label
                                                                  for k in text.suggestions]
    # Thresholds as data: the profile's own values (6 weeks in the seeds profile)
    premature = _settings_of(plans["imaging-premature"])
    assert premature["imaging.min_symptom_weeks"] == rules.profile.imaging.min_symptom_weeks == 6
    assert _settings_of(plans["imaging-duplicate"]) == {
        "imaging.duplicate_lookback_months": 12, "imaging.repeat_modalities.MRI": ["MRI"],
        "imaging.repeat_modalities.CT": ["CT", "CT myelography"],
        "imaging.repeat_modalities.CT myelography": ["CT myelography"]}
    # The replace-with-PT suggestion creates the PT referral, published as an ActivityDefinition.
    [replace] = [a for a in plans["imaging-premature"]["action"][0]["action"] if "action" in a]
    [create] = [a for a in replace["action"] if a["type"]["coding"][0]["code"] == "create"]
    [activity] = activities.values()
    assert create["definitionCanonical"] == activity["url"]
    assert (activity["kind"], activity["code"]) == ("ServiceRequest", rules.pt_referral["code"])


def test_a_profile_export_carries_that_profiles_thresholds(tmp_path: Path) -> None:
    plans = _by_type(_export(tmp_path, "--rules-dir", str(REPO / "rules"), "--profile", "nice-ng59"),
                     "PlanDefinition")
    assert _settings_of(plans["imaging-premature"])["imaging.min_symptom_weeks"] is None
    assert _settings_of(plans["imaging-premature"])["imaging.warn_without_red_flags"] is True


def test_value_sets_list_every_code_and_code_systems_name_topics_and_override_reasons(
    exported: dict[str, Any], rules: Rules
) -> None:
    valuesets = _by_type(exported, "ValueSet")
    assert set(valuesets) == set(rules.valuesets)
    for vs_id, vs in rules.valuesets.items():
        assert _codes(valuesets[vs_id]) == {(c.system, c.code, c.display) for c in vs.codes}, vs_id
        headers = {(f["system"], f["filter"][0]["value"]) for f in valuesets[vs_id]["compose"]["include"]
                   if "filter" in f}
        assert headers == {(c.system, c.code) for c in vs.codes if c.descendants}
    systems = {cs["url"]: {c["code"] for c in cs["concept"]} for cs in _by_type(exported, "CodeSystem").values()}
    assert systems[rules.cards.topic_system] == set(rules.cards.rules)
    assert systems[rules.cards.override_reason_system] == {c.code for c in rules.cards.override_reasons}


def test_a_published_value_set_carries_its_oid_provenance_decision_and_exclusions(
    exported: dict[str, Any], rules: Rules
) -> None:
    valuesets = _by_type(exported, "ValueSet")
    cancer = rules.valuesets["vsac-cancer"]
    assert cancer.published and cancer.decision and cancer.exclusions
    exported_cancer = valuesets["vsac-cancer"]
    assert exported_cancer["identifier"] == [{"system": "urn:ietf:rfc:3986",
                                              "value": f"urn:oid:{cancer.published.oid}"}]
    provenances = {p["target"][0]["reference"]: p for p in _by_type(exported, "Provenance").values()}
    assert set(provenances) == {f"ValueSet/{vs.id}" for vs in rules.valuesets.values() if vs.published}
    described = " ".join(e["what"].get("display", "") for e in provenances["ValueSet/vsac-cancer"]["entity"])
    assert cancer.published.commit in described and f"{cancer.published.name} version {cancer.published.version}" \
        in described
    # The decision, and every code the rules leave out with its reason: compose.exclude, not a smaller include.
    assert " ".join(cancer.decision.split()) in exported_cancer["description"]
    excluded = {(inc["system"], c["code"]) for inc in exported_cancer["compose"]["exclude"]
                for c in inc.get("concept", [])}
    assert excluded == {(x.system, x.code) for x in cancer.exclusions}
    for x in cancer.exclusions[:3]:
        assert " ".join(x.reason.split()) in exported_cancer["description"]
    # A curated set's exclusion under a code with descendants is excluded the same way; no OID, no provenance.
    history = valuesets["red-flag-cancer-history"]
    assert "identifier" not in history and "ValueSet/red-flag-cancer-history" not in provenances
    assert {c["code"] for inc in history["compose"]["exclude"] for c in inc["concept"]} == {
        x.code for x in rules.valuesets["red-flag-cancer-history"].exclusions}
    assert "exclude" not in valuesets["lbp-population"]["compose"]


def test_the_bundle_loads_into_a_fhir_server_and_every_code_reads_back(tmp_path: Path, rules: Rules) -> None:
    transaction = _export(tmp_path, "--rules-dir", str(REPO / "rules"), "--type", "transaction")
    assert transaction["type"] == "transaction"
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/fhir+json"}
    (tmp_path / "sekmet").mkdir()
    with sekmet_server(tmp_path / "sekmet") as base, httpx.Client(headers=headers, timeout=120) as client:
        response = client.post(base, content=orjson.dumps(transaction))
        assert response.status_code == 200, response.text[:1000]
        statuses = [e["response"]["status"] for e in response.json()["entry"]]
        assert len(statuses) == len(transaction["entry"]) and all(s.startswith("20") for s in statuses)
        for vs_id, vs in load_rules(REPO / "rules").valuesets.items():
            stored = client.get(f"{base}/ValueSet/{vs_id}")
            assert stored.status_code == 200, vs_id
            get_fhir_model_class("ValueSet").model_validate(stored.json())
            assert _codes(stored.json()) == {(c.system, c.code, c.display) for c in vs.codes}, vs_id
            excluded = {(inc["system"], c["code"]) for inc in stored.json()["compose"].get("exclude", [])
                        for c in inc.get("concept", [])}
            assert excluded == {(x.system, x.code) for x in vs.exclusions}, vs_id
        plans = client.get(f"{base}/PlanDefinition", params={"_count": 100}).json()
        assert {e["resource"]["id"] for e in plans.get("entry", [])} == set(rules.cards.rules)
