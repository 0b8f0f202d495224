"""`Rules`: the validated pathway with one profile chosen, as the evaluation and the cards use it."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from cds_hooks.pathway.rules.index import CodeIndex
from cds_hooks.pathway.rules.schema import (
    CardText,
    Citation,
    Code,
    CodeRef,
    CodeSystem,
    Governance,
    NotUsed,
    Pathway,
    Profile,
    RuleText,
    SandboxText,
    ServiceDef,
    ValueSet,
)


@dataclass(frozen=True)
class Rules:
    """The validated pathway, with the active profile chosen."""

    profile_id: str
    profile: Profile
    pathway: Pathway
    valuesets: dict[str, ValueSet]
    code_systems: dict[str, CodeSystem]
    citations: dict[str, Citation]
    cards: CardText
    services: dict[str, ServiceDef]
    index: CodeIndex
    source_dir: Path
    sandbox: SandboxText
    governance: Governance
    # Published sets deliberately not used, with why (rules/valuesets/published/decisions.yaml).
    published_not_used: list[NotUsed] = field(default_factory=list)

    @cached_property
    def pt_referral(self) -> dict[str, Any]:
        """The PT-referral template as exact R4 JSON, built through fhir.resources R4B."""
        return build_pt_referral(self.cards.pt_referral)

    @cached_property
    def vital_sign_codes(self) -> frozenset[tuple[str, str]]:
        """(system, code) of every vital-sign value set: the reader's cheap first test for an Observation."""
        return frozenset((c.system, c.code) for vs in self.valuesets.values() if vs.kind == "vital-sign"
                         for c in vs.codes)

    @cached_property
    def red_flag_lists(self) -> tuple[list[str], int]:
        """The published red-flag value sets as 'name vVERSION', and how many curated ones (the card basis)."""
        flags = [vs for vs in self.valuesets.values() if vs.kind == "red-flag"]
        published = sorted({f"{vs.published.name} v{vs.published.version}" for vs in flags if vs.published})
        return published, sum(1 for vs in flags if not vs.published)

    def card_text(self, rule_id: str) -> RuleText:
        return self.cards.rule_text(self.profile_id, rule_id)

    def citations_for(self, rule_id: str) -> list[Citation]:
        return [self.citations[c] for c in self.profile.citations.get(rule_id, [])]  # type: ignore[call-overload]

    def system_name(self, uri: str) -> str:
        system = self.code_systems.get(uri)
        return system.name if system else uri

    def code(self, ref: CodeRef) -> Code:
        """The value set entry for a code the rules name (every CodeRef is checked at load)."""
        return self.index.entry(ref.system, ref.code)[0].code


def build_pt_referral(template: dict[str, Any]) -> dict[str, Any]:
    from cds_hooks.fhir.resources import build

    # A placeholder subject makes the template a complete ServiceRequest to validate.
    built = build("ServiceRequest", {**template, "resourceType": "ServiceRequest",
                                     "subject": {"reference": "Patient/template"}})
    del built["subject"]
    return built
