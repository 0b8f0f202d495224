"""Reading prefetch FHIR JSON into a PatientRecord: one handler per resource type.

Liberal in: timezone-less dates, vendor elements, a medication behind a reference,
temperatures in Fahrenheit. A resource is validated with R4B only when the rules use it.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, timedelta
from typing import Any

from cds_hooks.fhir.bundles import bundle_resources, is_operation_outcome
from cds_hooks.fhir.resources import (
    codings,
    concept_text,
    parse_date,
    referenced_id,
    status_code,
    validate_resource,
)
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

# UCUM and the spellings EHRs use for the two temperature scales.
_CELSIUS = {"Cel", "C", "°C", "degC", "cel", "celsius", "Celsius"}
_FAHRENHEIT = {"[degF]", "F", "°F", "degF", "[degf]", "fahrenheit", "Fahrenheit"}
# Units of a Duration (expectedSupplyDuration, boundsDuration), in days.
_DAYS = {"d": 1, "day": 1, "days": 1, "wk": 7, "week": 7, "weeks": 7, "mo": 30, "month": 30, "months": 30,
         "a": 365, "year": 365, "years": 365}


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


def _days(duration: Any) -> int | None:
    if not isinstance(duration, dict) or not isinstance(duration.get("value"), int | float):
        return None
    factor = _DAYS.get(str(duration.get("code") or duration.get("unit") or "").strip())
    return round(duration["value"] * factor) if factor else None


def celsius(quantity: Any) -> float | None:
    """A temperature valueQuantity in degrees Celsius, or None if its unit is not a temperature unit."""
    if not isinstance(quantity, dict) or not isinstance(quantity.get("value"), int | float):
        return None
    units = {str(u) for u in (quantity.get("code"), quantity.get("unit")) if u}
    if units & _CELSIUS:
        return float(quantity["value"])
    if units & _FAHRENHEIT:
        return (float(quantity["value"]) - 32) * 5 / 9
    return None


class _Reader:
    def __init__(self, rules: Rules, patient_id: str) -> None:
        self.rules = rules
        self.statuses = rules.pathway.record_statuses
        self.record = PatientRecord(patient_id=patient_id)
        self.medications: dict[str, dict[str, Any]] = {}
        self.seen: dict[tuple[str, str], list[dict[str, Any]]] = {}
        # What was checked, each resource once (two prefetch searches may return it twice).
        self.conditions: set[Any] = set()
        self.medications_seen: set[Any] = set()
        self.vital_codes = rules.vital_sign_codes

    def add_resources(self, resources: Iterable[dict[str, Any]]) -> None:
        """Dispatch each resource to its handler (Medications must already be in `self.medications`)."""
        handlers = _HANDLERS
        for res in resources:
            rtype = res.get("resourceType")
            handler = handlers.get(rtype) if isinstance(rtype, str) else None
            if handler is not None:
                handler(self, res)

    def accept(self, res: dict[str, Any], evidence: Evidence) -> bool:
        """Validate a resource the rules will use, then keep its evidence."""
        # The same resource can come back from two prefetch searches: count it once.
        # Two different resources under one id (an EHR defect) are both read, so
        # neither a red flag nor a PT session is lost to whichever came first.
        same_id = self.seen.setdefault((evidence.resource_type, evidence.resource_id or str(id(res))), [])
        if any(earlier == res for earlier in same_id):
            return False
        same_id.append(res)
        if not self._same_patient(res):
            self.record.skipped.append(f"{evidence.ref}: belongs to another patient")
            return False
        problem = validate_resource(read_part(res))
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

    def _regional(self, res: dict[str, Any], matches: list[Any], label: str, *sites: Any) -> list[Any]:
        """The matches that hold for the resource's body site; a dropped region-agnostic code is counted."""
        kept, dropped = by_region(matches, body_region(self.rules, *sites))
        if dropped and not kept:
            self.record.region_skipped.append(f"{res.get('resourceType')}/{_id(res)} {label}")
        return kept

    def condition(self, res: dict[str, Any]) -> None:
        self.conditions.add(_id(res) or id(res))
        matches, coding = match_concepts(self.rules, res.get("code"))
        if not matches:
            return
        if status_code(res.get("verificationStatus")) in self.statuses.condition_verification_excluded:
            return
        label = concept_text(res.get("code")) or "Condition"
        matches = self._regional(res, matches, label, res.get("bodySite"))
        if not matches:
            return
        active = status_code(res.get("clinicalStatus")) not in self.statuses.condition_clinical_excluded
        onset, recorded = self._onset(res), parse_date(res.get("recordedDate"))
        abated = parse_date(res.get("abatementDateTime"))
        if abated is None and isinstance(res.get("abatementPeriod"), dict):
            abated = parse_date(res["abatementPeriod"].get("end") or res["abatementPeriod"].get("start"))
        self.accept(res, Evidence(
            "Condition", _id(res), tuple(matches), label, code_label(self.rules, coding), onset or recorded, abated,
            active=active, status=status_code(res.get("clinicalStatus")), onset=onset, recorded=recorded,
            abated=abated,
        ))

    def _onset(self, res: dict[str, Any]) -> date | None:
        onset = parse_date(res.get("onsetDateTime"))
        if onset is None and isinstance(res.get("onsetPeriod"), dict):
            onset = parse_date(res["onsetPeriod"].get("start"))
        age = res.get("onsetAge")
        if onset is None and isinstance(age, dict) and self.record.birth_date:
            value = age.get("value")
            if isinstance(value, int | float) and age.get("code", age.get("unit")) in ("a", "yr", "years"):
                onset = _add_years(self.record.birth_date, int(value))
        return onset

    def procedure(self, res: dict[str, Any]) -> None:
        matches, coding = match_concepts(self.rules, res.get("code"))
        if not matches or res.get("status") not in self.statuses.procedure_counted:
            return
        label = concept_text(res.get("code")) or "Procedure"
        matches = self._regional(res, matches, label, res.get("bodySite"))
        if not matches:
            return
        start, end = _period(res, "performedDateTime", "performedPeriod")
        self.accept(res, Evidence(
            "Procedure", _id(res), tuple(matches), label, code_label(self.rules, coding), start, end,
            status=res.get("status"),
        ))

    def encounter(self, res: dict[str, Any]) -> None:
        matches, coding = match_concepts(self.rules, res.get("type"), res.get("serviceType"))
        klass = res.get("class")  # R4: a Coding, not a CodeableConcept
        if isinstance(klass, dict) and (by_class := self.rules.index.lookup(klass.get("system"), klass.get("code"))):
            matches = [*matches, *by_class]
            coding = coding or klass
        reasons, _ = match_concepts(self.rules, res.get("reasonCode")) if res.get("reasonCode") else ([], None)
        reasons = [m for m in reasons if m.valueset.kind == "population"]  # a back-pain visit
        if not (matches or reasons) or res.get("status") not in self.statuses.encounter_counted:
            return
        start, end = _period(res, None, "period")
        label = concept_text(res.get("type")) or concept_text(res.get("serviceType")) or "Encounter"
        self.accept(res, Evidence(
            "Encounter", _id(res), tuple(matches), label, code_label(self.rules, coding, res.get("type")),
            start, end, status=res.get("status"), reasons=tuple(reasons),
        ))

    def medication(self, res: dict[str, Any]) -> None:
        self.medications_seen.add((res.get("resourceType"), _id(res) or id(res)))
        if res.get("status") in self.statuses.medication_excluded:
            return
        concept = res.get("medicationCodeableConcept")
        ref = res.get("medicationReference")
        if concept is None and isinstance(ref, dict):
            concept = self._referenced_medication(res, ref)
        # Codes only: a name in the text never makes a drug count (an NSAID gel, codeine syrup).
        matches, coding = match_concepts(self.rules, concept)
        if not matches or self._not_systemic(res):
            return
        text = concept_text(concept) or (ref.get("display") if isinstance(ref, dict) else None)
        supply = None
        if res.get("resourceType") == "MedicationRequest":
            start, end = parse_date(res.get("authoredOn")), None
            end, supply = self._request_end(res, start)
        else:
            start, end = _period(res, "effectiveDateTime", "effectivePeriod")
            if res.get("effectiveDateTime") is not None and res.get("status") in self.statuses.medication_ongoing:
                end = None  # "taking it since": an instant is the start of an ongoing use
            start = start or parse_date(res.get("dateAsserted"))
        self.accept(res, Evidence(
            res["resourceType"], _id(res), tuple(matches), text or "Medication",
            code_label(self.rules, coding, concept), start, end, status=res.get("status"), supply_days=supply,
        ))

    def _not_systemic(self, res: dict[str, Any]) -> bool:
        dosages = res.get("dosageInstruction") or res.get("dosage") or ()
        for dosage in dosages if isinstance(dosages, list) else ():
            route = dosage.get("route") if isinstance(dosage, dict) else None
            for coding in codings(route):
                if any(m.valueset.kind == "medication-route" and m.valueset.category == NON_SYSTEMIC_ROUTE
                       for m in self.rules.index.lookup(coding.get("system"), coding.get("code"))):
                    return True
        return False

    @staticmethod
    def _request_end(res: dict[str, Any], start: date | None) -> tuple[date | None, int | None]:
        """The last day of a prescription's supply, from what it states: bounds, supply and refills, validity.

        A stated end is its last day (a FHIR Period's end is inclusive); a duration of N days from the start
        ends N - 1 days later (a 30-day supply from the 1st lasts to the 30th, not the 31st)."""
        dispense = res.get("dispenseRequest") if isinstance(res.get("dispenseRequest"), dict) else {}
        for dosage in res.get("dosageInstruction") or ():
            repeat = ((dosage.get("timing") or {}).get("repeat") or {}) if isinstance(dosage, dict) else {}
            if isinstance(repeat, dict):
                bounds = repeat.get("boundsPeriod")
                if isinstance(bounds, dict) and parse_date(bounds.get("end")):
                    return parse_date(bounds.get("end")), None
                days = _days(repeat.get("boundsDuration"))
                if days and start:
                    return start + timedelta(days=days - 1), days
        days = _days(dispense.get("expectedSupplyDuration"))
        if days:
            refills = dispense.get("numberOfRepeatsAllowed")
            days *= 1 + (refills if isinstance(refills, int) and refills > 0 else 0)
            return (start + timedelta(days=days - 1) if start else None), days
        validity = dispense.get("validityPeriod")
        if isinstance(validity, dict) and parse_date(validity.get("end")):
            return parse_date(validity.get("end")), None
        return None, None

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
        rid = referenced_id(target, "Medication")
        med = self.medications.get(f"Medication/{rid}") if rid else None
        return med.get("code") if med else None

    def service_request(self, res: dict[str, Any]) -> None:
        matches, coding = match_concepts(self.rules, res.get("code"), res.get("performerType"))
        if not matches or res.get("status") not in self.statuses.service_request_counted:
            return
        start, end = _period(res, "occurrenceDateTime", "occurrencePeriod")
        start = parse_date(res.get("authoredOn")) or start
        self.accept(res, Evidence(
            "ServiceRequest", _id(res), tuple(matches),
            concept_text(res.get("code")) or concept_text(res.get("performerType")) or "ServiceRequest",
            code_label(self.rules, coding), start, end, status=res.get("status"),
        ))

    def imaging_study(self, res: dict[str, Any]) -> None:
        matches, coding = match_concepts(self.rules, res.get("procedureCode"))
        if not matches or res.get("status") in self.statuses.imaging_excluded:
            return
        label = concept_text(res.get("procedureCode")) or _text(res.get("description")) or "Imaging study"
        series = res.get("series") if isinstance(res.get("series"), list) else []
        sites = [{"coding": [s["bodySite"]]} for s in series
                 if isinstance(s, dict) and isinstance(s.get("bodySite"), dict)]  # series.bodySite is a Coding
        matches = self._regional(res, matches, label, sites)
        if not matches:
            return
        self.accept(res, Evidence(
            "ImagingStudy", _id(res), tuple(matches), label, code_label(self.rules, coding),
            parse_date(res.get("started")), None, status=res.get("status"),
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

    def observation(self, res: dict[str, Any]) -> None:
        # Most Observations are other vital signs and labs: a set probe on the few codes read, first.
        # A messy coding (a list or object for a code) is not hashable: it matches nothing, never raises.
        if not any(
            isinstance(c.get("code"), str) and isinstance(c.get("system"), str)
            and (c["system"], c["code"]) in self.vital_codes
            for c in codings(res.get("code"))
        ):
            return
        matches, coding = match_concepts(self.rules, res.get("code"))
        matches = [m for m in matches if m.valueset.kind == "vital-sign"]
        if not matches or res.get("status") not in self.statuses.observation_counted:
            return
        value = celsius(res.get("valueQuantity"))
        label = concept_text(res.get("code")) or "Observation"
        if value is None:
            self.record.skipped.append(f"Observation/{_id(res)}: {label} without a temperature value or unit")
            return
        when, _ = _period(res, "effectiveDateTime", "effectivePeriod")
        when = when or parse_date(res.get("effectiveInstant")) or parse_date(res.get("issued"))
        if self.accept(res, Evidence("Observation", _id(res), tuple(matches), label, code_label(self.rules, coding),
                                     when, when, status=res.get("status"), value=round(value, 1))):
            self.record.temperatures_checked += 1


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


def _reported_failure(value: dict[str, Any]) -> bool:
    """An OperationOutcome in place of data; the full check only when the first entry looks like one
    (a Bundle of 1,000 resources is not walked twice for it)."""
    if value.get("resourceType") == "OperationOutcome":
        return True
    entries = value.get("entry") if value.get("resourceType") == "Bundle" else None
    first = entries[0] if isinstance(entries, list) and entries else None
    resource = first.get("resource") if isinstance(first, dict) else None
    return isinstance(resource, dict) and resource.get("resourceType") == "OperationOutcome" \
        and is_operation_outcome(value)


def read_prefetch(prefetch: dict[str, Any], patient_id: str, rules: Rules) -> PatientRecord:
    """Normalise the prefetch data into a PatientRecord (see record.read_record)."""
    reader = _Reader(rules, patient_id)
    everything: list[dict[str, Any]] = []
    for key, value in prefetch.items():
        if not isinstance(value, dict):
            continue
        if _reported_failure(value):
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
    reader.add_resources(everything)
    reader.record.conditions_checked = len(reader.conditions)
    reader.record.medications_checked = len(reader.medications_seen)
    return reader.record
