"""The one door from the audit to the live pathway: no rule is implemented twice.

Every verdict the audit reports comes from the functions the CDS service calls on a hook request:
`read_record` on the prefetch the service would have been sent, `read_draft_orders` on the orders as
draft orders, `evaluate` with `today` set to the order date, and `build_cards` for sample cards. This
module only shapes a patient's Bulk resources into those inputs; nothing else in `audit/` imports
the pathway's record, evaluation or card code.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from datetime import date
from typing import Any
from urllib.parse import parse_qsl

from cds_hooks.fhir.fetch import template_resource_type
from cds_hooks.fhir.resources import codings, load_models, referenced_id, validate_resource
from cds_hooks.pathway.cards import IssuedCard, OrderingContext, build_cards
from cds_hooks.pathway.evaluate import Finding, evaluate
from cds_hooks.pathway.record import (
    READ_ELEMENTS,
    DraftOrder,
    PatientRecord,
    ReadMemo,
    match_concepts,
    read_draft_orders,
    read_record,
)
from cds_hooks.pathway.rules import Match, Rules, ServiceDef

# Value-set kinds that make an order one the pathway judges (imaging, spine-surgery referral by
# code or by the surgeon's specialty, lumbar operation), as `evaluate` tells them apart.
ORDER_KINDS = frozenset({"lumbar-imaging", "surgical-referral", "surgeon-specialty", "lumbar-spine-surgery"})
RED_FLAG = "red-flag"
# Where each resource type keeps the codes that say what was ordered or done.
ORDER_CODES: dict[str, tuple[str, ...]] = {
    "ServiceRequest": ("code", "performerType"),
    "ImagingStudy": ("procedureCode",),
    "Procedure": ("code",),
    "DiagnosticReport": ("code",),
}
MEDICATION_TYPES = ("MedicationRequest", "MedicationStatement")
# Resource types whose `code` search parameter is their `code` element (FHIR R4 search parameters).
CODE_SEARCH = frozenset({"Observation", "Condition", "Procedure", "ServiceRequest", "DiagnosticReport"})


class LivePathway:
    """The live pathway for one rules profile and one CDS service (whose prefetch says what it reads)."""

    def __init__(self, rules: Rules, service: ServiceDef) -> None:
        self.rules = rules
        self.service = service
        # prefetch key → (resource type, is a search, its `code` filter): what the EHR would have sent.
        self.keys = {key: (template_resource_type(t), "?" in t, code_filter(t)) for key, t in service.prefetch.items()}
        self.read_types = frozenset(t for t, _, _ in self.keys.values()) | {"Patient", "Medication"}
        filters: dict[str, list[TokenSearch | None]] = {"Patient": [None], "Medication": [None]}
        for rtype, _, codes in self.keys.values():
            filters.setdefault(rtype, []).append(codes)
        # A type some key reads whole is always held (None); the others only through their token searches.
        self.filters: dict[str, list[TokenSearch] | None] = {
            rtype: None if None in searches else [s for s in searches if s is not None]
            for rtype, searches in filters.items()}

    def searched_codes(self) -> dict[str, frozenset[str]]:
        """For each type held only through code searches (none by system alone), every code they ask for:
        a resource of the type with none of them in its codings is in no prefetch key."""
        return {rtype: frozenset().union(*(s.all_codes() for s in searches))
                for rtype, searches in self.filters.items()
                if searches is not None and not any(s.systems for s in searches)}

    def load_models(self) -> None:
        """Import the R4B models the reader validates with now (about 0.1 s each), the set the service's
        workers load: forked workers then share them instead of each importing them again."""
        load_models(READ_ELEMENTS)

    # ---- inputs as the service gets them --------------------------------------------------------

    def prefetch(self, resources: Iterable[dict[str, Any]], catalogue: dict[str, dict[str, Any]]) -> dict[str, Any]:
        """The prefetch a conformant EHR would send with these resources on its server: a searchset
        per search key, the resource per read key, and referenced Medications included as a FHIR
        server's `_include` would (a Bulk export keeps them in Medication.ndjson)."""
        by_type: dict[str, list[dict[str, Any]]] = {}
        for resource in resources:
            by_type.setdefault(str(resource.get("resourceType")), []).append(resource)
        own_meds = {f"Medication/{m.get('id')}": m for m in by_type.get("Medication", ())}
        out: dict[str, Any] = {}
        for key, (rtype, search, codes) in self.keys.items():
            found = by_type.get(rtype, [])
            if not search:
                out[key] = found[0] if found else None
                continue
            if codes is not None:
                found = [r for r in found if codes.matches(r.get("code"))]
            entries = [{"resource": r, "search": {"mode": "match"}} for r in found]
            if rtype in MEDICATION_TYPES:
                entries += [{"resource": m, "search": {"mode": "include"}}
                            for m in _referenced_medications(found, own_meds, catalogue)]
            out[key] = {"resourceType": "Bundle", "type": "searchset", "entry": entries}
        return out

    def in_prefetch(self, resource: dict[str, Any]) -> bool:
        """Whether some prefetch key would hold this resource (the rest can be left out of every record)."""
        rtype = resource.get("resourceType")
        if rtype not in self.filters:
            return False
        searches = self.filters[rtype]  # type: ignore[index]
        if searches is None:
            return True
        for codes in searches:  # noqa: SIM110  # a loop, not any(): asked of every resource of every patient
            if codes.matches(resource.get("code")):
                return True
        return False

    def record(self, patient_id: str, resources: Iterable[dict[str, Any]],
               catalogue: dict[str, dict[str, Any]], memo: ReadMemo | None = None) -> PatientRecord:
        """The record the service would read from this prefetch; `memo` (one per patient) spares reading
        again a resource object an earlier day's record read."""
        return read_record(self.prefetch(resources, catalogue), patient_id, self.rules, memo)

    def drafts(self, orders: list[dict[str, Any]]) -> list[DraftOrder]:
        return read_draft_orders({"resourceType": "Bundle", "type": "collection",
                                  "entry": [{"resource": o} for o in orders]}, self.rules)

    def matches(self, resource: dict[str, Any]) -> list[Match]:
        """The value sets an order's (or a study's) codes fall in."""
        fields = ORDER_CODES.get(str(resource.get("resourceType")), ("code",))
        found, _ = match_concepts(self.rules, *(resource.get(f) for f in fields))
        return found

    def codes_in(self, resource: dict[str, Any], key: str, kind: str) -> bool:
        found, _ = match_concepts(self.rules, resource.get(key))
        return any(m.valueset.kind == kind for m in found)

    # ---- verdicts ---------------------------------------------------------------------------------

    def judge(self, record: PatientRecord, drafts: list[DraftOrder], day: date) -> list[Finding]:
        """What the order-sign service would find for these drafts, signed together on `day`."""
        return evaluate(record, drafts, self.rules, day, None)

    def invalid_orders(self, findings: list[Finding]) -> set[str]:
        """Orders the service would refuse (422) rather than comment on: not valid R4."""
        return {f.order.ref for f in findings if validate_resource(f.order.resource)}

    def red_flag_sufficient(self, record: PatientRecord, drafts: list[DraftOrder], day: date,
                            fired: dict[str, frozenset[str]]) -> dict[str, set[str]]:
        """For each order a red flag kept quiet, the red-flag categories each of which alone was enough.

        Judged by the pathway itself: once without any red flag (did a rule then fire that did not?),
        then with one category at a time."""
        present = {c for e in record.items for c in e.categories(RED_FLAG)}
        present |= {m.valueset.category for d in drafts for m in d.reasons
                    if m.valueset.kind == RED_FLAG and m.valueset.category}
        if not present:
            return {}
        without = rules_by_order(self.judge(*_keep_red_flags(record, drafts, set()), day))
        silenced = {ref for ref, rules in without.items() if rules - fired.get(ref, frozenset())}
        if not silenced:
            return {}
        out: dict[str, set[str]] = {ref: set() for ref in silenced}
        for category in sorted(present):
            alone = rules_by_order(self.judge(*_keep_red_flags(record, drafts, {category}), day))
            for ref in silenced:
                if not (alone.get(ref, frozenset()) - fired.get(ref, frozenset())):
                    out[ref].add(category)
        return out

    def cards(self, findings: list[Finding], record: PatientRecord, who: OrderingContext) -> list[IssuedCard]:
        return build_cards(self.rules, findings, record, who)


