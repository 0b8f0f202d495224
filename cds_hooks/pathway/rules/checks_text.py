"""Cross-file checks of the profiles (pathway.yaml), their citations and the card wording (cards.yaml).

The contract with the pathway code is here as data: which reason keys each rule's card can show and the
fields each template is filled with. `rules check` fails on a template that uses an unknown field or
misses one, so wording can change without touching code and never breaks a card.
"""

from __future__ import annotations

import string
from pathlib import Path
from typing import Any

from cds_hooks.pathway.rules.compiled import build_pt_referral
from cds_hooks.pathway.rules.schema import (
    FORMAL_PT,
    CardText,
    Citation,
    Pathway,
    RuleId,
    UnavailableReason,
    ValueSet,
)
from cds_hooks.pathway.rules.text import OnsetSource
from cds_hooks.pathway.rules.yamlsource import Loader

SUMMARY_FIELDS = frozenset({"order", "reasons"})
_WINDOW = {"start", "duration", "weeks", "months"}
_PRIOR = {"study", "date", "ago", "months"}
REASON_FIELDS: dict[str, dict[str, set[str]]] = {
    "imaging-premature": {
        "not_routine": set(),
        "symptoms_short": {"onset", "duration", "weeks", "threshold", "source"},
        "trial_missing": {"threshold"},
        "trial_short": {"start", "duration", "weeks", "threshold"},
        "trial_missing_pt": {"threshold"},
        "trial_pt_ordered": {"date", "threshold"},
        "trial_short_pt": {"start", "duration", "weeks", "threshold"},
        "trial_few_sessions": {"sessions", "min_sessions", "start"},
        "prior_imaging": _PRIOR,
        "missing_modality": {"modality"},
        "missing_onset": set(),
    },
    "imaging-duplicate": {"prior_imaging": _PRIOR},
    "imaging-contrast": {"contrast": set()},
    "referral-premature": {
        "pt_missing": {"threshold"},
        "pt_referral_only": {"date", "threshold"},
        "pt_short": {"first", "last", "sessions", "duration", "weeks", "threshold"},
        "pt_few_sessions": {"sessions", "min_sessions", "first", "last"},
        "conservative_missing": set(),
        "window": _WINDOW,
        "missing_modality": {"modality"},
    },
    "surgery-window": {"window": _WINDOW},
    "surgery-fusion": {"fusion": set()},
}
EVIDENCE_FIELDS: dict[str, set[str]] = {
    "condition": {"label", "code", "date"},
    "condition_recorded": {"label", "code", "date"},
    "condition_undated": {"label", "code"},
    "modality": {"modality", "label", "code", "dates"},
    "modality_many": {"modality", "count", "first", "last", "label"},
    "pt_sessions": {"modality", "count", "first", "last"},
    "pt_ordered": {"modality", "label", "code", "date"},
    "prior_imaging": {"label", "code", "date"},
    "skipped": {"count", "examples"},
    "order": {"order", "code"},
}
FACT_FIELDS: dict[str, set[str]] = {
    "condition": {"label", "date"},
    "condition_recorded": {"label", "date"},
    "condition_undated": {"label"},
    "modality": {"modality", "dates"},
    "modality_many": {"modality", "count", "first", "last"},
    "pt_sessions": {"modality", "count", "first", "last"},
    "pt_ordered": {"date"},
    "prior_imaging": {"label", "date"},
    "more": {"count"},
}
# Reasons that are not a "Why": what is missing (one line together), and notes (a line each).
MISSING_REASONS = frozenset({"missing_modality", "missing_onset"})
NOTE_REASONS: dict[str, frozenset[str]] = {"referral-premature": frozenset({"window"})}
CARD_LABELS = frozenset({"why", "note", "record", "missing", "not_read", "advice", "local_policy"})
PAGE_HEADINGS = frozenset({"why", "found", "missing", "basis", "recommendation", "not_checked", "local_policy",
                           "references", "memory", "order"})
BASIS_FIELDS: dict[str, set[str]] = {
    "checked": {"conditions", "medications", "temperatures", "age"},
    "code_lists": {"published", "curated"},
    "age_known": {"years"},
    "age_unknown": set(),
    "not_checkable": set(),
    "earlier_episode": {"date", "gap"},
    "region_skipped": {"count", "examples"},
    "memory_silenced": {"topic", "days"},
    "page_footer": {"version", "status", "profile", "rule", "expires"},
    "page_gone": set(),
    "page_unavailable": set(),
}


def _placeholders(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}


def enabled_rules(pathway: Pathway, profile: str) -> list[str]:
    """The rules a profile can fire: surgery-fusion only where the profile warns on fusion."""
    settings = pathway.profiles[profile]
    return [r for r in RuleId.__args__  # type: ignore[attr-defined]
            if r != "surgery-fusion" or settings.surgery.warn_on_fusion]


