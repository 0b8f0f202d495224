"""Reading the record from messy but real EHR JSON."""

from __future__ import annotations

from typing import Any

from cds_hooks.pathway.record import read_draft_orders, read_record
from cds_hooks.pathway.rules import Rules

ICD = "http://hl7.org/fhir/sid/icd-10-cm"
CPT = "http://www.ama-assn.org/go/cpt"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
VERIFICATION = "http://terminology.hl7.org/CodeSystem/condition-ver-status"


def condition(cid: str, code: str = "M54.50", clinical: str = "active", **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Condition", "id": cid,
        "clinicalStatus": {"coding": [{"system": CLINICAL, "code": clinical}]},
        "code": {"coding": [{"system": ICD, "code": code, "display": "Low back pain"}]},
        "subject": {"reference": "Patient/p1"}, **extra,
    }


def bundle(*resources: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"resourceType": "Bundle", **extra, "entry": [{"resource": r} for r in resources]}


def read(rules: Rules, **prefetch: Any) -> Any:
    return read_record(prefetch, "p1", rules)


def test_timezone_less_datetimes_and_vendor_elements_are_accepted(rules: Rules) -> None:
    messy = condition(
        "c1", onsetDateTime="2026-10-01T10:15:00", recordedDate="2026-10-02T08:00",
        epicExtension={"anything": 1},
    )
    messy["code"]["coding"][0]["vendorFlag"] = True  # unknown element nested in a coding
    rec = read(rules, conditions=bundle(messy))
    assert rec.skipped == []
    [item] = rec.items
    assert item.start is not None and item.start.isoformat() == "2026-10-01"


def test_malformed_resource_is_skipped_and_counted(rules: Rules) -> None:
    broken = condition("bad", onsetDateTime="2026-13-45")
    also_broken = condition("bad2")
    also_broken["subject"] = "Patient/p1"  # a string where a Reference belongs
    rec = read(rules, conditions=bundle(broken, also_broken, condition("ok", onsetDateTime="2026-10-01")))
    assert [i.resource_id for i in rec.items] == ["ok"]
    # Each reason names the resource and the unreadable element (what the basis page shows).
    assert rec.skipped == ["Condition/bad: invalid onsetDateTime", "Condition/bad2: invalid subject"]


def test_junk_in_an_element_the_rules_do_not_read_costs_nothing(rules: Rules) -> None:
    # Only what the rules read is validated: a broken note, stage or evidence does not hide the diagnosis.
    junk = condition("unread", onsetDateTime="2026-10-01", note="not a list", stage=5, evidence={"x": 1})
    rec = read(rules, conditions=bundle(junk))
    assert [i.resource_id for i in rec.items] == ["unread"] and rec.skipped == []


def test_unrelated_resources_are_not_validated_or_counted(rules: Rules) -> None:
    junk = {"resourceType": "Condition", "id": "j", "code": {"coding": [{"system": ICD, "code": "I10"}]},
            "onsetDateTime": "not a date", "subject": 5}
    rec = read(rules, conditions=bundle(junk, "not an object", {"no": "resourceType"}))  # type: ignore[arg-type]
    assert rec.items == [] and rec.skipped == []


def test_null_is_no_data_and_operation_outcome_is_unavailable(rules: Rules) -> None:
    outcome = {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "timeout"}]}
    rec = read(rules, conditions=None, procedures=outcome, encounters=bundle(outcome),
               # Junk entries are ignored here as everywhere: the service's own check agrees (hook.py).
               medications={"resourceType": "Bundle", "entry": ["junk", {"resource": outcome}]},
               # One resource among the outcomes is data: the key was answered.
               observations=bundle(outcome, condition("c"), outcome), imaging={"resourceType": "Bundle"})
    assert [i.resource_id for i in rec.items] == ["c"]
    assert rec.unavailable == {"procedures": "ehr-error", "encounters": "ehr-error", "medications": "ehr-error"}


def test_condition_statuses(rules: Rules) -> None:
    refuted = condition("refuted", verificationStatus={"coding": [{"system": VERIFICATION, "code": "refuted"}]})
    error = condition("error", verificationStatus={"coding": [{"system": VERIFICATION, "code": "entered-in-error"}]})
    rec = read(rules, conditions=bundle(
        condition("active"), condition("resolved", clinical="resolved"),
        condition("inactive", clinical="inactive"), refuted, error))
    assert {i.resource_id: i.active for i in rec.items} == {"active": True, "resolved": False, "inactive": False}
    # The clinical status is kept on the evidence (the sandbox timeline shows it).
    assert {i.resource_id: i.status for i in rec.items} == {"active": "active", "resolved": "resolved",
                                                           "inactive": "inactive"}


