"""The patient record: normalised facts from prefetch FHIR JSON and draft orders.

The reader walks plain dicts once. A resource is looked at closely (status,
dates, R4B validation) only when one of its codes is in a value set the rules
use; everything else is skipped for free. A malformed resource the rules would
have used is skipped and counted, never fatal.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from cds_hooks.fhir.bundles import bundle_resources, is_operation_outcome
from cds_hooks.fhir.resources import (
    codings,
    concept_text,
    parse_date,
    status_code,
    validate_resource,
)
from cds_hooks.pathway.rules import Match, Rules

# The elements the rules read from each resource type, plus those FHIR R4 makes
# mandatory. Only these are validated: they are all the verdict depends on, and
# skipping narrative, identifiers and vendor extensions keeps validation cheap.
READ_ELEMENTS: dict[str, tuple[str, ...]] = {
    "Condition": ("clinicalStatus", "verificationStatus", "code", "subject", "onsetDateTime",
                  "onsetPeriod", "onsetAge", "onsetString", "recordedDate", "abatementDateTime"),
    "Procedure": ("status", "code", "subject", "performedDateTime", "performedPeriod"),
    "Encounter": ("status", "class", "type", "serviceType", "subject", "period"),
    "MedicationRequest": ("status", "intent", "medicationCodeableConcept", "medicationReference",
                          "subject", "authoredOn", "contained"),
    "MedicationStatement": ("status", "medicationCodeableConcept", "medicationReference", "subject",
                            "effectiveDateTime", "effectivePeriod", "dateAsserted", "contained"),
    "ServiceRequest": ("status", "intent", "code", "subject", "authoredOn", "occurrenceDateTime",
                       "occurrencePeriod"),
    "ImagingStudy": ("status", "subject", "started", "procedureCode"),
    "DiagnosticReport": ("status", "code", "subject", "effectiveDateTime", "effectivePeriod", "issued"),
}


def read_part(res: dict[str, Any]) -> dict[str, Any]:
    """The part of a resource the rules read (see READ_ELEMENTS)."""
    rtype = res.get("resourceType")
    keep = READ_ELEMENTS.get(rtype) if isinstance(rtype, str) else None
    if keep is None:
        return res
    part = {"resourceType": rtype}
    for key in keep:
        if key in res:
            part[key] = res[key]
    return part


@dataclass(frozen=True, slots=True)
class Evidence:
    """One resource the rules recognised, reduced to what a card can cite."""

    resource_type: str
    resource_id: str | None
    matches: tuple[Match, ...]
    label: str
    code_label: str
    start: date | None
    end: date | None
    active: bool = True
    status: str | None = None
    matched_by_text: bool = False

    def categories(self, kind: str) -> set[str]:
        return {m.valueset.category for m in self.matches if m.valueset.kind == kind and m.valueset.category}

    def has(self, kind: str, category: str | None = None) -> bool:
        return any(
            m.valueset.kind == kind and (category is None or m.valueset.category == category)
            for m in self.matches
        )

    @property
    def ref(self) -> str:
        return f"{self.resource_type}/{self.resource_id}" if self.resource_id else self.resource_type


@dataclass
class PatientRecord:
    patient_id: str
    birth_date: date | None = None
    items: list[Evidence] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    # prefetch key → why it could not be read (an UnavailableReason)
    unavailable: dict[str, str] = field(default_factory=dict)
    conditions_checked: int = 0

    def select(self, kind: str, *types: str, category: str | None = None) -> list[Evidence]:
        return [
            e for e in self.items
            if e.has(kind, category) and (not types or e.resource_type in types)
        ]


@dataclass(frozen=True)
class DraftOrder:
    """A draft order from context.draftOrders, with what its codes mean."""

    ref: str
    resource: dict[str, Any]
    name: str
    code_label: str
    matches: tuple[Match, ...]
    reasons: tuple[Match, ...]

    def has(self, kind: str) -> bool:
        return any(m.valueset.kind == kind for m in self.matches)

    def reason_has(self, kind: str) -> list[Match]:
        return [m for m in self.reasons if m.valueset.kind == kind]


def match_concepts(rules: Rules, *concepts: Any) -> tuple[list[Match], dict[str, Any] | None]:
    """Every value set the concepts' codings fall in, and the first coding that matched."""
    found: list[Match] = []
    first: dict[str, Any] | None = None
    for concept in concepts:
        for coding in codings(concept):
            hits = rules.index.lookup(coding.get("system"), coding.get("code"))
            if hits:
                found.extend(hits)
                first = first or coding
    return found, first


