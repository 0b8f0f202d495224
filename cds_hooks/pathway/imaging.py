"""Lumbar imaging orders: premature (symptoms and the conservative trial), repeat, and contrast choice."""

from __future__ import annotations

import copy
from typing import Any

from cds_hooks.fhir.resources import codings
from cds_hooks.pathway.context import Context
from cds_hooks.pathway.facts import DraftOrder, Evidence
from cds_hooks.pathway.findings import Finding, Reason, duration, months_before, weeks

PRIOR_IMAGING_TYPES = ("Procedure", "ImagingStudy", "DiagnosticReport")


def ordered_modalities(order: DraftOrder) -> set[str]:
    return {m.valueset.modality for m in order.matches if m.valueset.kind == "lumbar-imaging" and m.valueset.modality}


def _released_by_age(ctx: Context, order: DraftOrder) -> bool:
    """ACR: radiography is usually appropriate for an elderly patient (the profile's older_age)."""
    older = ctx.rules.profile.older_age
    if older is None or ctx.age is None or ctx.age < older.min_age_years:
        return False
    modalities = ordered_modalities(order)
    return bool(modalities) and modalities <= set(older.releases)


def _trial(ctx: Context) -> list[Reason]:
    settings = ctx.rules.profile.imaging
    if settings.conservative_trial_weeks is None:
        return []
    threshold = str(settings.conservative_trial_weeks)
    trial_days = settings.conservative_trial_weeks * 7
    care = ctx.care
    if settings.formal_pt_required:
        if not care.sessions:
            if care.pt_ordered and care.pt_ordered[0].start:
                return [Reason("trial_pt_ordered", {"date": care.pt_ordered[0].start.isoformat(),
                                                    "threshold": threshold})]
            return [Reason("trial_missing_pt", {"threshold": threshold})]
        first = care.sessions[0]
        if (ctx.today - first).days < trial_days:
            days = (ctx.today - first).days
            return [Reason("trial_short_pt", {"start": first.isoformat(), "duration": duration(days),
                                              "weeks": weeks(days), "threshold": threshold})]
        minimum = ctx.rules.profile.formal_pt.min_sessions
        if len(care.sessions) < minimum:
            return [Reason("trial_few_sessions", {"sessions": str(len(care.sessions)),
                                                  "min_sessions": str(minimum), "start": first.isoformat()})]
        return []
    start = care.start_of(settings.qualifying_modalities)
    if start is None:
        return [Reason("trial_missing", {"threshold": threshold})]
    if (ctx.today - start).days < trial_days:
        days = (ctx.today - start).days
        return [Reason("trial_short", {"start": start.isoformat(), "duration": duration(days), "weeks": weeks(days),
                                       "threshold": threshold})]
    return []


def _premature(ctx: Context, order: DraftOrder) -> Finding | None:
    settings = ctx.rules.profile.imaging
    if _released_by_age(ctx, order):
        return None
    reasons: list[Reason] = []
    if settings.warn_without_red_flags:
        reasons.append(Reason("not_routine"))
    onset = ctx.episode.onset
    if settings.min_symptom_weeks is not None and onset is not None:
        days = (ctx.today - onset).days
        if days < settings.min_symptom_weeks * 7:
            reasons.append(Reason("symptoms_short", {
                "onset": onset.isoformat(), "duration": duration(days), "weeks": weeks(days),
                "threshold": str(settings.min_symptom_weeks), "source": ctx.episode.onset_source or "onset",
            }))
    reasons += _trial(ctx)
    if not reasons:
        return None
    missing = ctx.missing_modalities(settings.expected_modalities)
    if onset is None and settings.min_symptom_weeks is not None:
        missing.insert(0, Reason("missing_onset"))
    return Finding("imaging-premature", order, reasons, found=ctx.found(), missing=missing,
                   basis=ctx.basis(), omit_suggestions=ctx.pt_under_way())


def _duplicate(ctx: Context, order: DraftOrder) -> Finding | None:
    settings = ctx.rules.profile.imaging
    if settings.duplicate_lookback_months is None:
        return None
    repeats = {prior for m in ordered_modalities(order) for prior in settings.repeat_modalities.get(m, [])}
    if not repeats:
        return None
    since = months_before(ctx.today, settings.duplicate_lookback_months)
    prior = [
        e for e in ctx.record.select("lumbar-imaging", *PRIOR_IMAGING_TYPES)
        if e.start and since <= e.start <= ctx.today
        and {m.valueset.modality for m in e.matches if m.valueset.kind == "lumbar-imaging"} & repeats
    ]
    if not prior:
        return None
    latest = max(prior, key=Evidence.chrono)
    assert latest.start is not None
    return Finding("imaging-duplicate", order, [Reason("prior_imaging", {
        "study": latest.label, "date": latest.start.isoformat(),
        "ago": duration((ctx.today - latest.start).days),
        "months": str(settings.duplicate_lookback_months),
    })], found=sorted(prior, key=Evidence.chrono), basis=ctx.basis())


def _contrast(ctx: Context, order: DraftOrder) -> Finding | None:
    """MRI without contrast: only reached without any red flag (red flags silence it) or prior surgery."""
    if not ctx.rules.profile.imaging.suggest_mri_without_contrast:
        return None
    if not any(m.valueset.kind == "lumbar-imaging" and m.valueset.contrast for m in order.matches):
        return None
    replacement = _without_contrast(order)
    if replacement is None:
        return None
    return Finding("imaging-contrast", order, [Reason("contrast")], found=ctx.episode.conditions,
                   basis=ctx.basis(), replacement=replacement)


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


def imaging_findings(ctx: Context, order: DraftOrder, silenced: set[str]) -> list[Finding]:
    warning = None if "imaging-premature" in silenced else _premature(ctx, order)
    duplicate = None if "imaging-duplicate" in silenced else _duplicate(ctx, order)
    if duplicate and warning:  # one card: premature and a repeat
        warning.reasons.extend(duplicate.reasons)
        warning.found.extend(duplicate.found)
    warning = warning or duplicate
    if warning:
        return [warning]
    contrast = None if "imaging-contrast" in silenced else _contrast(ctx, order)
    return [contrast] if contrast else []

