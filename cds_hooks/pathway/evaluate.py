"""Pathway evaluation: pure functions from facts and rules to findings.

No Flask, no FHIR parsing, no wording: the reasons are keys with parameters
that `cards` turns into text from rules/cards.yaml. `today` is passed in so the
same facts always give the same verdict.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from datetime import date
from enum import Enum
from typing import Any

from cds_hooks.fhir.resources import codings
from cds_hooks.pathway.record import DraftOrder, Evidence, PatientRecord
from cds_hooks.pathway.rules import FORMAL_PT, Rules

SESSION_TYPES = ("Procedure", "Encounter")
PRIOR_IMAGING_TYPES = ("Procedure", "ImagingStudy", "DiagnosticReport")


@dataclass(frozen=True)
class Reason:
    """A message key from the rule's `reasons` templates and its parameters."""

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
    replacement: dict[str, Any] | None = None  # the updated order, for update suggestions
    omit_suggestions: set[str] = field(default_factory=set)


def duration(days: int) -> str:
    """'3 weeks 2 days' style text for a day count."""
    weeks, rest = divmod(max(days, 0), 7)
    parts = []
    if weeks:
        parts.append(f"{weeks} week{'s' if weeks != 1 else ''}")
    if rest or not weeks:
        parts.append(f"{rest} day{'s' if rest != 1 else ''}")
    return " ".join(parts)


def months_before(day: date, months: int) -> date:
    year, month = divmod(day.year * 12 + day.month - 1 - months, 12)
    for dom in (day.day, 30, 29, 28):
        try:
            return date(year, month + 1, dom)
        except ValueError:
            continue
    raise ValueError(day)


@dataclass
class _Context:
    """Facts about the patient shared by every order's evaluation."""

    record: PatientRecord
    rules: Rules
    today: date
    population: list[Evidence]
    red_flags: list[Evidence]
    prior_surgery: list[Evidence]
    conservative: list[Evidence]

    @property
    def onset(self) -> date | None:
        dates = [e.start for e in self.population if e.start]
        return min(dates) if dates else None

    def modality_items(self, modalities: list[str]) -> list[Evidence]:
        return [e for e in self.conservative if e.categories("conservative-care") & set(modalities)]

    def missing_modalities(self, expected: list[str]) -> list[Reason]:
        documented = set().union(*(e.categories("conservative-care") for e in self.conservative))
        titles = self.rules.pathway.modalities
        return [Reason("missing_modality", {"modality": titles[m]}) for m in expected if m not in documented]


def _context(record: PatientRecord, rules: Rules, today: date) -> _Context:
    population = [e for e in record.select("population", "Condition") if e.active]
    red_flags = [
        e for e in record.select("red-flag", "Condition")
        if e.active or any(m.valueset.counts_when_inactive for m in e.matches if m.valueset.kind == "red-flag")
    ]
    prior = record.select("prior-lumbar-surgery", "Condition") + [
        e for e in record.select("lumbar-spine-surgery", "Procedure") if e.status == "completed"
    ]
    conservative = [e for e in record.select("conservative-care") if not e.start or e.start <= today]
    return _Context(record, rules, today, population, red_flags, prior, conservative)


class Scope(Enum):
    """Where an order stands with respect to the pathway (the gate `evaluate` applies)."""

    UNRELATED = "unrelated"  # not lumbar imaging, a spine-surgery referral or a spine operation
    OUTSIDE = "outside"  # one of those, but the patient is outside the pathway (prior surgery, no back condition)
    JUDGED = "judged"  # judged against the pathway: findings say where it departs from it


def _scope(ctx: _Context, order: DraftOrder) -> Scope:
    imaging = order.has("lumbar-imaging")
    surgical = any(order.has(k) for k in ("surgical-referral", "surgeon-specialty", "lumbar-spine-surgery"))
    if not (imaging or surgical):
        return Scope.UNRELATED
    if ctx.prior_surgery:
        return Scope.OUTSIDE  # ACR variant 5: prior lumbar surgery is outside this pathway
    if not ctx.population and not order.reason_has("population"):
        return Scope.OUTSIDE  # outside the population: say nothing
    return Scope.JUDGED


def order_scopes(record: PatientRecord, orders: list[DraftOrder], rules: Rules, today: date) -> dict[str, Scope]:
    """Each order's scope, by reference: the same gate `evaluate` applies before judging an order."""
    ctx = _context(record, rules, today)
    return {order.ref: _scope(ctx, order) for order in orders}


