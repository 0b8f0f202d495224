"""Red flags with time and status, read from real FHIR JSON: every category's published codes, its window
boundaries (in tests/test_boundaries.py), ICD-10-CM 7th characters, exclusions, medications, vital signs."""

from __future__ import annotations

from typing import Any

import pytest

from cds_hooks.pathway.rules import Rules
from cds_hooks.pathway.rules.index import normalise
from tests.chart import (
    CPT,
    ICD,
    MRI,
    SCT,
    concept,
    condition,
    draft,
    lbp,
    med_request,
    procedure,
    rules_for,
    service_request,
    supply,
    temperature,
    verdict,
)

PREMATURE = [("imaging-premature", ["symptoms_short", "trial_missing_pt"])]


def _codes(rules: Rules, category: str, system: str) -> list[tuple[str, str]]:
    """(code, value set) of a category in one code system, published sets first, codes that are a red
    flag of this category only (M80.00XA is also osteoporosis, which counts at any time) before others."""
    sets = sorted((vs for vs in rules.valuesets.values() if vs.kind == "red-flag" and vs.category == category),
                  key=lambda vs: vs.published is None)
    found = []
    for vs in sets:
        for c in vs.codes:
            categories = {m.valueset.category for m in rules.index.lookup(c.system, c.code)
                          if m.valueset.kind == "red-flag"}
            if c.system == system and not c.descendants and category in categories:
                found.append((len(categories), c.code, vs.id))
    return [(code, vs_id) for _, code, vs_id in sorted(found, key=lambda f: f[0])]


def _silenced(code: str, system: str, **dates: Any) -> bool:
    return verdict(lbp(14), condition(code, system, **dates)) == []


CONDITION_CATEGORIES = [c for c, f in rules_for().pathway.red_flags.items() if c != "steroid-use"]


def test_steroid_use_matches_icd10_status_codes_and_published_rxnorm_products() -> None:
    # No SNOMED CT concept for long-term steroid therapy was found (red_flags.yaml note); the
    # published set is RxNorm, judged by the 90-day rule (test_prolonged_glucocorticoids_...).
    rules = rules_for()
    assert _codes(rules, "steroid-use", ICD)
    products = [c.code for c in rules.valuesets["vsac-glucocorticoids-oral"].codes]
    assert len(products) == 59 and verdict(lbp(14), med_request(products[0], 100)) == []


@pytest.mark.parametrize("category", CONDITION_CATEGORIES)
def test_every_category_matches_an_icd10_and_a_snomed_code_from_its_sets(category: str) -> None:
    rules = rules_for()
    published = {vs.id for vs in rules.valuesets.values()
                 if vs.kind == "red-flag" and vs.category == category and vs.published}
    icd, snomed = _codes(rules, category, ICD), _codes(rules, category, SCT)
    assert icd and snomed, f"{category}: ICD-10-CM {len(icd)} SNOMED CT {len(snomed)}"
    # Read through the real reader: a recent, active Condition with the code is a red flag.
    for system, (code, _) in ((ICD, icd[0]), (SCT, snomed[0])):
        assert _silenced(code, system, onset=5, recorded=5), (category, code)
    # Where a published set serves the category, its codes are what matches.
    if published and any(vs in published for _, vs in icd + snomed):
        code, vs_id = next((c, v) for c, v in icd + snomed if v in published)
        assert _silenced(code, ICD if (code, vs_id) in icd else SCT, onset=5), (category, code)


# Each window a day short of, exactly at and a day past its edge: tests/test_boundaries.py (generated).


@pytest.mark.parametrize("category", [c for c, f in rules_for().pathway.red_flags.items() if not f.lookback_days])
def test_any_time_categories_count_decades_later(category: str) -> None:
    code, _ = _codes(rules_for(), category, ICD)[0]
    flag = rules_for().pathway.red_flags[category]
    status = "resolved" if flag.counts_when_inactive else "active"
    assert _silenced(code, ICD, onset=365 * 20, recorded=365 * 20, clinical=status), category


def test_a_new_sign_is_dated_by_onset_not_by_when_it_was_charted_again() -> None:
    # Chronic urinary incontinence since 2015, re-recorded at last week's visit: not a new sign.
    assert not _silenced("R32", ICD, onset=3000, recorded=7)
    assert _silenced("R32", ICD, onset=20, recorded=7)
    # An active state (long-term steroid use since two years) is current today.
    assert _silenced("Z79.52", ICD, onset=730)
    assert not _silenced("Z79.52", ICD, onset=730, recorded=730, clinical="resolved", abated=400)


