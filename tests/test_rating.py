"""The appropriateness rating (Argonaut pama-rating) of every judged order, through the public API.

The rating is derived from the pathway's gate (`order_scopes`, the gate `evaluate` applies) and the
findings; these tests hold it to the scenarios in fixtures/ and to the rules' `ratings` table, and check
that a suggestion's update carries the rating of the order it would leave.
"""

from __future__ import annotations

import dataclasses
from datetime import date
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from cds_hooks.pathway.evaluate import Scope, evaluate, order_scopes, selected
from cds_hooks.pathway.rating import rate_resource
from cds_hooks.pathway.record import read_draft_orders, read_record
from cds_hooks.pathway.rules import Rules, load_rules
from cds_hooks.protocol.pama import RATING_SYSTEM, RATING_URL, rating_of, with_rating
from cds_hooks.sandbox.fixtures import load_fixture
from cds_hooks.service.hook import HookOutcome, evaluate_hook
from tests.conformance import assert_conformant

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "fixtures"

# Scenario → the rating of each order the call is about (none for orders the service does not judge).
EXPECTED: dict[str, dict[str, str]] = {
    "premature-mri-3-weeks": {"ServiceRequest/mri-1": "not-appropriate"},
    "duplicate-mri-imaging-study-5-months": {"ServiceRequest/mri-1": "not-appropriate"},
    "mri-after-7-weeks-failed-pt": {"ServiceRequest/mri-1": "appropriate"},
    # ACR variant 3: with and without contrast "may be appropriate"; the card only advises.
    "mri-with-contrast-after-pt": {"ServiceRequest/mri-c": "appropriate"},
    "red-flag-lumbar-fracture-mri": {"ServiceRequest/mri-1": "appropriate"},
    "red-flag-cauda-equina-urgent-neurosurgery-referral": {"ServiceRequest/ref-ns": "appropriate"},
    "prior-lumbar-surgery-mri": {"ServiceRequest/mri-1": "no-criteria-apply"},
    "outside-population-no-back-pain": {"ServiceRequest/mri-1": "no-criteria-apply"},
    "outside-population-lbp-resolved": {"ServiceRequest/mri-1": "no-criteria-apply"},
    # order-select about a blood count: the MRI beside it is not what the call is about.
    "order-select-unrelated-selection-mri-context-only": {},
    "order-sign-mri-and-ortho-referral-two-cards": {
        "ServiceRequest/mri-1": "not-appropriate", "ServiceRequest/ref-ortho": "not-appropriate"},
    "premature-xray-lumbar-snomed-with-lab-order-sign": {"ServiceRequest/xray-1": "not-appropriate"},
    "referral-orthopedic-surgeon-no-pt": {"ServiceRequest/ref-ortho": "not-appropriate"},
    "referral-after-8-weeks-pt-5-months-care": {"ServiceRequest/ref-ortho": "appropriate"},
    "surgery-laminectomy-10-weeks-conservative-care": {"ServiceRequest/surg-1": "appropriate"},
    # The clinical gates: age, region, a referral for another region, prior fusion status, NICE fusion.
    "age-adolescent-15-not-judged": {"ServiceRequest/mri-1": "no-criteria-apply"},
    "age-65-xray-released-silent": {"ServiceRequest/xr-1": "appropriate"},  # ACR: radiography for the elderly
    "age-unknown-birth-date-judged-as-adult": {"ServiceRequest/mri-1": "not-appropriate"},
    "region-mri-spine-cervical-body-site-not-judged": {},  # not a lumbar order: no criteria, no rating
    "region-mri-spine-no-body-site-not-judged": {},
    "referral-orthopaedic-for-knee-not-judged": {"ServiceRequest/ref-knee": "no-criteria-apply"},
    "prior-lumbar-fusion-status-z98-1-mri": {"ServiceRequest/mri-1": "no-criteria-apply"},
    "nice-fusion-for-low-back-pain-warns": {"ServiceRequest/fusion-1": "not-appropriate"},
    "red-flag-fever-vital-sign-fahrenheit-only-mri": {"ServiceRequest/mri-1": "appropriate"},
    "red-flag-prednisone-six-months-medication-requests-only": {"ServiceRequest/mri-1": "appropriate"},
}


@cache
def profile_rules(profile: str | None) -> Rules:
    return load_rules(REPO / "rules", profile)


def run(name: str, today: date, rules: Rules | None = None) -> tuple[HookOutcome, dict[str, Any], dict[str, Any]]:
    fixture = load_fixture(FIXTURES / f"{name}.json", today)
    rules = rules or profile_rules(fixture.profile)
    outcome = evaluate_hook(rules, rules.services[fixture.service], fixture.request, today)
    response = outcome.response()
    assert_conformant(response, fixture.request)
    return outcome, response, fixture.request


