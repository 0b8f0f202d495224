"""Charting helpers for the pathway tests: FHIR R4 resources as an EHR would send them, dated relative to
a fixed day, read through the real reader (`read_record`) and judged by the real `evaluate`."""

from __future__ import annotations

from datetime import date, timedelta
from functools import cache
from pathlib import Path
from typing import Any

from cds_hooks.pathway.evaluate import Finding, evaluate
from cds_hooks.pathway.record import PatientRecord, read_draft_orders, read_record
from cds_hooks.pathway.rules import Rules, load_rules

TODAY = date(2026, 11, 21)
REPO = Path(__file__).resolve().parent.parent
ICD = "http://hl7.org/fhir/sid/icd-10-cm"
SCT = "http://snomed.info/sct"
CPT = "http://www.ama-assn.org/go/cpt"
LOINC = "http://loinc.org"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
NUCC = "http://nucc.org/provider-taxonomy"
CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
PATIENT = "p1"
LUMBAR_SITE = {"coding": [{"system": SCT, "code": "122496007", "display": "Lumbar spine structure"}]}
CERVICAL_SITE = {"coding": [{"system": SCT, "code": "122494005", "display": "Cervical spine structure"}]}
KNEE_SITE = {"coding": [{"system": SCT, "code": "72696002", "display": "Knee region structure"}]}

_counter = iter(range(10**9))


@cache
def rules_for(profile: str = "seeds") -> Rules:
    return load_rules(REPO / "rules", profile)


def ago(days: int) -> str:
    return (TODAY - timedelta(days=days)).isoformat()


def _rid(prefix: str) -> str:
    return f"{prefix}-{next(_counter)}"


def concept(system: str, code: str, display: str = "x") -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code, "display": display}]}


def condition(code: str, system: str = ICD, onset: int | None = None, recorded: int | None = None,
              clinical: str = "active", abated: int | None = None, **extra: Any) -> dict[str, Any]:
    res: dict[str, Any] = {
        "resourceType": "Condition", "id": _rid("c"),
        "clinicalStatus": {"coding": [{"system": CLINICAL, "code": clinical}]},
        "code": concept(system, code), "subject": {"reference": f"Patient/{PATIENT}"}, **extra,
    }
    if onset is not None:
        res["onsetDateTime"] = ago(onset)
    if recorded is not None:
        res["recordedDate"] = ago(recorded)
    if abated is not None:
        res["abatementDateTime"] = ago(abated)
    return res


def lbp(onset: int | None = 60, recorded: int | None = None, **extra: Any) -> dict[str, Any]:
    return condition("M54.50", onset=onset, recorded=recorded, **extra)


def procedure(code: str, days: int, system: str = CPT, status: str = "completed", end: int | None = None,
              **extra: Any) -> dict[str, Any]:
    res: dict[str, Any] = {"resourceType": "Procedure", "id": _rid("pr"), "status": status,
                           "code": concept(system, code), "subject": {"reference": f"Patient/{PATIENT}"}, **extra}
    if end is None:
        res["performedDateTime"] = ago(days)
    else:
        res["performedPeriod"] = {"start": ago(days), "end": ago(end)}
    return res


def pt_sessions(first: int, last: int, every: int = 7) -> list[dict[str, Any]]:
    """Weekly (by default) completed PT sessions from `first` days ago to `last` days ago."""
    return [procedure("97110", d) for d in range(first, last - 1, -every)]


def encounter(days: int, status: str = "finished", **extra: Any) -> dict[str, Any]:
    return {"resourceType": "Encounter", "id": _rid("e"), "status": status,
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
            "subject": {"reference": f"Patient/{PATIENT}"}, "period": {"start": ago(days)}, **extra}


def med_request(code: str, days: int, status: str = "active", system: str = RXNORM, **extra: Any) -> dict[str, Any]:
    return {"resourceType": "MedicationRequest", "id": _rid("m"), "status": status, "intent": "order",
            "medicationCodeableConcept": concept(system, code), "subject": {"reference": f"Patient/{PATIENT}"},
            "authoredOn": ago(days), **extra}


def supply(days: int, refills: int = 0) -> dict[str, Any]:
    return {"dispenseRequest": {"numberOfRepeatsAllowed": refills, "expectedSupplyDuration": {
        "value": days, "unit": "days", "system": "http://unitsofmeasure.org", "code": "d"}}}


def temperature(value: float, days: int, unit: str = "Cel", code: str = "8310-5") -> dict[str, Any]:
    return {"resourceType": "Observation", "id": _rid("o"), "status": "final",
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                      "code": "vital-signs"}]}],
            "code": concept(LOINC, code), "subject": {"reference": f"Patient/{PATIENT}"},
            "effectiveDateTime": ago(days) + "T09:00:00Z",
            "valueQuantity": {"value": value, "unit": unit, "system": "http://unitsofmeasure.org", "code": unit}}