def check_profiles(
    ld: Loader, path: Path, raw: Any, pathway: Pathway, citations: dict[str, Citation],
    valuesets: dict[str, ValueSet], cards: CardText | None,
) -> None:
    if FORMAL_PT not in pathway.modalities:
        ld.problem(path, raw, ("modalities",), f"modalities must define {FORMAL_PT!r}; the pathway relies on it")
    elif not any(vs.kind == "conservative-care" and vs.category == FORMAL_PT for vs in valuesets.values()):
        ld.problem(path, raw, ("modalities", FORMAL_PT),
                   f"modality {FORMAL_PT!r}: no conservative-care value set has this category")
    for rule_id in sorted(set(RuleId.__args__) - set(pathway.ratings)):  # type: ignore[attr-defined]
        ld.problem(path, raw, ("ratings",), f"ratings: rule {rule_id} has no appropriateness rating")
    imaging = {vs.modality for vs in valuesets.values() if vs.kind == "lumbar-imaging"}
    vitals = {vs.category for vs in valuesets.values() if vs.kind == "vital-sign"}
    for name, flag in pathway.red_flags.items():
        loc = ("red_flags", name)
        if flag.vital_sign and flag.vital_sign.category not in vitals:
            ld.problem(path, raw, (*loc, "vital_sign"), f"red flag {name}: no vital-sign value set of category "
                       f"{flag.vital_sign.category!r}")
        rule = flag.medications
        if rule and rule.rule == "cumulative-days" and (rule.min_days is None or rule.min_days > rule.within_days):
            ld.problem(path, raw, (*loc, "medications"), f"red flag {name}: cumulative-days needs min_days <= "
                       "within_days")
        if any(len(c) != 1 or not c.isalnum() for c in flag.icd10_seventh_characters or ()):
            ld.problem(path, raw, (*loc, "icd10_seventh_characters"), f"red flag {name}: one character each")
    for name, prof in pathway.profiles.items():
        loc = ("profiles", name)
        wanted = [*prof.imaging.qualifying_modalities, *prof.imaging.expected_modalities,
                  *prof.surgery.qualifying_modalities, *prof.surgery.expected_modalities,
                  *prof.modality_requires, *(m for ms in prof.modality_requires.values() for m in ms)]
        for modality in wanted:
            if modality not in pathway.modalities:
                ld.problem(path, raw, loc, f"profile {name}: unknown modality {modality!r}")
        scans = [*prof.imaging.repeat_modalities, *(m for ms in prof.imaging.repeat_modalities.values() for m in ms),
                 *(prof.older_age.releases if prof.older_age else ())]
        for modality in scans:
            if modality not in imaging:
                ld.problem(path, raw, loc, f"profile {name}: {modality!r} is no lumbar-imaging modality")
        if "imaging-contrast" not in prof.red_flags_silence:
            # Safety: contrast advice for suspected abscess, cancer or cauda equina would be wrong.
            ld.problem(path, raw, (*loc, "red_flags_silence"), f"profile {name}: red flags must silence "
                       "imaging-contrast")
        if prof.surgery.warn_on_fusion and not any(
                vs.kind == "lumbar-spine-surgery" and vs.category == "fusion" for vs in valuesets.values()):
            ld.problem(path, raw, (*loc, "surgery"), f"profile {name}: warn_on_fusion needs a fusion value set")
        for rule_id in enabled_rules(pathway, name):
            refs = prof.citations.get(rule_id) or []  # type: ignore[call-overload]
            local = cards.rule_text(name, rule_id).local_policy if cards and rule_id in cards.rules else None
            if not refs and not local:
                ld.problem(path, raw, (*loc, "citations", rule_id),
                           f"profile {name}: rule {rule_id} has no citation and no local_policy wording")
            for ref in refs:
                if ref not in citations:
                    ld.problem(path, raw, (*loc, "citations", rule_id),
                               f"profile {name}: citation {ref!r} is not in citations.yaml")
                elif citations[ref].kind == "secondary":
                    ld.problem(path, raw, (*loc, "citations", rule_id),
                               f"profile {name}: {ref!r} is a secondary summary, never a card reference")


def _template(ld: Loader, path: Path, raw: Any, loc: tuple[Any, ...], name: str, template: str,
              fields: set[str]) -> None:
    used = _placeholders(template)
    if used - fields:
        ld.problem(path, raw, loc, f"{name}: unknown fields {sorted(used - fields)}; allowed {sorted(fields)}")


