"""Property tests: arbitrary FHIR-like JSON never makes the reader or the service raise.

The strategies build resources of the types the reader handles with the elements it
reads, filled either with plausible values (codes from the rules' value sets, so the
deep path through validation and the pathway is taken; real and impossible dates;
periods; references) or with any JSON value at all. Bundles get junk entries.

`read_record` and `read_draft_orders` must never raise; `evaluate_hook` may only
raise ServiceError with a 4xx status, and what it returns must serialise as a
conformant CDS Hooks response.
"""

from __future__ import annotations

import copy
from datetime import date
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cds_hooks.fhir.bundles import bundle_resources
from cds_hooks.pathway.record import READ_ELEMENTS, PatientRecord, ReadMemo, read_draft_orders, read_record
from cds_hooks.pathway.rules import Rules, load_rules
from cds_hooks.protocol.errors import ServiceError
from cds_hooks.protocol.wire import CardsResponse
from cds_hooks.sandbox.fixtures import fixtures_dir, load_fixture
from cds_hooks.service.hook import evaluate_hook

REPO = Path(__file__).resolve().parent.parent
RULES: Rules = load_rules(REPO / "rules")
TODAY = date(2026, 11, 21)
PATIENT = "p1"
BOUNDED = settings(max_examples=200, deadline=None, database=None, derandomize=True,
                   suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# ---- plain JSON ---------------------------------------------------------------------------

scalars = (st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1)
           | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=12))
json_values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=10,
)

# ---- FHIR-shaped values, each sometimes replaced by any JSON ------------------------------


