"""Cross-file checks of `rules/`: what pydantic cannot see in one file alone.

Every problem is collected with its file and line (`Loader.problem`), so
`lumbar-cds rules check` lists all mistakes at once.
"""

from __future__ import annotations

import string
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from cds_hooks.pathway.rules.compiled import build_pt_referral
from cds_hooks.pathway.rules.schema import (
    FORMAL_PT,
    SANDBOX_ORDER_KINDS,
    CardText,
    Citation,
    CodeRef,
    CodeSystem,
    Governance,
    Pathway,
    Profile,
    RuleId,
    SandboxText,
    ServiceFile,
    TimelineLane,
    UnavailableReason,
    ValueSet,
)
from cds_hooks.pathway.rules.yamlsource import Loader, line_of


def check_valuesets(
    ld: Loader,
    valuesets: dict[str, ValueSet],
    where: dict[str, tuple[Path, Any, int]],
    code_systems: dict[str, CodeSystem],
    pathway: Pathway,
) -> None:
    seen: dict[tuple[str, str], tuple[str, str]] = {}
    for vs in valuesets.values():
        path, raw, i = where[vs.id]
        base = ("valuesets", i)
        if vs.kind == "red-flag" and vs.category not in pathway.red_flag_categories:
            ld.problem(path, raw, (*base, "category"),
                       f"{vs.id}: red-flag category {vs.category!r} is not in pathway.yaml red_flag_categories")
        if vs.kind == "conservative-care" and vs.category not in pathway.modalities:
            ld.problem(path, raw, (*base, "category"),
                       f"{vs.id}: modality {vs.category!r} is not in pathway.yaml modalities")
        if vs.kind == "lumbar-imaging" and not vs.modality:
            ld.problem(path, raw, base, f"{vs.id}: lumbar-imaging value sets need a modality")
        if vs.text_match and vs.kind != "conservative-care":
            ld.problem(path, raw, (*base, "text_match"), f"{vs.id}: text_match is only for medication sets")
        for j, code in enumerate(vs.codes):
            loc = (*base, "codes", j)
            system = code_systems.get(code.system)
            if system is None:
                ld.problem(path, raw, loc, f"{vs.id}: unknown code system {code.system!r} for code {code.code}")
                continue
            if code.descendants and not system.hierarchical:
                ld.problem(path, raw, loc, f"{vs.id}: descendants is only meaningful for hierarchical systems")
            if code.alternative and vs.contrast is not True:
                ld.problem(path, raw, loc, f"{vs.id}: alternative is only for with-contrast imaging sets")
            key = (code.system, code.code)
            here = f"{ld.rel(path)}:{line_of(raw, loc)}"
            if key in seen:
                other, there = seen[key]
                other_vs = valuesets[other]
                word = "contradicting" if (other_vs.kind, other_vs.category) != (vs.kind, vs.category) else "duplicate"
                ld.problem(path, raw, loc,
                           f"{vs.id}: code {code.system}|{code.code} is also in {other} at {there} ({word} value sets)")
            else:
                seen[key] = (vs.id, here)


def check_profiles(
    ld: Loader, path: Path, raw: Any, pathway: Pathway, citations: dict[str, Citation],
    valuesets: dict[str, ValueSet],
) -> None:
    if FORMAL_PT not in pathway.modalities:
        ld.problem(path, raw, ("modalities",), f"modalities must define {FORMAL_PT!r}; the pathway relies on it")
    elif not any(vs.kind == "conservative-care" and vs.category == FORMAL_PT for vs in valuesets.values()):
        ld.problem(path, raw, ("modalities", FORMAL_PT),
                   f"modality {FORMAL_PT!r}: no conservative-care value set has this category")
    for rule_id in sorted(set(RuleId.__args__) - set(pathway.ratings)):  # type: ignore[attr-defined]
        ld.problem(path, raw, ("ratings",), f"ratings: rule {rule_id} has no appropriateness rating")
    for name, prof in pathway.profiles.items():
        loc = ("profiles", name)
        for setting in (prof.imaging, prof.surgery):
            for modality in (*setting.qualifying_modalities, *setting.expected_modalities):
                if modality not in pathway.modalities:
                    ld.problem(path, raw, loc, f"profile {name}: unknown modality {modality!r}")
        for category in prof.imaging.contrast_justified_by:
            if category not in pathway.red_flag_categories:
                ld.problem(path, raw, loc, f"profile {name}: unknown red-flag category {category!r}")
        for rule_id in RuleId.__args__:  # type: ignore[attr-defined]
            refs = prof.citations.get(rule_id)
            if not refs:
                ld.problem(path, raw, (*loc, "citations", rule_id), f"profile {name}: rule {rule_id} has no citation")
                continue
            for ref in refs:
                if ref not in citations:
                    ld.problem(path, raw, (*loc, "citations", rule_id),
                               f"profile {name}: citation {ref!r} is not in citations.yaml")


def _placeholders(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}