def check_cards(ld: Loader, path: Path, raw: Any, cards: CardText, profiles: Any) -> None:
    texts = [(("rules", rule_id), rule_id, text) for rule_id, text in cards.rules.items()]
    for profile, overrides in cards.profile_overrides.items():
        if profile not in profiles:
            ld.problem(path, raw, ("profile_overrides", profile), f"profile_overrides: unknown profile {profile!r}")
        for rule_id in overrides:
            if rule_id in cards.rules:
                loc = ("profile_overrides", profile, rule_id)
                texts.append((loc, rule_id, cards.rule_text(profile, rule_id)))
    for loc, rule_id, text in texts:
        extra = _placeholders(text.summary) - SUMMARY_FIELDS
        if extra:
            ld.problem(path, raw, (*loc, "summary"), f"{rule_id}: summary uses unknown fields {sorted(extra)}")
        expected = REASON_FIELDS.get(rule_id, {})
        for key in sorted(set(expected) - set(text.reasons)):
            ld.problem(path, raw, (*loc, "reasons"), f"{rule_id}: reason {key!r} has no template")
        for key, reason in text.reasons.items():
            if key not in expected:
                ld.problem(path, raw, (*loc, "reasons", key), f"{rule_id}: reason {key!r} is never used")
                continue
            for kind in ("brief", "line", "basis"):
                _template(ld, path, raw, (*loc, "reasons", key, kind), f"{rule_id}.{key}.{kind}",
                          getattr(reason, kind), expected[key])
        for field in ("advice", "recommendation", "headline", "local_policy", "local_policy_detail", "basis_link"):
            value = getattr(text, field)
            if value and _placeholders(value):
                ld.problem(path, raw, (*loc, field), f"{rule_id}.{field}: takes no fields")
        if bool(text.local_policy) != bool(text.local_policy_detail):
            ld.problem(path, raw, (*loc, "local_policy"),
                       f"{rule_id}: local_policy (the card's line) and local_policy_detail (the basis page) "
                       "go together")
        for kind in text.suggestions:
            if kind not in cards.suggestions:
                ld.problem(path, raw, (*loc, "suggestions"), f"{rule_id}: suggestion {kind!r} has no text")
    offered = {reason.code for reason in cards.override_reasons}
    for code in cards.durable_override_reasons:
        if code not in offered:
            ld.problem(path, raw, ("durable_override_reasons",),
                       f"durable_override_reasons: {code!r} is not one of the override_reasons")
    if not _placeholders(cards.rating_action) <= {"rating"}:
        ld.problem(path, raw, ("rating_action",), "rating_action: the only field is {rating}")
    for key, fields in EVIDENCE_FIELDS.items():
        if key not in cards.evidence:
            ld.problem(path, raw, ("evidence",), f"evidence: {key!r} has no template")
        else:
            _template(ld, path, raw, ("evidence", key), f"evidence.{key}", cards.evidence[key], fields)
    for key in sorted(set(cards.evidence) - set(EVIDENCE_FIELDS)):
        ld.problem(path, raw, ("evidence", key), f"evidence: {key!r} is never used")
    for key, fields in FACT_FIELDS.items():
        if key not in cards.card.facts:
            ld.problem(path, raw, ("card", "facts"), f"card.facts: {key!r} has no template")
        else:
            _template(ld, path, raw, ("card", "facts", key), f"card.facts.{key}", cards.card.facts[key], fields)
    for key in sorted(set(cards.card.facts) - set(FACT_FIELDS)):
        ld.problem(path, raw, ("card", "facts", key), f"card.facts: {key!r} is never used")
    _template(ld, path, raw, ("card", "not_read"), "card.not_read", cards.card.not_read, {"keys"})
    _template(ld, path, raw, ("card", "skipped"), "card.skipped", cards.card.skipped, {"count"})
    for names, wanted in (("labels", CARD_LABELS), ("headings", PAGE_HEADINGS)):
        given = cards.card.labels if names == "labels" else cards.headings
        for key in sorted(wanted - set(given)):
            ld.problem(path, raw, ("card", "labels") if names == "labels" else ("headings",),
                       f"{names}: {key!r} has no wording")
    for source in sorted(set(OnsetSource.__args__) - set(cards.card.onset_sources)):  # type: ignore[attr-defined]
        ld.problem(path, raw, ("card", "onset_sources"), f"card.onset_sources: {source!r} has no wording")
    for key, fields in BASIS_FIELDS.items():
        _template(ld, path, raw, ("basis", key), f"basis.{key}", getattr(cards.basis, key), fields)
    for source in sorted(set(OnsetSource.__args__) - set(cards.basis.onset_sources)):  # type: ignore[attr-defined]
        ld.problem(path, raw, ("basis", "onset_sources"), f"basis.onset_sources: {source!r} has no wording")
    try:
        build_pt_referral(cards.pt_referral)
    except (ValueError, TypeError) as exc:  # pydantic ValidationError is a ValueError
        ld.problem(path, raw, ("pt_referral",), f"pt_referral is not a valid R4 ServiceRequest: {exc}")
    for reason in UnavailableReason.__args__:  # type: ignore[attr-defined]
        template = cards.unavailable.get(reason)
        if template is None:
            ld.problem(path, raw, ("unavailable",), f"unavailable: reason {reason!r} has no line")
        elif _placeholders(template) != {"keys"}:
            ld.problem(path, raw, ("unavailable", reason), f"unavailable.{reason}: use exactly the field {{keys}}")
    missing = set(RuleId.__args__) - set(cards.rules)  # type: ignore[attr-defined]
    for rule_id in sorted(missing):
        ld.problem(path, raw, ("rules",), f"rule {rule_id} has no card text")