def service_request(code: str, days: int, system: str = SCT, status: str = "active", **extra: Any) -> dict[str, Any]:
    return {"resourceType": "ServiceRequest", "id": _rid("sr"), "status": status, "intent": "order",
            "code": concept(system, code), "subject": {"reference": f"Patient/{PATIENT}"}, "authoredOn": ago(days),
            **extra}


def draft(code: str, system: str = CPT, oid: str = "o1", **extra: Any) -> dict[str, Any]:
    return {"resourceType": "ServiceRequest", "id": oid, "status": "draft", "intent": "order",
            "code": concept(system, code, "draft order"), "subject": {"reference": f"Patient/{PATIENT}"}, **extra}


MRI = ("72148", CPT)
XRAY = ("72100", CPT)
CT = ("72131", CPT)
MRI_CONTRAST = ("72158", CPT)
ORTHO_REFERRAL = ("308481009", SCT)


def patient(age: int | None = 45, gender: str = "female") -> dict[str, Any]:
    res: dict[str, Any] = {"resourceType": "Patient", "id": PATIENT, "gender": gender}
    if age is not None:
        res["birthDate"] = (TODAY.replace(year=TODAY.year - age)).isoformat()
    return res


def record_of(*resources: dict[str, Any] | list[dict[str, Any]], rules: Rules | None = None,
              age: int | None = 45, born: str | None = None) -> PatientRecord:
    flat: list[dict[str, Any]] = []
    for item in resources:
        flat.extend(item if isinstance(item, list) else [item])
    who = patient(age)
    if born:
        who["birthDate"] = born
    bundle = {"resourceType": "Bundle", "entry": [{"resource": r} for r in flat]}
    return read_record({"patient": who, "history": bundle}, PATIENT, rules or rules_for())


def judge(*resources: dict[str, Any] | list[dict[str, Any]], order: dict[str, Any] | None = None,
          profile: str = "seeds", age: int | None = 45, today: date = TODAY, born: str | None = None
          ) -> list[Finding]:
    rules = rules_for(profile)
    rec = record_of(*resources, rules=rules, age=age, born=born)
    orders = read_draft_orders({"resourceType": "Bundle", "entry": [{"resource": order or draft(*MRI)}]}, rules)
    return evaluate(rec, orders, rules, today)


def verdict(*resources: dict[str, Any] | list[dict[str, Any]], **kwargs: Any) -> list[tuple[str, list[str]]]:
    """[(rule id, [reason keys])] for the draft order (an MRI by default)."""
    return [(f.rule_id, [r.key for r in f.reasons]) for f in judge(*resources, **kwargs)]


def sole_code(rules: Rules, kind: str, category: str, systems: tuple[str, ...]) -> tuple[str, str] | None:
    """(code, system) of a listed code of this kind and category that matches no other category of that kind
    (every M80 code is also osteoporosis, which counts at any time), published sets first; None if there is none."""
    sets = sorted((vs for vs in rules.valuesets.values() if vs.kind == kind and vs.category == category),
                  key=lambda vs: vs.published is None)
    for system in systems:
        for vs in sets:
            for c in vs.codes:
                if c.system != system or c.descendants:
                    continue
                hits = {m.valueset.category for m in rules.index.lookup(c.system, c.code) if m.valueset.kind == kind}
                if hits == {category}:
                    return c.code, c.system
    return None


# The prefetch keys of rules/services.yaml, and which resource types each holds.
PREFETCH_TYPES = {
    "conditions": "Condition", "procedures": "Procedure", "encounters": "Encounter",
    "medicationRequests": "MedicationRequest", "medicationStatements": "MedicationStatement",
    "serviceRequests": "ServiceRequest", "imagingStudies": "ImagingStudy", "diagnosticReports": "DiagnosticReport",
    "vitalSigns": "Observation",
}


def hook_request(*resources: dict[str, Any] | list[dict[str, Any]], order: dict[str, Any] | None = None,
                 age: int | None = 45) -> dict[str, Any]:
    """An order-select request as an EHR sends it: every prefetch key answered, the history filed by type."""
    flat: list[dict[str, Any]] = []
    for item in resources:
        flat.extend(item if isinstance(item, list) else [item])
    order = order or draft(*MRI)
    prefetch: dict[str, Any] = {"patient": patient(age)}
    for key, rtype in PREFETCH_TYPES.items():
        prefetch[key] = {"resourceType": "Bundle", "type": "searchset",
                         "entry": [{"resource": r} for r in flat if r["resourceType"] == rtype]}
    return {"hook": "order-select", "hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
            "context": {"userId": "Practitioner/dr-1", "patientId": PATIENT,
                        "selections": [f"ServiceRequest/{order['id']}"],
                        "draftOrders": {"resourceType": "Bundle", "entry": [{"resource": order}]}},
            "prefetch": prefetch}
