"""The reader's memo: the same resource objects read again with a `ReadMemo` (as the audit rebuilds one
patient's record for each order day) give exactly the record a fresh read gives, whatever the subset,
the order, the birth date or the Medications beside them. Arbitrary charts are in test_reader_property.py."""

from __future__ import annotations

from typing import Any

from cds_hooks.pathway.record import PatientRecord, ReadMemo, read_record
from cds_hooks.pathway.rules import Rules
from tests.test_reader import ICD, LOINC, SCT, SUBJECT, UNLISTED, bundle, concept, diagnosis, temperature
from tests.test_reader_medications import NAPROXEN, nsaid_request


def _read(rules: Rules, resources: list[dict[str, Any]], memo: ReadMemo | None, born: str | None = None,
          medications: tuple[dict[str, Any], ...] = (), twice: bool = False) -> PatientRecord:
    patient = [{"resourceType": "Patient", "id": "p1", "birthDate": born}] if born else []
    prefetch = {"patient": bundle(*patient), "history": bundle(*resources, *medications)}
    if twice:  # two searches returning the same resources
        prefetch["again"] = bundle(*resources)
    return read_record(prefetch, "p1", rules, memo)


def _chart() -> list[dict[str, Any]]:
    """Every kind of finding a resource can add: evidence, a checked count, a skip note, a region note,
    an invalid resource, another patient's, and resources without an id."""
    return [
        diagnosis("lbp", onsetDateTime="2026-09-01"),
        diagnosis(None, code="I10"),
        diagnosis("bad-date", recordedDate="2026-13-45"),  # not valid R4: skipped as invalid
        {**diagnosis("theirs"), "subject": {"reference": "Patient/p2"}},
        temperature("t1", {"value": 38.4, "unit": "Cel"}),
        temperature("t2", {"value": 101.1, "code": "[degF]"}),
        temperature("no-unit", {"value": 38}),
        {"resourceType": "Observation", "id": "hr", "status": "final", "subject": SUBJECT,
         "code": concept({"system": LOINC, "code": "8867-4"})},
        # Fusion status names no region; charted for the neck, it is counted as skipped for its region.
        diagnosis("neck", code="Z98.1", text="Fusion status",
                  bodySite=[concept({"system": SCT, "code": "122494005"})]),
        nsaid_request("rx", medicationCodeableConcept=NAPROXEN),
        nsaid_request("unlisted", medicationCodeableConcept=concept(UNLISTED)),
    ]


def test_every_subset_read_again_is_the_record_a_fresh_read_gives(rules: Rules) -> None:
    chart = _chart()
    memo = ReadMemo()
    subsets = [chart, chart[::-1], chart[::2], chart[1::3], [], chart]
    for resources in subsets:
        for twice in (False, True):
            assert _read(rules, resources, memo, twice=twice) == _read(rules, resources, None, twice=twice)
    full = _read(rules, chart, None)
    # The chart exercises every finding, so equality above compared each of them.
    assert full.items and full.skipped and full.region_skipped
    assert full.temperatures_checked == 2 and full.conditions_checked == 5 and full.medications_checked == 2
    assert sum(1 for note in full.skipped if "invalid" in note) == 1
    assert sum(1 for note in full.skipped if "another patient" in note) == 1


def test_the_r4_verdict_of_each_resource_read_is_kept(rules: Rules) -> None:
    chart = _chart()
    memo = ReadMemo()
    _read(rules, chart, memo)
    verdicts = {entry[0]["id"]: entry[2] for entry in memo.entries.values() if entry[0].get("id")}
    assert verdicts["lbp"] is None and verdicts["t1"] is None
    assert str(verdicts["bad-date"]).startswith("recordedDate")


def test_a_resource_read_before_is_added_as_it_was_found(rules: Rules) -> None:
    """What makes the memo worth having: the second read does not look at the resource again (so the
    audit never changes a resource between reads; `asof` makes a new one when a day changes it)."""
    chart = _chart()
    memo = ReadMemo()
    first = _read(rules, chart, memo)
    lbp = chart[0]
    lbp["code"] = concept({"system": ICD, "code": "I10"})  # no longer back pain, unseen by the memo
    assert _read(rules, chart, memo) == first
    assert _read(rules, chart, None) != first


def test_a_new_birth_date_forgets_what_was_read(rules: Rules) -> None:
    aged = diagnosis("aged", onsetAge={"value": 40, "code": "a"})
    memo = ReadMemo()
    onsets = [_read(rules, [aged], memo, born=born).items[0].onset for born in ("1980-05-01", "1985-05-01")]
    assert [d.isoformat() for d in onsets if d] == ["2020-05-01", "2025-05-01"]
    assert _read(rules, [aged], memo).items[0].onset is None  # no birth date: no onset from an age


def test_what_a_referenced_medication_decided_is_read_again_every_time(rules: Rules) -> None:
    by_ref = nsaid_request("by-ref", medicationReference={"reference": "Medication/m"})
    contained = nsaid_request("contained", medicationReference={"reference": "#m"},
                              contained=[{"resourceType": "Medication", "id": "m", "code": NAPROXEN}])
    naproxen = {"resourceType": "Medication", "id": "m", "code": NAPROXEN}
    other = {"resourceType": "Medication", "id": "m", "code": concept(UNLISTED)}
    memo = ReadMemo()
    kept = [[e.resource_id for e in _read(rules, [by_ref, contained], memo, medications=meds).items]
            for meds in ((naproxen,), (other,), (), (naproxen,))]
    assert kept == [["by-ref", "contained"], ["contained"], ["contained"], ["by-ref", "contained"]]
    # The contained Medication is the request's own: that finding is kept, the other is not.
    assert [entry[0]["id"] for entry in memo.entries.values()] == ["contained"]