def test_onset_falls_back_to_period_age_then_recorded_date(rules: Rules) -> None:
    rec = read(
        rules,
        patient={"resourceType": "Patient", "id": "p1", "birthDate": "1980-06-15"},
        conditions=bundle(
            condition("period", onsetPeriod={"start": "2026-09-01"}),
            condition("age", onsetAge={"value": 46, "unit": "years", "system": "http://unitsofmeasure.org",
                                       "code": "a"}),
            condition("recorded", onsetString="a while ago", recordedDate="2026-08-03"),
        ),
    )
    onsets = {i.resource_id: i.start.isoformat() if i.start else None for i in rec.items}
    assert onsets == {"period": "2026-09-01", "age": "2026-06-15", "recorded": "2026-08-03"}


def test_icd10_descendants_match_under_a_listed_header(rules: Rules) -> None:
    rec = read(rules, conditions=bundle(condition("legacy", code="M54.5"), condition("child", code="M54.41")))
    assert {i.resource_id for i in rec.items} == {"legacy", "child"}


def procedure(pid: str, status: str, code: str = "97110", **extra: Any) -> dict[str, Any]:
    return {"resourceType": "Procedure", "id": pid, "status": status, "subject": {"reference": "Patient/p1"},
            "code": {"coding": [{"system": CPT, "code": code}]}, **extra}


def test_procedure_statuses_and_periods(rules: Rules) -> None:
    rec = read(rules, procedures=bundle(
        procedure("done", "completed", performedDateTime="2026-10-01"),
        procedure("ongoing", "in-progress", performedPeriod={"start": "2026-10-01", "end": "2026-11-01"}),
        procedure("planned", "preparation"), procedure("error", "entered-in-error"),
    ))
    assert {i.resource_id: (i.start and i.start.isoformat(), i.end and i.end.isoformat()) for i in rec.items} == {
        "done": ("2026-10-01", "2026-10-01"), "ongoing": ("2026-10-01", "2026-11-01"),
    }


def med(mid: str, status: str = "active", **medication: Any) -> dict[str, Any]:
    return {"resourceType": "MedicationRequest", "id": mid, "status": status, "intent": "order",
            "subject": {"reference": "Patient/p1"}, "authoredOn": "2026-10-05", **medication}


def test_nsaid_by_ingredient_product_and_reference_never_by_name(rules: Rules) -> None:
    rec = read(
        rules,
        medicationRequests=bundle(
            med("ingredient", medicationCodeableConcept={"coding": [{"system": RXNORM, "code": "7258"}]}),
            med("product", medicationCodeableConcept={"coding": [{"system": RXNORM, "code": "197806"}]}),
            med("byname", medicationCodeableConcept={
                "coding": [{"system": RXNORM, "code": "999999999", "display": "Meloxicam 15 MG Oral Tablet"}]}),
            med("contained", medicationReference={"reference": "#m1"},
                contained=[{"resourceType": "Medication", "id": "m1",
                            "code": {"coding": [{"system": RXNORM, "code": "5640"}]}}]),
            med("included", medicationReference={"reference": "Medication/m2"}),
            {"resourceType": "Medication", "id": "m2", "code": {"coding": [{"system": RXNORM, "code": "7258"}],
                                                              "text": "Naproxen sodium 550 MG tablet"}},
            med("text-only", medicationReference={"reference": "Medication/m3"}),
            {"resourceType": "Medication", "id": "m3", "code": {"text": "Naproxen sodium 550 MG tablet"}},
            med("topical", medicationCodeableConcept={"coding": [{"system": RXNORM, "code": "3355"}]},
                dosageInstruction=[{"route": {"coding": [{"system": "http://snomed.info/sct", "code": "6064005"}]}}]),
            med("cancelled", status="cancelled",
                medicationCodeableConcept={"coding": [{"system": RXNORM, "code": "7258"}]}),
        ),
    )
    found = {i.resource_id: i.categories("conservative-care") for i in rec.items}
    assert found == {"ingredient": {"nsaid"}, "product": {"nsaid"}, "contained": {"nsaid"}, "included": {"nsaid"}}
    assert rec.medications_checked == 8


