"""The record reader, one resource type at a time: which resources it keeps, and what each keeps of them.

A card states a resource's name, code, dates and status, and the pathway counts by them, so each is
checked here from the resource's own data: the name from the resource's text (with its fallbacks), the
code that matched (not merely the first one), the dates from every element FHIR allows for them, and
the statuses the rules count. Messier charts are in test_record.py and test_bad_input.py.
"""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from cds_hooks.pathway.facts import Evidence
from cds_hooks.pathway.record import read_record
from cds_hooks.pathway.rules import Rules

ICD = "http://hl7.org/fhir/sid/icd-10-cm"
CPT = "http://www.ama-assn.org/go/cpt"
SCT = "http://snomed.info/sct"
LOINC = "http://loinc.org"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
SERVICE_TYPE = "http://terminology.hl7.org/CodeSystem/service-type"
UNLISTED = {"system": "http://example.org/local-codes", "code": "LOCAL-1"}  # matches no value set
SUBJECT = {"reference": "Patient/p1"}


def bundle(*resources: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": r} for r in resources]}


def read(rules: Rules, *resources: dict[str, Any], born: str | None = None) -> Any:
    people = [{"resourceType": "Patient", "id": "p1", "birthDate": born}] if born else []
    return read_record({"patient": bundle(*people), "history": bundle(*resources)}, "p1", rules)


def iso(day: date | None) -> str | None:
    return day.isoformat() if day else None


def kept(rec: Any) -> dict[str, Evidence]:
    return {e.resource_id: e for e in rec.items}


def dates(e: Evidence) -> tuple[str | None, str | None]:
    return iso(e.start), iso(e.end)


def coded(rules: Rules, system: str, code: str) -> str:
    """How a card names a code (the system's short name comes from rules/code_systems.yaml)."""
    return f"{rules.system_name(system)} {code}"


def concept(*codings: dict[str, Any], text: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"coding": list(codings)}
    if text:
        out["text"] = text
    return out


# --- DiagnosticReport ---------------------------------------------------------------------------------

def report(rid: str, status: str = "final", text: str | None = "MRI L-spine report", **extra: Any) -> dict[str, Any]:
    # A local code first: the card must name the code that matched, not whichever came first.
    return {"resourceType": "DiagnosticReport", "id": rid, "status": status, "subject": SUBJECT,
            "code": concept(UNLISTED, {"system": LOINC, "code": "30679-5"}, text=text), **extra}


def test_a_report_is_dated_by_its_effective_time_then_its_issue(rules: Rules) -> None:
    rec = read(rules,
               report("instant", effectiveDateTime="2026-09-01", issued="2026-09-03T10:00:00Z"),
               report("period", effectivePeriod={"start": "2026-09-01", "end": "2026-09-02"},
                      issued="2026-09-05T08:00:00Z"),
               report("issued", issued="2026-09-03T10:00:00Z"),
               report("unnamed", text=None, effectiveDateTime="2026-09-01"))
    found = kept(rec)
    assert {rid: dates(e) for rid, e in found.items()} == {
        "instant": ("2026-09-01", "2026-09-01"), "period": ("2026-09-01", "2026-09-02"),
        "issued": ("2026-09-03", None), "unnamed": ("2026-09-01", "2026-09-01")}
    assert {rid: e.label for rid, e in found.items()} == {
        "instant": "MRI L-spine report", "period": "MRI L-spine report", "issued": "MRI L-spine report",
        "unnamed": "Report"}
    assert {e.code_label for e in found.values()} == {coded(rules, LOINC, "30679-5")}
    assert {e.status for e in found.values()} == {"final"}
    assert {e.ref for e in found.values()} == {f"DiagnosticReport/{rid}" for rid in found}
    assert all(e.has("lumbar-imaging") for e in found.values())


@pytest.mark.parametrize(("status", "read_it"), [
    ("final", True), ("amended", True), ("preliminary", True), ("partial", True),
    ("registered", False), ("cancelled", False), ("entered-in-error", False),
])
def test_a_report_counts_unless_cancelled_in_error_or_only_registered(rules: Rules, status: str, read_it: bool) -> None:
    rec = read(rules, report("r", status=status, effectiveDateTime="2026-09-01"))
    assert [e.status for e in rec.items] == ([status] if read_it else [])


def test_a_report_of_another_study_is_not_read(rules: Rules) -> None:
    chest = {"resourceType": "DiagnosticReport", "id": "chest", "status": "final", "subject": SUBJECT,
             "code": concept({"system": LOINC, "code": "36643-5"}), "effectiveDateTime": "2026-09-01"}
    assert read(rules, chest).items == []


# --- ImagingStudy -------------------------------------------------------------------------------------

def study(sid: str, status: str = "available", text: str | None = "MR L-spine", **extra: Any) -> dict[str, Any]:
    return {"resourceType": "ImagingStudy", "id": sid, "status": status, "subject": SUBJECT, "started": "2026-08-20",
            "procedureCode": [concept(UNLISTED, {"system": CPT, "code": "72148"}, text=text)], **extra}


def test_a_study_is_named_by_its_procedure_then_its_description(rules: Rules) -> None:
    found = kept(read(rules, study("named", description="Lumbar MRI"), study("described", text=None,
                                                                          description="Lumbar MRI"),
                      study("bare", text=None)))
    assert {rid: e.label for rid, e in found.items()} == {
        "named": "MR L-spine", "described": "Lumbar MRI", "bare": "Imaging study"}
    assert {rid: dates(e) for rid, e in found.items()} == dict.fromkeys(found, ("2026-08-20", None))
    assert {e.code_label for e in found.values()} == {coded(rules, CPT, "72148")}
    assert {e.status for e in found.values()} == {"available"}


def test_a_description_that_is_not_text_names_nothing(rules: Rules) -> None:
    # description is not an element the rules validate, so junk there must not become the study's name.
    [e] = read(rules, study("s", text=None, description={"text": "MRI"})).items
    assert e.label == "Imaging study"


@pytest.mark.parametrize(("status", "read_it"), [
    ("available", True), ("inactive", True), ("registered", False), ("cancelled", False),
    ("entered-in-error", False),
])
def test_a_study_counts_once_it_was_done(rules: Rules, status: str, read_it: bool) -> None:
    assert [e.status for e in read(rules, study("s", status=status)).items] == ([status] if read_it else [])


def test_a_series_body_site_of_another_region_does_not_unplace_a_lumbar_code(rules: Rules) -> None:
    # 72148 is lumbar by itself; a series of something else (a scout image) changes nothing.
    neck = [{"uid": "1.2.3", "modality": {"code": "MR"}, "bodySite": {"system": SCT, "code": "122494005"}}]
    assert [e.resource_id for e in read(rules, study("s", series=neck)).items] == ["s"]


# --- ServiceRequest (history: a PT referral) ----------------------------------------------------------

def referral(rid: str, status: str = "active", **extra: Any) -> dict[str, Any]:
    return {"resourceType": "ServiceRequest", "id": rid, "status": status, "intent": "order", "subject": SUBJECT,
            "code": concept(UNLISTED, {"system": SCT, "code": "308447003"}, text="PT referral"), **extra}


def test_a_referral_is_dated_when_written_else_when_due(rules: Rules) -> None:
    found = kept(read(rules,
                      referral("authored", authoredOn="2026-10-01", occurrenceDateTime="2026-10-08"),
                      referral("due", occurrenceDateTime="2026-10-08"),
                      referral("window", occurrencePeriod={"start": "2026-10-08", "end": "2026-11-19"}),
                      referral("windowed", authoredOn="2026-10-01",
                               occurrencePeriod={"start": "2026-10-08", "end": "2026-11-19"})))
    assert {rid: dates(e) for rid, e in found.items()} == {
        "authored": ("2026-10-01", "2026-10-08"), "due": ("2026-10-08", "2026-10-08"),
        "window": ("2026-10-08", "2026-11-19"), "windowed": ("2026-10-01", "2026-11-19")}
    assert {e.code_label for e in found.values()} == {coded(rules, SCT, "308447003")}
    assert {e.status for e in found.values()} == {"active"}
    assert all(e.has("conservative-care", "formal-pt") for e in found.values())


@pytest.mark.parametrize(("status", "read_it"), [
    ("active", True), ("completed", True), ("draft", False), ("revoked", False), ("on-hold", False),
    ("entered-in-error", False),
])
def test_a_referral_counts_when_active_or_completed(rules: Rules, status: str, read_it: bool) -> None:
    rec = read(rules, referral("r", status=status, authoredOn="2026-10-01"))
    assert [e.status for e in rec.items] == ([status] if read_it else [])


def test_a_referral_addressed_only_by_performer_type(rules: Rules) -> None:
    to_physio = {"resourceType": "ServiceRequest", "id": "r", "status": "completed", "intent": "order",
                 "subject": SUBJECT, "authoredOn": "2026-10-01", "code": concept(UNLISTED, text="Referral"),
                 "performerType": concept({"system": "http://nucc.org/provider-taxonomy", "code": "225100000X"})}
    [e] = read(rules, to_physio).items
    assert e.has("conservative-care", "formal-pt") and e.label == "Referral"
    assert e.code_label == coded(rules, "http://nucc.org/provider-taxonomy", "225100000X")


# --- Encounter ----------------------------------------------------------------------------------------

def visit(eid: str, status: str = "finished", **extra: Any) -> dict[str, Any]:
    return {"resourceType": "Encounter", "id": eid, "status": status, "subject": SUBJECT,
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
            "period": {"start": "2026-10-01T09:00:00Z", "end": "2026-10-01T10:00:00Z"}, **extra}


PHYSIO = {"system": SERVICE_TYPE, "code": "65"}


def test_a_pt_visit_by_its_type_service_type_or_class(rules: Rules) -> None:
    by_type = visit("type", type=[concept(UNLISTED, {"system": CPT, "code": "97110"}, text="PT session")])
    by_service = visit("service", type=[concept(UNLISTED, text="Clinic visit")], serviceType=concept(PHYSIO))
    by_class = visit("class", **{"class": PHYSIO})  # a sender that puts the service type in class
    found = kept(read(rules, by_type, by_service, by_class))
    assert all(e.has("conservative-care", "formal-pt") for e in found.values()) and set(found) == {
        "type", "service", "class"}
    assert {rid: e.label for rid, e in found.items()} == {
        "type": "PT session", "service": "Clinic visit", "class": "Encounter"}
    assert {rid: e.code_label for rid, e in found.items()} == {
        "type": coded(rules, CPT, "97110"), "service": coded(rules, SERVICE_TYPE, "65"),
        "class": coded(rules, SERVICE_TYPE, "65")}
    assert {rid: dates(e) for rid, e in found.items()} == dict.fromkeys(found, ("2026-10-01", "2026-10-01"))
    assert {e.status for e in found.values()} == {"finished"}


def test_a_coded_type_after_a_text_only_one_is_read(rules: Rules) -> None:
    # A list of CodeableConcepts: one with only text does not end the reading of the rest.
    [e] = read(rules, visit("v", type=[{"text": "Follow-up"}, concept({"system": CPT, "code": "97110"})])).items
    assert e.has("conservative-care", "formal-pt") and e.label == "Follow-up"


def test_a_visit_is_named_by_its_type_then_its_service_type(rules: Rules) -> None:
    named = visit("named", serviceType=concept(PHYSIO, text="Physiotherapy"))
    found = kept(read(rules, named, visit("typed", type=[{"text": "Physio follow-up"}],
                                          serviceType=concept(PHYSIO, text="Physiotherapy"))))
    assert {rid: e.label for rid, e in found.items()} == {"named": "Physiotherapy", "typed": "Physio follow-up"}


def test_a_back_pain_visit_is_kept_by_its_reason_and_named_by_its_own_code(rules: Rules) -> None:
    back = visit("back", type=[concept({"system": CPT, "code": "99213"}, text="Office visit")],
                 period={"start": "2026-09-01", "end": "2026-09-03"},
                 reasonCode=[concept({"system": ICD, "code": "M54.50"}), concept({"system": ICD, "code": "I10"})])
    knee = visit("knee", reasonCode=[concept({"system": ICD, "code": "M17.11"})])
    untyped = visit("untyped", reasonCode=[concept({"system": ICD, "code": "M54.50"})])
    e, bare = read(rules, back, knee, untyped).items
    assert bare.resource_id == "untyped" and bare.code_label == "uncoded"  # nothing to name it by
    assert e.resource_id == "back" and e.matches == ()
    assert {m.valueset.kind for m in e.reasons} == {"population"}  # the back pain, not the hypertension
    assert e.label == "Office visit" and e.code_label == coded(rules, CPT, "99213")
    assert dates(e) == ("2026-09-01", "2026-09-03")


@pytest.mark.parametrize(("status", "read_it"), [
    ("finished", True), ("in-progress", True), ("planned", False), ("arrived", False), ("cancelled", False),
    ("entered-in-error", False),
])
def test_a_visit_counts_when_finished_or_under_way(rules: Rules, status: str, read_it: bool) -> None:
    rec = read(rules, visit("v", status=status, serviceType=concept(PHYSIO)),
               visit("b", status=status, reasonCode=[concept({"system": ICD, "code": "M54.50"})]))
    assert [e.status for e in rec.items] == ([status, status] if read_it else [])


# --- Observation (body temperature) -------------------------------------------------------------------

def temperature(oid: str, value: Any, status: str = "final", text: str | None = "Temp", **extra: Any) -> dict[str, Any]:
    res = {"resourceType": "Observation", "id": oid, "status": status, "subject": SUBJECT,
           "code": concept({"system": LOINC, "code": "8310-5"}, text=text), "effectiveDateTime": "2026-11-01"}
    if value is not None:
        res["valueQuantity"] = value
    return {**res, **extra}


def test_a_temperature_in_either_scale_is_kept_in_celsius_to_a_tenth(rules: Rules) -> None:
    rec = read(rules,
               temperature("cel", {"value": 38.04, "code": "Cel"}),
               temperature("ucum-f", {"value": 100.4, "system": "http://unitsofmeasure.org", "code": "[degF]"}),
               temperature("unit-only", {"value": 101.3, "unit": "°F"}),
               temperature("unit-c", {"value": 38.25, "unit": "degC"}),
               temperature("int", {"value": 39, "code": "Cel"}))
    assert {rid: e.value for rid, e in kept(rec).items()} == {
        "cel": 38.0, "ucum-f": 38.0, "unit-only": 38.5, "unit-c": 38.2, "int": 39.0}
    assert rec.temperatures_checked == 5 and rec.skipped == []


@pytest.mark.parametrize("quantity", [
    {"value": 38.5, "code": "mm[Hg]"}, {"value": 38.5}, {"value": "38.5", "code": "Cel"}, {"code": "Cel"},
    None, "38.5 C", [38.5],
])
def test_a_temperature_without_a_number_in_a_known_unit_is_skipped_and_counted(
        rules: Rules, quantity: Any) -> None:
    rec = read(rules, temperature("t", quantity))
    assert rec.items == [] and rec.temperatures_checked == 0
    assert len(rec.skipped) == 1 and rec.skipped[0].startswith("Observation/t: Temp ")


def test_a_temperature_is_dated_by_effective_time_period_instant_then_issue(rules: Rules) -> None:
    value = {"value": 38.6, "code": "Cel"}
    rec = read(rules,
               temperature("instant", value),
               temperature("period", value, effectiveDateTime=None,
                           effectivePeriod={"start": "2026-10-30T22:00:00Z", "end": "2026-11-02"}),
               temperature("stamp", value, effectiveDateTime=None, effectiveInstant="2026-10-29T08:00:00Z"),
               temperature("issued", value, effectiveDateTime=None, issued="2026-10-28T08:00:00Z"),
               temperature("unnamed", value, text=None))
    found = kept(rec)
    assert {rid: dates(e) for rid, e in found.items()} == {
        "instant": ("2026-11-01", "2026-11-01"), "period": ("2026-10-30", "2026-10-30"),
        "stamp": ("2026-10-29", "2026-10-29"), "issued": ("2026-10-28", "2026-10-28"),
        "unnamed": ("2026-11-01", "2026-11-01")}
    assert found["unnamed"].label == "Observation" and found["instant"].label == "Temp"
    assert {e.code_label for e in found.values()} == {coded(rules, LOINC, "8310-5")}
    assert {e.status for e in found.values()} == {"final"}


@pytest.mark.parametrize(("status", "read_it"), [
    ("final", True), ("amended", True), ("corrected", True), ("preliminary", True),
    ("registered", False), ("cancelled", False), ("entered-in-error", False),
])
def test_a_temperature_counts_once_measured(rules: Rules, status: str, read_it: bool) -> None:
    rec = read(rules, temperature("t", {"value": 38.6, "code": "Cel"}, status=status))
    assert [e.status for e in rec.items] == ([status] if read_it else [])
    assert rec.temperatures_checked == (1 if read_it else 0)


def test_only_temperatures_read_are_counted_as_checked(rules: Rules) -> None:
    # The card says how many temperatures were looked at: each once, and only this patient's valid ones.
    reading = temperature("t1", {"value": 38.6, "code": "Cel"})
    other = {**temperature("t2", {"value": 38.6, "code": "Cel"}), "subject": {"reference": "Patient/p2"}}
    broken = temperature("t3", {"value": 38.6, "code": "Cel"}, effectiveDateTime="yesterday")
    rec = read_record({"vitals": bundle(reading, other, broken), "again": bundle(dict(reading))}, "p1", rules)
    assert [e.resource_id for e in rec.items] == ["t1"] and rec.temperatures_checked == 1
    assert sorted(r.split(":")[0] for r in rec.skipped) == ["Observation/t2", "Observation/t3"]


def test_an_observation_of_another_code_is_not_read(rules: Rules) -> None:
    pulse = {"resourceType": "Observation", "id": "hr", "status": "final", "subject": SUBJECT,
             "code": concept({"system": LOINC, "code": "8867-4"}), "valueQuantity": {"value": 120, "code": "/min"}}
    rec = read(rules, pulse)
    assert rec.items == [] and rec.skipped == [] and rec.temperatures_checked == 0



# --- Procedure ----------------------------------------------------------------------------------------

def operation(pid: str, *codings: dict[str, Any], text: str | None = None, **extra: Any) -> dict[str, Any]:
    return {"resourceType": "Procedure", "id": pid, "status": "completed", "subject": SUBJECT,
            "performedDateTime": "2024-03-01", "code": concept(*codings, text=text), **extra}


LAMINOTOMY = {"system": CPT, "code": "63030"}  # lumbar by its code
ADD_ON = {"system": CPT, "code": "63048"}  # names no region


def test_a_procedure_is_named_by_its_text_and_the_code_that_matched(rules: Rules) -> None:
    found = kept(read(rules, operation("named", UNLISTED, LAMINOTOMY, text="L4-5 laminotomy"),
                      operation("bare", UNLISTED, LAMINOTOMY)))
    assert {rid: e.label for rid, e in found.items()} == {"named": "L4-5 laminotomy", "bare": "Procedure"}
    assert {e.code_label for e in found.values()} == {coded(rules, CPT, "63030")}


def test_a_regionless_code_beside_a_lumbar_one_is_not_counted_as_skipped(rules: Rules) -> None:
    # The operation is lumbar by its other code: nothing was left out for want of a body site.
    rec = read(rules, operation("both", LAMINOTOMY, ADD_ON), operation("add-on", ADD_ON))
    assert [e.resource_id for e in rec.items] == ["both"]
    assert [r.split()[0] for r in rec.region_skipped] == ["Procedure/add-on"]


def test_two_identical_resources_without_an_id_are_both_read(rules: Rules) -> None:
    # Nothing says they are one resource (an id would): neither is dropped as a repeat of the other.
    session = {k: v for k, v in operation("x", LAMINOTOMY).items() if k != "id"}
    rec = read_record({"a": bundle(session), "b": bundle(dict(session))}, "p1", rules)
    assert len(rec.items) == 2


def test_two_different_resources_under_one_id_are_both_read(rules: Rules) -> None:
    # An EHR defect: a red flag is not lost to a diagnosis that happened to come first under its id (the
    # same resource sent by two searches is still read once: test_every_condition_checked_is_counted_once).
    back_pain, cancer = diagnosis("c1"), diagnosis("c1", code="C18.9", text="Colon cancer")
    rec = read_record({"a": bundle(back_pain), "b": bundle(cancer)}, "p1", rules)
    assert [e.label for e in rec.items] == ["Low back pain", "Colon cancer"]
    assert rec.items[1].categories("red-flag") == {"cancer"}


def test_a_subject_by_version_or_by_identifier_alone_is_this_patients(rules: Rules) -> None:
    # The prefetch searched for this patient: a versioned reference names them, and a Reference with only an
    # identifier or a display does not name anyone else.
    rec = read(rules, diagnosis("versioned", subject={"reference": "Patient/p1/_history/3"}),
               diagnosis("identified", subject={"identifier": {"system": "urn:mrn", "value": "123"}}),
               diagnosis("displayed", subject={"display": "the patient"}),
               diagnosis("other-version", subject={"reference": "Patient/p2/_history/3"}),
               diagnosis("absolute", subject={"reference": "https://ehr.example/fhir/Patient/p1"}),
               diagnosis("other-absolute", subject={"reference": "https://ehr.example/fhir/Patient/p2"}))
    assert sorted(e.resource_id for e in rec.items) == ["absolute", "displayed", "identified", "versioned"]
    assert sorted(rec.skipped) == ["Condition/other-absolute: belongs to another patient",
                                   "Condition/other-version: belongs to another patient"]


def test_a_resource_type_that_is_not_text_is_ignored(rules: Rules) -> None:
    odd = [{"resourceType": ["Condition"], "id": "a"}, {"resourceType": {"x": 1}, "id": "b"}, {"resourceType": 5}]
    rec = read(rules, *odd, diagnosis("c1"))
    assert [e.resource_id for e in rec.items] == ["c1"] and rec.skipped == []


def test_a_resource_naming_another_patient_in_the_dstu2_patient_element_is_skipped_as_theirs(rules: Rules) -> None:
    old_style = {k: v for k, v in diagnosis("c1", onsetDateTime="2026-09-01").items() if k != "subject"}
    rec = read(rules, {**old_style, "patient": {"reference": "Patient/p2"}})
    assert rec.items == [] and rec.skipped == ["Condition/c1: belongs to another patient"]


def test_a_body_site_coded_with_something_other_than_a_body_site_places_nothing(rules: Rules) -> None:
    # A sender that puts a procedure code in bodySite: the regionless add-on is not made lumbar by it.
    rec = read(rules, operation("odd-site", ADD_ON, bodySite=[concept(LAMINOTOMY)]),
               operation("lumbar", ADD_ON, bodySite=[concept({"system": SCT, "code": "122496007"})]))
    assert [e.resource_id for e in rec.items] == ["lumbar"]


def test_a_diagnosis_placed_in_another_region_is_counted_with_its_name(rules: Rules) -> None:
    # Fusion status (Z98.1) names no region; charted for the neck, it is left out and listed by name.
    neck = concept({"system": SCT, "code": "122494005"})
    rec = read(rules, diagnosis("neck", code="Z98.1", text="Fusion status", bodySite=[neck]))
    assert rec.items == [] and rec.region_skipped == ["Condition/neck Fusion status"]


# --- Evidence: the order cards list it in, and its categories --------------------------------------------

def test_evidence_is_ordered_by_date_then_name_with_undated_items_first(rules: Rules) -> None:
    rec = read(rules, operation("b-late", LAMINOTOMY, text="A", performedDateTime="2025-01-01"),
               operation("0-early", LAMINOTOMY, text="Z", performedDateTime="2024-01-01"),
               operation("undated", LAMINOTOMY, text="M", performedDateTime=None),
               operation("same-day", LAMINOTOMY, text="B", performedDateTime="2024-01-01"))
    anonymous = Evidence("Procedure", None, (), "Z", "uncoded", date(2024, 1, 1), None)
    ordered = sorted([*rec.items, anonymous], key=Evidence.chrono)
    # Ties go to the name, then the resource: one without an id first (its id sorts as empty).
    assert [e.resource_id for e in ordered] == ["undated", "same-day", None, "0-early", "b-late"]


def test_categories_are_those_of_the_kind_asked_for(rules: Rules) -> None:
    # One Encounter that is a PT visit (conservative care) for back pain (its reason, another kind).
    [e] = read(rules, visit("v", serviceType=concept(PHYSIO),
                            reasonCode=[concept({"system": ICD, "code": "M54.50"})])).items
    extra = rules.index.lookup(ICD, "M54.50")
    both = Evidence("Encounter", "v", (*e.matches, *extra), "x", "x", None, None)
    assert both.categories("conservative-care") == {"formal-pt"}
    assert both.categories("population") == {m.valueset.category for m in extra if m.valueset.category}


# --- Condition ----------------------------------------------------------------------------------------

CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
VERIFICATION = "http://terminology.hl7.org/CodeSystem/condition-ver-status"


def diagnosis(cid: str | None, code: str = "M54.50", text: str | None = "Low back pain", clinical: str = "active",
              **extra: Any) -> dict[str, Any]:
    res = {"resourceType": "Condition", "id": cid, "subject": SUBJECT,
           "clinicalStatus": concept({"system": CLINICAL, "code": clinical}),
           "code": concept(UNLISTED, {"system": ICD, "code": code}, text=text), **extra}
    return {k: v for k, v in res.items() if v is not None}


def test_every_condition_checked_is_counted_once(rules: Rules) -> None:
    # Counted whatever it is (the card says how many were looked at): each id once, each id-less one.
    refuted = diagnosis("refuted", verificationStatus=concept({"system": VERIFICATION, "code": "refuted"}))
    rec = read_record({"a": bundle(diagnosis("c1"), diagnosis("c2", code="I10"), diagnosis(None),
                                   diagnosis(None, code="E11.9"), diagnosis(None, code="J45.909"), refuted),
                       "b": bundle(diagnosis("c1"))}, "p1", rules)
    assert rec.conditions_checked == 6 and [e.resource_id for e in rec.items] == ["c1", None]


def test_a_condition_is_named_by_its_text_and_the_code_that_matched(rules: Rules) -> None:
    found = kept(read(rules, diagnosis("named", onsetDateTime="2026-09-01"),
                      diagnosis("bare", text=None, onsetDateTime="2026-09-01")))
    assert {rid: e.label for rid, e in found.items()} == {"named": "Low back pain", "bare": "Condition"}
    assert {e.code_label for e in found.values()} == {coded(rules, ICD, "M54.50")}
    assert {e.status for e in found.values()} == {"active"}


def test_a_condition_abated_by_a_date_or_a_period(rules: Rules) -> None:
    found = kept(read(rules,
                      diagnosis("date", clinical="resolved", onsetDateTime="2026-01-05",
                                abatementDateTime="2026-03-01T12:00:00Z"),
                      diagnosis("period", clinical="resolved", onsetDateTime="2026-01-05",
                                abatementPeriod={"start": "2026-02-01", "end": "2026-03-15"}),
                      diagnosis("begun", clinical="resolved", onsetDateTime="2026-01-05",
                                abatementPeriod={"start": "2026-02-01"}),
                      diagnosis("open", onsetDateTime="2026-01-05")))
    assert {rid: (iso(e.abated), iso(e.end)) for rid, e in found.items()} == {
        "date": ("2026-03-01", "2026-03-01"), "period": ("2026-03-15", "2026-03-15"),
        "begun": ("2026-02-01", "2026-02-01"), "open": (None, None)}
    assert {rid: e.active for rid, e in found.items()} == {"date": False, "period": False, "begun": False,
                                                             "open": True}


# --- Condition onset ----------------------------------------------------------------------------------

def test_an_onset_age_is_counted_from_the_birth_date_even_on_29_february(rules: Rules) -> None:
    def at_age(cid: str, years: Any, unit: str = "a") -> dict[str, Any]:
        return {"resourceType": "Condition", "id": cid, "subject": SUBJECT,
                "clinicalStatus": concept({"system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                                           "code": "active"}),
                "code": concept({"system": ICD, "code": "M54.50"}), "onsetAge": {"value": years, "code": unit}}
    by_unit = at_age("unit", 40)
    by_unit["onsetAge"] = {"value": 40, "unit": "years"}  # no UCUM code, only the unit as written
    rec = read(rules, at_age("leap", 41), at_age("yr", 42, "yr"), at_age("months", 40, "mo"), by_unit,
               born="1984-02-29")
    assert {rid: iso(e.onset) for rid, e in kept(rec).items()} == {
        "leap": "2025-02-28", "yr": "2026-02-28", "months": None, "unit": "2024-02-29"}
    on_a_leap_day = read(rules, at_age("leap", 40), born="1984-02-29")
    assert iso(on_a_leap_day.items[0].onset) == "2024-02-29"
    # An age that would fall outside the calendar (FHIR years run from 1 to 9999) gives no onset.
    past_the_end = read(rules, at_age("late", 40), at_age("huge", 1e300), born="9999-01-01")
    assert {rid: e.onset for rid, e in kept(past_the_end).items()} == {"late": None, "huge": None}
    assert [e.onset for e in read(rules, at_age("before", -1), born="0001-06-01").items] == [None]
    assert iso(read(rules, at_age("first", -1), born="0002-03-01").items[0].onset) == "0001-03-01"
    assert iso(read(rules, at_age("last", 9998), born="0001-03-01").items[0].onset) == "9999-03-01"
