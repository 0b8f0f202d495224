"""The facts the pathway works on: evidence from the record, the record itself, draft orders, and the
small helpers that match codes and body sites against the rules."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any

from cds_hooks.fhir.resources import codings
from cds_hooks.pathway.rules import LUMBAR_SITE, Match, Rules

# The elements the rules read from each resource type, plus those FHIR R4 makes
# mandatory. Only these are validated: they are all the verdict depends on, and
# skipping narrative, identifiers and vendor extensions keeps validation cheap.
READ_ELEMENTS: dict[str, tuple[str, ...]] = {
    "Condition": ("clinicalStatus", "verificationStatus", "code", "bodySite", "subject", "onsetDateTime",
                  "onsetPeriod", "onsetAge", "onsetString", "recordedDate", "abatementDateTime",
                  "abatementPeriod", "abatementAge"),
    "Procedure": ("status", "code", "bodySite", "subject", "performedDateTime", "performedPeriod"),
    "Encounter": ("status", "class", "type", "serviceType", "reasonCode", "subject", "period"),
    "MedicationRequest": ("status", "intent", "medicationCodeableConcept", "medicationReference",
                          "subject", "authoredOn", "contained", "dosageInstruction", "dispenseRequest"),
    "MedicationStatement": ("status", "medicationCodeableConcept", "medicationReference", "subject",
                            "effectiveDateTime", "effectivePeriod", "dateAsserted", "contained", "dosage"),
    "ServiceRequest": ("status", "intent", "code", "performerType", "bodySite", "subject", "authoredOn",
                       "occurrenceDateTime", "occurrencePeriod"),
    "ImagingStudy": ("status", "subject", "started", "procedureCode", "series"),
    "DiagnosticReport": ("status", "code", "subject", "effectiveDateTime", "effectivePeriod", "issued"),
    "Observation": ("status", "code", "subject", "effectiveDateTime", "effectivePeriod", "effectiveInstant",
                    "issued", "valueQuantity"),
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
    """One resource the rules recognised, reduced to what the pathway and a card use.

    `start` is the date a card shows (a Condition's onset, else its recorded date);
    `onset`, `recorded` and `abated` keep a Condition's dates apart for the red-flag
    windows and the episode. `end` is a period's end (a medication's, when known).
    """

    resource_type: str
    resource_id: str | None
    matches: tuple[Match, ...]
    label: str
    code_label: str
    start: date | None
    end: date | None
    active: bool = True
    status: str | None = None
    onset: date | None = None
    recorded: date | None = None
    abated: date | None = None
    value: float | None = None  # a body temperature in degrees Celsius
    supply_days: int | None = None  # days a prescription covers, when it says
    reasons: tuple[Match, ...] = ()  # an Encounter's reasonCode matches (a back-pain visit)

    def chrono(self) -> tuple[date, str, str, str]:
        """A total order by date: ties fall back to the record itself, so a card reads the same
        whatever order the FHIR server returned the history in."""
        return (self.start or date.min, self.label, self.resource_type, self.resource_id or "")

    def categories(self, kind: str) -> set[str]:
        return {m.valueset.category for m in self.matches if m.valueset.kind == kind and m.valueset.category}

    def has(self, kind: str, category: str | None = None) -> bool:
        for m in self.matches:  # a loop, not any(): asked of every item by every rule
            if m.valueset.kind == kind and (category is None or m.valueset.category == category):
                return True
        return False

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
    medications_checked: int = 0
    temperatures_checked: int = 0
    # imaging or surgery records whose code names no region and whose bodySite is not lumbar
    region_skipped: list[str] = field(default_factory=list)
    # draft orders skipped for the same reason (set by the hook call, for the metrics)
    region_skipped_orders: list[str] = field(default_factory=list)

    def select(self, kind: str, *types: str, category: str | None = None) -> list[Evidence]:
        return [
            e for e in self.items
            if e.has(kind, category) and (not types or e.resource_type in types)
        ]

    def find(self, ref: str) -> Evidence | None:
        return next((e for e in self.items if e.ref == ref), None)


@dataclass(frozen=True)
class DraftOrder:
    """A draft order from context.draftOrders, with what its codes mean."""

    ref: str
    resource: dict[str, Any]
    name: str
    code_label: str
    matches: tuple[Match, ...]
    reasons: tuple[Match, ...]
    # reasonReference targets ("Condition/x"), resolved against the record when judged
    reason_refs: tuple[str, ...] = ()
    # the order states a reason (reasonCode or reasonReference) or a body site
    states_reason: bool = False
    body_site: str | None = None  # "lumbar", "other", or None when no coded bodySite
    # a region-agnostic code (MRI of spine, CPT 63048) without a lumbar bodySite: not judged
    region_skipped: bool = False

    def has(self, kind: str, category: str | None = None) -> bool:
        return any(m.valueset.kind == kind and (category is None or m.valueset.category == category)
                   for m in self.matches)

    def reason_has(self, kind: str) -> list[Match]:
        return [m for m in self.reasons if m.valueset.kind == kind]


def match_concepts(rules: Rules, *concepts: Any) -> tuple[list[Match], dict[str, Any] | None]:
    """Every value set the concepts' codings fall in, and the first coding that matched.

    The hot path of every hook call (each resource's codes, most of them unrelated), so the
    CodeableConcept walk is inlined rather than going through `codings()`."""
    lookup = rules.index.lookup
    found: list[Match] = []
    first: dict[str, Any] | None = None
    for concept in concepts:
        if concept is None:
            continue
        for cc in concept if isinstance(concept, list) else (concept,):
            items = cc.get("coding") if isinstance(cc, dict) else None
            if not isinstance(items, list):
                continue
            for coding in items:
                if isinstance(coding, dict):
                    hits = lookup(coding.get("system"), coding.get("code"))
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


def body_region(rules: Rules, *sites: Any) -> str | None:
    """'lumbar' when a coded bodySite is lumbar, 'other' when coded sites name something else,
    None when there is no coded site (text alone is not read)."""
    coded = False
    for site in sites:
        for coding in codings(site):
            coded = coded or isinstance(coding.get("code"), str)
            if any(m.valueset.kind == "body-site" and m.valueset.category == LUMBAR_SITE
                   for m in rules.index.lookup(coding.get("system"), coding.get("code"))):
                return LUMBAR_SITE
    return "other" if coded else None


REGIONAL_KINDS = ("lumbar-imaging", "lumbar-spine-surgery", "prior-lumbar-surgery")


def by_region(matches: list[Match], region: str | None) -> tuple[list[Match], bool]:
    """Drop matches whose code needs a region the bodySite does not give; True if any was dropped.

    `required`: counts only with a lumbar bodySite. `assumed`: counts unless a bodySite names
    another region. `implied`: the code itself is lumbar."""
    kept: list[Match] = []
    dropped = False
    for m in matches:
        rule = m.code.body_site if m.valueset.kind in REGIONAL_KINDS else "implied"
        if (rule == "required" and region != LUMBAR_SITE) or (rule == "assumed" and region == "other"):
            dropped = True
        else:
            kept.append(m)
    return kept, dropped