@dataclasses.dataclass(frozen=True)
class TokenSearch:
    """A FHIR token search on a CodeableConcept (`code=a|b,c`), as set probes."""

    pairs: frozenset[tuple[str, str]]  # "system|code"; "|code" is ("", code): a coding without a system
    codes: frozenset[str]  # "code": in any system
    systems: frozenset[str]  # "system|": any code of the system

    def all_codes(self) -> frozenset[str]:
        """Every code a coding must have to match (`systems` aside: any code of those)."""
        return self.codes | {code for _, code in self.pairs}

    def matches(self, concept: Any) -> bool:
        for coding in codings(concept):
            system, code = coding.get("system") or "", coding.get("code")
            if not isinstance(system, str):  # messy data: matches no system, nor "no system"
                system = None
            if isinstance(code, str) and ((system, code) in self.pairs or code in self.codes):
                return True
            if system in self.systems:
                return True
        return False


def code_filter(template: str) -> TokenSearch | None:
    """The `code=` token search of a prefetch template, or None when it has none the audit can apply
    (a modifier, or a type whose `code` parameter is not its `code` element): then every resource of
    the type is kept, as before, and the reader's own code checks decide."""
    rtype, _, query = template.partition("?")
    params = parse_qsl(query, keep_blank_values=True)
    if rtype not in CODE_SEARCH or any(name.startswith("code:") for name, _ in params):
        return None
    values = [v for name, value in params if name == "code" for v in value.split(",")]
    if not values:
        return None
    pairs, codes, systems = set(), set(), set()
    for value in values:
        system, bar, code = value.partition("|")
        if not bar:
            codes.add(value)
        elif code:
            pairs.add((system, code))
        else:
            systems.add(system)
    return TokenSearch(frozenset(pairs), frozenset(codes), frozenset(systems))


