"""Spine-surgery referrals and lumbar surgery orders: formal PT first, conservative care, timing, fusion."""

from __future__ import annotations

from cds_hooks.pathway.context import Context
from cds_hooks.pathway.facts import DraftOrder
from cds_hooks.pathway.findings import Finding, Reason, duration, months_before, weeks


def _formal_pt(ctx: Context) -> list[Reason]:
    """The seeds' rule: a completed course of formal PT (sessions, span) before a surgical referral."""
    min_weeks = ctx.rules.profile.surgery.min_formal_pt_weeks
    if min_weeks is None:
        return []
    threshold = str(min_weeks)
    care = ctx.care
    if not care.sessions:
        if care.pt_ordered and care.pt_ordered[0].start:
            return [Reason("pt_referral_only", {"date": care.pt_ordered[0].start.isoformat(), "threshold": threshold})]
        return [Reason("pt_missing", {"threshold": threshold})]
    first, last = care.sessions[0], care.last_session_end or care.sessions[-1]
    span = (last - first).days
    if span < min_weeks * 7:
        return [Reason("pt_short", {"first": first.isoformat(), "last": last.isoformat(),
                                    "sessions": str(len(care.sessions)), "duration": duration(span),
                                    "weeks": weeks(span), "threshold": threshold})]
    minimum = ctx.rules.profile.formal_pt.min_sessions
    if len(care.sessions) < minimum:
        return [Reason("pt_few_sessions", {"sessions": str(len(care.sessions)), "min_sessions": str(minimum),
                                           "first": first.isoformat(), "last": last.isoformat()})]
    return []


def surgical_findings(ctx: Context, order: DraftOrder, silenced: set[str]) -> list[Finding]:
    settings = ctx.rules.profile.surgery
    if settings.warn_on_fusion and order.has("lumbar-spine-surgery", "fusion"):
        # NICE NG59: no fusion for low back pain outside a trial, however long the conservative care.
        if "surgery-fusion" in silenced:
            return []
        return [Finding("surgery-fusion", order, [Reason("fusion")], found=ctx.found(), basis=ctx.basis())]
    reasons = _formal_pt(ctx)
    if settings.require_conservative_care and not ctx.care.items(settings.qualifying_modalities):
        reasons.append(Reason("conservative_missing"))
    notes: list[Reason] = []
    start = ctx.care.start_of(settings.qualifying_modalities)
    if settings.window_months is not None and start and start > months_before(ctx.today, settings.window_months):
        days = (ctx.today - start).days
        notes.append(Reason("window", {"start": start.isoformat(), "duration": duration(days), "weeks": weeks(days),
                                       "months": str(settings.window_months)}))
    if reasons and "referral-premature" not in silenced:
        return [Finding("referral-premature", order, reasons, found=ctx.found(),
                        missing=ctx.missing_modalities(settings.expected_modalities), notes=notes,
                        basis=ctx.basis(), omit_suggestions=ctx.pt_under_way())]
    if notes and not reasons and "surgery-window" not in silenced:
        return [Finding("surgery-window", order, notes, found=ctx.found(), basis=ctx.basis())]
    return []
