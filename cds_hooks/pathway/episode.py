"""The current back-pain episode, and where its onset comes from.

An episode starts after a gap of at least `episode.gap_days` (HEDIS LBP: 180) without
back-pain evidence: a back-pain diagnosis (its onset or recorded date), a formal PT
session, or a visit whose reason is back pain. Today's order belongs to the episode.
Only care inside the episode counts toward the conservative trial.

The onset is the earliest `onset[x]` of the episode's diagnoses (an active diagnosis
belongs to it even when its onset is years back: chronic pain), else the earliest
evidence of the episode, and the card says which.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

from cds_hooks.pathway.facts import Evidence, PatientRecord
from cds_hooks.pathway.rules import FORMAL_PT, Rules

SESSION_TYPES = ("Procedure", "Encounter")


@dataclass(frozen=True)
class Episode:
    start: date  # the first evidence of the current episode (today when nothing earlier is dated)
    onset: date | None
    onset_source: str | None  # cards.yaml basis.onset_sources: onset, recorded, pt, encounter
    conditions: list[Evidence] = field(default_factory=list)  # its back-pain diagnoses, for the card


def is_session(e: Evidence) -> bool:
    """A formal PT session (a procedure or visit), as opposed to a PT referral."""
    return e.resource_type in SESSION_TYPES and e.has("conservative-care", FORMAL_PT)


def _evidence_dates(record: PatientRecord, today: date) -> list[tuple[date, str, Evidence]]:
    dated: list[tuple[date, str, Evidence]] = []
    for e in record.select("population", "Condition"):
        if e.onset:
            dated.append((e.onset, "onset", e))
        if e.recorded:
            dated.append((e.recorded, "recorded", e))
    for e in record.items:
        if e.start is None:
            continue
        if is_session(e):
            dated.append((e.start, "pt", e))
        elif e.resource_type == "Encounter" and e.reasons:
            dated.append((e.start, "encounter", e))
    return [d for d in dated if d[0] <= today]


def current_episode(record: PatientRecord, rules: Rules, today: date) -> Episode:
    gap = rules.pathway.episode.gap_days
    dated = sorted(_evidence_dates(record, today), key=lambda d: d[0], reverse=True)
    start = today
    for day, _, _ in dated:
        if (start - day).days >= gap:
            break
        start = min(start, day)
    inside = [d for d in dated if d[0] >= start]
    conditions = [e for e in record.select("population", "Condition")
                  if e.active or any(d[2] is e for d in inside)]
    onsets = [e.onset for e in conditions if e.onset]
    if onsets:
        return Episode(start, min(onsets), "onset", conditions)
    first = min(inside, key=lambda d: (d[0], d[1] != "recorded"), default=None)
    if first is None:
        return Episode(start, None, None, conditions)
    return Episode(start, first[0], first[1], conditions)
