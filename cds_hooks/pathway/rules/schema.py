"""The shape of `rules/`: pydantic models for every rules file, and the names the pathway code relies on.

Everything clinical (codes, thresholds, wording, citations, prefetch templates)
is data; these models say what that data may look like. Nothing here knows a
clinical code.
"""

from __future__ import annotations

import re
from datetime import date as Date
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

Kind = Literal[
    "population",
    "prior-lumbar-surgery",
    "red-flag",
    "lumbar-imaging",
    "surgical-referral",
    "surgeon-specialty",
    "lumbar-spine-surgery",
    "conservative-care",
]
RuleId = Literal[
    "imaging-premature",
    "imaging-duplicate",
    "imaging-contrast",
    "referral-premature",
    "surgery-window",
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

# CDS Hooks 2.0 prefetch tokens for order-select / order-sign (spec section 1.5).
ALLOWED_PREFETCH_TOKENS = frozenset(
    {
        "context.patientId",
        "context.userId",
        "context.encounterId",
        "userPractitionerId",
        "userPractitionerRoleId",
        "userPatientId",
        "userRelatedPersonId",
    }
)
_TOKEN = re.compile(r"\{\{\s*([^}]*?)\s*\}\}")


class RulesError(Exception):
    """The rules could not be loaded. `problems` holds one line per mistake."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CodeSystem(_Strict):
    uri: str
    name: str
    hierarchical: bool = False


class Alternative(_Strict):
    code: str
    display: str


class Code(_Strict):
    system: str
    code: str = Field(min_length=1)
    display: str = Field(min_length=1)
    descendants: bool = False
    verified: bool = True
    alternative: Alternative | None = None


class Provenance(_Strict):
    """Where a published value set came from: a VSAC expansion found in a public repository."""

    oid: str
    name: str
    version: str
    url: str | None = None
    publisher: str | None = None
    expansion: str | None = None  # the expansion's identifier or timestamp
    repository: str
    path: str
    commit: str
    role: str | None = None  # exclusion, exclusion-partial, proxy, red-flag-support


class ValueSet(_Strict):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    kind: Kind
    title: str
    source: str = Field(min_length=3)
    category: str | None = None
    counts_when_inactive: bool = False
    modality: str | None = None
    contrast: bool | None = None
    text_match: list[str] = Field(default_factory=list)
    note: str | None = None
    # Set for a published value set imported whole (None for the project's curated sets).
    published: Provenance | None = None
    codes: list[Code] = Field(min_length=1)


class Citation(_Strict):
    title: str
    publisher: str
    year: int
    url: str = Field(pattern=r"^https?://")
    note: str | None = None


class ImagingSettings(_Strict):
    # NICE NG59 1.1.4: no routine imaging in non-specialist settings, no week count.
    warn_without_red_flags: bool
    min_symptom_weeks: int | None = Field(ge=0)
    conservative_trial_weeks: int | None = Field(ge=0)
    formal_pt_required: bool
    qualifying_modalities: list[str] = Field(min_length=1)
    expected_modalities: list[str]
    duplicate_lookback_months: int | None = Field(ge=0)
    duplicate_modalities: list[str]
    suggest_mri_without_contrast: bool
    contrast_justified_by: list[str]


class SurgerySettings(_Strict):
    min_formal_pt_weeks: int | None = Field(ge=0)
    require_conservative_care: bool
    qualifying_modalities: list[str] = Field(min_length=1)
    expected_modalities: list[str]
    window_months: int | None = Field(ge=0)


class Profile(_Strict):
    title: str
    description: str
    imaging: ImagingSettings
    surgery: SurgerySettings
    red_flags_silence: list[RuleId]
    citations: dict[RuleId, list[str]]


class RecordStatuses(_Strict):
    condition_clinical_excluded: list[str]
    condition_verification_excluded: list[str]
    procedure_counted: list[str]
    encounter_counted: list[str]
    medication_excluded: list[str]
    service_request_counted: list[str]
    imaging_excluded: list[str]


# The appropriateness rating an order gets when a rule fires on it (pathway.yaml `ratings`).
FindingRating = Literal["appropriate", "not-appropriate"]


class Pathway(_Strict):
    default_profile: str
    red_flag_categories: dict[str, str]
    modalities: dict[str, str]
    record_statuses: RecordStatuses
    ratings: dict[RuleId, FindingRating]
    profiles: dict[str, Profile]


class CodingText(_Strict):
    system: str
    code: str
    display: str


class SuggestionText(_Strict):
    label: str
    description: str


class RuleText(_Strict):
    indicator: Indicator
    topic: str
    summary: str
    headline: str
    reasons: dict[str, str]
    recommendation: str
    suggestions: list[SuggestionKind] = Field(default_factory=list)
    override_reasons: bool = True


class RuleTextOverride(_Strict):
    """Profile-specific wording: only the fields given replace the default text."""

    summary: str | None = None
    headline: str | None = None
    reasons: dict[str, str] | None = None
    recommendation: str | None = None
    suggestions: list[SuggestionKind] | None = None


class CardText(_Strict):
    source_label: str
    source_url: str = Field(pattern=r"^https?://")
    topic_system: str = Field(pattern=r"^(https?://|urn:)")
    override_reason_system: str = Field(pattern=r"^(https?://|urn:)")
    override_reasons: list[CodingText] = Field(min_length=1)
    # Codes of override_reasons after which override memory keeps the rule silent for the patient.
    durable_override_reasons: list[str] = Field(default_factory=list)
    headings: dict[str, str]
    evidence: dict[str, str]
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
        return base.model_copy(update=changes)


# The sandbox page's timeline lanes (timeline.py); sandbox.yaml labels each.
TimelineLane = Literal["episode", "red-flag", "care", "imaging", "surgery", "referral", "draft-order", "other"]
# Value set kinds a sandbox draft order's code may come from: the orders the pathway judges.
SANDBOX_ORDER_KINDS = ("lumbar-imaging", "surgical-referral", "lumbar-spine-surgery")


class CodeRef(_Strict):
    """A code named by system and code; its display comes from the value set that lists it."""

    system: str
    code: str = Field(min_length=1)


class SandboxOrder(CodeRef):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    label: str = Field(min_length=1)


class SandboxText(_Strict):
    """rules/sandbox.yaml: what the developer sandbox page offers and how it labels the timeline."""

    orders: list[SandboxOrder] = Field(min_length=1)
    pt_evaluation: CodeRef
    pt_session: CodeRef
    timeline_lanes: dict[TimelineLane, str]


class ServiceDef(_Strict):
    id: str = Field(pattern=r"^[A-Za-z0-9._-]+$")
    hook: HookName
    title: str
    description: str
    usageRequirements: str
    prefetch: dict[str, str]
    required: list[str]

    @field_validator("prefetch")
    @classmethod
    def _tokens_allowed(cls, templates: dict[str, str]) -> dict[str, str]:
        for key, template in templates.items():
            for token in _TOKEN.findall(template):
                if token not in ALLOWED_PREFETCH_TOKENS:
                    raise ValueError(f"prefetch {key!r} uses {{{{{token}}}}}, not a CDS Hooks 2.0 token")
        return templates


class ServiceFile(_Strict):
    services: list[ServiceDef] = Field(min_length=1)


GovernanceStatus = Literal["draft", "active", "retired"]


class Approval(_Strict):
    """Who approved this rules version, and when."""

    committee: str = Field(min_length=1)
    approver: str = Field(min_length=1)
    date: Date
    reference: str | None = None  # the minutes, ticket or decision record


class RuleScope(_Strict):
    """What one rule judges, for the rules doc and the FHIR export: the value-set kinds of the orders it
    looks at, the profile settings it reads (a section such as `imaging`, or one setting such as
    `imaging.min_symptom_weeks`), and the rules whose card, if any, takes precedence over its own."""

    orders: list[Kind] = Field(min_length=1)
    settings: list[str] = Field(min_length=1)
    unless: list[RuleId] = Field(default_factory=list)


class Governance(_Strict):
    """rules/governance.yaml: the version, status and approval of the pathway as a whole."""

    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9.-]{0,63}$")
    title: str = Field(min_length=1)
    description: str = Field(min_length=1)
    version: str = Field(pattern=r"^[0-9]+(\.[0-9]+)*([-+][0-9A-Za-z.-]+)?$")
    status: GovernanceStatus
    effective: Date
    publisher: str = Field(min_length=1)
    canonical: str = Field(pattern=r"^https?://[^\s]+[^/\s]$")  # base of the FHIR canonical URLs
    approval: Approval | None = None
    rules: dict[RuleId, RuleScope]


class CodeSystemFile(_Strict):
    code_systems: list[CodeSystem] = Field(min_length=1)


class ValueSetFile(_Strict):
    valuesets: list[ValueSet]


class CitationFile(_Strict):
    citations: dict[str, Citation]
