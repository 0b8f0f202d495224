"""The rules' terminology as FHIR R4: one ValueSet per value set (every code in `compose.include`, the
codes it leaves out in `compose.exclude` with their reasons in the description, the OID, the decision to
use it and a Provenance where the set was imported whole from a published source), and CodeSystems for
the card topics and the override reasons.
"""

from __future__ import annotations

from datetime import datetime, time
from typing import Any

from cds_hooks.pathway.rules import Rules, ValueSet

# Standard extension for a remark on one concept of a ValueSet.
CONCEPT_COMMENT = "http://hl7.org/fhir/StructureDefinition/valueset-concept-comments"
UNVERIFIED = "Display or membership not confirmed against the source (verified: false in rules/)."


def canonical(rules: Rules, resource_type: str, resource_id: str) -> str:
    return f"{rules.governance.canonical}/{resource_type}/{resource_id}"


def common(rules: Rules, resource_type: str, resource_id: str) -> dict[str, Any]:
    """What every exported knowledge artifact shares: id, canonical url, version, status, date, publisher."""
    gov = rules.governance
    return {
        "resourceType": resource_type, "id": resource_id, "url": canonical(rules, resource_type, resource_id),
        "version": gov.version, "status": gov.status, "date": gov.effective.isoformat(),
        "publisher": gov.publisher,
    }


def fhir_name(text: str) -> str:
    """A computable name (FHIR `name`): letters and digits, each word capitalised."""
    return "".join(part[:1].upper() + part[1:] for part in _split(text)) or "Unnamed"


def _split(text: str) -> list[str]:
    return "".join(c if c.isalnum() else " " for c in text).split()


def _description(vs: ValueSet) -> str:
    lines = [f"{vs.title}. Kind: {vs.kind}" + (f", category {vs.category}" if vs.category else "") + "."]
    lines.append(f"Source: {vs.source}")
    if vs.note:
        lines.append(f"Note: {vs.note}")
    if vs.decision:
        lines.append(f"Decision: {' '.join(vs.decision.split())}")
    if vs.exclusions:
        lines.append(f"Excluded ({len(vs.exclusions)} codes, in compose.exclude), by reason:")
        lines += [f"- {reason} (Source: {source}) Codes: {', '.join(codes)}."
                  for (reason, source), codes in _exclusion_reasons(vs).items()]
    if vs.published:
        p = vs.published
        lines.append(f"Imported whole from {p.name} (OID {p.oid}, version {p.version}) in {p.repository} "
                     f"{p.path} at commit {p.commit}." + (f" {p.url}" if p.url else "")
                     + (f" Role in this pathway: {p.role}." if p.role else ""))
    return "\n\n".join(lines)


def _exclusion_reasons(vs: ValueSet) -> dict[tuple[str, str], list[str]]:
    """Excluded codes grouped by their reason and its source (most share one)."""
    out: dict[tuple[str, str], list[str]] = {}
    for x in vs.exclusions:
        code = x.code + (" and every code under it" if x.descendants else "")
        out.setdefault((" ".join(x.reason.split()), " ".join(x.source.split())), []).append(code)
    return out


def _concept_sets(codes: Any, comment: bool) -> list[dict[str, Any]]:
    """compose.include (or exclude) entries: one per system listing its codes, and an is-a filter per code
    with `descendants` (a separate entry: one entry cannot hold both concepts and filters)."""
    listed: dict[str, dict[str, Any]] = {}
    filters: list[dict[str, Any]] = []
    for code in codes:
        concept: dict[str, Any] = {"code": code.code, "display": code.display}
        if comment and not code.verified:
            concept["extension"] = [{"url": CONCEPT_COMMENT, "valueString": UNVERIFIED}]
        listed.setdefault(code.system, {"system": code.system, "concept": []})["concept"].append(concept)
        if code.descendants:
            filters.append({"system": code.system, "filter": [{"property": "concept", "op": "is-a",
                                                                "value": code.code}]})
    return [*listed.values(), *filters]


def valueset(rules: Rules, vs: ValueSet) -> dict[str, Any]:
    """A ValueSet whose compose lists every code; `descendants: true` adds an is-a filter as well. The
    codes the rules leave out of it (decisions.yaml for a published set) are its `compose.exclude`."""
    compose: dict[str, Any] = {"include": _concept_sets(vs.codes, comment=True)}
    if vs.exclusions:
        compose["exclude"] = _concept_sets(vs.exclusions, comment=False)
    resource = {
        **common(rules, "ValueSet", vs.id), "name": fhir_name(vs.id), "title": vs.title,
        "description": _description(vs), "compose": compose,
    }
    if vs.published:
        resource["identifier"] = [{"system": "urn:ietf:rfc:3986", "value": f"urn:oid:{vs.published.oid}"}]
    return resource


def provenance(rules: Rules, vs: ValueSet) -> dict[str, Any] | None:
    """Where a published value set came from, as a Provenance targeting its ValueSet."""
    p = vs.published
    if p is None:
        return None
    source = f"{p.repository} {p.path} at commit {p.commit}"
    entity = [{"role": "source", "what": {
        "identifier": {"system": "urn:ietf:rfc:3986", "value": f"urn:oid:{p.oid}"},
        "display": f"{p.name} version {p.version}" + (f", expansion {p.expansion}" if p.expansion else ""),
    }}, {"role": "source", "what": {"display": source}}]
    recorded = datetime.combine(rules.governance.effective, time(0)).isoformat() + "Z"
    return {
        "resourceType": "Provenance", "id": f"{vs.id}-source",
        "target": [{"reference": f"ValueSet/{vs.id}"}], "recorded": recorded,
        "agent": [{"who": {"display": p.publisher or "Value Set Authority Center"}}], "entity": entity,
    }


def codesystem(rules: Rules, resource_id: str, url: str, title: str,
               concepts: list[tuple[str, str]]) -> dict[str, Any]:
    return {
        **common(rules, "CodeSystem", resource_id), "url": url, "name": fhir_name(resource_id), "title": title,
        "content": "complete", "caseSensitive": True, "count": len(concepts),
        "concept": [{"code": code, "display": display} for code, display in concepts],
    }


def codesystems(rules: Rules) -> list[dict[str, Any]]:
    """The project's own code systems: card topics (one per rule) and override reasons."""
    cards = rules.cards
    topics = [(rule_id, cards.rule_text(rules.profile_id, rule_id).topic) for rule_id in cards.rules]
    reasons = [(c.code, c.display) for c in cards.override_reasons if c.system == cards.override_reason_system]
    return [
        codesystem(rules, "card-topic", cards.topic_system, "Lumbar pathway card topics", topics),
        codesystem(rules, "override-reason", cards.override_reason_system, "Lumbar pathway override reasons",
                   reasons),
    ]
