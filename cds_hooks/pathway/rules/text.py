"""rules/cards.yaml: everything a clinician reads on a card, as templates with named fields."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from cds_hooks.pathway.rules.base import Indicator, RuleId, Strict, SuggestionKind, UnavailableReason

# Where the symptom onset on a card comes from (pathway.episode): the card says which.
OnsetSource = Literal["onset", "recorded", "pt", "encounter"]


class CodingText(Strict):
    system: str
    code: str
    display: str


class SuggestionText(Strict):
    label: str
    description: str


class RuleText(Strict):
    indicator: Indicator
    topic: str
    summary: str
    headline: str
    reasons: dict[str, str]
    recommendation: str
    # Said on the card when the rule rests on local pathway policy rather than a primary source.
    local_policy: str | None = None
    suggestions: list[SuggestionKind] = Field(default_factory=list)
    override_reasons: bool = True


class RuleTextOverride(Strict):
    """Profile-specific wording: only the fields given replace the default text ("" clears local_policy)."""

    summary: str | None = None
    headline: str | None = None
    reasons: dict[str, str] | None = None
    recommendation: str | None = None
    local_policy: str | None = None
    suggestions: list[SuggestionKind] | None = None


class BasisText(Strict):
    """The card's basis: exactly what was checked, and what a coded record cannot show."""

    checked: str  # {conditions} {medications} {temperatures} {age}
    code_lists: str  # {published} {curated}: the red-flag value sets and their versions
    age_known: str  # {years}
    age_unknown: str
    not_checkable: str
    onset_sources: dict[OnsetSource, str]
    earlier_episode: str  # {date} {gap}
    region_skipped: str  # {count} {examples}


class CardText(Strict):
    source_label: str
    source_url: str = Field(pattern=r"^https?://")
    topic_system: str = Field(pattern=r"^(https?://|urn:)")
    override_reason_system: str = Field(pattern=r"^(https?://|urn:)")
    override_reasons: list[CodingText] = Field(min_length=1)
    # Codes of override_reasons after which override memory keeps the rule silent for the patient.
    durable_override_reasons: list[str] = Field(default_factory=list)
    headings: dict[str, str]
    evidence: dict[str, str]
    basis: BasisText
    suggestions: dict[SuggestionKind, SuggestionText]
    # The description of the systemActions update that carries an order's appropriateness rating.
    rating_action: str
    pt_referral: dict[str, Any]
    unavailable: dict[UnavailableReason, str]
    history_labels: dict[str, str]
    rules: dict[RuleId, RuleText]
    profile_overrides: dict[str, dict[RuleId, RuleTextOverride]] = Field(default_factory=dict)

    def rule_text(self, profile: str, rule_id: str) -> RuleText:
        base = self.rules[rule_id]  # type: ignore[index]
        override = self.profile_overrides.get(profile, {}).get(rule_id)  # type: ignore[call-overload]
        if override is None:
            return base
        changes = override.model_dump(exclude_none=True)
        if "reasons" in changes:
            changes["reasons"] = {**base.reasons, **changes["reasons"]}
        if changes.get("local_policy") == "":
            changes["local_policy"] = None
        return base.model_copy(update=changes)
