"""rules/cards.yaml: everything a clinician reads on a card and its basis page, as templates with named fields."""

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


class ReasonText(Strict):
    """One reason, worded three ways: in the summary, as a detail line, and in full on the basis page."""

    brief: str
    line: str
    basis: str


class RuleText(Strict):
    indicator: Indicator
    topic: str
    summary: str  # {order} {reasons}
    headline: str  # the basis page's lead
    reasons: dict[str, ReasonText]
    advice: str  # the card's recommendation, one sentence
    recommendation: str  # the basis page's, whole
    # Said on the card (and in full on the basis page) when the rule rests on local pathway policy
    # rather than a primary source.
    local_policy: str | None = None
    local_policy_detail: str | None = None
    basis_link: str | None = None  # the basis link's label, when not cards.yaml card.basis_link
    suggestions: list[SuggestionKind] = Field(default_factory=list)
    override_reasons: bool = True


class RuleTextOverride(Strict):
    """Profile-specific wording: only the fields given replace the default text ("" clears the local policy)."""

    summary: str | None = None
    headline: str | None = None
    reasons: dict[str, ReasonText] | None = None
    advice: str | None = None
    recommendation: str | None = None
    local_policy: str | None = None
    local_policy_detail: str | None = None
    suggestions: list[SuggestionKind] | None = None


class Budgets(Strict):
    """What a card may take (`rules check` holds every template to it, fields at their longest)."""

    summary_chars: int = Field(ge=20, le=139)  # CDS Hooks: the summary is under 140 characters
    summary_reasons: int = Field(ge=1)
    detail_lines: int = Field(ge=1)
    line_chars: int = Field(ge=20)
    facts: int = Field(ge=1)
    fact_chars: int = Field(ge=10)
    record_text_chars: int = Field(ge=8)
    link_label_chars: int = Field(ge=10)
    card_citations: int = Field(ge=0)


class CardLines(Strict):
    """The card's detail lines: their labels, the compact record facts, and the basis link's label."""

    labels: dict[str, str]
    facts: dict[str, str]
    not_read: str  # {keys}
    skipped: str  # {count}
    history_labels: dict[str, str]  # prefetch key → its short name on the "Not read" line
    onset_sources: dict[OnsetSource, str]
    basis_link: str


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
    memory_silenced: str  # {topic} {days}
    page_footer: str  # {version} {status} {profile} {rule} {expires}
    page_gone: str
    page_unavailable: str


class CardText(Strict):
    source_label: str
    source_url: str = Field(pattern=r"^https?://")
    topic_system: str = Field(pattern=r"^(https?://|urn:)")
    override_reason_system: str = Field(pattern=r"^(https?://|urn:)")
    override_reasons: list[CodingText] = Field(min_length=1)
    # Codes of override_reasons after which override memory keeps the rule silent for the patient.
    durable_override_reasons: list[str] = Field(default_factory=list)
    budgets: Budgets
    order_names: dict[str, str]  # value set id → the order's short name on a card
    modality_names: dict[str, str]  # modality → its short name on a card
    card: CardLines
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
        if override.reasons is not None:  # the models themselves: model_copy does not validate what it is given
            changes["reasons"] = {**base.reasons, **override.reasons}
        if changes.get("local_policy") == "":
            changes["local_policy"] = changes["local_policy_detail"] = None
        return base.model_copy(update=changes)
