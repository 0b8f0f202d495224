"""`rules export --format fhir`: every knowledge artifact in one FHIR R4 Bundle, each validated with
fhir.resources R4B; and the same entries as a transaction Bundle for loading into a FHIR server.
"""

from __future__ import annotations

from typing import Any

from cds_hooks.fhir.resources import build
from cds_hooks.governance.fhir_knowledge import activity_definition, library, plan_definition
from cds_hooks.governance.fhir_terminology import codesystems, provenance, valueset
from cds_hooks.pathway.rules import Rules


def artifacts(rules: Rules, profile_id: str | None = None) -> list[dict[str, Any]]:
    """Library, PlanDefinitions, ActivityDefinition, CodeSystems, ValueSets, Provenances: exact R4 JSON.
    Raises pydantic's ValidationError when one is not valid R4."""
    profile = profile_id or rules.profile_id
    resources = [library(rules, profile)]
    resources += [plan_definition(rules, profile, rule_id) for rule_id in rules.cards.rules]
    resources.append(activity_definition(rules))
    resources += codesystems(rules)
    resources += [valueset(rules, vs) for vs in rules.valuesets.values()]
    resources += [p for vs in rules.valuesets.values() if (p := provenance(rules, vs))]
    return [build(r["resourceType"], r) for r in resources]


def full_url(rules: Rules, resource: dict[str, Any]) -> str:
    return resource.get("url") or f"{rules.governance.canonical}/{resource['resourceType']}/{resource['id']}"


def export_bundle(rules: Rules, profile_id: str | None = None) -> dict[str, Any]:
    """A collection Bundle of every artifact (the Bundle itself validated as R4B too)."""
    gov = rules.governance
    entries = [{"fullUrl": full_url(rules, r), "resource": r} for r in artifacts(rules, profile_id)]
    bundle = {"resourceType": "Bundle", "id": f"{gov.id}-{gov.version}".replace("+", "-")[:64],
              "type": "collection", "timestamp": f"{gov.effective.isoformat()}T00:00:00Z", "entry": entries}
    build("Bundle", {**bundle, "entry": []})  # the envelope; every entry was validated on its own
    return bundle


def transaction(bundle: dict[str, Any]) -> dict[str, Any]:
    """The collection's entries as one transaction Bundle of PUTs (create or replace by id), in order.

    One transaction is enough: 25 value sets of 1,000 codes each make a 1.9 MB Bundle that sekmet-fhir
    validates and stores in about 3 s (bench/bench_export.py, docs/performance.md)."""
    entries = [{"fullUrl": e["fullUrl"], "resource": e["resource"],
                "request": {"method": "PUT", "url": f"{e['resource']['resourceType']}/{e['resource']['id']}"}}
               for e in bundle["entry"]]
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}