def ratings(response: dict[str, Any]) -> dict[str, str | None]:
    actions = response.get("systemActions", [])
    return {f"ServiceRequest/{a['resource']['id']}": rating_of(a["resource"]) for a in actions}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_judged_order_is_rated(name: str, today: date) -> None:
    _, response, _ = run(name, today)
    assert ratings(response) == EXPECTED[name]


def test_every_fixture_rates_what_it_warns_about(today: date) -> None:
    """Wherever a warning card stands, its order is rated not appropriate; the gate and evaluate agree."""
    for path in sorted(FIXTURES.glob("*.json")):
        fixture = load_fixture(path, today)
        if fixture.expect["status"] != 200:
            continue
        rules = profile_rules(fixture.profile)
        outcome, response, request = run(path.stem, today, rules)
        rated = ratings(response)
        for issued in outcome.issued:
            if issued.card.indicator == "warning":
                assert rated[issued.order_ref] == "not-appropriate", path.stem
        context = request["context"]
        orders = selected(read_draft_orders(context["draftOrders"], rules), context.get("selections")
                          if fixture.service.endswith("select") else None)
        scopes = order_scopes(outcome.record, orders, rules, today)
        assert {f.order.ref for f in evaluate(outcome.record, orders, rules, today)} <= {
            ref for ref, scope in scopes.items() if scope is Scope.JUDGED}, path.stem
        assert set(rated) == {ref for ref, scope in scopes.items() if scope is not Scope.UNRELATED}, path.stem


def test_the_rules_table_decides_a_rules_rating(today: date) -> None:
    """Change the contrast rule's rating in the rules and the same order is rated the other way."""
    rules = profile_rules(None)
    changed = {**rules.pathway.ratings, "imaging-contrast": "not-appropriate"}
    pathway = rules.pathway.model_copy(update={"ratings": changed})
    strict = dataclasses.replace(rules, pathway=pathway)
    _, response, _ = run("mri-with-contrast-after-pt", today, strict)
    assert ratings(response) == {"ServiceRequest/mri-c": "not-appropriate"}


def test_the_contrast_suggestion_carries_the_rating_of_the_order_it_leaves(today: date) -> None:
    outcome, response, request = run("mri-with-contrast-after-pt", today)
    [card] = response["cards"]
    [suggestion] = card["suggestions"]
    [update] = suggestion["actions"]
    assert update["type"] == "update"
    changed = update["resource"]
    # The Sandbox applies it: the extension, the new study as code.coding[0], the reasons kept.
    assert changed["code"]["coding"][0]["code"] == "72148"
    assert changed["reasonCode"] == request["context"]["draftOrders"]["entry"][0]["resource"]["reasonCode"]
    assert rating_of(changed) == "appropriate"
    # The order it leaves gets no card of its own: the suggestion settles the matter.
    rules = profile_rules(None)
    orders = read_draft_orders({"resourceType": "Bundle", "entry": [{"resource": changed}]}, rules)
    assert evaluate(outcome.record, orders, rules, today) == []


def test_a_suggested_order_is_judged_like_a_draft(today: date) -> None:
    """rate_resource on a premature patient: the MRI without contrast is itself not appropriate yet."""
    fixture = load_fixture(FIXTURES / "premature-mri-3-weeks.json", today)
    rules = profile_rules(None)
    record = read_record(fixture.request["prefetch"], fixture.request["context"]["patientId"], rules)
    draft = fixture.request["context"]["draftOrders"]["entry"][0]["resource"]
    assert rate_resource(record, draft, rules, today) == "not-appropriate"
    unrelated = {**draft, "code": {"coding": [{"system": "http://loinc.org", "code": "58410-2"}]}}
    assert rate_resource(record, unrelated, rules, today) is None


def test_with_rating_replaces_a_rating_and_keeps_other_extensions() -> None:
    vendor = {"url": "http://example.org/ext", "valueString": "kept"}
    resource = {"resourceType": "ServiceRequest", "id": "x", "extension": [vendor]}
    once = with_rating(resource, "not-appropriate")
    twice = with_rating(once, "appropriate")
    assert resource == {"resourceType": "ServiceRequest", "id": "x", "extension": [vendor]}  # not mutated
    assert twice["extension"] == [vendor, {"url": RATING_URL, "valueCodeableConcept": {
        "coding": [{"system": RATING_SYSTEM, "code": "appropriate"}]}}]
    assert rating_of(twice) == "appropriate"
    assert rating_of({"extension": "not a list"}) is None
