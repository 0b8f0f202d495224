"""What every rules model shares: strict frozen pydantic models, the error that lists every problem, and the
names the pathway code relies on (rule ids, value-set kinds). Nothing here knows a clinical code."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

Kind = Literal[
    "population",
    "prior-lumbar-surgery",
    "red-flag",
    "lumbar-imaging",
    "surgical-referral",
    "surgeon-specialty",
    "lumbar-spine-surgery",
    "conservative-care",
    "vital-sign",
    "body-site",
    "medication-route",
]
RuleId = Literal[
    "imaging-premature",
    "imaging-duplicate",
    "imaging-contrast",
    "referral-premature",
    "surgery-window",
    "surgery-fusion",
]
SuggestionKind = Literal["replace-with-pt", "remove-order", "use-mri-without-contrast"]
Indicator = Literal["info", "warning", "critical"]
HookName = Literal["order-select", "order-sign"]
# Why history could not be read (record.py, service.py); cards.yaml words each.
UnavailableReason = Literal[
    "not-sent", "not-allowed", "ehr-error", "no-context", "timeout", "refused", "server-error", "bad-response",
    "unreachable", "truncated",
]

# The one modality the pathway names: formal PT starts the imaging trial clock
# and is the surgery rule's subject. rules/ must define it (checked at load).
FORMAL_PT = "formal-pt"
# The body-site category that makes a region-agnostic code lumbar (rules/valuesets/orders.yaml).
LUMBAR_SITE = "lumbar"
# Routes after which a medication is not systemic (a topical NSAID is no NSAID trial).
NON_SYSTEMIC_ROUTE = "non-systemic"


class RulesError(Exception):
    """The rules could not be loaded. `problems` holds one line per mistake."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
