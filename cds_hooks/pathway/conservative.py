"""Conservative care in the current episode: what was done, when it started, and formal PT sessions.

Formal PT counts as sessions on distinct days, dated up to today (a plan's future end never
counts); a PT referral is "PT ordered", never PT done. A medication covers the days from its
start to its end (the end it states, today while it is still being taken, else the default
supply), and counts from the episode's start when it began before.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

from cds_hooks.fhir.resources import add_days
from cds_hooks.pathway.episode import Episode, is_session
from cds_hooks.pathway.facts import Evidence, PatientRecord
from cds_hooks.pathway.rules import FORMAL_PT, Rules

MEDICATION_TYPES = ("MedicationRequest", "MedicationStatement")


def medication_days(e: Evidence, rules: Rules, today: date) -> tuple[date, date] | None:
    """The days a medication covers as a half-open interval [first day, day after the last).

    The end it states (a period, bounds, supply times refills), else the default supply; and while
    its status says it is still being taken, at least up to today (an active long-term prescription
    with a 30-day supply is refilled, not stopped)."""
    if e.start is None:
        return None
    if e.end is not None:
        stop = add_days(max(e.end, e.start), 1)
    elif e.supply_days:
        stop = add_days(e.start, e.supply_days)
    else:
        ongoing_only = e.status in rules.pathway.record_statuses.medication_ongoing
        stop = add_days(e.start, 1 if ongoing_only else rules.pathway.medications.default_supply_days)
    if e.status in rules.pathway.record_statuses.medication_ongoing:
        stop = max(stop, add_days(today, 1))
    return e.start, stop


@dataclass(frozen=True)
class CareItem:
    evidence: Evidence
    start: date  # when it counts from in this episode


@dataclass
class Care:
    done: list[CareItem] = field(default_factory=list)  # care given in the episode (no referrals)
    sessions: list[date] = field(default_factory=list)  # formal PT session days, sorted, distinct
    last_session_end: date | None = None  # the last session, or an in-progress period up to today
    pt_ordered: list[Evidence] = field(default_factory=list)  # PT referrals in the episode
    earlier: list[Evidence] = field(default_factory=list)  # care before the episode began
    requires: dict[str, list[str]] = field(default_factory=dict)

    def documented(self) -> set[str]:
        """Modalities documented in the episode, after the profile's `modality_requires`."""
        raw = {c for item in self.done for c in item.evidence.categories("conservative-care")}
        return {m for m in raw if not self.requires.get(m) or raw & set(self.requires[m])}

    def items(self, modalities: list[str]) -> list[CareItem]:
        counted = self.documented() & set(modalities)
        return [i for i in self.done if i.evidence.categories("conservative-care") & counted]

    def start_of(self, modalities: list[str]) -> date | None:
        return min((i.start for i in self.items(modalities)), default=None)

    @property
    def evidence(self) -> list[Evidence]:
        return [i.evidence for i in self.done] + self.pt_ordered


def episode_care(record: PatientRecord, rules: Rules, episode: Episode, today: date) -> Care:
    care = Care(requires=dict(rules.profile.modality_requires))
    session_days: set[date] = set()
    for e in record.select("conservative-care"):
        if e.resource_type == "ServiceRequest":
            if e.has("conservative-care", FORMAL_PT) and e.start and episode.start <= e.start <= today:
                care.pt_ordered.append(e)
            continue
        if e.resource_type in MEDICATION_TYPES:
            days = medication_days(e, rules, today)
            if days is None or days[0] > today:
                continue
            if days[1] <= episode.start:
                care.earlier.append(e)
                continue
            care.done.append(CareItem(e, max(days[0], episode.start)))
            continue
        if e.start is None or e.start > today:
            continue
        if e.start < episode.start:
            care.earlier.append(e)
            continue
        care.done.append(CareItem(e, e.start))
        if is_session(e):
            session_days.add(e.start)
            end = min(e.end or e.start, today)
            care.last_session_end = max(care.last_session_end or end, end)
    care.sessions = sorted(session_days)
    care.pt_ordered.sort(key=lambda e: (e.start or today, *e.chrono()[1:]))
    return care