def test_prescription_supply_and_temperature_units(rules: Rules) -> None:
    supplied = med("supplied", medicationCodeableConcept={"coding": [{"system": RXNORM, "code": "8640"}]},
                   dispenseRequest={"numberOfRepeatsAllowed": 2, "expectedSupplyDuration": {
                       "value": 30, "unit": "days", "system": "http://unitsofmeasure.org", "code": "d"}})
    temps = [{"resourceType": "Observation", "id": f"t{i}", "status": "final",
              "code": {"coding": [{"system": "http://loinc.org", "code": "8310-5"}]},
              "subject": {"reference": "Patient/p1"}, "effectiveDateTime": "2026-11-01T08:00:00Z",
              "valueQuantity": {"value": value, "unit": unit}} for i, (value, unit) in
             enumerate([(101.3, "[degF]"), (38.2, "Cel"), (38.2, "mmHg")])]
    rec = read(rules, medicationRequests=bundle(supplied), vitalSigns=bundle(*temps))
    by_id = {i.resource_id: i for i in rec.items}
    assert by_id["supplied"].supply_days == 90 and by_id["supplied"].end is not None
    assert by_id["supplied"].end.isoformat() == "2027-01-02"  # 90 days of supply from 2026-10-05: its last day
    assert (by_id["t0"].value, by_id["t1"].value) == (38.5, 38.2)
    assert rec.temperatures_checked == 2 and "Observation/t2" in rec.skipped[0]


def test_region_agnostic_history_is_skipped_and_counted(rules: Rules) -> None:
    lumbar = {"coding": [{"system": "http://snomed.info/sct", "code": "122496007"}]}
    rec = read(rules, procedures=bundle(
        procedure("agnostic", "completed", code="63048", performedDateTime="2024-01-01"),
        procedure("lumbar", "completed", code="63048", performedDateTime="2024-01-01", bodySite=[lumbar]),
    ))
    assert [i.resource_id for i in rec.items] == ["lumbar"]
    assert len(rec.region_skipped) == 1 and rec.region_skipped[0].startswith("Procedure/agnostic")


def test_a_study_placed_in_the_lumbar_region_by_its_series_body_site(rules: Rules) -> None:
    # "MRI of spine" names no region; an ImagingStudy gives it per series, as a Coding (not a CodeableConcept).
    def study(sid: str, *sites: str) -> dict[str, Any]:
        return {"resourceType": "ImagingStudy", "id": sid, "status": "available", "started": "2026-09-01",
                "subject": {"reference": "Patient/p1"},
                "procedureCode": [{"coding": [{"system": "http://snomed.info/sct", "code": "241645008"}],
                                   "text": "MRI of spine"}],
                "series": [{"uid": f"1.2.{i}", "modality": {"code": "MR"},
                            "bodySite": {"system": "http://snomed.info/sct", "code": site}}
                           for i, site in enumerate(sites)]}
    unsited = {"uid": "1.2.9", "modality": {"code": "MR"}}  # a series need not say where it is
    lumbar = study("lumbar", "122494005", "122496007")
    lumbar["series"].insert(0, unsited)
    rec = read(rules, imagingStudies=bundle(lumbar, study("neck", "122494005"), study("unplaced")))
    assert [i.resource_id for i in rec.items] == ["lumbar"]
    assert rec.items[0].has("lumbar-imaging")
    # Each left out is counted with its name, for the basis page's list of what was not judged.
    assert sorted(rec.region_skipped) == ["ImagingStudy/neck MRI of spine", "ImagingStudy/unplaced MRI of spine"]


def test_a_referral_is_named_by_its_code_then_its_performer_then_its_kind(rules: Rules) -> None:
    # The card dates a PT referral by name: the order's own text first, else whom it is addressed to, else
    # only what it is; a bare code is not a name.
    def referral(rid: str, code_text: str | None, performer_text: str | None) -> dict[str, Any]:
        res: dict[str, Any] = {"resourceType": "ServiceRequest", "id": rid, "status": "active", "intent": "order",
                               "subject": {"reference": "Patient/p1"}, "authoredOn": "2026-10-01",
                               "code": {"coding": [{"system": "http://snomed.info/sct", "code": "308447003"}]},
                               "performerType": {"coding": [{"system": "http://snomed.info/sct", "code": "36682004"}]}}
        if code_text:
            res["code"]["text"] = code_text
        if performer_text:
            res["performerType"]["text"] = performer_text
        return res
    rec = read(rules, serviceRequests=bundle(referral("named", "PT for back", "Physio"),
                                             referral("addressed", None, "Physio"), referral("bare", None, None)))
    assert {i.resource_id: i.label for i in rec.items} == {
        "named": "PT for back", "addressed": "Physio", "bare": "ServiceRequest"}


def test_resources_of_another_patient_are_skipped(rules: Rules) -> None:
    other = condition("other")
    other["subject"] = {"reference": "Patient/someone-else"}
    rec = read(rules, conditions=bundle(other))
    assert rec.items == [] and rec.skipped == ["Condition/other: belongs to another patient"]