def code_label(rules: Rules, coding: dict[str, Any] | None, fallback: Any = None) -> str:
    """'ICD-10-CM M54.50' for a card: the matched coding, else the first coding."""
    coding = coding or next(codings(fallback), None)
    if coding is None:
        return "uncoded"
    return f"{rules.system_name(str(coding.get('system')))} {coding.get('code')}"


class _Reader:
    def __init__(self, rules: Rules, patient_id: str) -> None:
        self.rules = rules
        self.statuses = rules.pathway.record_statuses
        self.record = PatientRecord(patient_id=patient_id)
        self.medications: dict[str, dict[str, Any]] = {}
        self.seen: dict[tuple[str, str], list[dict[str, Any]]] = {}

    # ---- the record -------------------------------------------------------------

    def add_resources(self, resources: Iterable[dict[str, Any]]) -> None:
        resources = list(resources)
        for res in resources:
            if res.get("resourceType") == "Medication" and isinstance(res.get("id"), str):
                self.medications[f"Medication/{res['id']}"] = res
        for res in resources:
            rtype = res.get("resourceType")
            handler = _HANDLERS.get(rtype) if isinstance(rtype, str) else None
            if handler is None:
                continue
            if rtype == "Condition":
                self.record.conditions_checked += 1
            handler(self, res)

    def accept(self, res: dict[str, Any], evidence: Evidence) -> None:
        """Validate a resource the rules will use, then keep its evidence."""
        # The same resource can come back from two prefetch searches: count it once.
        # Two different resources under one id (an EHR defect) are both read, so
        # neither a red flag nor a PT session is lost to whichever came first.
        same_id = self.seen.setdefault((evidence.resource_type, evidence.resource_id or str(id(res))), [])
        if any(earlier == res for earlier in same_id):
            return
        same_id.append(res)
        if not self._same_patient(res):
            self.record.skipped.append(f"{evidence.ref}: belongs to another patient")
            return
        problem = validate_resource(read_part(res))
        if problem:
            # Clinicians see which element was unreadable, not the validator's prose.
            element = problem.split(":", 1)[0]
            self.record.skipped.append(f"{evidence.ref}: invalid {element}")
            return
        self.record.items.append(evidence)

    def _same_patient(self, res: dict[str, Any]) -> bool:
        subject = res.get("subject") or res.get("patient")
        ref = subject.get("reference") if isinstance(subject, dict) else None
        if not isinstance(ref, str) or not ref.startswith("Patient/"):
            return True  # contained or absent: validation decides
        return ref.removeprefix("Patient/").split("/")[0] == self.record.patient_id

    def condition(self, res: dict[str, Any]) -> None:
        matches, coding = match_concepts(self.rules, res.get("code"))
        if not matches:
            return
        if status_code(res.get("verificationStatus")) in self.statuses.condition_verification_excluded:
            return
        active = status_code(res.get("clinicalStatus")) not in self.statuses.condition_clinical_excluded
        onset = self._onset(res)
        self.accept(res, Evidence(
            "Condition", _id(res), tuple(matches), concept_text(res.get("code")) or "Condition",
            code_label(self.rules, coding), onset, parse_date(res.get("abatementDateTime")),
            active=active, status=status_code(res.get("clinicalStatus")),
        ))

    def _onset(self, res: dict[str, Any]) -> date | None:
        onset = parse_date(res.get("onsetDateTime"))
        if onset is None and isinstance(res.get("onsetPeriod"), dict):
            onset = parse_date(res["onsetPeriod"].get("start"))
        age = res.get("onsetAge")
        if onset is None and isinstance(age, dict) and self.record.birth_date:
            value = age.get("value")
            if isinstance(value, int | float) and age.get("code", age.get("unit")) in ("a", "yr", "years"):
                born = self.record.birth_date
                onset = _add_years(born, int(value))
        return onset or parse_date(res.get("recordedDate"))

    def procedure(self, res: dict[str, Any]) -> None:
        matches, coding = match_concepts(self.rules, res.get("code"))
        if not matches or res.get("status") not in self.statuses.procedure_counted:
            return
        start, end = _period(res, "performedDateTime", "performedPeriod")
        self.accept(res, Evidence(
            "Procedure", _id(res), tuple(matches), concept_text(res.get("code")) or "Procedure",
            code_label(self.rules, coding), start, end, status=res.get("status"),
        ))

    def encounter(self, res: dict[str, Any]) -> None:
        matches, coding = match_concepts(self.rules, res.get("type"), res.get("serviceType"))
        if not matches or res.get("status") not in self.statuses.encounter_counted:
            return
        start, end = _period(res, None, "period")
        label = concept_text(res.get("type")) or concept_text(res.get("serviceType")) or "Encounter"
        self.accept(res, Evidence(
            "Encounter", _id(res), tuple(matches), label, code_label(self.rules, coding),
            start, end, status=res.get("status"),
        ))

    def medication(self, res: dict[str, Any]) -> None:
        if res.get("status") in self.statuses.medication_excluded:
            return
        concept = res.get("medicationCodeableConcept")
        ref = res.get("medicationReference")
        if concept is None and isinstance(ref, dict):
            concept = self._referenced_medication(res, ref)
        matches, coding = match_concepts(self.rules, concept)
        text = concept_text(concept) or (ref.get("display") if isinstance(ref, dict) else None)
        by_text = False
        if not matches and isinstance(text, str):
            matches = self.rules.index.lookup_text(text)
            by_text = bool(matches)
        if not matches:
            return
        if res.get("resourceType") == "MedicationRequest":
            start, end = parse_date(res.get("authoredOn")), None
        else:
            start, end = _period(res, "effectiveDateTime", "effectivePeriod")
            start = start or parse_date(res.get("dateAsserted"))
        self.accept(res, Evidence(
            res["resourceType"], _id(res), tuple(matches), text or "Medication",
            code_label(self.rules, coding, concept), start, end, status=res.get("status"),
            matched_by_text=by_text,
        ))

    def _referenced_medication(self, res: dict[str, Any], ref: dict[str, Any]) -> Any:
        target = ref.get("reference")
        if not isinstance(target, str):
            return None
        if target.startswith("#"):
            contained = res.get("contained")
            for inner in contained if isinstance(contained, list) else ():
                if isinstance(inner, dict) and inner.get("id") == target[1:]:
                    return inner.get("code")
            return None
        med = self.medications.get(target) or self.medications.get(
            "Medication/" + target.rsplit("/", 1)[-1]
        )
        return med.get("code") if med else None

    def service_request(self, res: dict[str, Any]) -> None:
        matches, coding = match_concepts(self.rules, res.get("code"))
        if not matches or res.get("status") not in self.statuses.service_request_counted:
            return
        start, end = _period(res, "occurrenceDateTime", "occurrencePeriod")
        start = parse_date(res.get("authoredOn")) or start
        self.accept(res, Evidence(
            "ServiceRequest", _id(res), tuple(matches), concept_text(res.get("code")) or "ServiceRequest",
            code_label(self.rules, coding), start, end, status=res.get("status"),
        ))

    def imaging_study(self, res: dict[str, Any]) -> None:
        matches, coding = match_concepts(self.rules, res.get("procedureCode"))
        if not matches or res.get("status") in self.statuses.imaging_excluded:
            return
        self.accept(res, Evidence(
            "ImagingStudy", _id(res), tuple(matches),
            concept_text(res.get("procedureCode")) or _text(res.get("description")) or "Imaging study",
            code_label(self.rules, coding), parse_date(res.get("started")), None, status=res.get("status"),
        ))

    def diagnostic_report(self, res: dict[str, Any]) -> None:
        matches, coding = match_concepts(self.rules, res.get("code"))
        if not matches or res.get("status") in self.statuses.imaging_excluded:
            return
        start, end = _period(res, "effectiveDateTime", "effectivePeriod")
        self.accept(res, Evidence(
            "DiagnosticReport", _id(res), tuple(matches), concept_text(res.get("code")) or "Report",
            code_label(self.rules, coding), start or parse_date(res.get("issued")), end, status=res.get("status"),
        ))