# The contract with pathway.py: the reason keys each rule's card can show and
# the fields each one is filled with. Templates must cover these exactly.
_WINDOW = {"start", "duration", "months"}
_PRIOR = {"study", "date", "ago", "months"}
REASON_FIELDS: dict[str, dict[str, set[str]]] = {
    "imaging-premature": {
        "not_routine": set(),
        "symptoms_short": {"onset", "duration", "threshold"},
        "trial_missing": {"threshold"},
        "trial_missing_pt": {"threshold"},
        "trial_short": {"start", "duration", "threshold"},
        "trial_short_pt": {"start", "duration", "threshold"},
        "prior_imaging": _PRIOR,
        "missing_modality": {"modality"},
        "missing_onset": set(),
        "no_red_flags": {"checked"},
    },
    "imaging-duplicate": {"prior_imaging": _PRIOR},
    "imaging-contrast": {"contrast": set()},
    "referral-premature": {
        "pt_missing": {"threshold"},
        "pt_referral_only": {"date", "threshold"},
        "pt_short": {"first", "last", "sessions", "duration", "threshold"},
        "conservative_missing": set(),
        "window": _WINDOW,
        "missing_modality": {"modality"},
        "no_red_flags": {"checked"},
    },
    "surgery-window": {"window": _WINDOW},
}
SUMMARY_FIELDS = frozenset({"order"})
MAX_ORDER_NAME = 60


def check_cards(ld: Loader, path: Path, raw: Any, cards: CardText, profiles: Iterable[str]) -> None:
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
        longest = text.summary.replace("{order}", "x" * MAX_ORDER_NAME)
        if len(longest) >= 140:
            ld.problem(path, raw, (*loc, "summary"),
                       f"{rule_id}: summary can reach {len(longest)} characters; CDS Hooks needs < 140")
        expected = REASON_FIELDS.get(rule_id, {})
        for key in sorted(set(expected) - set(text.reasons)):
            ld.problem(path, raw, (*loc, "reasons"), f"{rule_id}: reason {key!r} has no template")
        for key, template in text.reasons.items():
            if key not in expected:
                ld.problem(path, raw, (*loc, "reasons", key), f"{rule_id}: reason {key!r} is never used")
                continue
            unknown = _placeholders(template) - expected[key]
            if unknown:
                ld.problem(path, raw, (*loc, "reasons", key),
                           f"{rule_id}.{key}: unknown fields {sorted(unknown)}; allowed {sorted(expected[key])}")
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


def setting_exists(path: str) -> bool:
    """Whether a dotted path names a profile field (a settings section, or a setting of its own) or one
    setting in a section."""
    section, _, name = path.partition(".")
    field = Profile.model_fields.get(section)
    if field is None or "." in name:
        return False
    model = field.annotation
    return not name or (isinstance(model, type) and name in getattr(model, "model_fields", {}))


def check_governance(ld: Loader, path: Path, raw: Any, gov: Governance) -> None:
    if gov.status != "draft" and gov.approval is None:
        ld.problem(path, raw, ("status",),
                   f"status {gov.status!r} needs an approval record (committee, approver, date)")
    if gov.approval and gov.approval.date > gov.effective:
        ld.problem(path, raw, ("approval", "date"),
                   f"approval date {gov.approval.date} is after the effective date {gov.effective}")
    for rule_id in sorted(set(RuleId.__args__) - set(gov.rules)):  # type: ignore[attr-defined]
        ld.problem(path, raw, ("rules",), f"rules: rule {rule_id} has no entry (orders, settings)")
    for rule_id, scope in gov.rules.items():
        loc = ("rules", rule_id)
        for i, setting in enumerate(scope.settings):
            if not setting_exists(setting):
                ld.problem(path, raw, (*loc, "settings", i), f"rules.{rule_id}: {setting!r} is not a profile setting")
        if rule_id in scope.unless:
            ld.problem(path, raw, (*loc, "unless"), f"rules.{rule_id}: a rule cannot take precedence over itself")


def check_services(ld: Loader, path: Path, raw: Any, doc: ServiceFile) -> None:
    ids: set[str] = set()
    for i, svc in enumerate(doc.services):
        loc = ("services", i)
        if svc.id in ids:
            ld.problem(path, raw, (*loc, "id"), f"service id {svc.id!r} defined twice")
        ids.add(svc.id)
        for key in svc.required:
            if key not in svc.prefetch:
                ld.problem(path, raw, (*loc, "required"), f"{svc.id}: required key {key!r} has no prefetch template")


def check_sandbox(
    ld: Loader, path: Path, raw: Any, sandbox: SandboxText, valuesets: dict[str, ValueSet]
) -> None:
    kinds: dict[tuple[str, str], set[tuple[str, str | None]]] = {}
    for vs in valuesets.values():
        for code in vs.codes:
            kinds.setdefault((code.system, code.code), set()).add((vs.kind, vs.category))
    ids: set[str] = set()
    for i, order in enumerate(sandbox.orders):
        if order.id in ids:
            ld.problem(path, raw, ("orders", i, "id"), f"orders: id {order.id!r} listed twice")
        ids.add(order.id)
        if not any(kind in SANDBOX_ORDER_KINDS for kind, _ in kinds.get((order.system, order.code), ())):
            ld.problem(path, raw, ("orders", i, "code"),
                       f"orders.{order.id}: code {order.system}|{order.code} is in no value set of kind "
                       f"{', '.join(SANDBOX_ORDER_KINDS)}")
    for name in ("pt_evaluation", "pt_session"):
        ref: CodeRef = getattr(sandbox, name)
        if ("conservative-care", FORMAL_PT) not in kinds.get((ref.system, ref.code), set()):
            ld.problem(path, raw, (name, "code"),
                       f"{name}: code {ref.system}|{ref.code} is in no conservative-care value set of "
                       f"category {FORMAL_PT!r}")
    for lane in sorted(set(TimelineLane.__args__) - set(sandbox.timeline_lanes)):  # type: ignore[attr-defined]
        ld.problem(path, raw, ("timeline_lanes",), f"timeline_lanes: lane {lane!r} has no label")
