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
from enum import Enum

from cds_hooks.pathway.context import Context, build_context
from cds_hooks.pathway.facts import DraftOrder, PatientRecord
from cds_hooks.pathway.findings import Finding, Reason, age_years, duration, months_before
from cds_hooks.pathway.imaging import imaging_findings
from cds_hooks.pathway.orders import in_scope, order_kind
from cds_hooks.pathway.red_flags import order_red_flags
from cds_hooks.pathway.rules import Rules
from cds_hooks.pathway.surgery import surgical_findings

__all__ = ["Context", "Finding", "Reason", "Scope", "age_years", "duration", "evaluate", "months_before",
           "order_scopes", "selected"]


class Scope(Enum):
    """Where an order stands with respect to the pathway (the gate `evaluate` applies)."""

    UNRELATED = "unrelated"  # not lumbar imaging (or its region is unknown), a spine-surgery referral or operation
    OUTSIDE = "outside"  # one of those, but outside the pathway: prior surgery, age, no back condition or reason
    JUDGED = "judged"  # judged against the pathway: findings say where it departs from it


def _scope(ctx: Context, order: DraftOrder) -> Scope:
    kind = order_kind(order)
    if kind is None:
        return Scope.UNRELATED
    if ctx.prior_surgery:
        return Scope.OUTSIDE  # ACR variant 5: prior lumbar surgery is outside this pathway
    if ctx.outside_ages() or not in_scope(order, kind, ctx.record, bool(ctx.population)):
        return Scope.OUTSIDE  # children (the profile's ages), no back condition, a referral for another region
    return Scope.JUDGED


def order_scopes(record: PatientRecord, orders: list[DraftOrder], rules: Rules, today: date) -> dict[str, Scope]:
    """Each order's scope, by reference: the same gate `evaluate` applies before judging an order."""
    ctx = build_context(record, rules, today)
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
    ctx = build_context(record, rules, today)
    findings: list[Finding] = []
    for order in selected(orders, selections):
        if _scope(ctx, order) is not Scope.JUDGED:
            continue
        red_flags = ctx.red_flags or order_red_flags(order, record)
        silenced = set(rules.profile.red_flags_silence) if red_flags else set()
        if order_kind(order) == "imaging":
            findings.extend(imaging_findings(ctx, order, silenced))
        else:
            findings.extend(surgical_findings(ctx, order, silenced))
    return findings