def selected(orders: list[DraftOrder], selections: list[str] | None) -> list[DraftOrder]:
    """The orders a hook call is about: every draft (order-sign), or the selected ones (order-select)."""
    if selections is None:
        return orders
    chosen = set(selections)
    return [o for o in orders if o.ref in chosen]


def evaluate(
    record: PatientRecord,
    orders: list[DraftOrder],
    rules: Rules,
    today: date,
    selections: list[str] | None = None,
) -> list[Finding]:
    """Findings for the orders being judged: all drafts, or only `selections`."""
    ctx = _context(record, rules, today)
    findings: list[Finding] = []
    for order in selected(orders, selections):
        if _scope(ctx, order) is not Scope.JUDGED:
            continue
        red_flags = bool(ctx.red_flags or order.reason_has("red-flag"))
        silenced = set(rules.profile.red_flags_silence) if red_flags else set()
        if order.has("lumbar-imaging"):
            findings.extend(_imaging(ctx, order, silenced))
        else:
            findings.extend(_surgical(ctx, order, silenced))
    return findings


def _no_red_flag_found(ctx: _Context) -> Reason:
    return Reason("no_red_flags", {"checked": str(ctx.record.conditions_checked)})


def _imaging(ctx: _Context, order: DraftOrder, silenced: set[str]) -> list[Finding]:
    settings = ctx.rules.profile.imaging
    today = ctx.today
    out: list[Finding] = []
    warning: Finding | None = None

    if "imaging-premature" not in silenced:
        reasons: list[Reason] = []
        if settings.warn_without_red_flags:
            reasons.append(Reason("not_routine"))
        onset = ctx.onset
        if settings.min_symptom_weeks is not None and onset is not None:
            days = (today - onset).days
            if days < settings.min_symptom_weeks * 7:
                reasons.append(Reason("symptoms_short", {
                    "onset": onset.isoformat(), "duration": duration(days),
                    "threshold": str(settings.min_symptom_weeks),
                }))
        qualifying = [FORMAL_PT] if settings.formal_pt_required else settings.qualifying_modalities
        trial = ctx.modality_items(qualifying)
        if settings.conservative_trial_weeks is not None:
            starts = [e.start for e in trial if e.start]
            threshold = str(settings.conservative_trial_weeks)
            if not trial:
                key = "trial_missing_pt" if settings.formal_pt_required else "trial_missing"
                reasons.append(Reason(key, {"threshold": threshold}))
            elif starts and (today - min(starts)).days < settings.conservative_trial_weeks * 7:
                start = min(starts)
                key = "trial_short_pt" if settings.formal_pt_required else "trial_short"
                reasons.append(Reason(key, {
                    "start": start.isoformat(), "duration": duration((today - start).days),
                    "threshold": threshold,
                }))
        if reasons:
            missing = ctx.missing_modalities(ctx.rules.profile.imaging.expected_modalities)
            if onset is None:
                missing.insert(0, Reason("missing_onset"))
            warning = Finding(
                "imaging-premature", order, reasons,
                found=ctx.population + ctx.conservative, missing=missing,
                notes=[_no_red_flag_found(ctx)], omit_suggestions=_pt_under_way(ctx),
            )

    duplicate = None if "imaging-duplicate" in silenced else _duplicate(ctx, order)
    if duplicate:
        if warning:
            warning.reasons.extend(duplicate.reasons)
            warning.found.extend(duplicate.found)
        else:
            warning = duplicate
    if warning:
        out.append(warning)
    elif "imaging-contrast" not in silenced:
        contrast = _contrast(ctx, order)
        if contrast:
            out.append(contrast)
    return out


def _pt_under_way(ctx: _Context) -> set[str]:
    """A PT referral is no alternative for a patient already referred to PT."""
    return {"replace-with-pt"} if ctx.modality_items([FORMAL_PT]) else set()


