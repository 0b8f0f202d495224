"""Red flags with time and status: coded conditions and procedures, medications, vital signs, order reasons.

Each red-flag category (pathway.yaml `red_flags`) says how far back to look, which date
counts (`onset` for a new sign; `latest` for a state: today while the condition is active,
else its last documentation), whether a resolved
condition still counts, and, for medications and vital signs, what makes them a red flag:
at least 90 days of glucocorticoids in the last year, an immunosuppressant in current use,
a body temperature of 38.0 C or more. ICD-10-CM 7th characters are applied when codes are
matched (rules/index.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from cds_hooks.pathway.conservative import MEDICATION_TYPES, medication_days
from cds_hooks.pathway.facts import DraftOrder, Evidence, PatientRecord
from cds_hooks.pathway.rules import Rules
from cds_hooks.pathway.rules.schema import RedFlagCategory


@dataclass(frozen=True)
class RedFlag:
    category: str
    evidence: Evidence | None  # None for an order's reasonCode
    via: str  # condition, procedure, medication, vital-sign, order


def _dated(e: Evidence, flag: RedFlagCategory, today: date) -> date | None:
    if e.resource_type != "Condition":
        return e.start
    if flag.dated_by == "onset":
        return e.onset or e.recorded  # a new sign: chronic incontinence since years is not new
    if e.active:
        return today  # a current state (IV drug use, long-term steroids, an infection under treatment)
    return max((d for d in (e.onset, e.recorded, e.abated) if d), default=None)


def _in_window(day: date | None, flag: RedFlagCategory, today: date) -> bool:
    if flag.lookback_days is None or day is None:
        return True  # any time; an undated red flag is not dismissed for want of a date
    return day >= today - timedelta(days=flag.lookback_days)


def _medication_flags(meds: list[Evidence], category: str, flag: RedFlagCategory, rules: Rules,
                      today: date) -> list[RedFlag]:
    rule = flag.medications
    if rule is None or not meds:
        return []
    horizon = today - timedelta(days=rule.within_days)
    spans = [(s, e, m) for m in meds if (d := medication_days(m, rules, today)) for s, e in [d]]
    if rule.rule == "current":
        current = [m for s, e, m in spans if e > horizon and s <= today]
        return [RedFlag(category, m, "medication") for m in current[:1]]
    covered: set[date] = set()
    for s, e, _ in spans:
        first, stop = max(s, horizon + timedelta(days=1)), min(e, today + timedelta(days=1))
        covered.update(first + timedelta(days=i) for i in range((stop - first).days))
    if rule.min_days is not None and len(covered) >= rule.min_days:
        latest = max(spans, key=lambda x: x[1])[2]
        return [RedFlag(category, latest, "medication")]
    return []


def record_red_flags(record: PatientRecord, rules: Rules, today: date) -> list[RedFlag]:
    """Every red flag the record holds today."""
    flags: list[RedFlag] = []
    meds: dict[str, list[Evidence]] = {}
    for e in record.select("red-flag"):
        for category in sorted(e.categories("red-flag")):
            flag = rules.pathway.red_flags[category]
            if e.resource_type in MEDICATION_TYPES:
                meds.setdefault(category, []).append(e)
                continue
            if e.resource_type not in ("Condition", "Procedure"):
                continue  # a referral or order for it is not the red flag itself
            if e.resource_type == "Condition" and not e.active and not flag.counts_when_inactive:
                continue
            if e.resource_type == "Procedure" and e.start is not None and e.start > today:
                continue  # dated in the future: it has not happened
            if _in_window(_dated(e, flag, today), flag, today):
                flags.append(RedFlag(category, e, e.resource_type.lower()))
    for category, items in meds.items():
        flags += _medication_flags(items, category, rules.pathway.red_flags[category], rules, today)
    for category, flag in rules.pathway.red_flags.items():
        rule = flag.vital_sign
        if rule is None:
            continue
        for e in record.select("vital-sign", "Observation", category=rule.category):
            if e.value is not None and e.value >= rule.min_value and e.start and e.start <= today \
                    and _in_window(e.start, flag, today):
                flags.append(RedFlag(category, e, "vital-sign"))
    return flags


def order_red_flags(order: DraftOrder, record: PatientRecord) -> list[RedFlag]:
    """Red flags the order itself states (reasonCode, or a reasonReference to a red-flag condition):
    the clinician asserts them now, so no window applies."""
    flags = [RedFlag(m.valueset.category or "", None, "order") for m in order.reason_has("red-flag")]
    for ref in order.reason_refs:
        e = record.find(ref)
        if e is not None:
            flags += [RedFlag(c, e, "order") for c in sorted(e.categories("red-flag"))]
    return flags
