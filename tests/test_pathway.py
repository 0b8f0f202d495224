"""The pathway on FHIR JSON read by the real reader, at a fixed date: the episode and its onset, formal PT,
orders by region and modality, referrals, age, contrast, and the profiles."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from cds_hooks.pathway.evaluate import duration, months_before
from tests.chart import (
    CERVICAL_SITE,
    CPT,
    CT,
    ICD,
    KNEE_SITE,
    LUMBAR_SITE,
    MRI,
    MRI_CONTRAST,
    NUCC,
    ORTHO_REFERRAL,
    SCT,
    TODAY,
    XRAY,
    concept,
    condition,
    draft,
    encounter,
    judge,
    lbp,
    med_request,
    procedure,
    pt_sessions,
    service_request,
    supply,
    verdict,
)

PT_REFERRAL = "308447003"


def test_three_weeks_of_pain_without_pt_is_premature() -> None:
    [finding] = judge(lbp(21))
    assert [r.key for r in finding.reasons] == ["symptoms_short", "trial_missing_pt"]
    assert finding.reasons[0].params["duration"] == "3 weeks"
    assert finding.reasons[0].params["source"] == "onset"
    assert [m.params["modality"] for m in finding.missing] == ["nsaid", "formal-pt", "activity-modification"]


@pytest.mark.parametrize(("onset", "reasons"), [(41, ["symptoms_short", "trial_missing_pt"]),
                                                (42, ["trial_missing_pt"])])
def test_symptoms_need_six_weeks(onset: int, reasons: list[str]) -> None:
    assert verdict(lbp(onset)) == [("imaging-premature", reasons)]


def test_seven_weeks_of_weekly_pt_makes_mri_appropriate() -> None:
    assert verdict(lbp(70), pt_sessions(49, 7)) == []


@pytest.mark.parametrize(("first", "expected"), [(42, []), (41, [("imaging-premature", ["trial_short_pt"])])])
def test_the_trial_runs_six_weeks_from_the_first_session(first: int, expected: list) -> None:
    assert verdict(lbp(90), pt_sessions(first, 0, every=6)) == expected


def test_onset_from_first_pt_when_the_diagnosis_has_only_a_recorded_date_today() -> None:
    # Recorded today, no onset, eight weeks of PT: not "symptoms began today".
    assert verdict(lbp(onset=None, recorded=0), pt_sessions(56, 7)) == []
    [finding] = judge(lbp(onset=None, recorded=10))
    assert finding.reasons[0].params["source"] == "recorded"


def test_onset_from_a_back_pain_visit() -> None:
    visit = encounter(20, reasonCode=[concept(ICD, "M54.50")])
    [finding] = judge(lbp(onset=None, recorded=2), visit)
    assert finding.reasons[0].params == {"onset": "2026-11-01", "duration": "2 weeks 6 days", "weeks": "2 weeks",
                                         "threshold": "6", "source": "encounter"}


def test_pt_three_years_ago_is_an_earlier_episode() -> None:
    old_pt = pt_sessions(1150, 1100)
    [finding] = judge(lbp(onset=1200, recorded=20), old_pt)
    assert [r.key for r in finding.reasons] == ["trial_missing_pt"]
    assert [b.key for b in finding.basis] == ["earlier_episode"]


@pytest.mark.parametrize(("gap", "counted"), [(179, True), (180, False)])
def test_the_episode_gap_is_180_days(gap: int, counted: bool) -> None:
    # Seven weeks of PT ending `gap` days before the diagnosis was recorded (no onset given).
    last_pt = 20 + gap
    sessions = pt_sessions(last_pt + 49, last_pt)
    found = verdict(lbp(onset=None, recorded=20), sessions)
    if counted:  # one episode: the PT counts, and the onset is the first session
        assert found == []
    else:  # a new episode began 20 days ago: no PT in it, and the onset is the recorded date
        assert found == [("imaging-premature", ["symptoms_short", "trial_missing_pt"])]


def test_two_sessions_six_weeks_apart_are_not_a_course() -> None:
    two = [procedure("97161", 50), procedure("97110", 8)]
    assert verdict(lbp(70), two) == [("imaging-premature", ["trial_few_sessions"])]
    assert verdict(lbp(70), two, order=draft(*ORTHO_REFERRAL)) == [("referral-premature", ["pt_few_sessions"])]


@pytest.mark.parametrize(("days", "imaging", "referral"), [
    ((119, 105, 91, 77), [], []),  # four sessions on different days over six weeks: a course
    ((119, 91, 77), [("imaging-premature", ["trial_few_sessions"])], [("referral-premature", ["pt_few_sessions"])]),
])
def test_a_course_counts_from_four_sessions(days: tuple[int, ...], imaging: list, referral: list) -> None:
    sessions = [procedure("97110", d) for d in days]
    assert verdict(lbp(200), sessions) == imaging
    assert verdict(lbp(200), sessions, order=draft(*ORTHO_REFERRAL)) == referral


def test_sessions_count_by_distinct_days() -> None:
    same_days = [procedure(code, d) for d in (50, 43) for code in ("97110", "97140", "97112")]
    assert verdict(lbp(70), same_days) == [("imaging-premature", ["trial_few_sessions"])]


def test_an_in_progress_plan_counts_only_up_to_today() -> None:
    plan = procedure("97110", 50, status="in-progress", end=-60)  # ends two months from now
    assert verdict(lbp(70), plan, order=draft(*ORTHO_REFERRAL)) == [("referral-premature", ["pt_few_sessions"])]
    finding = judge(lbp(70), plan, order=draft(*ORTHO_REFERRAL))[0]
    assert finding.reasons[0].params["last"] == "2026-11-21"  # today, not the plan's end


def test_a_referral_never_attended_is_pt_ordered_not_done() -> None:
    referral = service_request(PT_REFERRAL, 60)
    assert verdict(lbp(70), referral) == [("imaging-premature", ["trial_pt_ordered"])]
    assert verdict(lbp(70), referral, order=draft(*ORTHO_REFERRAL)) == [("referral-premature", ["pt_referral_only"])]


def test_pt_recognised_as_encounters_by_service_type_and_referral_by_performer_type() -> None:
    service = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/service-type", "code": "65"}]}
    visits = [encounter(d, serviceType=service) for d in range(49, 6, -7)]  # R4: one CodeableConcept
    assert verdict(lbp(70), visits) == []
    by_performer = service_request("3457005", 30, performerType=concept(NUCC, "225100000X"))  # R4: 0..1
    assert verdict(lbp(70), by_performer) == [("imaging-premature", ["trial_pt_ordered"])]


def test_region_agnostic_mri_needs_a_lumbar_body_site() -> None:
    spine_mri = ("241645008", SCT)
    assert verdict(lbp(14), order=draft(*spine_mri)) == []
    assert verdict(lbp(14), order=draft(*spine_mri, bodySite=[CERVICAL_SITE])) == []
    assert verdict(lbp(14), order=draft(*spine_mri, bodySite=[LUMBAR_SITE])) == [
        ("imaging-premature", ["symptoms_short", "trial_missing_pt"])]


def test_a_prior_cervical_mri_is_no_lumbar_repeat_and_the_skip_is_counted() -> None:
    cervical = {"resourceType": "ImagingStudy", "id": "is1", "status": "available",
                "subject": {"reference": "Patient/p1"}, "started": "2026-08-01",
                "procedureCode": [concept(SCT, "241645008")],
                "series": [{"uid": "1.2.3", "modality": {"system": "http://dicom.nema.org/resources/ontology/DCM",
                                                        "code": "MR"}, "bodySite": CERVICAL_SITE["coding"][0]}]}
    findings = judge(lbp(300), pt_sessions(120, 60), cervical)
    assert findings == []


def test_repeat_imaging_compares_modality() -> None:
    trauma_ct = procedure(CT[0], 60)
    assert verdict(lbp(300), pt_sessions(120, 60), trauma_ct) == []  # MRI after a CT: no repeat
    assert verdict(lbp(300), pt_sessions(120, 60), trauma_ct, order=draft(*CT)) == [
        ("imaging-duplicate", ["prior_imaging"])]
    assert verdict(lbp(300), pt_sessions(120, 60), procedure(MRI[0], 60)) == [
        ("imaging-duplicate", ["prior_imaging"])]


def test_a_repeat_is_a_study_done_up_to_today_never_an_order_for_one() -> None:
    # An MRI ordered before (a ServiceRequest) may never have been done; an MRI done this morning has.
    ordered = service_request(MRI[0], 60, system=MRI[1], status="completed")
    assert verdict(lbp(300), pt_sessions(120, 60), ordered) == []
    assert verdict(lbp(300), pt_sessions(120, 60), procedure(MRI[0], 0)) == [("imaging-duplicate", ["prior_imaging"])]


def test_an_unknown_onset_is_the_first_thing_the_card_says_is_missing() -> None:
    # No onset or recorded date anywhere: the symptom duration cannot be judged, and the card says so first.
    undated = lbp(None)
    [finding] = judge(undated)
    assert [r.key for r in finding.missing][:1] == ["missing_onset"] and len(finding.missing) > 1
    assert [e.resource_id for e in finding.found] == [undated["id"]]  # the card still names the diagnosis
    [dated] = judge(lbp(20))
    assert "missing_onset" not in [r.key for r in dated.missing]
    # A profile with no week count (nice-ng59) has no onset to miss.
    [nice] = judge(lbp(None), profile="nice-ng59")
    assert "missing_onset" not in [r.key for r in nice.missing]


def test_prior_lumbar_surgery_includes_fusion_status_but_not_a_cervical_laminectomy() -> None:
    assert verdict(lbp(14), condition("Z98.1", onset=900)) == []
    assert verdict(lbp(14), procedure("22612", 900)) == []
    premature = [("imaging-premature", ["symptoms_short", "trial_missing_pt"])]
    assert verdict(lbp(14), condition("Z98.1", onset=900, bodySite=[CERVICAL_SITE])) == premature
    assert verdict(lbp(14), procedure("63045", 900), procedure("63048", 900)) == premature
    assert verdict(lbp(14), procedure("63048", 900, bodySite=[LUMBAR_SITE])) == []


def test_referrals_by_performer_type_and_stated_reason() -> None:
    by_type = draft("103696004", SCT, performerType=concept(SCT, "22731001"))  # specialist; orthopaedic surgeon
    assert verdict(lbp(60), order=by_type) == [("referral-premature", ["pt_missing"])]
    knee = draft(*ORTHO_REFERRAL, reasonCode=[concept(ICD, "M17.11")])
    assert verdict(lbp(60), order=knee) == []  # a knee referral in a back-pain patient
    by_site = draft(*ORTHO_REFERRAL, bodySite=[KNEE_SITE])
    assert verdict(lbp(60), order=by_site) == []
    back = draft(*ORTHO_REFERRAL, reasonCode=[concept(ICD, "M54.16")])
    assert verdict(lbp(60), order=back) == [("referral-premature", ["pt_missing"])]
    # Without a reason: judged only in an active back-pain episode.
    assert verdict(lbp(60), order=draft(*ORTHO_REFERRAL)) == [("referral-premature", ["pt_missing"])]
    assert verdict(lbp(60, clinical="resolved"), order=draft(*ORTHO_REFERRAL)) == []


@pytest.mark.parametrize(("age", "expected"), [(17, []), (18, [("imaging-premature", ["symptoms_short",
                                                                                    "trial_missing_pt"])])])
def test_the_population_is_adult(age: int, expected: list) -> None:
    assert verdict(lbp(14), age=age) == expected


def test_nice_covers_over_16s() -> None:
    assert verdict(lbp(14), profile="nice-ng59", age=16) == [("imaging-premature", ["not_routine"])]
    assert verdict(lbp(14), profile="nice-ng59", age=15) == []


@pytest.mark.parametrize(("age", "order", "released"), [(65, XRAY, True), (64, XRAY, False), (80, MRI, False)])
def test_older_age_releases_radiography(age: int, order: tuple[str, str], released: bool) -> None:
    assert (verdict(lbp(14), age=age, order=draft(*order)) == []) is released


def test_unknown_age_is_judged_as_an_adult() -> None:
    assert verdict(lbp(14), age=None) == [("imaging-premature", ["symptoms_short", "trial_missing_pt"])]


def test_mri_with_contrast_gets_the_without_contrast_update_only_without_red_flags() -> None:
    [finding] = judge(lbp(90), pt_sessions(56, 0), order=draft(*MRI_CONTRAST))
    assert finding.rule_id == "imaging-contrast"
    assert [c["code"] for c in finding.replacement["code"]["coding"]] == ["72148"]  # type: ignore[index]
    # Suspected epidural abscess (IV drug use and fever), transplant, cauda equina: no contrast advice.
    for flag in (condition("F11.20", onset=30), condition("Z94.0", onset=900), condition("G83.4", onset=2)):
        assert verdict(lbp(90), pt_sessions(56, 0), flag, order=draft(*MRI_CONTRAST)) == []
    assert verdict(lbp(90), pt_sessions(56, 0), procedure("63047", 900), order=draft(*MRI_CONTRAST)) == []


def test_payer_counts_oral_nsaids_by_code_never_opioids_or_topicals() -> None:
    naproxen = med_request("198014", 49)
    assert verdict(lbp(56), naproxen, profile="payer") == []
    oxycodone = med_request("7804", 49)
    assert verdict(lbp(56), oxycodone, profile="payer") == [("imaging-premature", ["trial_missing"])]
    gel = med_request("3355", 49, dosageInstruction=[{"route": concept(SCT, "6064005")}])
    assert verdict(lbp(56), gel, profile="payer") == [("imaging-premature", ["trial_missing"])]
    syrup = med_request("999999", 49)
    syrup["medicationCodeableConcept"]["text"] = "ibuprofen and codeine syrup"
    assert verdict(lbp(56), syrup, profile="payer") == [("imaging-premature", ["trial_missing"])]


def test_nice_warns_on_fusion_and_counts_manual_therapy_only_with_exercise() -> None:
    fusion = draft("22612")
    assert verdict(lbp(200), pt_sessions(150, 60), order=fusion, profile="nice-ng59") == [
        ("surgery-fusion", ["fusion"])]
    assert verdict(lbp(200), pt_sessions(150, 60), order=fusion) == []  # seeds: completed PT, 3+ months
    chiro = [procedure("98940", d) for d in (60, 50, 40)]
    referral = draft(*ORTHO_REFERRAL)
    assert verdict(lbp(90), chiro, order=referral, profile="nice-ng59") == [
        ("referral-premature", ["conservative_missing"])]
    group = procedure("97150", 45)
    assert verdict(lbp(90), chiro, group, order=referral, profile="nice-ng59") == []
    cbt = procedure("228557008", 45, system=SCT)
    assert verdict(lbp(90), cbt, order=referral, profile="nice-ng59") == [
        ("referral-premature", ["conservative_missing"])]


def test_order_select_judges_only_selections() -> None:
    from cds_hooks.pathway.evaluate import evaluate
    from cds_hooks.pathway.record import read_draft_orders
    from tests.chart import TODAY, record_of, rules_for

    rules = rules_for()
    orders = read_draft_orders({"resourceType": "Bundle", "entry": [{"resource": draft(*MRI)}]}, rules)
    rec = record_of(lbp(14))
    assert evaluate(rec, orders, rules, TODAY, ["ServiceRequest/other"]) == []
    assert evaluate(rec, orders, rules, TODAY, ["ServiceRequest/o1"])


def test_helpers() -> None:
    assert duration(0) == "0 days" and duration(1) == "1 day" and duration(23) == "3 weeks 2 days"
    assert months_before(date(2026, 3, 31), 1) == date(2026, 2, 28)
    assert months_before(date(2026, 1, 15), 12) == date(2025, 1, 15)


def test_order_scopes_are_the_gate_evaluate_applies() -> None:
    from cds_hooks.pathway.evaluate import Scope, order_scopes
    from cds_hooks.pathway.record import read_draft_orders
    from tests.chart import TODAY, record_of, rules_for

    rules = rules_for()
    drafts = [draft(*MRI, oid="mri"), draft("241645008", SCT, oid="spine"), draft("2093-3", "http://loinc.org",
                                                                                  oid="lab"),
              draft(*ORTHO_REFERRAL, oid="knee", reasonCode=[concept(ICD, "M17.11")])]
    orders = read_draft_orders({"resourceType": "Bundle", "entry": [{"resource": d} for d in drafts]}, rules)
    scopes = {ref.split("/")[1]: s for ref, s in order_scopes(record_of(lbp(14)), orders, rules, TODAY).items()}
    assert scopes == {"mri": Scope.JUDGED, "spine": Scope.UNRELATED, "lab": Scope.UNRELATED, "knee": Scope.OUTSIDE}
    teen = order_scopes(record_of(lbp(14), age=15), orders[:1], rules, TODAY)
    operated = order_scopes(record_of(lbp(14), procedure("63047", 900)), orders[:1], rules, TODAY)
    assert list(teen.values()) == list(operated.values()) == [Scope.OUTSIDE]


def test_care_dated_after_today_has_not_happened() -> None:
    # A session charted for tomorrow does not make the fourth of a course, nor an NSAID prescribed for tomorrow
    # a trial, nor a PT referral dated tomorrow "PT ordered".
    three = [procedure("97110", d) for d in (50, 40, 30)]
    assert verdict(lbp(90), three, procedure("97110", -1)) == [("imaging-premature", ["trial_few_sessions"])]
    assert verdict(lbp(90), three, procedure("97110", 0)) == []  # today's session counts
    assert verdict(lbp(56), med_request("198014", -1), profile="payer") == [("imaging-premature", ["trial_missing"])]
    assert verdict(lbp(56), med_request("198014", 0), profile="payer") == [("imaging-premature", ["trial_short"])]
    assert verdict(lbp(70), service_request(PT_REFERRAL, -1)) == [("imaging-premature", ["trial_missing_pt"])]
    assert verdict(lbp(70), service_request(PT_REFERRAL, 0)) == [("imaging-premature", ["trial_pt_ordered"])]


def test_only_a_completed_lumbar_operation_dated_up_to_today_is_prior_surgery() -> None:
    premature = [("imaging-premature", ["symptoms_short", "trial_missing_pt"])]
    assert verdict(lbp(14), procedure("63047", 10)) == []  # operated: outside this pathway
    assert verdict(lbp(14), procedure("63047", 0, status="in-progress")) == premature
    assert verdict(lbp(14), procedure("63047", -7)) == premature  # charted ahead of the day


def test_a_surgery_status_code_charted_as_a_procedure_is_prior_surgery_when_completed_and_past() -> None:
    # Arthrodesis status (Z98.1) sent as a Procedure rather than a Condition: the same statement of an operation.
    premature = [("imaging-premature", ["symptoms_short", "trial_missing_pt"])]
    assert verdict(lbp(14), procedure("Z98.1", 400, system=ICD)) == []
    assert verdict(lbp(14), procedure("Z98.1", 400, system=ICD, status="in-progress")) == premature
    assert verdict(lbp(14), procedure("Z98.1", -7, system=ICD)) == premature
    assert verdict(lbp(14), procedure("Z98.1", 400, system=ICD, bodySite=[CERVICAL_SITE])) == premature


def test_a_month_back_from_the_31st_is_the_last_day_of_a_shorter_month() -> None:
    assert months_before(date(2026, 5, 31), 1) == date(2026, 4, 30)
    assert months_before(date(2026, 3, 31), 1) == date(2026, 2, 28)
    assert months_before(date(2024, 3, 31), 1) == date(2024, 2, 29)


def test_chiropractic_visits_are_not_pt_sessions() -> None:
    # Seven weekly manual-therapy visits: conservative care, but not formal PT, which the seeds profile asks for.
    visits = [procedure("98940", d) for d in range(56, 7, -7)]
    assert verdict(lbp(90), visits) == [("imaging-premature", ["trial_missing_pt"])]
    assert verdict(lbp(90), [procedure("97110", d) for d in range(56, 7, -7)]) == []


def test_an_undated_visit_does_not_hide_the_dated_ones() -> None:
    # Evidence without a date cannot place the onset, but the dated visit after it in the record still does.
    undated = encounter(0, reasonCode=[concept(ICD, "M54.50")])
    del undated["period"]
    visit = encounter(20, reasonCode=[concept(ICD, "M54.50")])
    for record in ((undated, visit), (visit, undated)):
        [finding] = judge(lbp(onset=None, recorded=2), *record)
        assert (finding.reasons[0].params["onset"], finding.reasons[0].params["source"]) == ("2026-11-01", "encounter")


def test_the_care_scan_goes_on_past_a_medication_and_an_earlier_episode() -> None:
    # Seven weeks of PT counts whatever comes before it in the record: an NSAID of this episode, or PT of
    # an earlier one (three years ago).
    nsaid, old_pt, pt = med_request("198014", 60), pt_sessions(1150, 1100), pt_sessions(49, 7)
    for history in ([nsaid, *pt], [*pt, nsaid], [*old_pt, *pt], [*pt, *old_pt]):
        assert verdict(lbp(90), history) == [], history


def test_the_care_scan_goes_on_past_care_it_does_not_count() -> None:
    # Whatever comes first in the record (a prescription dated tomorrow, one that ended before the episode,
    # an undated session, a session booked for next week), the seven weeks of PT after it still count.
    skipped = [med_request("198014", -1), med_request("198014", 400, status="completed", **supply(30)),
               {k: v for k, v in procedure("97110", 10).items() if k != "performedDateTime"}, procedure("97110", -7)]
    pt = pt_sessions(49, 7)
    for first in skipped:
        assert verdict(lbp(90), first, *pt) == [], first


def test_a_pt_referral_counts_from_the_first_day_of_the_episode_and_only_a_pt_one() -> None:
    assert verdict(lbp(70), service_request(PT_REFERRAL, 70)) == [("imaging-premature", ["trial_pt_ordered"])]
    exercise = service_request("390864007", 10)  # a referral for exercise therapy: conservative care, not PT
    assert verdict(lbp(70), exercise) == [("imaging-premature", ["trial_missing_pt"])]


def test_pt_referrals_of_one_day_are_listed_by_name_whatever_order_the_server_sent() -> None:
    named_z, named_a = service_request(PT_REFERRAL, 10, id="a"), service_request(PT_REFERRAL, 10, id="b")
    named_z["code"]["text"], named_a["code"]["text"] = "Z physio", "A physio"
    for history in ((named_z, named_a), (named_a, named_z)):
        [finding] = judge(lbp(70), *history)
        assert [e.label for e in finding.found if e.resource_type == "ServiceRequest"] == ["A physio", "Z physio"]


def test_with_no_date_on_the_diagnosis_a_pt_session_today_starts_the_symptoms() -> None:
    # The first PT session, even this morning's, is the earliest date the record gives for the symptoms.
    [finding] = judge(lbp(None), procedure("97110", 0))
    [short] = [r for r in finding.reasons if r.key == "symptoms_short"]
    assert short.params["source"] == "pt" and short.params["onset"] == TODAY.isoformat()


def test_a_visit_for_no_stated_reason_does_not_date_the_symptoms() -> None:
    # A chiropractic visit says nothing of the back: with no other date, the onset stays unknown.
    chiro = encounter(30, type=[concept(CPT, "98940")])
    [finding] = judge(lbp(None), chiro)
    assert "symptoms_short" not in [r.key for r in finding.reasons]
    assert [r.key for r in finding.missing][:1] == ["missing_onset"]


def test_a_recorded_diagnosis_dates_the_symptoms_before_a_session_of_the_same_day() -> None:
    recorded = lbp(None, recorded=20)
    for history in ((recorded, procedure("97110", 20)), (procedure("97110", 20), recorded)):
        [finding] = judge(*history)
        [short] = [r for r in finding.reasons if r.key == "symptoms_short"]
        assert short.params["source"] == "recorded", history


def test_the_card_lists_the_episodes_diagnoses_and_nothing_else_as_one() -> None:
    # An undated diagnosis is still the episode's; one resolved years ago is not; a visit typed with a
    # back-pain code is no diagnosis (and alone puts no one in the pathway).
    undated, old = lbp(None), lbp(1200, clinical="resolved", abated=1100)
    typed = encounter(30, type=[concept(ICD, "M54.50")])
    [finding] = judge(undated, old, typed, procedure("97110", 10))
    assert [e.resource_id for e in finding.found if e.resource_type == "Condition"] == [undated["id"]]
    assert "Encounter" not in {e.resource_type for e in finding.found}
    assert verdict(typed) == []


def test_an_order_for_an_operation_is_not_the_operation_and_one_done_today_is_prior_surgery() -> None:
    decompression = "63047"
    assert verdict(lbp(14), service_request(decompression, 100, system=CPT, status="completed")) == [
        ("imaging-premature", ["symptoms_short", "trial_missing_pt"])]
    assert verdict(lbp(14), procedure(decompression, 0)) == []


def test_the_earliest_pt_referral_is_the_one_the_card_dates() -> None:
    later, earlier = service_request(PT_REFERRAL, 10, id="a-later"), service_request(PT_REFERRAL, 30, id="z-earlier")
    for history in ((later, earlier), (earlier, later)):
        [finding] = judge(lbp(70), *history)
        assert finding.reasons[0].key == "trial_pt_ordered"
        assert finding.reasons[0].params["date"] == "2026-10-22"  # 30 days before 2026-11-21


def test_a_referral_for_a_charted_knee_problem_is_not_judged() -> None:
    knee = condition("M17.11", onset=300)
    by_reference = draft(*ORTHO_REFERRAL, reasonReference=[{"reference": f"Condition/{knee['id']}"}])
    assert verdict(lbp(60), knee, order=by_reference) == []
    assert verdict(lbp(60), knee, order=draft(*ORTHO_REFERRAL)) == [("referral-premature", ["pt_missing"])]


def test_a_referral_whose_stated_reason_is_the_charted_back_problem_is_judged() -> None:
    # A reason given only as a reference counts by what it points at: the back pain, not the knee beside it.
    knee, back = condition("M17.11", onset=300), lbp(60)
    for refs in ([back], [knee, back]):
        order = draft(*ORTHO_REFERRAL, reasonReference=[{"reference": f"Condition/{c['id']}"} for c in refs])
        assert verdict(back, knee, order=order) == [("referral-premature", ["pt_missing"])], refs


def test_an_mri_whose_reason_is_a_charted_back_problem_is_judged_without_an_active_diagnosis() -> None:
    # Back pain charted as resolved puts no one in the pathway, but an MRI ordered for it is for the back.
    old = lbp(200, clinical="resolved", abated=100)
    for_it = draft(*MRI, reasonReference=[{"reference": f"Condition/{old['id']}"}])
    assert verdict(old, order=for_it) == [("imaging-premature", ["trial_missing_pt"])]
    assert verdict(old, order=draft(*MRI)) == []


def test_a_referral_for_the_lumbar_spine_by_body_site_alone_is_judged() -> None:
    # No back diagnosis charted and no reason given, but the referral names the lumbar spine.
    knee = condition("M17.11", onset=300)
    to_the_back = draft(*ORTHO_REFERRAL, bodySite=[LUMBAR_SITE])
    assert verdict(knee, order=to_the_back) == [("referral-premature", ["pt_missing"])]
    assert verdict(knee, order=draft(*ORTHO_REFERRAL, bodySite=[KNEE_SITE])) == []


def test_a_referral_whose_stated_reason_is_a_lumbar_study_is_judged_and_one_for_therapy_is_not() -> None:
    # A lumbar MRI is lumbar by its code: a referral "for" it is for the back. A therapy session says no
    # region (PT treats knees too), so a referral stating only that reason is not taken for a spine referral.
    mri, session = procedure(MRI[0], 30, system=MRI[1]), procedure("97110", 20)

    def referral_for(item: dict[str, Any]) -> dict[str, Any]:
        return draft(*ORTHO_REFERRAL, reasonReference=[{"reference": f"Procedure/{item['id']}"}])
    assert verdict(lbp(60), mri, session, order=referral_for(mri)) == [("referral-premature", ["pt_short"])]
    assert verdict(lbp(60), mri, session, order=referral_for(session)) == []
