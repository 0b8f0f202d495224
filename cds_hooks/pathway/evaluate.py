"""Pathway evaluation: pure functions from facts and rules to findings.

No Flask, no FHIR parsing, no wording: the reasons are keys with parameters
that `cards` turns into text from rules/cards.yaml. `today` is passed in so the
same facts always give the same verdict (the audit passes the order date).
The work is split by job: `episode` (the current episode and its onset),
`conservative` (care in the episode, PT sessions), `red_flags` (windows,
medications, vital signs), `orders` (which orders are judged), `imaging` and
`surgery` (the rules for each kind of order).
"""

from __future__ import annotations

from datetime import date

from cds_hooks.pathway.context import Context, build_context
from cds_hooks.pathway.facts import DraftOrder, PatientRecord
from cds_hooks.pathway.findings import Finding, Reason, age_years, duration, months_before
from cds_hooks.pathway.imaging import imaging_findings
from cds_hooks.pathway.orders import in_scope, order_kind
from cds_hooks.pathway.red_flags import order_red_flags
from cds_hooks.pathway.rules import Rules
from cds_hooks.pathway.surgery import surgical_findings

__all__ = ["Context", "Finding", "Reason", "age_years", "duration", "evaluate", "months_before"]


def evaluate(
    record: PatientRecord,
    orders: list[DraftOrder],
    rules: Rules,
    today: date,
    selections: list[str] | None = None,
) -> list[Finding]:
    """Findings for the orders being judged: all drafts, or only `selections`."""
    ctx = build_context(record, rules, today)
    if ctx.prior_surgery:
        return []  # ACR variant 5: prior lumbar surgery is outside this pathway
    if ctx.outside_ages():
        return []  # outside the population's ages (children; the profile's bounds)
    chosen = None if selections is None else set(selections)
    findings: list[Finding] = []
    for order in orders:
        if chosen is not None and order.ref not in chosen:
            continue
        kind = order_kind(order)
        if kind is None or not in_scope(order, kind, record, bool(ctx.population)):
            continue
        red_flags = ctx.red_flags or order_red_flags(order, record)
        silenced = set(rules.profile.red_flags_silence) if red_flags else set()
        if kind == "imaging":
            findings.extend(imaging_findings(ctx, order, silenced))
        else:
            findings.extend(surgical_findings(ctx, order, silenced))
    return findings
