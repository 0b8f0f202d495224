"""The shape of `rules/`: pydantic models for every rules file, and the names the pathway code relies on.

Everything clinical (codes, thresholds, wording, citations, prefetch templates)
is data; these models say what that data may look like. Nothing here knows a
clinical code. The pathway's settings live in `settings`, the card wording in
`text`; both are re-exported here so `schema` stays the one place to import from.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date as Date
from typing import Literal

from pydantic import Field, field_validator

from cds_hooks.pathway.rules.base import (
    FORMAL_PT,
    LUMBAR_SITE,
    NON_SYSTEMIC_ROUTE,
    HookName,
    Indicator,
    Kind,
    RuleId,
    RulesError,
    Strict,
    SuggestionKind,
    UnavailableReason,
)
from cds_hooks.pathway.rules.settings import (
    EpisodeSettings,
    FindingRating,
    FormalPtSettings,
    ImagingSettings,
    MedicationRule,
    MedicationSettings,
    OlderAgeSettings,
    Pathway,
    PopulationSettings,
    Profile,
    RecordStatuses,
    RedFlagCategory,
    SurgerySettings,
    VitalSignRule,
)
from cds_hooks.pathway.rules.text import (
    BasisText,
    CardText,
    CodingText,
    RuleText,
    RuleTextOverride,
    SuggestionText,
)

_Strict = Strict  # the historical name

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


class CodeSystem(Strict):
    uri: str
    name: str
    # A code under a listed header matches it (ICD-10-CM: M54.5 -> M54.50); codes compare without dots.
    hierarchical: bool = False
    # The 7th character is an encounter extension (ICD-10-CM: A initial, D subsequent, S sequela).
    seventh_character_extension: bool = False


class Alternative(Strict):
    code: str
    display: str


# Whether a code says the body region itself. `implied`: the code is lumbar (72148). `required`: the code
# names no region (SNOMED 241645008 "MRI of spine", CPT 63048) and counts only with a lumbar bodySite.
# `assumed`: lumbar unless a bodySite names another region (Z98.1 arthrodesis status in a back-pain patient).
BodySiteRule = Literal["implied", "required", "assumed"]


class Code(Strict):
    system: str
    code: str = Field(min_length=1)
    display: str = Field(min_length=1)
    descendants: bool = False
    verified: bool = True
    alternative: Alternative | None = None
    body_site: BodySiteRule = "implied"


@dataclass(frozen=True, slots=True)
class PublishedCode:
    """A code of a published expansion: the same fields as `Code`, without pydantic, because
    some 14,000 of them are built at every start-up (their shape is checked as they are read)."""

    system: str
    code: str
    display: str
    descendants: bool = False
    verified: bool = True
    alternative: Alternative | None = None
    body_site: BodySiteRule = "implied"


class Exclusion(Strict):
    """A code a value set leaves out, with why and on what authority (published sets are never edited)."""

    system: str
    code: str = Field(min_length=1)
    display: str = Field(min_length=1)
    descendants: bool = False  # the code and every ICD-10-CM code under it
    reason: str = Field(min_length=10)
    source: str = Field(min_length=3)


class Provenance(Strict):
    """Where a published value set came from: a VSAC expansion found in a public repository."""

    oid: str
    name: str
    version: str
    url: str | None = None
    publisher: str | None = None
    expansion: str | None = None  # the expansion's identifier
    expansion_timestamp: str | None = None
    repository: str
    path: str
    commit: str
    role: str | None = None  # exclusion, exclusion-partial, proxy, red-flag-support
    pack_category: str | None = None  # what the reference pack says the set serves
    note: str | None = None
    code_count: int = Field(ge=1)  # as published; the import checks every code arrived
    code_system_versions: dict[str, list[str]] = Field(default_factory=dict)


class ValueSet(Strict):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    kind: Kind
    title: str
    source: str = Field(min_length=3)
    category: str | None = None
    modality: str | None = None
    contrast: bool | None = None
    note: str | None = None
    # Set for a published value set imported whole (None for the project's curated sets).
    published: Provenance | None = None
    # Why a published set is used for this kind and category (rules/valuesets/published/decisions.yaml).
    decision: str | None = None
    exclusions: list[Exclusion] = Field(default_factory=list)
    codes: list[Code] = Field(min_length=1)


CitationKind = Literal["guideline", "measure", "payer-policy", "secondary"]


class Citation(Strict):
    title: str
    # The card's link label: short enough never to be cut (cards.yaml budgets.link_label_chars).
    short_title: str = Field(min_length=3)
    publisher: str
    year: int
    url: str = Field(pattern=r"^https?://")
    # `secondary`: a summary (the seed pathway) kept for governance; never a card reference.
    kind: CitationKind = "guideline"
    note: str | None = None


# The sandbox page's timeline lanes (timeline.py); sandbox.yaml labels each.
TimelineLane = Literal["episode", "red-flag", "care", "imaging", "surgery", "referral", "draft-order", "other"]
# Value set kinds a sandbox draft order's code may come from: the orders the pathway judges.
SANDBOX_ORDER_KINDS = ("lumbar-imaging", "surgical-referral", "lumbar-spine-surgery")


class CodeRef(Strict):
    """A code named by system and code; its display comes from the value set that lists it."""

    system: str
    code: str = Field(min_length=1)


class SandboxOrder(CodeRef):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    label: str = Field(min_length=1)


class SandboxText(Strict):
    """rules/sandbox.yaml: what the developer sandbox page offers and how it labels the timeline."""

    orders: list[SandboxOrder] = Field(min_length=1)
    pt_evaluation: CodeRef
    pt_session: CodeRef
    timeline_lanes: dict[TimelineLane, str]


class ServiceDef(Strict):
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


class ServiceFile(Strict):
    services: list[ServiceDef] = Field(min_length=1)


GovernanceStatus = Literal["draft", "active", "retired"]


class Approval(Strict):
    """Who approved this rules version, and when."""

    committee: str = Field(min_length=1)
    approver: str = Field(min_length=1)
    date: Date
    reference: str | None = None  # the minutes, ticket or decision record


class RuleScope(Strict):
    """What one rule judges, for the rules doc and the FHIR export: the value-set kinds of the orders it
    looks at, the profile settings it reads (a section such as `imaging`, or one setting such as
    `imaging.min_symptom_weeks`), and the rules whose card, if any, takes precedence over its own."""

    orders: list[Kind] = Field(min_length=1)
    settings: list[str] = Field(min_length=1)
    unless: list[RuleId] = Field(default_factory=list)


class Governance(Strict):
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


class CodeSystemFile(Strict):
    code_systems: list[CodeSystem] = Field(min_length=1)


class ValueSetFile(Strict):
    valuesets: list[ValueSet]


class PublishedDecision(Strict):
    """rules/valuesets/published/decisions.yaml: how one imported set is used, and what it leaves out and why."""

    id: str
    decision: str = Field(min_length=20)
    exclusions: list[Exclusion] = Field(default_factory=list)


class NotUsed(Strict):
    """A published set deliberately not used, and why (kept for the governance record)."""

    oid: str
    name: str
    reason: str = Field(min_length=20)


class PublishedFile(Strict):
    published: list[PublishedDecision]
    not_used: list[NotUsed] = Field(default_factory=list)


class CitationFile(Strict):
    citations: dict[str, Citation]


__all__ = [
    "ALLOWED_PREFETCH_TOKENS", "FORMAL_PT", "LUMBAR_SITE", "NON_SYSTEMIC_ROUTE", "SANDBOX_ORDER_KINDS",
    "Alternative", "Approval", "BasisText", "BodySiteRule", "CardText", "Citation", "CitationFile", "Code", "CodeRef",
    "CodeSystem", "CodeSystemFile", "CodingText", "EpisodeSettings", "Exclusion", "FindingRating", "FormalPtSettings",
    "Governance", "GovernanceStatus", "HookName",
    "ImagingSettings", "Indicator", "Kind", "MedicationRule", "MedicationSettings", "NotUsed", "OlderAgeSettings",
    "Pathway", "PopulationSettings", "Profile", "Provenance", "PublishedCode", "PublishedDecision", "PublishedFile",
    "RecordStatuses", "RedFlagCategory", "RuleId", "RuleScope", "RuleText", "RuleTextOverride", "RulesError",
    "SandboxOrder", "SandboxText",
    "ServiceDef", "ServiceFile", "SuggestionKind", "SuggestionText", "SurgerySettings", "TimelineLane",
    "UnavailableReason", "ValueSet", "ValueSetFile", "VitalSignRule",
]