_HANDLERS = {
    "Condition": _Reader.condition,
    "Procedure": _Reader.procedure,
    "Encounter": _Reader.encounter,
    "MedicationRequest": _Reader.medication,
    "MedicationStatement": _Reader.medication,
    "ServiceRequest": _Reader.service_request,
    "ImagingStudy": _Reader.imaging_study,
    "DiagnosticReport": _Reader.diagnostic_report,
}


def _id(res: dict[str, Any]) -> str | None:
    return _text(res.get("id"))


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _period(res: dict[str, Any], instant_key: str | None, period_key: str) -> tuple[date | None, date | None]:
    if instant_key and res.get(instant_key) is not None:
        when = parse_date(res.get(instant_key))
        return when, when
    period = res.get(period_key)
    if isinstance(period, dict):
        return parse_date(period.get("start")), parse_date(period.get("end"))
    return None, None


def _add_years(born: date, years: int) -> date:
    try:
        return born.replace(year=born.year + years)
    except ValueError:  # 29 February
        return born.replace(year=born.year + years, day=28)


def read_record(prefetch: dict[str, Any], patient_id: str, rules: Rules) -> PatientRecord:
    """Normalise the prefetch data into a PatientRecord.

    `prefetch` maps keys to a Bundle, a resource, None (no data) or an
    OperationOutcome (unavailable). Keys absent are the caller's concern.
    """
    reader = _Reader(rules, patient_id)
    everything: list[dict[str, Any]] = []
    for key, value in prefetch.items():
        if value is None:
            continue
        if is_operation_outcome(value):
            reader.record.unavailable[key] = "ehr-error"
            continue
        for res in bundle_resources(value):
            if res.get("resourceType") == "Patient":
                reader.record.birth_date = parse_date(res.get("birthDate"))
            else:
                everything.append(res)
    reader.add_resources(everything)
    return reader.record


def read_draft_orders(draft_orders: Any, rules: Rules) -> list[DraftOrder]:
    """Draft ServiceRequests from context.draftOrders (a Bundle, `type` optional)."""
    orders: list[DraftOrder] = []
    for res in bundle_resources(draft_orders):
        rtype = res.get("resourceType")
        rid = res.get("id")
        if rtype != "ServiceRequest" or not isinstance(rid, str):
            continue
        matches, first = match_concepts(rules, res.get("code"), res.get("performerType"))
        reasons, _ = match_concepts(rules, res.get("reasonCode"))
        orders.append(DraftOrder(
            ref=f"ServiceRequest/{rid}", resource=res,
            name=concept_text(res.get("code")) or concept_text(res.get("performerType")) or "Draft order",
            code_label=code_label(rules, first), matches=tuple(matches), reasons=tuple(reasons),
        ))
    return orders
