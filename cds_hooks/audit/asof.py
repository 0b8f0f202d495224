"""A patient's record as it stood on a day: only what was dated or recorded on or before it.

The live service judges an order with what the EHR holds when it is placed, so the audit hides what
came later. A resource's *known date* is when it was recorded (a Condition's recordedDate, a report's
issue date), else when it happened; a resource with neither is kept (it may well have been there).
What changed afterwards is wound back where FHIR says when: a Condition that abated after the day
was still active on it, and a course or stay that ended after the day was still in progress.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date
from typing import Any

from cds_hooks.fhir.resources import parse_date

# Where each resource type says when it became known, in order of preference.
KNOWN_DATE: dict[str, tuple[str, ...]] = {
    "Condition": ("recordedDate", "onsetDateTime", "onsetPeriod.start"),
    "Procedure": ("performedDateTime", "performedPeriod.start"),
    "Encounter": ("period.start",),
    "MedicationRequest": ("authoredOn",),
    "MedicationStatement": ("dateAsserted", "effectiveDateTime", "effectivePeriod.start"),
    "MedicationAdministration": ("effectiveDateTime", "effectivePeriod.start"),
    "MedicationDispense": ("whenHandedOver", "whenPrepared"),
    "ServiceRequest": ("authoredOn", "occurrenceDateTime", "occurrencePeriod.start"),
    "ImagingStudy": ("started",),
    "DiagnosticReport": ("issued", "effectiveDateTime", "effectivePeriod.start"),
    "Observation": ("issued", "effectiveDateTime", "effectivePeriod.start", "effectiveInstant"),
    "AllergyIntolerance": ("recordedDate", "onsetDateTime"),
    "Immunization": ("occurrenceDateTime", "recorded"),
    "CarePlan": ("created", "period.start"),
}
# Periods that may run past the day, and the status that says "still under way".
_ONGOING = {"Procedure": ("performedPeriod", "in-progress"), "Encounter": ("period", "in-progress")}
_CONDITION_CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"


def _get(resource: dict[str, Any], path: str) -> Any:
    value: Any = resource
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def known_date(resource: dict[str, Any]) -> date | None:
    """When the resource became part of the record, or None when it does not say."""
    for path in KNOWN_DATE.get(str(resource.get("resourceType")), ()):
        when = parse_date(_get(resource, path))
        if when is not None:
            return when
    return None


def event_date(resource: dict[str, Any]) -> date | None:
    """When an order was placed or a study or operation happened (for choosing what to audit)."""
    rtype = resource.get("resourceType")
    if rtype == "ServiceRequest":
        return parse_date(resource.get("authoredOn"))
    if rtype == "ImagingStudy":
        return parse_date(resource.get("started"))
    if rtype == "Procedure":
        return parse_date(resource.get("performedDateTime")) or parse_date(_get(resource, "performedPeriod.start"))
    return known_date(resource)


def as_of(resource: dict[str, Any], day: date) -> dict[str, Any] | None:
    """The resource as it stood on `day`, or None if it was not yet known. Never changes its input."""
    return _as_of(resource, known_date(resource), day)


def _as_of(resource: dict[str, Any], when: date | None, day: date) -> dict[str, Any] | None:
    if when is not None and when > day:
        return None
    rtype = resource.get("resourceType")
    if rtype == "Condition":
        return _condition(resource, day)
    if rtype in _ONGOING:
        key, status = _ONGOING[rtype]
        end = parse_date(_get(resource, f"{key}.end"))
        if end is not None and end > day:
            period = {**resource[key], "end": day.isoformat()}
            return {**resource, key: period, "status": status}
    return resource


def _condition(resource: dict[str, Any], day: date) -> dict[str, Any]:
    abated = parse_date(resource.get("abatementDateTime")) or parse_date(_get(resource, "abatementPeriod.start"))
    if abated is None or abated <= day:
        return resource
    # It abated later, so on `day` it was still active.
    wound_back = {k: v for k, v in resource.items() if not k.startswith("abatement")}
    wound_back["clinicalStatus"] = {"coding": [{"system": _CONDITION_CLINICAL, "code": "active"}]}
    return wound_back


class Timeline:
    """A patient's resources with their known dates, worked out once for every day the record is rebuilt."""

    def __init__(self, resources: Iterable[dict[str, Any]]) -> None:
        self.dated = [(resource, known_date(resource)) for resource in resources]

    def history(self, day: date, hidden: set[int]) -> list[dict[str, Any]]:
        """The record on `day`: every resource known by then, as it stood, except those in `hidden`
        (by `id()`: the orders being judged and their own results)."""
        out = []
        for resource, when in self.dated:
            if id(resource) in hidden:
                continue
            then = _as_of(resource, when, day)
            if then is not None:
                out.append(then)
        return out