def _duplicate(ctx: _Context, order: DraftOrder) -> Finding | None:
    settings = ctx.rules.profile.imaging
    if settings.duplicate_lookback_months is None:
        return None
    ordered = {m.valueset.modality for m in order.matches if m.valueset.kind == "lumbar-imaging"}
    if not ordered & set(settings.duplicate_modalities):
        return None
    since = months_before(ctx.today, settings.duplicate_lookback_months)
    prior = [
        e for e in ctx.record.select("lumbar-imaging", *PRIOR_IMAGING_TYPES)
        if e.start and since <= e.start <= ctx.today
        and {m.valueset.modality for m in e.matches} & set(settings.duplicate_modalities)
    ]
    if not prior:
        return None
    latest = max(prior, key=lambda e: e.start or date.min)
    assert latest.start is not None
    return Finding("imaging-duplicate", order, [Reason("prior_imaging", {
        "study": latest.label, "date": latest.start.isoformat(),
        "ago": duration((ctx.today - latest.start).days),
        "months": str(settings.duplicate_lookback_months),
    })], found=sorted(prior, key=lambda e: e.start or date.min))


def _contrast(ctx: _Context, order: DraftOrder) -> Finding | None:
    settings = ctx.rules.profile.imaging
    if not settings.suggest_mri_without_contrast:
        return None
    with_contrast = [m for m in order.matches if m.valueset.kind == "lumbar-imaging" and m.valueset.contrast]
    if not with_contrast:
        return None
    justified = {c for e in ctx.red_flags for c in e.categories("red-flag")}
    justified |= {m.valueset.category for m in order.reason_has("red-flag") if m.valueset.category}
    if justified & set(settings.contrast_justified_by):
        return None
    replacement = _without_contrast(order)
    if replacement is None:
        return None
    return Finding("imaging-contrast", order, [Reason("contrast")], found=ctx.population,
                   replacement=replacement)


def _without_contrast(order: DraftOrder) -> dict[str, Any] | None:
    """The draft order with its codes swapped for the without-contrast equivalents."""
    alternatives = {
        (m.code.system, m.code.code): m.code.alternative
        for m in order.matches if m.code.alternative
    }
    new_codings = []
    for coding in codings(order.resource.get("code")):
        alt = alternatives.get((coding.get("system"), coding.get("code")))
        if alt:
            new_codings.append({"system": coding["system"], "code": alt.code, "display": alt.display})
    if not new_codings:
        return None
    updated = copy.deepcopy(order.resource)
    updated["code"] = {"coding": new_codings, "text": new_codings[0]["display"]}
    return updated


def _surgical(ctx: _Context, order: DraftOrder, silenced: set[str]) -> list[Finding]:
    settings = ctx.rules.profile.surgery
    today = ctx.today
    pt = ctx.modality_items([FORMAL_PT])
    sessions = [e for e in pt if e.resource_type in SESSION_TYPES and e.start]
    referrals = [e for e in pt if e.resource_type == "ServiceRequest"]
    reasons: list[Reason] = []

    if settings.min_formal_pt_weeks is not None:
        threshold = str(settings.min_formal_pt_weeks)
        if not sessions:
            if referrals:
                first = min((e.start for e in referrals if e.start), default=None)
                reasons.append(Reason("pt_referral_only", {
                    "date": first.isoformat() if first else "an unknown date", "threshold": threshold,
                }))
            else:
                reasons.append(Reason("pt_missing", {"threshold": threshold}))
        else:
            first = min(e.start for e in sessions if e.start)
            last = max((e.end or e.start) for e in sessions if e.start)
            span = (last - first).days
            if span < settings.min_formal_pt_weeks * 7:
                reasons.append(Reason("pt_short", {
                    "first": first.isoformat(), "last": last.isoformat(), "sessions": str(len(sessions)),
                    "duration": duration(span), "threshold": threshold,
                }))
    care = ctx.modality_items(settings.qualifying_modalities)
    if settings.require_conservative_care and not care:
        reasons.append(Reason("conservative_missing"))

    notes: list[Reason] = []
    starts = [e.start for e in care if e.start]
    if settings.window_months is not None and starts:
        start = min(starts)
        if start > months_before(today, settings.window_months):
            notes.append(Reason("window", {
                "start": start.isoformat(), "duration": duration((today - start).days),
                "months": str(settings.window_months),
            }))

    found = ctx.population + ctx.conservative
    if reasons and "referral-premature" not in silenced:
        missing = ctx.missing_modalities(settings.expected_modalities)
        return [Finding("referral-premature", order, reasons, found=found, missing=missing,
                        notes=[*notes, _no_red_flag_found(ctx)], omit_suggestions=_pt_under_way(ctx))]
    if notes and not reasons and "surgery-window" not in silenced:
        return [Finding("surgery-window", order, notes, found=found)]
    return []
