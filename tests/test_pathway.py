"""The pathway on plain facts: no HTTP, no FHIR parsing, fixed dates."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import pytest

from cds_hooks.pathway.evaluate import duration, evaluate, months_before
from cds_hooks.pathway.record import DraftOrder, Evidence, PatientRecord
from cds_hooks.pathway.rules import Match, Rules, load_rules

TODAY = date(2026, 11, 21)
REPO = Path(__file__).resolve().parent.parent


def ago(days: int) -> date:
    return TODAY - timedelta(days=days)


def match(rules: Rules, vs_id: str, code: str | None = None) -> Match:
    vs = rules.valuesets[vs_id]
    chosen = next(c for c in vs.codes if code is None or c.code == code)
    return Match(vs, chosen)


def fact(rules: Rules, rtype: str, vs_id: str, start: date | None, end: date | None = None,
         active: bool = True, status: str | None = "completed", rid: str = "x") -> Evidence:
    m = match(rules, vs_id)
    return Evidence(rtype, f"{rid}-{vs_id}-{start}", (m,), m.code.display, m.code.code, start, end,
                    active=active, status=status)


def order(rules: Rules, vs_id: str, code: str | None = None, reasons: tuple[str, ...] = (),
          oid: str = "o1") -> DraftOrder:
    m = match(rules, vs_id, code)
    resource = {
        "resourceType": "ServiceRequest", "id": oid, "status": "draft", "intent": "order",
        "subject": {"reference": "Patient/p"},
        "code": {"coding": [{"system": m.code.system, "code": m.code.code, "display": m.code.display}]},
    }
    return DraftOrder(f"ServiceRequest/{oid}", resource, m.code.display, m.code.code, (m,),
                      tuple(match(rules, r) for r in reasons))


def lbp(rules: Rules, days: int) -> Evidence:
    return fact(rules, "Condition", "lbp-population", ago(days), status="active")


def pt_sessions(rules: Rules, first: int, last: int) -> list[Evidence]:
    return [fact(rules, "Procedure", "cc-formal-pt", ago(d), rid=f"pt{d}") for d in range(first, last - 1, -7)]


def record(*items: Evidence | list[Evidence]) -> PatientRecord:
    flat: list[Evidence] = []
    for item in items:
        flat.extend(item if isinstance(item, list) else [item])
    return PatientRecord("p", items=flat, conditions_checked=3)


def rules_for(profile: str) -> Rules:
    return load_rules(REPO / "rules", profile)


def mri(rules: Rules) -> DraftOrder:
    return order(rules, "lumbar-imaging-mri-without-contrast")


def verdict(
    rules: Rules, rec: PatientRecord, *orders: DraftOrder, selections: list[str] | None = None
) -> list[tuple[str, list[str]]]:
    findings = evaluate(rec, list(orders), rules, TODAY, selections)
    return [(f.rule_id, [r.key for r in f.reasons]) for f in findings]


def test_three_weeks_of_pain_without_pt_is_premature(rules: Rules) -> None:
    findings = evaluate(record(lbp(rules, 21)), [mri(rules)], rules, TODAY)
    assert [(f.rule_id, [r.key for r in f.reasons]) for f in findings] == [
        ("imaging-premature", ["symptoms_short", "trial_missing_pt"])
    ]
    assert findings[0].reasons[0].params == {"onset": ago(21).isoformat(), "duration": "3 weeks", "threshold": "6"}
    assert [m.params["modality"] for m in findings[0].missing] == [
        "NSAID", "Formal physical therapy", "Activity modification"]


def test_seven_weeks_of_pt_makes_mri_appropriate(rules: Rules) -> None:
    assert verdict(rules, record(lbp(rules, 70), pt_sessions(rules, 49, 7)), mri(rules)) == []


def test_pt_started_three_weeks_ago_is_too_short(rules: Rules) -> None:
    assert verdict(rules, record(lbp(rules, 70), pt_sessions(rules, 21, 0)), mri(rules)) == [
        ("imaging-premature", ["trial_short_pt"])
    ]


def test_nsaids_alone_do_not_count_in_the_seed_profile(rules: Rules) -> None:
    nsaid = fact(rules, "MedicationRequest", "cc-nsaid", ago(60), status="active")
    assert verdict(rules, record(lbp(rules, 70), nsaid), mri(rules)) == [("imaging-premature", ["trial_missing_pt"])]


def test_payer_profile_counts_any_provider_directed_care() -> None:
    payer = rules_for("payer")
    nsaid = fact(payer, "MedicationRequest", "cc-nsaid", ago(49), status="active")
    assert verdict(payer, record(lbp(payer, 56), nsaid), mri(payer)) == []
    recent = fact(payer, "MedicationRequest", "cc-nsaid", ago(10), status="active")
    assert verdict(payer, record(lbp(payer, 56), recent), mri(payer)) == [("imaging-premature", ["trial_short"])]


def test_nice_profile_warns_without_a_week_count() -> None:
    nice = rules_for("nice-ng59")
    rec = record(lbp(nice, 70), pt_sessions(nice, 56, 0))
    assert verdict(nice, rec, mri(nice)) == [("imaging-premature", ["not_routine"])]


@pytest.mark.parametrize("category", [
    "cauda-equina", "neurological-deficit", "cancer", "spinal-infection", "iv-drug-use",
    "immunosuppression", "steroid-use", "fracture-trauma", "osteoporosis", "fever", "weight-loss",
])
def test_every_red_flag_category_silences_the_warning(rules: Rules, category: str) -> None:
    flag = fact(rules, "Condition", f"red-flag-{category}", ago(3), status="active")
    assert verdict(rules, record(lbp(rules, 14), flag), mri(rules)) == []


def test_inactive_red_flag_does_not_count_but_cancer_history_does(rules: Rules) -> None:
    old_fever = fact(rules, "Condition", "red-flag-fever", ago(400), active=False, status="resolved")
    assert verdict(rules, record(lbp(rules, 14), old_fever), mri(rules))
    cancer = fact(rules, "Condition", "red-flag-cancer", ago(2000), active=False, status="resolved")
    assert verdict(rules, record(lbp(rules, 14), cancer), mri(rules)) == []


def test_red_flag_as_the_orders_reason_silences(rules: Rules) -> None:
    flagged = order(rules, "lumbar-imaging-mri-without-contrast", reasons=("red-flag-cauda-equina",))
    assert verdict(rules, record(lbp(rules, 14)), flagged) == []


def test_prior_lumbar_surgery_leaves_the_pathway(rules: Rules) -> None:
    surgery = fact(rules, "Procedure", "lumbar-spine-surgery", ago(700))
    assert verdict(rules, record(lbp(rules, 14), surgery), mri(rules)) == []


def test_outside_the_population_says_nothing(rules: Rules) -> None:
    resolved = fact(rules, "Condition", "lbp-population", ago(14), active=False, status="resolved")
    assert verdict(rules, record(resolved), mri(rules)) == []
    # ... unless the order itself names a back-pain reason.
    with_reason = order(rules, "lumbar-imaging-mri-without-contrast", reasons=("lbp-population",))
    assert verdict(rules, record(), with_reason) == [("imaging-premature", ["trial_missing_pt"])]


def test_order_select_judges_only_selections(rules: Rules) -> None:
    rec = record(lbp(rules, 14))
    assert verdict(rules, rec, mri(rules), selections=["ServiceRequest/other"]) == []
    assert verdict(rules, rec, mri(rules), selections=["ServiceRequest/o1"])


def test_duplicate_mri_within_a_year(rules: Rules) -> None:
    prior = fact(rules, "ImagingStudy", "lumbar-imaging-mri-without-contrast", ago(150), status="available")
    rec = record(lbp(rules, 200), pt_sessions(rules, 70, 14), prior)
    findings = evaluate(rec, [mri(rules)], rules, TODAY)
    assert [(f.rule_id, f.reasons[0].params["date"]) for f in findings] == [("imaging-duplicate", ago(150).isoformat())]
    old = fact(rules, "ImagingStudy", "lumbar-imaging-mri-without-contrast", ago(400), status="available")
    assert verdict(rules, record(lbp(rules, 500), pt_sessions(rules, 70, 14), old), mri(rules)) == []


def test_premature_and_duplicate_share_one_card(rules: Rules) -> None:
    prior = fact(rules, "Procedure", "lumbar-imaging-ct", ago(30))
    assert verdict(rules, record(lbp(rules, 20), prior), mri(rules)) == [
        ("imaging-premature", ["symptoms_short", "trial_missing_pt", "prior_imaging"])
    ]


def test_mri_with_contrast_gets_an_update_to_without(rules: Rules) -> None:
    with_contrast = order(rules, "lumbar-imaging-mri-with-contrast", code="72158")
    findings = evaluate(record(lbp(rules, 90), pt_sessions(rules, 56, 0)), [with_contrast], rules, TODAY)
    assert [f.rule_id for f in findings] == ["imaging-contrast"]
    replacement = findings[0].replacement
    assert replacement is not None and replacement["id"] == "o1"
    assert [c["code"] for c in replacement["code"]["coding"]] == ["72148"]
    cancer = fact(rules, "Condition", "red-flag-cancer", ago(300), status="active")
    rec = record(lbp(rules, 90), pt_sessions(rules, 56, 0), cancer)
    assert verdict(rules, rec, with_contrast) == []


def test_surgical_referral_without_pt(rules: Rules) -> None:
    referral = order(rules, "surgical-referral")
    assert verdict(rules, record(lbp(rules, 60)), referral) == [("referral-premature", ["pt_missing"])]


def test_pt_referral_counts_as_started_not_done(rules: Rules) -> None:
    pt_order = fact(rules, "ServiceRequest", "cc-formal-pt", ago(14), status="active")
    findings = evaluate(record(lbp(rules, 60), pt_order), [order(rules, "surgical-referral")], rules, TODAY)
    assert [(f.rule_id, [r.key for r in f.reasons]) for f in findings] == [("referral-premature", ["pt_referral_only"])]
    assert findings[0].reasons[0].params["date"] == ago(14).isoformat()


def test_short_pt_span_warns_with_the_window_note(rules: Rules) -> None:
    findings = evaluate(record(lbp(rules, 60), pt_sessions(rules, 21, 0)),
                        [order(rules, "surgeon-specialty")], rules, TODAY)
    assert len(findings) == 1
    assert [r.key for r in findings[0].reasons] == ["pt_short"]
    assert findings[0].reasons[0].params["duration"] == "3 weeks"
    assert [n.key for n in findings[0].notes] == ["window", "no_red_flags"]


def test_completed_pt_but_under_three_months_gives_an_info_note(rules: Rules) -> None:
    surgery = order(rules, "lumbar-spine-surgery")
    assert verdict(rules, record(lbp(rules, 80), pt_sessions(rules, 70, 14)), surgery) == [
        ("surgery-window", ["window"])
    ]
    assert verdict(rules, record(lbp(rules, 200), pt_sessions(rules, 150, 90)), surgery) == []


def test_helpers() -> None:
    assert duration(0) == "0 days" and duration(1) == "1 day" and duration(23) == "3 weeks 2 days"
    assert months_before(date(2026, 3, 31), 1) == date(2026, 2, 28)
    assert months_before(date(2026, 1, 15), 12) == date(2025, 1, 15)