@pytest.mark.parametrize(("code", "counts"), [
    ("S32.010A", True), ("S32.010B", True), ("S32.010D", False), ("S32.010G", False), ("S32.010S", False),
    ("W19.XXXA", True), ("W19.XXXD", False), ("V43.52XA", True), ("M80.08XA", True),
])
def test_icd10_seventh_character_initial_encounter_only(code: str, counts: bool) -> None:
    assert _silenced(code, ICD, onset=20) is counts


def test_a_fracture_sequela_from_2010_is_no_red_flag_but_osteoporosis_stays() -> None:
    assert not _silenced("S32.010S", ICD, onset=5800, recorded=5800)
    # M80.08XS: the fracture is old, yet osteoporosis itself is a red flag at any time (HEDIS MY2025).
    assert _silenced("M80.08XS", ICD, onset=5800)


@pytest.mark.parametrize(("code", "system", "counts"), [
    ("C44.311", ICD, False),            # basal cell carcinoma of nose: excluded
    ("254701007", SCT, False),          # Basal cell carcinoma of skin: excluded
    ("Z85.828", ICD, False),            # history of non-melanoma skin cancer: excluded
    ("Z85.820", ICD, True),             # history of melanoma: counts
    ("C18.9", ICD, True),               # colon cancer: any active cancer counts
    ("C43.9", ICD, True),               # melanoma
    ("94602001", SCT, True),            # secondary malignant neoplasm of vertebral column (Sandbox reason)
])
def test_cancer_history_counts_except_non_melanoma_skin_cancer(code: str, system: str, counts: bool) -> None:
    assert _silenced(code, system, onset=3000, recorded=3000, clinical="resolved") is counts


@pytest.mark.parametrize(("code", "system", "counts"), [
    ("M48.062", ICD, False),   # stenosis with claudication: the population, excluded from Neurologic impairment
    ("R26.2", ICD, False),     # difficulty walking: excluded
    ("299966003", SCT, False),  # compression of lumbar nerve root: radiculopathy
    ("G83.4", ICD, True),      # cauda equina syndrome
    ("212222004", SCT, True),  # lumbar nerve root injury L5 (published set)
    ("G82.21", ICD, True),     # complete paraplegia
])
def test_neurologic_impairment_is_used_without_the_ordinary_pathway_codes(code: str, system: str, counts: bool) -> None:
    assert _silenced(code, system, onset=10) is counts


@pytest.mark.parametrize(("code", "system"), [
    ("Z94.3", ICD),             # heart and lungs transplant status
    ("62479008", SCT),          # AIDS in SNOMED CT
    ("9631008", SCT),           # ankylosing spondylitis
    ("17463000", SCT),          # closed fracture of lumbar vertebra without cord injury (Sandbox reason)
    ("426646004", SCT),         # compression fracture of lumbar spine (Sandbox reason)
    ("60389000", SCT),          # paraplegia
])
def test_ordinary_codings_of_red_flags_are_recognised(code: str, system: str) -> None:
    assert _silenced(code, system, onset=10)


def test_transplant_procedures_count_but_a_donor_operation_or_a_referral_does_not() -> None:
    assert verdict(lbp(14), procedure("33945", 4000)) == []  # heart transplant
    assert verdict(lbp(14), procedure("47140", 400)) == PREMATURE  # donor hepatectomy: a donor
    assert verdict(lbp(14), service_request("50360", 30, system=CPT)) == PREMATURE  # ordered, not done


PREDNISONE, TOPICAL = "8640", {"coding": [{"system": SCT, "code": "6064005"}]}


