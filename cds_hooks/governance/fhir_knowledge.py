"""The pathway's logic as FHIR R4 knowledge artifacts: a Library for the pathway (its citations as
`relatedArtifact`), one PlanDefinition (eca-rule) per rule, and the PT referral as an ActivityDefinition.

Each PlanDefinition has the services' hooks as named-event triggers, its gates (`scope.conditions`) as
applicability conditions in words and as data, and one action whose text is the card's wording and
whose sub-actions are the card's suggestions.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from cds_hooks.governance.fhir_terminology import canonical, common, fhir_name
from cds_hooks.governance.scope import conditions
from cds_hooks.pathway.rules import Rules

PT_REFERRAL_ID = "pt-referral"
ACTION_TYPE = "http://terminology.hl7.org/CodeSystem/action-type"
PLAN_TYPE = "http://terminology.hl7.org/CodeSystem/plan-definition-type"
LIBRARY_TYPE = "http://terminology.hl7.org/CodeSystem/library-type"
# The machine-readable form of a condition: JSON naming the value sets and settings it reads.
CONDITION_LANGUAGE = "application/json"
_FIELD = re.compile(r"\{(\w+)\}")


def placeholders(template: str) -> str:
    """A card template with its runtime fields shown as ‹field›."""
    return _FIELD.sub(r"‹\1›", " ".join(template.split()))


def citation_artifacts(rules: Rules, ids: list[str]) -> list[dict[str, Any]]:
    out = []
    for ref in ids:
        c = rules.citations[ref]
        out.append({"type": "citation", "label": ref, "display": c.title, "url": c.url,
                    "citation": f"{c.publisher} ({c.year}). {c.title}." + (f" {' '.join(c.note.split())}"
                                                                            if c.note else "")})
    return out


def library(rules: Rules, profile_id: str) -> dict[str, Any]:
    gov = rules.governance
    profile = rules.pathway.profiles[profile_id]
    related = citation_artifacts(rules, list(rules.citations))
    related += [{"type": "composed-of", "display": rules.cards.rule_text(profile_id, r).topic,
                 "resource": canonical(rules, "PlanDefinition", r)} for r in rules.cards.rules]
    related += [{"type": "depends-on", "display": vs.title, "resource": canonical(rules, "ValueSet", vs.id)}
                for vs in rules.valuesets.values()]
    resource: dict[str, Any] = {
        **common(rules, "Library", gov.id), "name": fhir_name(gov.id), "title": gov.title,
        "subtitle": f"Profile {profile_id}: {profile.title}",
        "type": {"coding": [{"system": LIBRARY_TYPE, "code": "asset-collection"}]},
        "description": f"{gov.description}\n\nProfile {profile_id}: {' '.join(profile.description.split())}",
        "effectivePeriod": {"start": gov.effective.isoformat()}, "relatedArtifact": related,
    }
    if gov.approval:
        resource["approvalDate"] = gov.approval.date.isoformat()
        resource["endorser"] = [{"name": gov.approval.committee}]
        resource["reviewer"] = [{"name": gov.approval.approver}]
    return resource


def activity_definition(rules: Rules) -> dict[str, Any]:
    """The ServiceRequest the replace-with-PT suggestion creates (cards.yaml pt_referral)."""
    template = rules.pt_referral
    code = template.get("code", {})
    notes = " ".join(" ".join(n.get("text", "").split()) for n in template.get("note", []))
    label = rules.cards.suggestions["replace-with-pt"].label if "replace-with-pt" in rules.cards.suggestions else ""
    resource = {
        **common(rules, "ActivityDefinition", PT_REFERRAL_ID), "name": fhir_name(PT_REFERRAL_ID),
        "title": code.get("text") or label or "Physical therapy referral", "kind": "ServiceRequest",
        "intent": template.get("intent", "order"), "code": code,
        "description": notes or label or "Physical therapy referral",
    }
    if "priority" in template:
        resource["priority"] = template["priority"]
    return resource


def _action_type(code: str) -> dict[str, Any]:
    return {"coding": [{"system": ACTION_TYPE, "code": code}]}


def _suggestion(rules: Rules, kind: str) -> dict[str, Any]:
    text = rules.cards.suggestions[kind]  # type: ignore[index]
    action: dict[str, Any] = {"title": text.label, "description": text.description}
    if kind == "replace-with-pt":  # as cards.py builds it: delete the draft, create the referral
        activity = activity_definition(rules)
        remove = rules.cards.suggestions.get("remove-order")  # type: ignore[call-overload]
        action["selectionBehavior"] = "all"  # both steps, as one suggestion
        action["action"] = [
            {"title": remove.label if remove else text.description, "type": _action_type("remove")},
            {"title": activity["title"], "type": _action_type("create"),
             "definitionCanonical": activity["url"]},
        ]
    elif kind == "remove-order":
        action["type"] = _action_type("remove")
    elif kind == "use-mri-without-contrast":
        action["type"] = _action_type("update")
    return action


def _card_text(rules: Rules, profile_id: str, rule_id: str) -> str:
    text = rules.cards.rule_text(profile_id, rule_id)
    reasons = "\n".join(f"- {placeholders(t.basis)}" for t in text.reasons.values())
    return (f"{placeholders(text.summary)}\n\n{text.headline}\n\nWhy (one or more of):\n{reasons}\n\n"
            f"Recommendation: {' '.join(text.recommendation.split())}")


def plan_definition(rules: Rules, profile_id: str, rule_id: str) -> dict[str, Any]:
    text = rules.cards.rule_text(profile_id, rule_id)
    profile = rules.pathway.profiles[profile_id]
    gates = conditions(rules, profile_id, rule_id)
    hooks = sorted({s.hook for s in rules.services.values()})
    inputs = [{"type": "ServiceRequest" if gate.gate == "order" else "Condition",
               "codeFilter": [{"path": "code", "valueSet": canonical(rules, "ValueSet", vs_id)}]}
              for gate in gates if gate.gate in ("order", "population", "red-flags") for vs_id in gate.valuesets]
    action: dict[str, Any] = {
        "title": text.topic, "description": text.headline, "textEquivalent": _card_text(rules, profile_id, rule_id),
        "code": [{"coding": [{"system": rules.cards.topic_system, "code": rule_id, "display": text.topic}]}],
        "documentation": citation_artifacts(rules, list(profile.citations.get(rule_id, []))),  # type: ignore[call-overload]
        "trigger": [{"type": "named-event", "name": hook} for hook in hooks],
        "condition": [{"kind": "applicability", "expression": {
            "description": gate.words, "language": CONDITION_LANGUAGE,
            "expression": orjson.dumps({
                "gate": gate.gate, "valueSets": [canonical(rules, "ValueSet", v) for v in gate.valuesets],
                "settings": gate.settings,
            }).decode(),
        }} for gate in gates],
        "input": inputs,
    }
    suggestions = [_suggestion(rules, kind) for kind in text.suggestions]
    if suggestions:
        action["selectionBehavior"] = "at-most-one"
        action["action"] = suggestions
    return {
        **common(rules, "PlanDefinition", rule_id), "name": fhir_name(rule_id), "title": text.topic,
        "subtitle": f"Profile {profile_id}: {profile.title}",
        "type": {"coding": [{"system": PLAN_TYPE, "code": "eca-rule"}]},
        "description": f"{text.headline} Card indicator: {text.indicator}.",
        "library": [canonical(rules, "Library", rules.governance.id)],
        "relatedArtifact": citation_artifacts(rules, list(profile.citations.get(rule_id, []))),  # type: ignore[call-overload]
        "action": [action],
    }