def rules_by_order(findings: list[Finding]) -> dict[str, frozenset[str]]:
    out: dict[str, set[str]] = {}
    for finding in findings:
        out.setdefault(finding.order.ref, set()).add(finding.rule_id)
    return {ref: frozenset(rules) for ref, rules in out.items()}


def _keep_red_flags(record: PatientRecord, drafts: list[DraftOrder],
                    keep: set[str]) -> tuple[PatientRecord, list[DraftOrder]]:
    """The record and drafts with red-flag meanings removed, except the categories in `keep`."""
    def kept(matches: tuple[Match, ...]) -> tuple[Match, ...]:
        return tuple(m for m in matches if m.valueset.kind != RED_FLAG or m.valueset.category in keep)

    items = []
    for e in record.items:
        matches = kept(e.matches)
        if matches:
            items.append(e if matches == e.matches else dataclasses.replace(e, matches=matches))
    new_drafts = [dataclasses.replace(d, reasons=kept(d.reasons)) for d in drafts]
    return dataclasses.replace(record, items=items), new_drafts


def _referenced_medications(requests: list[dict[str, Any]], own: dict[str, dict[str, Any]],
                            catalogue: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for request in requests:
        ref = request.get("medicationReference")
        # The same reading of the reference as the live reader's, so both find the same Medication.
        rid = referenced_id(ref.get("reference") if isinstance(ref, dict) else None, "Medication")
        if rid is None:
            continue
        key = f"Medication/{rid}"
        medication = own.get(key) or catalogue.get(key)
        if medication is not None:
            out[key] = medication
    return list(out.values())
