"""Reading prefetch FHIR JSON into a PatientRecord: one handler per resource type.

Liberal in: timezone-less dates, vendor elements, a medication behind a reference,
temperatures in Fahrenheit. A resource is validated with R4B only when the rules use it.

A handler returns what its resource adds to the record (`Found`) rather than adding it, so that a
caller reading the same resources again (the audit rebuilds one patient's record for every day an
order was placed) can pass a `ReadMemo` and have a resource read before added again as it was found.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from datetime import date
from typing import Any, NamedTuple

from cds_hooks.fhir.bundles import bundle_resources, is_operation_outcome
from cds_hooks.fhir.resources import (
    codings,
    concept_text,
    parse_date,
    referenced_id,
    status_code,
    validate_resource,
)
from cds_hooks.pathway.element_values import add_years, celsius, period, request_end
from cds_hooks.pathway.facts import (
    Evidence,
    PatientRecord,
    body_region,
    by_region,
    code_label,
    match_concepts,
    read_part,
)
from cds_hooks.pathway.rules import NON_SYSTEMIC_ROUTE, Rules

__all__ = ["EVIDENCE_KINDS", "Found", "ReadMemo", "read_prefetch"]

# The value-set kinds a type's evidence can hold, where narrower than any kind its codes match: an
# Observation is read only as a vital sign (its handler keeps these kinds alone). A caller whose questions
# are about other kinds (the audit's measures) can leave such resources out of the record it reads, and
# find the same answers.
EVIDENCE_KINDS: dict[str, frozenset[str]] = {"Observation": frozenset({"vital-sign"})}


def _id(res: dict[str, Any]) -> str | None:
    return _text(res.get("id"))


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _named(res: dict[str, Any], label: str) -> str:
    return f"{res.get('resourceType')}/{_id(res)} {label}"


class Found(NamedTuple):
    """What one resource adds to the record. `evidence` is kept only if it passes `accept` (not a
    duplicate, the same patient, valid R4); `checked` is the (set, key) it is counted in. Immutable, as
    a memo hands it to every later read; a named tuple, as one is made for nearly every resource read
    and a frozen dataclass costs about twice as much to make."""

    evidence: Evidence | None = None
    temperature: bool = False  # accepted evidence is a checked body temperature
    checked: tuple[str, Hashable] | None = None  # ("conditions" | "medications", key)
    skipped: str | None = None  # a resource the rules would use, left out: why
    region_skipped: str | None = None  # matched only a region-agnostic code outside the lumbar region


_UNCHECKED = object()


class ReadMemo:
    """What each resource was found to add, for reading the same resource objects again.

    An entry is kept per object, which the memo holds, so its id is not reused while it is a key; and
    only while the birth date stays the same (a Condition's onsetAge is read against it). A result that
    came from a referenced Medication is never kept: another read may hold a different one. The R4B
    verdict of a resource is kept with its entry. Whether a resource is the patient's own is decided on
    every read, so one memo may serve several patients, though the audit keeps one per patient. The
    resources must not change between reads."""

    def __init__(self) -> None:
        self.birth_date: date | None = None
        self.entries: dict[int, list[Any]] = {}  # id → [resource, Found | None, verdict or _UNCHECKED]

    def bind(self, birth_date: date | None) -> None:
        if birth_date != self.birth_date:
            self.entries.clear()
            self.birth_date = birth_date


class _Reader:
    def __init__(self, rules: Rules, patient_id: str, memo: ReadMemo | None = None) -> None:
        self.rules = rules
        self.statuses = rules.pathway.record_statuses
        self.record = PatientRecord(patient_id=patient_id)
        self.medications: dict[str, dict[str, Any]] = {}
        self.seen: dict[tuple[str, str], list[dict[str, Any]]] = {}
        # What was checked, each resource once (two prefetch searches may return it twice).
        self.checked: dict[str, set[Hashable]] = {"conditions": set(), "medications": set()}
        self.vital_codes = rules.vital_sign_codes
        self.memo = memo
        self.consulted = False  # the handler looked up a referenced Medication

    def add_resources(self, resources: Iterable[dict[str, Any]]) -> None:
        """Dispatch each resource to its handler (Medications must already be in `self.medications`)."""
        handlers = _HANDLERS
        memo = self.memo.entries if self.memo is not None else None
        for res in resources:
            rtype = res.get("resourceType")
            handler = handlers.get(rtype) if isinstance(rtype, str) else None
            if handler is None:
                continue
            entry = memo.get(id(res)) if memo is not None else None
            if entry is None or entry[0] is not res:
                self.consulted = False
                found = handler(self, res)
                entry = None
                if memo is not None and not self.consulted:
                    entry = memo[id(res)] = [res, found, _UNCHECKED]
            else:
                found = entry[1]
            if found is not None:
                self._add(res, found, entry)

    def _add(self, res: dict[str, Any], found: Found, entry: list[Any] | None) -> None:
        if found.checked is not None:
            self.checked[found.checked[0]].add(found.checked[1])
        if found.region_skipped is not None:
            self.record.region_skipped.append(found.region_skipped)
        if found.skipped is not None:
            self.record.skipped.append(found.skipped)
        if found.evidence is not None and self.accept(res, found.evidence, entry) and found.temperature:
            self.record.temperatures_checked += 1

    def accept(self, res: dict[str, Any], evidence: Evidence, entry: list[Any] | None = None) -> bool:
        """Validate a resource the rules will use, then keep its evidence."""
        # The same resource can come back from two prefetch searches: count it once.
        # Two different resources under one id (an EHR defect) are both read, so
        # neither a red flag nor a PT session is lost to whichever came first.
        same_id = self.seen.setdefault((evidence.resource_type, evidence.resource_id or str(id(res))), [])
        if same_id and any(earlier == res for earlier in same_id):
            return False
        same_id.append(res)
        if not self._same_patient(res):
            self.record.skipped.append(f"{evidence.ref}: belongs to another patient")
            return False
        if entry is None:
            problem = validate_resource(read_part(res))
        elif entry[2] is _UNCHECKED:  # the memo keeps the verdict: no need for the content cache too
            problem = entry[2] = validate_resource(read_part(res), remember=False)
        else:
            problem = entry[2]
        if problem:
            # Clinicians see which element was unreadable, not the validator's prose.
            element = problem.split(":", 1)[0]
            self.record.skipped.append(f"{evidence.ref}: invalid {element}")
            return False
        self.record.items.append(evidence)
        return True

    def _same_patient(self, res: dict[str, Any]) -> bool:
        subject = res.get("subject") or res.get("patient")
        # Relative, absolute or versioned: another patient's id in any form is another patient's resource.
        named = referenced_id(subject.get("reference") if isinstance(subject, dict) else None, "Patient")
        return named is None or named == self.record.patient_id  # contained or absent: validation decides

    def _regional(self, matches: list[Any], *sites: Any) -> list[Any]:
        """The matches that hold for the resource's body site. None left (the callers have some): every
        one needed a region the body site does not give, and the resource is counted by name."""
        return by_region(matches, body_region(self.rules, *sites))[0]

    def condition(self, res: dict[str, Any]) -> Found:
        checked = ("conditions", _id(res) or id(res))
        matches, coding = match_concepts(self.rules, res.get("code"))
        if not matches:
            return Found(checked=checked)
        if status_code(res.get("verificationStatus")) in self.statuses.condition_verification_excluded:
            return Found(checked=checked)
        label = concept_text(res.get("code")) or "Condition"
        matches = self._regional(matches, res.get("bodySite"))
        if not matches:
            return Found(checked=checked, region_skipped=_named(res, label))
        active = status_code(res.get("clinicalStatus")) not in self.statuses.condition_clinical_excluded
        onset, recorded = self._onset(res), parse_date(res.get("recordedDate"))
        abated = parse_date(res.get("abatementDateTime"))
        if abated is None and isinstance(res.get("abatementPeriod"), dict):
            abated = parse_date(res["abatementPeriod"].get("end") or res["abatementPeriod"].get("start"))
        return Found(Evidence(
            "Condition", _id(res), tuple(matches), label, code_label(self.rules, coding), onset or recorded, abated,
            active=active, status=status_code(res.get("clinicalStatus")), onset=onset, recorded=recorded,
            abated=abated,
        ), checked=checked)

    def _onset(self, res: dict[str, Any]) -> date | None:
        onset = parse_date(res.get("onsetDateTime"))
        if onset is None and isinstance(res.get("onsetPeriod"), dict):
            onset = parse_date(res["onsetPeriod"].get("start"))
        age = res.get("onsetAge")
        if onset is None and isinstance(age, dict) and self.record.birth_date:
            value = age.get("value")
            if isinstance(value, int | float) and age.get("code", age.get("unit")) in ("a", "yr", "years"):
                onset = add_years(self.record.birth_date, int(value))
        return onset

    def procedure(self, res: dict[str, Any]) -> Found | None:
        matches, coding = match_concepts(self.rules, res.get("code"))
        if not matches or res.get("status") not in self.statuses.procedure_counted:
            return None
        label = concept_text(res.get("code")) or "Procedure"
        matches = self._regional(matches, res.get("bodySite"))
        if not matches:
            return Found(region_skipped=_named(res, label))
        start, end = period(res, "performedDateTime", "performedPeriod")
        return Found(Evidence(
            "Procedure", _id(res), tuple(matches), label, code_label(self.rules, coding), start, end,
            status=res.get("status"),
        ))

    def encounter(self, res: dict[str, Any]) -> Found | None:
        matches, coding = match_concepts(self.rules, res.get("type"), res.get("serviceType"))
        klass = res.get("class")  # R4: a Coding, not a CodeableConcept
        if isinstance(klass, dict) and (by_class := self.rules.index.lookup(klass.get("system"), klass.get("code"))):
            matches = [*matches, *by_class]
            coding = coding or klass
        reasons, _ = match_concepts(self.rules, res.get("reasonCode")) if res.get("reasonCode") else ([], None)
        reasons = [m for m in reasons if m.valueset.kind == "population"]  # a back-pain visit
        if not (matches or reasons) or res.get("status") not in self.statuses.encounter_counted:
            return None
        start, end = period(res, None, "period")
        label = concept_text(res.get("type")) or concept_text(res.get("serviceType")) or "Encounter"
        return Found(Evidence(
            "Encounter", _id(res), tuple(matches), label, code_label(self.rules, coding, res.get("type")),
            start, end, status=res.get("status"), reasons=tuple(reasons),
        ))

    def medication(self, res: dict[str, Any]) -> Found:
        checked = ("medications", (res.get("resourceType"), _id(res) or id(res)))
        if res.get("status") in self.statuses.medication_excluded:
            return Found(checked=checked)
        concept = res.get("medicationCodeableConcept")
        ref = res.get("medicationReference")
        if concept is None and isinstance(ref, dict):
            concept = self._referenced_medication(res, ref)
        # Codes only: a name in the text never makes a drug count (an NSAID gel, codeine syrup).
        matches, coding = match_concepts(self.rules, concept)
        if not matches or self._not_systemic(res):
            return Found(checked=checked)
        text = concept_text(concept) or (ref.get("display") if isinstance(ref, dict) else None)
        supply = None
        if res.get("resourceType") == "MedicationRequest":
            start, end = parse_date(res.get("authoredOn")), None
            end, supply = request_end(res, start)
        else:
            start, end = period(res, "effectiveDateTime", "effectivePeriod")
            if res.get("effectiveDateTime") is not None and res.get("status") in self.statuses.medication_ongoing:
                end = None  # "taking it since": an instant is the start of an ongoing use
            start = start or parse_date(res.get("dateAsserted"))
        return Found(Evidence(
            res["resourceType"], _id(res), tuple(matches), text or "Medication",
            code_label(self.rules, coding, concept), start, end, status=res.get("status"), supply_days=supply,
        ), checked=checked)

    def _not_systemic(self, res: dict[str, Any]) -> bool:
        dosages = res.get("dosageInstruction") or res.get("dosage") or ()
        for dosage in dosages if isinstance(dosages, list) else ():
            route = dosage.get("route") if isinstance(dosage, dict) else None
            for coding in codings(route):
                if any(m.valueset.kind == "medication-route" and m.valueset.category == NON_SYSTEMIC_ROUTE
                       for m in self.rules.index.lookup(coding.get("system"), coding.get("code"))):
                    return True
        return False

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
        self.consulted = True
        rid = referenced_id(target, "Medication")
        med = self.medications.get(f"Medication/{rid}") if rid else None
        return med.get("code") if med else None

    def service_request(self, res: dict[str, Any]) -> Found | None:
        matches, coding = match_concepts(self.rules, res.get("code"), res.get("performerType"))
        if not matches or res.get("status") not in self.statuses.service_request_counted:
            return None
        start, end = period(res, "occurrenceDateTime", "occurrencePeriod")
        start = parse_date(res.get("authoredOn")) or start
        return Found(Evidence(
            "ServiceRequest", _id(res), tuple(matches),
            concept_text(res.get("code")) or concept_text(res.get("performerType")) or "ServiceRequest",
            code_label(self.rules, coding), start, end, status=res.get("status"),
        ))

    def imaging_study(self, res: dict[str, Any]) -> Found | None:
        matches, coding = match_concepts(self.rules, res.get("procedureCode"))
        if not matches or res.get("status") in self.statuses.imaging_excluded:
            return None
        label = concept_text(res.get("procedureCode")) or _text(res.get("description")) or "Imaging study"
        series = res.get("series") if isinstance(res.get("series"), list) else []
        sites = [{"coding": [s["bodySite"]]} for s in series
                 if isinstance(s, dict) and isinstance(s.get("bodySite"), dict)]  # series.bodySite is a Coding
        matches = self._regional(matches, sites)
        if not matches:
            return Found(region_skipped=_named(res, label))
        return Found(Evidence(
            "ImagingStudy", _id(res), tuple(matches), label, code_label(self.rules, coding),
            parse_date(res.get("started")), None, status=res.get("status"),
        ))

    def diagnostic_report(self, res: dict[str, Any]) -> Found | None:
        matches, coding = match_concepts(self.rules, res.get("code"))
        if not matches or res.get("status") in self.statuses.imaging_excluded:
            return None
        start, end = period(res, "effectiveDateTime", "effectivePeriod")
        return Found(Evidence(
            "DiagnosticReport", _id(res), tuple(matches), concept_text(res.get("code")) or "Report",
            code_label(self.rules, coding), start or parse_date(res.get("issued")), end, status=res.get("status"),
        ))

    def observation(self, res: dict[str, Any]) -> Found | None:
        # Most Observations are other vital signs and labs: a set probe on the few codes read, first.
        # A messy coding (a list or object for a code) is not hashable: it matches nothing, never raises.
        if not any(
            isinstance(c.get("code"), str) and isinstance(c.get("system"), str)
            and (c["system"], c["code"]) in self.vital_codes
            for c in codings(res.get("code"))
        ):
            return None
        matches, coding = match_concepts(self.rules, res.get("code"))
        kinds = EVIDENCE_KINDS["Observation"]
        matches = [m for m in matches if m.valueset.kind in kinds]
        if not matches or res.get("status") not in self.statuses.observation_counted:
            return None
        value = celsius(res.get("valueQuantity"))
        label = concept_text(res.get("code")) or "Observation"
        if value is None:
            return Found(skipped=f"Observation/{_id(res)}: {label} without a temperature value or unit")
        when, _ = period(res, "effectiveDateTime", "effectivePeriod")
        when = when or parse_date(res.get("effectiveInstant")) or parse_date(res.get("issued"))
        return Found(Evidence("Observation", _id(res), tuple(matches), label, code_label(self.rules, coding),
                              when, when, status=res.get("status"), value=round(value, 1)), temperature=True)


_HANDLERS = {
    "Condition": _Reader.condition,
    "Procedure": _Reader.procedure,
    "Encounter": _Reader.encounter,
    "MedicationRequest": _Reader.medication,
    "MedicationStatement": _Reader.medication,
    "ServiceRequest": _Reader.service_request,
    "ImagingStudy": _Reader.imaging_study,
    "DiagnosticReport": _Reader.diagnostic_report,
    "Observation": _Reader.observation,
}


def read_prefetch(prefetch: dict[str, Any], patient_id: str, rules: Rules,
                  memo: ReadMemo | None = None) -> PatientRecord:
    """Normalise the prefetch data into a PatientRecord (see record.read_record). With a `memo`, a
    resource object read before with it is added again as it was found."""
    reader = _Reader(rules, patient_id, memo)
    everything: list[dict[str, Any]] = []
    for key, value in prefetch.items():
        if not isinstance(value, dict):
            continue
        if is_operation_outcome(value):
            reader.record.unavailable[key] = "ehr-error"
            continue
        for res in bundle_resources(value):
            rtype = res.get("resourceType")
            if rtype == "Patient":
                reader.record.birth_date = parse_date(res.get("birthDate"))
            elif rtype == "Medication":
                if isinstance(res.get("id"), str):
                    reader.medications[f"Medication/{res['id']}"] = res
            else:
                everything.append(res)
    if memo is not None:
        memo.bind(reader.record.birth_date)
    reader.add_resources(everything)
    reader.record.conditions_checked = len(reader.checked["conditions"])
    reader.record.medications_checked = len(reader.checked["medications"])
    return reader.record
