"""Appropriateness ratings for the orders the service judges, from the pathway's gate and its findings.

Kept apart from the gate itself (`evaluate.order_scopes`, the same gate `evaluate` applies), so the two
cannot disagree about which orders are judged:

- an order the gate leaves alone (not lumbar imaging or a spine-surgery order) gets no rating;
- a lumbar order outside the pathway (prior lumbar surgery, no back condition) gets `no-criteria-apply`;
- a judged order gets the worst rating of the rules that fired on it (`ratings` in rules/pathway.yaml),
  or `appropriate` when none fired.

The rating rides on `update` actions (protocol/pama.py): the response's systemActions (the draft order
as sent) and every suggestion's update (the order as the suggestion would leave it, judged like a
draft). Pure, like the rest of the pathway.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date
from typing import Any

from cds_hooks.pathway.cards import IssuedCard
from cds_hooks.pathway.evaluate import Finding, Scope, evaluate, order_scopes
from cds_hooks.pathway.record import DraftOrder, PatientRecord, read_draft_orders
from cds_hooks.pathway.rules import Rules
from cds_hooks.protocol.pama import Rating, with_rating
from cds_hooks.protocol.wire import Action


def rating_for(scope: Scope, findings: Iterable[Finding], rules: Rules) -> Rating | None:
    """One order's rating from its scope and the findings about it."""
    if scope is Scope.UNRELATED:
        return None
    if scope is Scope.OUTSIDE:
        return "no-criteria-apply"
    fired = {rules.pathway.ratings[f.rule_id] for f in findings}  # type: ignore[index]
    return "not-appropriate" if "not-appropriate" in fired else "appropriate"


def rate_orders(
    record: PatientRecord, orders: list[DraftOrder], rules: Rules, today: date, findings: list[Finding]
) -> dict[str, Rating]:
    """Ratings by order reference for `orders` (the ones the call is about), given `evaluate`'s findings."""
    by_order: dict[str, list[Finding]] = {}
    for finding in findings:
        by_order.setdefault(finding.order.ref, []).append(finding)
    rated: dict[str, Rating] = {}
    for ref, scope in order_scopes(record, orders, rules, today).items():
        rating = rating_for(scope, by_order.get(ref, ()), rules)
        if rating is not None:
            rated[ref] = rating
    return rated


def rate_resource(record: PatientRecord, resource: dict[str, Any], rules: Rules, today: date) -> Rating | None:
    """The rating a ServiceRequest would get as a draft order of this patient: what a suggestion proposes."""
    orders = read_draft_orders({"resourceType": "Bundle", "entry": [{"resource": resource}]}, rules)
    if not orders:
        return None
    return rate_orders(record, orders, rules, today, evaluate(record, orders, rules, today)).get(orders[0].ref)


def system_actions(orders: list[DraftOrder], ratings: dict[str, Rating], rules: Rules) -> list[Action]:
    """One `update` per rated order: the draft as the EHR sent it, plus its rating and nothing else."""
    return [
        Action(type="update", description=rules.cards.rating_action.format(rating=ratings[order.ref]),
               resource=with_rating(order.resource, ratings[order.ref]))
        for order in orders if order.ref in ratings
    ]


def rate_suggestions(issued: list[IssuedCard], record: PatientRecord, rules: Rules, today: date) -> None:
    """Attach to every suggestion's `update` the rating of the order it would leave in place."""
    for item in issued:
        for suggestion in item.card.suggestions or ():
            for action in suggestion.actions:
                if action.type == "update" and action.resource is not None:
                    rating = rate_resource(record, action.resource, rules, today)
                    if rating is not None:
                        action.resource = with_rating(action.resource, rating)
