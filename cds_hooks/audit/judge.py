"""One patient, judged: the function both engines run for every patient.

Given the patient's raw NDJSON lines, it finds the orders to audit, judges each day's orders together
on the record as it stood that day (through the live pathway, `adapter`), works out which red flags
kept quiet an order that would otherwise have been warned about, places the patient in each measure,
and adds it all to a `Tally`. Nothing it adds names the patient.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date
from functools import cached_property
from typing import TYPE_CHECKING, Any

import orjson

from cds_hooks.audit import asof, deident
from cds_hooks.audit.adapter import ORDER_CODES, RED_FLAG, LivePathway, rules_by_order
from cds_hooks.audit.audit_rules import Measure
from cds_hooks.audit.measure import INDEX_TYPES, evaluate_measure, index_date
from cds_hooks.audit.orders import AuditedOrder, by_day, find_orders
from cds_hooks.audit.partition import CATALOGUE_TYPES
from cds_hooks.audit.sieve import Sieve
from cds_hooks.audit.tally import Tally
from cds_hooks.fhir.resources import add_days, referenced_id
from cds_hooks.pathway.cards import OrderingContext
from cds_hooks.pathway.record import EVIDENCE_KINDS, ReadMemo

if TYPE_CHECKING:
    from cds_hooks.pathway.record import PatientRecord

NOT_RECORDED = "not recorded"
NAMED_TYPES = tuple(sorted(CATALOGUE_TYPES - {"Medication"}))  # who ordered, and where: named in the report
# The types the judge reads every resource of, not only those the prefetch would hold: orders and what
# they left (`find_orders`), diagnoses (a measure's index) and encounters (where an order was placed).
# Of any other type it sees only what the prefetch holds, so the routing `Sieve` may pass the rest over.
WHOLE_TYPES = frozenset({*ORDER_CODES, *INDEX_TYPES, "Encounter"})


@dataclass(frozen=True)
class AuditOptions:
    period: tuple[date, date]
    match_days: int = 30  # a study this many days after an order of its kind is that order's result
    followup_days: int = 28  # a red flag recorded this soon after a warned order is reported
    samples: int = 0  # de-identified example cards kept per rule


class _Patient:
    """One patient's resources, those the prefetch would hold, their known dates, and the record as it
    stands today, each worked out at most once and only when asked for (most patients in a measure have
    no order to judge, so no day to rebuild the record for)."""

    def __init__(self, patient_id: str, read: list[dict[str, Any]], pathway: LivePathway,
                 catalogue: dict[str, dict[str, Any]], encounters: Iterable[dict[str, Any]],
                 asked: frozenset[str]) -> None:
        self.id = patient_id
        self.asked = asked  # the value-set kinds the record as it stands today is asked about
        self.read = read  # of the types the pathway reads, held by the prefetch or not
        self.pathway = pathway
        self.catalogue = catalogue
        self._encounters = encounters
        self._full: PatientRecord | None = None
        self._diagnoses: PatientRecord | None = None
        self.memo = ReadMemo()  # most resources are read again for each day: read once

    def held(self, keep: Callable[[dict[str, Any]], bool] | None = None) -> list[dict[str, Any]]:
        """The resources some prefetch key holds, of those `keep` takes (asked first: the prefetch's code
        searches are the dearer test, and most of a chart's body temperatures are only read for orders)."""
        in_prefetch = self.pathway.in_prefetch
        return [r for r in self.read if (keep is None or keep(r)) and in_prefetch(r)]

    @cached_property
    def encounters(self) -> dict[str, dict[str, Any]]:
        """By reference, for where an order was placed (asked only of a patient with orders)."""
        return {f"Encounter/{e.get('id')}": e for e in self._encounters}

    @cached_property
    def timeline(self) -> asof.Timeline:
        return asof.Timeline(self.held())

    def diagnoses(self) -> PatientRecord:
        """The record of the patient's Conditions alone (with their birth date), enough to find a measure's
        index date: most patients diagnosed at some time have none in the period, so no more is read."""
        if self._diagnoses is None:
            resources = self.held(lambda r: r.get("resourceType") in INDEX_TYPES)
            self._diagnoses = self.pathway.record(self.id, resources, self.catalogue, self.memo)
        return self._diagnoses

    def full(self) -> PatientRecord:
        """The record as it stands today, of the resources whose evidence can hold a kind it is asked
        about (most of a chart's body temperatures are read only for a day's orders)."""
        if self._full is None:
            resources = self.held(lambda r: _may_answer(r, self.asked))
            self._full = self.pathway.record(self.id, resources, self.catalogue, self.memo)
        return self._full


class PatientJudge:
    def __init__(self, pathway: LivePathway, measures: list[Measure], options: AuditOptions) -> None:
        self.pathway = pathway
        self.measures = measures
        self.options = options
        self.diagnosis_kinds = {m.diagnosis_kind for m in measures}
        # What the record as it stands today is asked: the measures' meanings, and red flags after a warning.
        self.asked_today = frozenset({RED_FLAG, *(k for m in measures for k in (
            m.diagnosis_kind, m.imaging_kind, *(x.kind for x in m.exclusions)))})
        # In-process callers (tests, the equivalence check) may collect every verdict here:
        # (patient id, order ref, rules fired, outcome). Never written to any output.
        self.trace: list[tuple[str, str, frozenset[str], str]] | None = None
        # Lines no prefetch search can hold, of a type read only through the prefetch: never routed.
        self.sieve = Sieve({t: codes for t, codes in pathway.searched_codes().items() if t not in WHOLE_TYPES})

    def __call__(self, patient_id: str, lines: list[bytes], catalogue: dict[str, dict[str, Any]],
                 tally: Tally) -> None:
        by_type: dict[str, list[dict[str, Any]]] = {}  # of WHOLE_TYPES
        read = self._parse(sorted(lines), tally, by_type)  # the same order whatever the engine read first
        tally.add("data", "patients")
        orders = find_orders(self.pathway, by_type, self.options.period, self.options.match_days)
        diagnosed = any(self.pathway.codes_in(c, "code", kind) for c in by_type.get("Condition", ())
                        for kind in self.diagnosis_kinds)
        if not orders and not diagnosed:
            return  # nothing to judge or measure: no record is read
        patient = _Patient(patient_id, read, self.pathway, catalogue, by_type.get("Encounter", ()), self.asked_today)
        if orders:
            tally.add("data", "patients-with-orders")
            for day, group in by_day(orders).items():
                self._judge_day(patient, day, group, tally)
        if diagnosed:
            for measure in self.measures:
                if index_date(measure, patient.diagnoses(), self.options.period) is not None:
                    self._measure(measure, patient.full(), tally)

    def _parse(self, lines: list[bytes], tally: Tally, by_type: dict[str, list[dict[str, Any]]]
               ) -> list[dict[str, Any]]:
        """The resources of the types the pathway reads (which of them the prefetch holds is asked only of
        a patient with something to judge or measure); those of WHOLE_TYPES also by type into `by_type`."""
        out = []
        read = self.pathway.read_types
        types: dict[str, int] = {}
        unreadable = 0
        for line in lines:
            try:
                res = orjson.loads(line)
            except orjson.JSONDecodeError:
                unreadable += 1
                continue
            rtype = res.get("resourceType") if isinstance(res, dict) else None
            if not isinstance(rtype, str):
                unreadable += 1
                continue
            types[rtype] = types.get(rtype, 0) + 1
            if rtype not in read:
                continue
            if rtype in WHOLE_TYPES:
                by_type.setdefault(rtype, []).append(res)
            out.append(res)
        for rtype, n in types.items():
            tally.add("data", "resources", rtype, n=n)
        if unreadable:
            tally.add("data", "unreadable", n=unreadable)
        return out

    def _judge_day(self, patient: _Patient, day: date, group: list[AuditedOrder], tally: Tally) -> None:
        hidden = {id(r) for o in group for r in (o.resource, *o.footprint)}
        history = patient.timeline.history(day, hidden)
        record = self.pathway.record(patient.id, history, patient.catalogue, patient.memo)
        drafts = self.pathway.drafts([o.draft for o in group])
        findings = self.pathway.judge(record, drafts, day)
        fired = rules_by_order(findings)
        refused = self.pathway.invalid_orders(findings)
        quiet = self.pathway.red_flag_sufficient(record, drafts, day, fired)
        for order in group:
            ref = f"ServiceRequest/{order.draft['id']}"
            metrics = ["orders"]
            if record.skipped:
                metrics.append("unreadable-history")
            if ref in refused:
                metrics.append("refused")
            elif ref in fired:
                metrics += ["warned", *(f"rule:{r}" for r in sorted(fired[ref]))]
                if _red_flag_after(patient.full(), day, self.options.followup_days):
                    metrics.append("warned-then-red-flag")
                for rule in sorted(fired[ref]):
                    self._offer_sample(patient.id, order, rule, history, group, patient.catalogue, tally)
            elif ref in quiet:
                metrics.append("red-flag")
                for category in sorted(quiet[ref]):
                    tally.add("red-flag", category)
            else:
                metrics.append("silent")
            tally.add_order(_dimensions(order, patient.encounters, patient.catalogue), metrics)
            if self.trace is not None:
                outcome = next(m for m in ("refused", "warned", "red-flag", "silent") if m in metrics)
                self.trace.append((patient.id, order.ref, fired.get(ref, frozenset()), outcome))

    def _measure(self, measure: Measure, record: Any, tally: Tally) -> None:
        result = evaluate_measure(measure, record, self.options.period)
        if result is None:
            return
        metrics = ["index", result.status, *(f"excluded:{x}" for x in result.exclusions)]
        if result.status == "denominator" and result.imaged:
            metrics.append("numerator")
        dims = [("all", "all"), ("month", result.index_month)]
        if result.stratum:
            dims.append(("stratum", result.stratum))
        for dimension, value in dims:
            for metric in metrics:
                tally.add("measure", measure.id, dimension, value, metric)

    def _offer_sample(self, patient_id: str, order: AuditedOrder, rule: str, history: list[dict[str, Any]],
                      group: list[AuditedOrder], catalogue: dict[str, dict[str, Any]], tally: Tally) -> None:
        key = hashlib.blake2b(f"{patient_id}|{order.ref}|{rule}".encode(), digest_size=12).digest()
        if not tally.wants_sample(rule, key):
            return
        scrubber = deident.Scrubber(patient_id)
        included = self.pathway.prefetch(history, catalogue)
        everything = [r for v in included.values() if isinstance(v, dict)
                      for r in ([e["resource"] for e in v.get("entry", ())] if v.get("resourceType") == "Bundle"
                                else [v])]
        record = self.pathway.record(deident.PATIENT, [scrubber.resource(r) for r in everything], {})
        drafts = self.pathway.drafts([scrubber.resource(o.draft) for o in group])
        target = "ServiceRequest/" + scrubber.new_ref(f"ServiceRequest/{order.draft['id']}").split("/", 1)[1]
        findings = [f for f in self.pathway.judge(record, drafts, order.day)
                    if f.order.ref == target and f.rule_id == rule]
        if not findings:
            return  # scrubbing changed the verdict: no sample rather than a misleading one
        who = OrderingContext(deident.PATIENT, "Practitioner/example", None, order.day)
        [issued] = self.pathway.cards(findings[:1], record, who)
        forbidden = deident.identifiers([*everything, order.resource], patient_id)
        card = deident.sample(issued.card.model_dump(mode="json", exclude_none=True), order.day, forbidden)
        if card is not None:
            tally.add_sample(rule, key, {"rule": rule, "category": order.category, "card": card})


def _may_answer(resource: dict[str, Any], asked: frozenset[str]) -> bool:
    """Whether the resource's evidence can hold one of the `asked` value-set kinds."""
    kinds = EVIDENCE_KINDS.get(resource.get("resourceType"))  # type: ignore[arg-type]
    return kinds is None or not kinds.isdisjoint(asked)


def _red_flag_after(record: Any, day: date, days: int) -> bool:
    until = add_days(day, days)
    return any(e.has(RED_FLAG) and e.start and day < e.start <= until for e in record.items)


def _reference(value: Any) -> str | None:
    if isinstance(value, list):
        value = value[0] if value else None
    if isinstance(value, dict) and isinstance(value.get("actor"), dict):
        value = value["actor"]
    if isinstance(value, dict) and isinstance(value.get("location"), dict):
        value = value["location"]
    ref = value.get("reference") if isinstance(value, dict) else None
    return ref if isinstance(ref, str) else None


def _catalogue_key(ref: str | None, *types: str) -> str | None:
    """`Type/id` of a reference to one of `types` (relative, absolute or versioned), as the catalogue keys it."""
    for rtype in types:
        if (rid := referenced_id(ref, rtype)) is not None:
            return f"{rtype}/{rid}"
    return None


def _name(ref: str | None, catalogue: dict[str, dict[str, Any]]) -> str:
    if ref is None:
        return NOT_RECORDED
    key = _catalogue_key(ref, *NAMED_TYPES) or "/".join(ref.rstrip("/").split("/")[-2:])
    res = catalogue.get(key)
    if res is None:
        return key
    name = res.get("name")
    if isinstance(name, str):
        return name
    for human in name if isinstance(name, list) else ():
        if isinstance(human, dict):
            text = human.get("text") or " ".join([*(human.get("given") or ()), human.get("family") or ""]).strip()
            prefix = " ".join(human.get("prefix") or ())
            if text:
                return f"{prefix} {text}".strip()
    return key


def _dimensions(order: AuditedOrder, encounters: dict[str, dict[str, Any]],
                catalogue: dict[str, dict[str, Any]]) -> dict[str, str]:
    """Where the order falls in the report: its month, kind, source and who ordered it where."""
    res = order.resource
    practitioner = next(filter(None, (_reference(res.get(k)) for k in
                                      ("requester", "referrer", "recorder", "asserter", "performer"))), None)
    organization = location = None
    if role_key := _catalogue_key(practitioner, "PractitionerRole"):
        role = catalogue.get(role_key, {})
        practitioner = _reference(role.get("practitioner")) or practitioner
        organization, location = _reference(role.get("organization")), _reference(role.get("location"))
    encounter = encounters.get(_catalogue_key(_reference(res.get("encounter")), "Encounter") or "")
    if encounter is not None:
        organization = organization or _reference(encounter.get("serviceProvider"))
        location = location or _reference(encounter.get("location"))
    location = location or _reference(res.get("location")) or _reference(res.get("locationReference"))
    return {"month": order.day.strftime("%Y-%m"), "category": order.category, "source": order.source,
            "practitioner": _name(practitioner, catalogue), "organization": _name(organization, catalogue),
            "location": _name(location, catalogue)}
