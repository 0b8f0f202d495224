"""What the cards say: the basis (what was checked and what cannot be), the onset's source, PT ordered
versus done, local pathway policy, the NSAID caveat, and honest citations."""

from __future__ import annotations

from typing import Any

import pytest

from cds_hooks.pathway.cards import OrderingContext, build_cards
from cds_hooks.pathway.evaluate import evaluate
from cds_hooks.pathway.record import read_draft_orders
from tests.chart import (
    CPT,
    MRI,
    ORTHO_REFERRAL,
    TODAY,
    concept,
    condition,
    draft,
    lbp,
    med_request,
    procedure,
    pt_sessions,
    record_of,
    rules_for,
    service_request,
    temperature,
)


def detail(*resources: Any, order: dict[str, Any] | None = None, profile: str = "seeds", age: int | None = 52) -> str:
    rules = rules_for(profile)
    rec = record_of(*resources, rules=rules, age=age)
    orders = read_draft_orders({"resourceType": "Bundle", "entry": [{"resource": order or draft(*MRI)}]}, rules)
    issued = build_cards(rules, evaluate(rec, orders, rules, TODAY), rec,
                         OrderingContext("p1", "Practitioner/x", None, TODAY))
    assert len(issued) == 1, [i.card.summary for i in issued]
    return issued[0].card.detail


def test_the_basis_says_exactly_what_was_checked_and_what_cannot_be() -> None:
    text = detail(lbp(21), lbp(400, clinical="resolved"), med_request("197806", 20), temperature(37.2, 2))
    assert ("Red flags were looked for in 2 coded condition(s), 1 medication record(s), "
            "1 body-temperature reading(s) and the patient's age (52 years); none was found.") in text
    assert "Not checkable from coded data" in text and "examination" in text
    assert "date of birth not available" in detail(lbp(21), age=None)


def test_the_onset_source_is_named() -> None:
    assert "(3 weeks ago; from the onset date on the diagnosis)" in detail(lbp(21))
    recorded = detail(lbp(onset=None, recorded=10))
    assert "from the date the diagnosis was first recorded; no onset date was given" in recorded
    assert "first recorded 2026-11-11, no onset date given" in recorded


def test_pt_ordered_is_not_pt_done() -> None:
    text = detail(lbp(70), service_request("308447003", 30))
    assert "PT ordered, not PT done" in text and "ordered 2026-10-22" in text
    done = detail(lbp(70), pt_sessions(30, 9))
    assert "Formal physical therapy: 4 session(s) on different days, 2026-10-22 to 2026-11-12" in done


def test_the_referral_card_calls_the_six_weeks_local_policy_and_cites_no_secondary_summary() -> None:
    text = detail(lbp(60), order=draft(*ORTHO_REFERRAL))
    assert "**Local pathway policy**" in text and "No primary guideline found sets it" in text
    assert "droracle" not in text and "seed pathway" in text
    assert "nass" not in text.lower().split("**references**")[-1]


def test_payer_and_nice_cards_carry_no_local_policy_line() -> None:
    assert "Local pathway policy" not in detail(lbp(60), order=draft(*ORTHO_REFERRAL), profile="payer")
    assert "Local pathway policy" not in detail(lbp(60), profile="nice-ng59")


@pytest.mark.parametrize("profile", ["seeds", "payer", "nice-ng59"])
def test_nsaid_advice_carries_its_contraindication_caveat(profile: str) -> None:
    rules = rules_for(profile)
    advising = [r for r in rules.cards.rules if "NSAID" in rules.card_text(r).recommendation]
    assert advising, profile
    for rule_id in advising:
        assert "contraindicated" in rules.card_text(rule_id).recommendation, (profile, rule_id)
    text = detail(lbp(21), profile=profile)
    assert "unless contraindicated" in text.split("**Recommendation**")[1]


def test_no_profile_cites_a_secondary_source_on_a_card() -> None:
    for profile in ("seeds", "payer", "nice-ng59"):
        rules = rules_for(profile)
        for rule_id in rules.profile.citations:
            assert all(c.kind != "secondary" for c in rules.citations_for(rule_id)), (profile, rule_id)


def test_earlier_episode_care_is_explained() -> None:
    text = detail(lbp(onset=1200, recorded=20), pt_sessions(1150, 1100))
    assert "belongs to an earlier back-pain episode (a gap of 180 days or more" in text


def test_region_skips_are_reported() -> None:
    text = detail(lbp(21), procedure("63048", 900))
    assert ("1 imaging or surgery record(s) coded without a region and with no lumbar body site"
            " were not counted as lumbar") in text


def test_region_skips_read_the_same_whatever_order_the_server_returns_them() -> None:
    # The FHIR fallback fetches resource types in parallel, so history arrives in any order.
    cervical = {"bodySite": [{"coding": [{"system": "http://snomed.info/sct", "code": "122494005"}]}]}
    first, second = procedure("63048", 900), condition("M96.1", onset=800, **cervical)
    assert detail(lbp(21), first, second) == detail(lbp(21), second, first)


def test_records_on_the_same_day_read_the_same_whatever_their_order() -> None:
    # Two prior lumbar MRIs recorded on one day (with and without contrast): the repeat card names one.
    plain = procedure("72148", 100) | {"code": concept(CPT, "72148", "MRI lumbar spine without contrast")}
    both = procedure("72158", 100) | {"code": concept(CPT, "72158", "MRI lumbar spine without and with contrast")}
    history = [lbp(400), *pt_sessions(300, 250), plain, both]
    assert detail(*history) == detail(*reversed(history))
