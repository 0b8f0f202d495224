"""The record reader on medications: which count, how many were checked, how they are named, and the last
day of a prescription from every element that can state it (see test_reader.py for the other types)."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import pytest

from cds_hooks.pathway.record import read_record
from cds_hooks.pathway.rules import Rules
from tests.test_reader import RXNORM, SCT, SUBJECT, UNLISTED, bundle, coded, concept, dates, iso, kept, read

# --- Medication references and supply durations -------------------------------------------------------

def nsaid_request(mid: str, **extra: Any) -> dict[str, Any]:
    return {"resourceType": "MedicationRequest", "id": mid, "status": "completed", "intent": "order",
            "subject": SUBJECT, "authoredOn": "2026-10-01", **extra}


NAPROXEN = concept({"system": RXNORM, "code": "7258"})
CODEINE = concept({"system": RXNORM, "code": "2670"})
DICLOFENAC = concept({"system": RXNORM, "code": "3355"})
TOPICAL = concept({"system": SCT, "code": "6064005"})


def test_a_medication_reference_finds_the_medication_it_names_and_no_other(rules: Rules) -> None:
    contained = [{"resourceType": "Medication", "id": "first", "code": CODEINE},
                 {"resourceType": "Medication", "id": "m1", "code": NAPROXEN}]
    rec = read_record({"history": bundle(
        nsaid_request("contained", medicationReference={"reference": "#m1"}, contained=contained),
        nsaid_request("wrong-contained", medicationReference={"reference": "#first"}, contained=contained),
        nsaid_request("relative", medicationReference={"reference": "Medication/nap"}),
        nsaid_request("versioned", medicationReference={"reference": "Medication/nap/_history/2"}),
        nsaid_request("absolute", medicationReference={"reference": "https://ehr.example/Medication/r4/Medication/nap"}),
        nsaid_request("bare-id", medicationReference={"reference": "nap"}),  # not a reference to a Medication
        nsaid_request("other-type", medicationReference={"reference": "https://ehr.example/SubstanceMedication/nap"}),
        nsaid_request("missing", medicationReference={"reference": "Medication/absent"}),
        nsaid_request("another-type", medicationReference={"reference": "Substance/nap"}),
        nsaid_request("nested", medicationReference={"reference": "Medication/absent/_history/nap"}),
        nsaid_request("no-id", medicationReference={"reference": "Medication/"}),  # names no Medication, not "None"
        # Junk among the contained resources: the request is unreadable (skipped and counted), never a crash.
        nsaid_request("junk", medicationReference={"reference": "#m1"}, contained=["junk", *contained]),
        {"resourceType": "Medication", "id": "nap", "code": NAPROXEN},
        {"resourceType": "Medication", "id": "None", "code": DICLOFENAC},
    )}, "p1", rules)
    assert {e.resource_id for e in rec.items if e.has("conservative-care", "nsaid")} == {
        "contained", "relative", "versioned", "absolute"}
    assert [reason.split(":")[0] for reason in rec.skipped] == ["MedicationRequest/junk"]


def test_a_supply_past_the_end_of_the_calendar_ends_on_its_last_day(rules: Rules) -> None:
    """A prescription may state any supply from any day up to 9999-12-31: its end is held at the calendar's
    last day instead of overflowing (which once made the service answer 500)."""
    rec = read(rules,
               nsaid_request("late", authoredOn="9999-12-20", medicationCodeableConcept=NAPROXEN,
                             dispenseRequest={"expectedSupplyDuration": {"value": 30, "code": "d"}}),
               nsaid_request("long", medicationCodeableConcept=NAPROXEN,
                             dispenseRequest={"expectedSupplyDuration": {"value": 1e12, "code": "a"}}),
               nsaid_request("bounded", authoredOn="9999-12-30", medicationCodeableConcept=NAPROXEN,
                             dosageInstruction=[{"timing": {"repeat": {"boundsDuration": {"value": 9, "code": "d"}}}}]),
               nsaid_request("endless", medicationCodeableConcept=NAPROXEN,  # 1e307 years: no float holds the days
                             dispenseRequest={"expectedSupplyDuration": {"value": 1e307, "code": "a"}}))
    assert {e.resource_id: iso(e.end) for e in rec.items} == {
        "late": "9999-12-31", "long": "9999-12-31", "bounded": "9999-12-31", "endless": "9999-12-31"}


@pytest.mark.parametrize(("duration", "days"), [
    ({"value": 10, "code": "d"}, 10), ({"value": 2, "unit": "weeks"}, 14),
    ({"value": 2, "code": "wk", "unit": "x"}, 14),
    ({"value": 1, "code": "mo"}, 30), ({"value": 1, "unit": "year"}, 365), ({"value": 1.5, "code": "wk"}, 10),
    ({"value": 3, "code": "h"}, None), ({"value": 3}, None),
])
def test_a_supply_duration_in_any_unit_becomes_days(rules: Rules, duration: Any, days: int | None) -> None:
    rec = read(rules, nsaid_request("rx", medicationCodeableConcept=NAPROXEN,
                                    dispenseRequest={"expectedSupplyDuration": duration}))
    [e] = rec.items
    assert e.supply_days == days
    # N days from the day it was written: the last day is N - 1 days later.
    assert e.end == (None if days is None else date(2026, 10, 1) + timedelta(days=days - 1))


# --- Medications: what counts, how many were checked, and for how long ---------------------------------



def statement(mid: str, status: str = "completed", **extra: Any) -> dict[str, Any]:
    return {"resourceType": "MedicationStatement", "id": mid, "status": status, "subject": SUBJECT,
            "medicationCodeableConcept": NAPROXEN, **extra}


def test_every_medication_checked_is_counted_once(rules: Rules) -> None:
    # The same request from two searches counts once; a statement sharing a request's id is another
    # resource; two medications without an id are two.
    request, twin = nsaid_request("m1", medicationCodeableConcept=NAPROXEN), statement("m1")
    anonymous = [{k: v for k, v in nsaid_request("x", medicationCodeableConcept=c).items() if k != "id"}
                 for c in (NAPROXEN, CODEINE, DICLOFENAC)]
    rec = read_record({"a": bundle(request, twin, *anonymous), "b": bundle(dict(request))}, "p1", rules)
    assert rec.medications_checked == 5


def test_a_medication_is_named_by_its_code_then_the_references_display(rules: Rules) -> None:
    rec = read_record({"history": bundle(
        nsaid_request("by-display", medicationReference={"reference": "Medication/nap", "display": "Naproxen 500"}),
        nsaid_request("bare", medicationReference={"reference": "Medication/nap"}),
        nsaid_request("by-code", medicationCodeableConcept=concept(UNLISTED, {"system": RXNORM, "code": "7258"},
                                                                   text="Naprosyn")),
        {"resourceType": "Medication", "id": "nap", "code": NAPROXEN},
        {"resourceType": "Medication", "id": "None", "code": DICLOFENAC},
    )}, "p1", rules)
    assert {rid: e.label for rid, e in kept(rec).items()} == {
        "by-display": "Naproxen 500", "bare": "Medication", "by-code": "Naprosyn"}
    assert {e.code_label for e in rec.items} == {coded(rules, RXNORM, "7258")}  # the code that matched


def test_a_request_naming_its_drug_twice_is_unreadable(rules: Rules) -> None:
    # medication[x] is a choice: a code and a reference together are skipped and counted, whatever they say.
    both = nsaid_request("both", medicationCodeableConcept=NAPROXEN, medicationReference={"reference": "#x"})
    rec = read(rules, both)
    assert rec.items == [] and [r.split(":")[0] for r in rec.skipped] == ["MedicationRequest/both"]


def test_a_statement_is_taken_from_its_effective_time_and_ongoing_when_still_taken(rules: Rules) -> None:
    rec = read(rules,
               statement("done", effectiveDateTime="2026-10-01"),
               statement("taking", status="active", effectiveDateTime="2026-10-01"),
               statement("course", effectivePeriod={"start": "2026-09-01", "end": "2026-09-20"}),
               statement("planned", status="active", effectivePeriod={"start": "2026-09-01", "end": "2026-12-20"}),
               statement("asserted", status="active", dateAsserted="2026-10-10"))
    found = kept(rec)
    assert {rid: dates(e) for rid, e in found.items()} == {
        "done": ("2026-10-01", "2026-10-01"), "taking": ("2026-10-01", None),
        "course": ("2026-09-01", "2026-09-20"), "planned": ("2026-09-01", "2026-12-20"),
        "asserted": ("2026-10-10", None)}
    assert found["taking"].end is None and found["asserted"].end is None  # no end at all, not an empty one
    assert {e.supply_days for e in found.values()} == {None}
    assert {rid: e.status for rid, e in found.items()} == {
        "done": "completed", "taking": "active", "course": "completed", "planned": "active", "asserted": "active"}


def test_a_topical_route_in_either_dosage_element_is_not_systemic(rules: Rules) -> None:
    rec = read(rules,
               nsaid_request("gel", medicationCodeableConcept=DICLOFENAC, dosageInstruction=[{"route": TOPICAL}]),
               statement("patch", medicationCodeableConcept=DICLOFENAC,
                         dosage=[{"text": "1 patch"}, {"route": TOPICAL}]),
               statement("oral", medicationCodeableConcept=DICLOFENAC, dosage=[{"route": concept(
                   {"system": SCT, "code": "26643006"})}]))
    assert [e.resource_id for e in rec.items] == ["oral"]


@pytest.mark.parametrize("dosage", [{"route": TOPICAL}, ["take one daily"]])
def test_a_dosage_of_the_wrong_shape_is_unreadable_never_a_crash(rules: Rules, dosage: Any) -> None:
    rec = read(rules, nsaid_request("rx", medicationCodeableConcept=NAPROXEN, dosageInstruction=dosage),
               statement("st", dosage=dosage))
    assert rec.items == [] and len(rec.skipped) == 2


def test_a_prescriptions_last_day_from_bounds_supply_refills_or_validity(rules: Rules) -> None:
    def rx(rid: str, **extra: Any) -> dict[str, Any]:
        return nsaid_request(rid, medicationCodeableConcept=NAPROXEN, **extra)
    month = {"value": 30, "code": "d"}
    rec = read(rules,
               rx("bounded", dosageInstruction=[{"text": "bid"}, {"timing": {"repeat": {
                   "boundsDuration": {"value": 14, "code": "d"}}}}]),
               rx("supply", dispenseRequest={"expectedSupplyDuration": month}),
               rx("no-refill", dispenseRequest={"expectedSupplyDuration": month, "numberOfRepeatsAllowed": 0}),
               rx("one-refill", dispenseRequest={"expectedSupplyDuration": month, "numberOfRepeatsAllowed": 1}),
               rx("valid", dispenseRequest={"validityPeriod": {"start": "2026-10-01", "end": "2026-12-31"}}),
               rx("open"),
               {k: v for k, v in rx("undated", dispenseRequest={"expectedSupplyDuration": month}).items()
                if k != "authoredOn"})
    found = kept(rec)
    assert {rid: (iso(e.end), e.supply_days) for rid, e in found.items()} == {
        "bounded": ("2026-10-14", 14), "supply": ("2026-10-30", 30), "no-refill": ("2026-10-30", 30),
        "one-refill": ("2026-11-29", 60), "valid": ("2026-12-31", None), "open": (None, None),
        "undated": (None, 30)}
