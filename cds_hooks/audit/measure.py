"""The low back pain imaging measures (HEDIS LBP and CMS166 forms) for one patient.

Computed from the record the live reader builds, with the value-set kinds and red-flag categories
`rules/measures.yaml` names, so the measure and the pathway see the same diagnoses, red flags and
studies. The index date (IESD) is the first low back pain diagnosis in the intake period; the patient
is in the denominator when new to low back pain (none in the look-back), of the age band, and not
excluded; in the numerator when imaged on the index date or within the window after it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING

from cds_hooks.audit.audit_rules import Measure
from cds_hooks.fhir.resources import add_days, completed_years

if TYPE_CHECKING:
    from cds_hooks.pathway.record import Evidence, PatientRecord


@dataclass(frozen=True)
class MeasureResult:
    measure: str
    index_month: str  # YYYY-MM of the index date
    stratum: str | None  # None: outside the age band or no birth date
    status: str  # "prior-episode", "no-birth-date", "outside-age", "excluded", "denominator"
    exclusions: tuple[str, ...] = ()
    imaged: bool = False


def _within(e: Evidence, start: date | None, end: date) -> bool:
    if e.start is None:
        return start is None  # undated history counts only where "any time before" does
    return (start is None or start <= e.start) and e.start <= end


def _by_meaning(record: PatientRecord) -> dict[tuple[str, str | None], list[Evidence]]:
    """The record's items under (kind, category) and (kind, None), in record order: those for which
    `Evidence.has(kind, category)` and `Evidence.has(kind)` hold (a measure asks about 11 to 16)."""
    out: dict[tuple[str, str | None], list[Evidence]] = {}
    for e in record.items:
        for match in e.matches:
            kind = match.valueset.kind
            for key in ((kind, None), (kind, match.valueset.category)):
                items = out.setdefault(key, [])
                if not items or items[-1] is not e:
                    items.append(e)
    return out


# The index diagnosis is a Condition's, dated by its onset (an onset age needs the birth date): a record of
# these types alone has the same index as the whole record.
INDEX_TYPE = "Condition"
INDEX_TYPES = frozenset({INDEX_TYPE, "Patient"})


def _diagnoses(m: Measure, meaning: dict[tuple[str, str | None], list[Evidence]]) -> list[date]:
    return sorted(e.start for e in meaning.get((m.diagnosis_kind, None), ())
                  if e.resource_type == INDEX_TYPE and e.start)


def _index(m: Measure, diagnoses: list[date], period: tuple[date, date]) -> date | None:
    first, last = period
    intake_end = add_days(last, -m.intake_ends_days_before_period_end)
    return next((d for d in diagnoses if first <= d <= intake_end), None)


def index_date(m: Measure, record: PatientRecord, period: tuple[date, date]) -> date | None:
    """The first diagnosis in the intake period (None: the patient is not in the measure)."""
    return _index(m, _diagnoses(m, _by_meaning(record)), period)


def evaluate_measure(m: Measure, record: PatientRecord, period: tuple[date, date]) -> MeasureResult | None:
    """The patient's place in the measure, or None when no index diagnosis falls in the intake period."""
    first, last = period
    meaning = _by_meaning(record)
    diagnoses = _diagnoses(m, meaning)
    index = _index(m, diagnoses, period)
    if index is None:
        return None
    month = index.strftime("%Y-%m")
    look_back = add_days(index, -m.negative_history_days)
    if any(look_back <= d < index for d in diagnoses):
        return MeasureResult(m.id, month, None, "prior-episode")
    if record.birth_date is None:
        return MeasureResult(m.id, month, None, "no-birth-date")
    age = completed_years(record.birth_date, first if m.age.at == "period-start" else last)
    if not m.age.min <= age <= m.age.max:
        return MeasureResult(m.id, month, None, "outside-age")
    stratum = next((s.label for s in m.age.strata if s.min <= age <= s.max), None)
    excluded = []
    for ex in m.exclusions:
        start = None if ex.days_before is None else add_days(index, -ex.days_before)
        end = add_days(index, ex.days_after)
        types = ex.resource_types
        if ex.id not in excluded and any(_within(e, start, end) and (types is None or e.resource_type in types)
                                         for e in meaning.get((ex.kind, ex.category), ())):
            excluded.append(ex.id)
    if excluded:
        return MeasureResult(m.id, month, stratum, "excluded", tuple(excluded))
    until = add_days(index, m.imaging_within_days)
    imaged = any(e.resource_type in m.imaging_types and e.start and index <= e.start <= until
                 for e in meaning.get((m.imaging_kind, None), ()))
    return MeasureResult(m.id, month, stratum, "denominator", imaged=imaged)