def test_prolonged_glucocorticoids_from_medication_requests_only() -> None:
    # Still active: covers every day from authoredOn to today.
    assert verdict(lbp(14), med_request(PREDNISONE, 89)) == []  # 90 days
    assert verdict(lbp(14), med_request(PREDNISONE, 88)) == PREMATURE  # 89 days
    # Six monthly 30-day prescriptions, all completed: 180 days in the last year.
    monthly = [med_request(PREDNISONE, d, status="completed", **supply(30)) for d in range(180, 0, -30)]
    assert verdict(lbp(14), monthly) == []
    # A 5-day burst years ago, and three bursts this year, never reach 90 days.
    bursts = [med_request(PREDNISONE, d, status="completed", **supply(5)) for d in (2000, 300, 200, 100)]
    assert verdict(lbp(14), bursts) == PREMATURE
    # An active long-term prescription with a 30-day supply is refilled, not stopped: 200 days.
    assert verdict(lbp(14), med_request(PREDNISONE, 199, **supply(30))) == []
    # 90 days that ended more than a year ago no longer count.
    old = med_request(PREDNISONE, 500, status="completed", **supply(90))
    assert verdict(lbp(14), old) == PREMATURE


def test_a_topical_steroid_is_not_systemic() -> None:
    cream = med_request(PREDNISONE, 200, dosageInstruction=[{"route": TOPICAL}])
    assert verdict(lbp(14), cream) == PREMATURE


def test_current_immunosuppressant_within_180_days() -> None:
    tacrolimus = next(c.code for c in rules_for().valuesets["vsac-immunosuppressive-drugs"].codes
                      if "tacrolimus" in c.display.lower())
    # Completed 30-day prescriptions: the last day of supply 180 days ago is current, 181 is not.
    assert verdict(lbp(14), med_request(tacrolimus, 209, status="completed", **supply(30))) == []
    assert verdict(lbp(14), med_request(tacrolimus, 211, status="completed", **supply(30))) == PREMATURE
    # A 10-day prednisone course is no "current immunosuppressant" (excluded from that set).
    short = next(c.code for c in rules_for().valuesets["vsac-immunosuppressive-drugs"].codes
                 if c.display.lower().startswith("prednisone"))
    assert verdict(lbp(14), med_request(short, 20, status="completed", **supply(10))) == PREMATURE


@pytest.mark.parametrize(("value", "unit", "days", "counts"), [
    (38.0, "Cel", 3, True), (37.9, "Cel", 3, False), (100.4, "[degF]", 3, True), (100.2, "[degF]", 3, False),
    (38.6, "Cel", 30, True), (38.6, "Cel", 31, False), (39.0, "mmHg", 3, False),
])
def test_fever_from_body_temperature_readings(value: float, unit: str, days: int, counts: bool) -> None:
    assert (verdict(lbp(14), temperature(value, days, unit)) == []) is counts


def test_red_flag_value_sets_hold_no_population_code() -> None:
    rules = rules_for()
    population = {(c.system, normalise(c.code)) for vs in rules.valuesets.values() if vs.kind == "population"
                  for c in vs.codes}
    for system, code in population:
        flags = [m for m in rules.index.lookup(system, code) if m.valueset.kind == "red-flag"]
        assert not flags, (code, flags)


def test_medication_codes_are_matched_by_code_not_by_name() -> None:
    named = med_request("999999", 200)
    named["medicationCodeableConcept"]["coding"][0]["display"] = "predniSONE 20 MG Oral Tablet"
    named["medicationCodeableConcept"]["text"] = "prednisone"
    assert verdict(lbp(14), named) == PREMATURE


def test_days_of_steroid_use_are_counted_once_and_never_beyond_today() -> None:
    # An 89-day course ending yesterday and a one-day prescription on its last day: still 89 days of use.
    overlapping = [med_request(PREDNISONE, 89, status="completed", **supply(89)),
                   med_request(PREDNISONE, 1, status="completed", **supply(1))]
    assert verdict(lbp(14), overlapping) == PREMATURE
    # 89 days up to and including today, supplied well beyond it: the days to come do not count yet.
    assert verdict(lbp(14), med_request(PREDNISONE, 88, status="completed", **supply(120))) == PREMATURE
    assert verdict(lbp(14), med_request(PREDNISONE, 89, status="completed", **supply(120))) == []


def test_an_immunosuppressant_prescribed_today_is_current() -> None:
    tacrolimus = next(c.code for c in rules_for().valuesets["vsac-immunosuppressive-drugs"].codes
                      if "tacrolimus" in c.display.lower())
    assert verdict(lbp(14), med_request(tacrolimus, 0, status="completed", **supply(30))) == []
    assert verdict(lbp(14), med_request(tacrolimus, -1, status="completed", **supply(30))) == PREMATURE