def either(plausible: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return plausible | plausible | json_values  # mostly plausible, sometimes junk of any type


CODES = sorted({(c.system, c.code) for vs in RULES.valuesets.values() for c in vs.codes})
statuses = RULES.pathway.record_statuses
STATUS_WORDS = sorted({*statuses.condition_clinical_excluded, *statuses.condition_verification_excluded,
                       *statuses.procedure_counted, *statuses.encounter_counted, *statuses.medication_excluded,
                       *statuses.service_request_counted, *statuses.imaging_excluded,
                       "active", "confirmed", "completed", "draft", "order", "finished", "unknown"})
DATES = ["2026-10-01", "2026-13-45", "2026-02-30", "2026", "2026-10", "2026-10-01T10:00:00",
         "2026-10-01T10:00:00Z", "2026-10-01T10:00:00+05:00", "0000-01-01", "99999-01-01", "", "yesterday"]

# Indices keep the strategy's repr short (hypothesis warns about a 50 kB repr of all codes).
coding = either(st.builds(lambda i, display: {"system": CODES[i][0], "code": CODES[i][1], **display},
                          st.integers(0, len(CODES) - 1), st.sampled_from([{}, {"display": "x"}, {"display": 7}])))
concept = either(st.fixed_dictionaries({"coding": st.lists(coding, max_size=3)},
                                       optional={"text": either(st.text(max_size=30))}))
concepts = either(st.lists(concept, max_size=2))
when = either(st.sampled_from(DATES) | st.dates().map(date.isoformat))
period = either(st.fixed_dictionaries({}, optional={"start": when, "end": when}))
status_word = either(st.sampled_from(STATUS_WORDS))
status_concept = either(st.builds(lambda code: {"coding": [{"code": code}]}, status_word))
reference = either(st.builds(lambda r: {"reference": r}, either(st.sampled_from(
    [f"Patient/{PATIENT}", "Patient/other", "#med", "Medication/med", "Medication/none", "Patient/"]))))
age = either(st.fixed_dictionaries({"value": either(st.integers(-5, 200) | st.floats(0, 120)),
                                    "code": either(st.sampled_from(["a", "yr", "years", "mo"]))}))
identifier = either(st.sampled_from(["r1", "r2", "med", "m1"]))

ELEMENTS: dict[str, st.SearchStrategy[Any]] = {
    "id": identifier, "status": status_word, "intent": either(st.sampled_from(["order", "plan"])),
    "clinicalStatus": status_concept, "verificationStatus": status_concept,
    "code": concept, "procedureCode": concepts, "type": concepts, "serviceType": concept, "class": json_values,
    "reasonCode": concepts, "performerType": concept, "medicationCodeableConcept": concept,
    "subject": reference, "patient": reference, "medicationReference": reference,
    "onsetDateTime": when, "onsetPeriod": period, "onsetAge": age, "onsetString": json_values,
    "recordedDate": when, "abatementDateTime": when, "performedDateTime": when, "performedPeriod": period,
    "period": period, "authoredOn": when, "effectiveDateTime": when, "effectivePeriod": period,
    "dateAsserted": when, "occurrenceDateTime": when, "occurrencePeriod": period, "started": when,
    "issued": when, "birthDate": when, "description": json_values,
    "contained": either(st.lists(st.fixed_dictionaries({"resourceType": st.just("Medication"), "id": identifier,
                                                        "code": concept}), max_size=2)),
}
TYPES = [*READ_ELEMENTS, "Patient", "Medication", "Bundle", "OperationOutcome", "Observation"]
any_resources = st.fixed_dictionaries(
    {"resourceType": either(st.sampled_from(TYPES))}, optional=ELEMENTS,  # type: ignore[arg-type]
)


def _fixture_resources() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Every history resource and draft order in fixtures/, moved to patient p1."""
    history, drafts = [], []
    for path in sorted(fixtures_dir().glob("*.json")):
        request = load_fixture(path, TODAY).request
        for value in (request.get("prefetch") or {}).values():
            for res in bundle_resources(value):
                if res.get("resourceType") in READ_ELEMENTS:
                    history.append({**res, "subject": {"reference": f"Patient/{PATIENT}"}})
        drafts += [e["resource"] for e in request["context"]["draftOrders"].get("entry", [])]
    return history, drafts


HISTORY, DRAFTS = _fixture_resources()


def mutated(bases: list[dict[str, Any]], *keys: str) -> st.SearchStrategy[dict[str, Any]]:
    """A real resource from the fixtures with up to three elements replaced or removed."""
    names = list(keys or ELEMENTS)
    changes = st.lists(st.sampled_from(names), max_size=3, unique=True).flatmap(
        lambda chosen: st.fixed_dictionaries({k: ELEMENTS[k] for k in chosen}))
    removals = st.lists(st.sampled_from(names), max_size=2, unique=True)
    return st.builds(
        lambda i, new, gone: {**{k: v for k, v in bases[i].items() if k not in gone}, **new},
        st.integers(0, len(bases) - 1), changes, removals,
    )


resources = mutated(HISTORY) | mutated(HISTORY) | any_resources
entries = st.lists(either(st.fixed_dictionaries({"resource": either(resources)})), max_size=6)
bundles = st.fixed_dictionaries({"resourceType": st.just("Bundle")},
                                optional={"type": st.just("searchset"), "entry": either(entries)})
prefetch_values = bundles | bundles | bundles | resources | st.none() | json_values
prefetch_keys = st.sampled_from([*next(iter(RULES.services.values())).prefetch, "unasked"])
prefetches = st.dictionaries(prefetch_keys, prefetch_values, max_size=9)

# ---- the properties -----------------------------------------------------------------------


@BOUNDED
@given(prefetch=prefetches)
def test_read_record_never_raises(prefetch: dict[str, Any]) -> None:
    record = read_record(prefetch, PATIENT, RULES)
    assert isinstance(record, PatientRecord)
    for evidence in record.items:  # what a card may quote is typed, whatever came in
        assert evidence.resource_type in READ_ELEMENTS
        assert isinstance(evidence.label, str) and isinstance(evidence.code_label, str)
        assert evidence.resource_id is None or isinstance(evidence.resource_id, str)


NSAID = next(c for vs in RULES.valuesets.values() if vs.category == "nsaid" for c in vs.codes)
MEDICATIONS = [{"resourceType": "Medication", "id": "med", "code": {"coding": [{"system": s, "code": c}]}}
               for s, c in [(NSAID.system, NSAID.code), *CODES[:: max(1, len(CODES) // 4)]]]
# What a memo must not carry from one read to the next: an onset from an age (the birth date may differ)
# and a drug found through Medication/med (another Medication may stand there).
SUBJECT = {"reference": f"Patient/{PATIENT}"}
SENSITIVE = [
    {"resourceType": "Condition", "id": "aged", "subject": SUBJECT, "onsetAge": {"value": 40, "code": "a"},
     "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "M54.50"}]}},
    {"resourceType": "MedicationRequest", "id": "by-ref", "status": "active", "intent": "order",
     "subject": SUBJECT, "authoredOn": "2026-10-01", "medicationReference": {"reference": "Medication/med"}},
]


@st.composite
def rereads(draw: st.DrawFn) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """A pool of resource objects and several prefetches made of them, each with its own subset and order
    of the pool, birth date and Medication/med (as the audit rebuilds one patient's record for each day)."""
    pool = [*draw(st.lists(resources, max_size=8)), *SENSITIVE]
    reads = []
    for _ in range(draw(st.integers(2, 4))):
        chosen = draw(st.lists(st.integers(0, len(pool) - 1), max_size=12))
        people = [{"resourceType": "Patient", "id": PATIENT, "birthDate": draw(when)}] if draw(st.booleans()) else []
        meds = [draw(st.sampled_from(MEDICATIONS))] if draw(st.booleans()) else []
        reads.append({"patient": bundle_of(people), "history": bundle_of([pool[i] for i in chosen] + meds),
                      "again": bundle_of([pool[i] for i in chosen[::2]])})
    return pool, reads


def bundle_of(items: list[dict[str, Any]]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": r} for r in items]}


@BOUNDED
@given(case=rereads())
def test_a_memo_never_changes_a_record(case: tuple[list[dict[str, Any]], list[dict[str, Any]]]) -> None:
    _, reads = case
    memo = ReadMemo()
    for prefetch in [*reads, *reads]:
        assert read_record(prefetch, PATIENT, RULES, memo) == read_record(prefetch, PATIENT, RULES)


@BOUNDED
@given(draft_orders=bundles | resources | json_values)
def test_read_draft_orders_never_raises(draft_orders: Any) -> None:
    orders = read_draft_orders(draft_orders, RULES)
    assert all(o.ref.startswith("ServiceRequest/") for o in orders)


BASE = load_fixture(fixtures_dir() / "premature-mri-3-weeks.json", TODAY).request
draft_orders = mutated(DRAFTS, "id", "status", "intent", "code", "subject", "reasonCode", "performerType",
                       "authoredOn", "occurrenceDateTime")


@st.composite
def hook_requests(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    body = copy.deepcopy(BASE)
    service = draw(st.sampled_from(sorted(RULES.services)))
    body["hook"] = RULES.services[service].hook
    drafts = draw(st.lists(draft_orders, min_size=1, max_size=3, unique_by=lambda r: str(r.get("id"))))
    body["context"]["draftOrders"] = {"resourceType": "Bundle", "entry": [{"resource": r} for r in drafts]}
    chosen = draw(st.sampled_from(drafts))
    body["context"]["selections"] = [f"{chosen.get('resourceType')}/{chosen.get('id')}"]
    body["context"]["patientId"] = PATIENT
    body["prefetch"] = {"patient": {"resourceType": "Patient", "id": PATIENT, "birthDate": draw(when)},
                        "conditions": draw(bundles), **draw(prefetches)}
    return service, body


@settings(BOUNDED, max_examples=300)
@given(call=hook_requests())
def test_evaluate_hook_raises_only_service_errors(call: tuple[str, dict[str, Any]]) -> None:
    service, body = call
    try:
        outcome = evaluate_hook(RULES, RULES.services[service], body, TODAY)
    except ServiceError as exc:
        assert 400 <= exc.status < 500
        return
    response = orjson.loads(orjson.dumps(outcome.response()))
    CardsResponse.model_validate(response)


@pytest.mark.parametrize("junk", [5, "x", True, {"resource": 1}, [None, 1, "x"]])
def test_reader_helpers_accept_junk_where_arrays_belong(junk: Any) -> None:
    """Found by the properties above: a number where FHIR has an array used to raise TypeError."""
    condition = {"resourceType": "Condition", "id": "c", "code": {"coding": junk}}
    medication = {"resourceType": "MedicationRequest", "id": "m", "status": "active",
                  "medicationReference": {"reference": "#med"}, "contained": junk}
    prefetch = {"conditions": {"resourceType": "Bundle", "entry": junk},
                "more": {"resourceType": "Bundle", "entry": [{"resource": condition}, {"resource": medication}]}}
    record = read_record(prefetch, PATIENT, RULES)
    assert record.items == []


@pytest.mark.parametrize("description", [{"div": "x"}, 7, ["a"], None])
def test_labels_are_text_whatever_the_description_holds(description: Any) -> None:
    """A description that is not a string used to become an ImagingStudy's card label."""
    code = next(c for vs in RULES.valuesets.values() if vs.kind == "lumbar-imaging" for c in vs.codes)
    study = {"resourceType": "ImagingStudy", "id": "s1", "status": "available", "started": "2026-09-01",
             "subject": {"reference": f"Patient/{PATIENT}"}, "description": description,
             "procedureCode": [{"coding": [{"system": code.system, "code": code.code}]}]}
    record = read_record({"imagingStudies": study}, PATIENT, RULES)
    assert [e.label for e in record.items] == ["Imaging study"]
