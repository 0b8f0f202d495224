"""The audit judges with the live pathway: for every scenario in fixtures/, the verdict the audit gives
an order (from the scenario as a Bulk export) is the verdict the live service gives the same order.

Generic over whatever fixtures exist, so a change to the pathway that only one side follows fails here.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import orjson
import pytest

from cds_hooks.pathway.rules import load_rules
from cds_hooks.sandbox.fixtures import load_fixture
from cds_hooks.service.hook import evaluate_hook
from tests.audit_data import fixture_resources, judge_lines, tracing_judge
from tests.conftest import REPO

# A scenario the live service refuses (a 412 for a request without the data it needs) has no verdict to
# compare: a Bulk export always has the data.
FIXTURES = [
    p for p in sorted((REPO / "fixtures").glob("*.json")) if orjson.loads(p.read_bytes())["expect"]["status"] == 200
]


@pytest.mark.parametrize("path", FIXTURES, ids=[p.stem for p in FIXTURES])
def test_audit_verdict_equals_live_verdict(path: Path, today: date) -> None:
    fixture = load_fixture(path, today)
    rules = load_rules(REPO / "rules", fixture.profile)
    live = evaluate_hook(rules, rules.services[fixture.service], fixture.request, today)
    live_rules: dict[str, set[str]] = {}
    for issued in live.issued:
        live_rules.setdefault(issued.order_ref, set()).add(issued.rule_id)
    context = fixture.request["context"]
    drafts = [f"ServiceRequest/{e['resource']['id']}" for e in context["draftOrders"].get("entry", [])]
    judged = context.get("selections") or drafts

    judge = tracing_judge(rules, today)
    judge_lines(judge, [orjson.dumps(r) for r in fixture_resources(fixture, today)])
    assert judge.trace is not None
    audited = {ref: set(fired) for _, ref, fired, _ in judge.trace if ref in drafts}
    assert set(live_rules) <= set(audited), "the audit missed an order the live service warned about"
    for ref in judged:
        if ref in audited:
            assert audited[ref] == live_rules.get(ref, set()), f"{ref}: audit {audited[ref]}, live {live_rules}"
    assert any(ref in audited for ref in judged) or not live_rules