def test_an_undated_red_flag_is_not_dismissed_for_want_of_a_date() -> None:
    assert _silenced("G83.4", ICD)  # cauda equina syndrome with no onset, recorded or abatement date
    # A resolved cancer, which counts at any time, with no date at all.
    code, _ = _codes(rules_for(), "cancer", ICD)[0]
    assert _silenced(code, ICD, clinical="resolved")


def test_a_fever_measured_today_counts() -> None:
    assert verdict(lbp(14), temperature(38.5, 0)) == []


def test_a_medication_coded_as_a_condition_red_flag_is_no_red_flag() -> None:
    # Messy data: an order coded with a cancer diagnosis. Only a Condition or Procedure is that red flag,
    # and the category has no medication rule: judged as if the order were not there.
    code, _ = _codes(rules_for(), "cancer", ICD)[0]
    assert verdict(lbp(14), med_request(code, 10, system=ICD)) == PREMATURE


def test_two_prescriptions_with_the_same_first_and_last_day_count_once() -> None:
    twins = [med_request(PREDNISONE, 100, status="completed", **supply(d)) for d in (95, 95)]
    assert verdict(lbp(14), twins) == []
    assert verdict(lbp(14), [med_request(PREDNISONE, 100, status="completed", **supply(89)) for _ in (1, 2)]) \
        == PREMATURE


def test_a_red_flag_the_order_states_counts_without_a_window() -> None:
    # A lumbar fracture 400 days ago is outside trauma's 90 days in the record, but the clinician ordering
    # the MRI for it (its code, or a reference to the charted fracture) asserts it now.
    old_fracture = condition("S32.010A", ICD, onset=400, recorded=400)
    assert verdict(lbp(14), old_fracture) == PREMATURE
    by_code = draft(*MRI, reasonCode=[concept(ICD, "S32.010A")])
    by_reference = draft(*MRI, reasonReference=[{"reference": f"Condition/{old_fracture['id']}"}])
    assert verdict(lbp(14), old_fracture, order=by_code) == []
    assert verdict(lbp(14), old_fracture, order=by_reference) == []
    assert verdict(lbp(14), old_fracture, order=draft(*MRI, reasonReference=[{"reference": "Condition/other"}])) \
        == PREMATURE


def test_immunosuppression_counts_only_while_it_lasts() -> None:
    # The one category that a resolved condition does not keep (pathway.yaml counts_when_inactive: false).
    assert not rules_for().pathway.red_flags["immunosuppression"].counts_when_inactive
    code, _ = _codes(rules_for(), "immunosuppression", SCT)[0]
    assert _silenced(code, SCT, onset=400)
    assert not _silenced(code, SCT, onset=400, clinical="resolved", abated=20)
    # Cancer, which is kept, still counts once resolved.
    cancer, _ = _codes(rules_for(), "cancer", ICD)[0]
    assert _silenced(cancer, ICD, onset=400, clinical="resolved", abated=20)


def test_a_red_flag_operation_counts_once_done_up_to_today_never_before() -> None:
    kidney_transplant = "50360"
    assert verdict(lbp(14), procedure(kidney_transplant, 0)) == []  # this morning
    assert verdict(lbp(14), procedure(kidney_transplant, -10)) == PREMATURE  # booked for next week
    assert verdict(lbp(14), procedure(kidney_transplant, -10, status="in-progress")) == PREMATURE


def test_a_red_flag_the_order_states_is_kept_whatever_else_it_refers_to() -> None:
    # A stated red-flag code beside a reference to the plain back pain: the red flag still silences.
    back = lbp(14)
    order = draft(*MRI, reasonCode=[concept(ICD, "S32.010A")],
                  reasonReference=[{"reference": f"Condition/{back['id']}"}])
    assert verdict(back, order=order) == []


def test_a_charted_red_flag_stands_beside_medications_that_are_none() -> None:
    # A five-day prednisone burst is no red flag; it must not hide the cancer charted beside it.
    cancer, _ = _codes(rules_for(), "cancer", ICD)[0]
    burst = med_request(PREDNISONE, 30, status="completed", **supply(5))
    assert verdict(lbp(14), burst) == PREMATURE
    assert verdict(lbp(14), condition(cancer, ICD, onset=400), burst) == []
