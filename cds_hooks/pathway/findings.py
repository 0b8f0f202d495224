"""What the evaluation produces (findings with reason keys, no wording) and the date arithmetic it shares."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any

from cds_hooks.fhir.resources import completed_years
from cds_hooks.pathway.durations import duration, weeks
from cds_hooks.pathway.facts import DraftOrder, Evidence

__all__ = ["Finding", "Reason", "age_years", "duration", "months_before", "weeks"]


@dataclass(frozen=True)
class Reason:
    """A message key from the rule's `reasons` (or cards.yaml `basis`) templates and its parameters."""

    key: str
    params: dict[str, str] = field(default_factory=dict)


@dataclass
class Finding:
    rule_id: str
    order: DraftOrder
    reasons: list[Reason]
    found: list[Evidence] = field(default_factory=list)
    missing: list[Reason] = field(default_factory=list)
    notes: list[Reason] = field(default_factory=list)
    # Lines for the card's basis beyond what was checked (cards.yaml `basis` keys).
    basis: list[Reason] = field(default_factory=list)
    replacement: dict[str, Any] | None = None  # the updated order, for update suggestions
    omit_suggestions: set[str] = field(default_factory=set)


def months_before(day: date, months: int) -> date:
    year, month = divmod(day.year * 12 + day.month - 1 - months, 12)
    for dom in (day.day, 30, 29, 28):
        try:
            return date(year, month + 1, dom)
        except ValueError:
            continue
    raise ValueError(day)


def age_years(born: date | None, today: date) -> int | None:
    """Completed years of age on `today`; None when the birth date is unknown."""
    return None if born is None else completed_years(born, today)