def test_duplicates_across_prefetch_keys_count_once(rules: Rules) -> None:
    rec = read(rules, conditions=bundle(condition("c1")), extra=bundle(condition("c1")))
    assert len(rec.items) == 1


def test_draft_orders_bundle_without_type(rules: Rules) -> None:
    drafts = bundle({"resourceType": "MedicationRequest", "id": "rx-first"}, {"resourceType": "ServiceRequest"}, {
        "resourceType": "ServiceRequest", "id": "mri", "status": "draft", "intent": "plan",
        "code": {"coding": [{"system": CPT, "code": "72148"}]},
        "reasonCode": [{"coding": [{"system": ICD, "code": "M54.50"}]}],
    }, {"resourceType": "MedicationRequest", "id": "rx"})
    [order] = read_draft_orders(drafts, rules)  # entries that are not ServiceRequests with an id are passed over
    assert order.ref == "ServiceRequest/mri"
    assert order.has("lumbar-imaging") and order.reason_has("population")
    assert order.name == "Draft order" and order.code_label == f"{rules.system_name(CPT)} 72148"  # no text


def test_a_draft_orders_reason_references_in_any_shape(rules: Rules) -> None:
    # A Reference may carry only a display, and messy senders put bare strings or numbers there: only a
    # reference that is a string is kept, and any reasonReference at all is a stated reason.
    refs = [{"display": "back pain"}, "Condition/bare", {"reference": 5}, {"reference": "Condition/c1"}]
    drafts = bundle({"resourceType": "ServiceRequest", "id": "mri", "status": "draft", "intent": "order",
                     "code": {"coding": [{"system": CPT, "code": "72148"}]}, "reasonReference": refs},
                    {"resourceType": "ServiceRequest", "id": "plain", "status": "draft", "intent": "order",
                     "code": {"coding": [{"system": CPT, "code": "72148"}]}})
    [order, plain] = read_draft_orders(drafts, rules)
    assert order.reason_refs == ("Condition/c1",) and order.states_reason
    assert plain.reason_refs == () and not plain.states_reason


def test_a_region_agnostic_coding_beside_a_lumbar_one_is_judged_as_lumbar(rules: Rules) -> None:
    # "MRI of spine" needs a lumbar bodySite, but the same order also coded as a lumbar MRI is lumbar.
    both = {"coding": [{"system": "http://snomed.info/sct", "code": "241645008"}, {"system": CPT, "code": "72148"}]}
    spine_only = {"coding": [{"system": "http://snomed.info/sct", "code": "241645008"}]}
    drafts = bundle(*({"resourceType": "ServiceRequest", "id": oid, "status": "draft", "intent": "order", "code": code}
                      for oid, code in (("both", both), ("spine", spine_only))))
    [lumbar, unknown] = read_draft_orders(drafts, rules)
    assert lumbar.has("lumbar-imaging") and not lumbar.region_skipped
    assert unknown.region_skipped


def test_an_absolute_medication_reference_and_a_stated_dosing_end(rules: Rules) -> None:
    # An EHR may give the included Medication's full URL; a dosing period's stated end is the last day of use.
    naproxen = {"coding": [{"system": RXNORM, "code": "7258"}]}
    rec = read(rules, medicationRequests=bundle(
        med("absolute", medicationReference={"reference": "https://ehr.example/fhir/Medication/m9"}),
        {"resourceType": "Medication", "id": "m9", "code": naproxen},
        med("bounded", medicationCodeableConcept=naproxen,
            dosageInstruction=[{"timing": {"repeat": {"boundsPeriod": {"start": "2026-10-05",
                                                                        "end": "2026-10-19"}}}}]),
    ))
    by_id = {i.resource_id: i for i in rec.items}
    assert by_id["absolute"].categories("conservative-care") == {"nsaid"}
    assert by_id["bounded"].end is not None and by_id["bounded"].end.isoformat() == "2026-10-19"


def test_a_temperature_dated_only_by_its_issue(rules: Rules) -> None:
    reading = {"resourceType": "Observation", "id": "t-issued", "status": "final",
               "code": {"coding": [{"system": "http://loinc.org", "code": "8310-5"}]},
               "subject": {"reference": "Patient/p1"}, "issued": "2026-11-01T08:00:00Z",
               "valueQuantity": {"value": 38.6, "unit": "Cel"}}
    rec = read(rules, vitalSigns=bundle(reading))
    by_id = {i.resource_id: i for i in rec.items}
    assert by_id["t-issued"].start is not None and by_id["t-issued"].start.isoformat() == "2026-11-01"
