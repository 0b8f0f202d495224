"""Findings to CDS Hooks cards, worded from rules/cards.yaml.

Each card states its basis: the facts found with dates, what is missing, what
could not be checked, the recommendation and the guideline it rests on.
"""

from __future__ import annotations

import copy
import re
import uuid
from dataclasses import dataclass
from datetime import date
from typing import Any

from cds_hooks.pathway.episode import is_session
from cds_hooks.pathway.evaluate import Finding, Reason, age_years
from cds_hooks.pathway.record import Evidence, PatientRecord
from cds_hooks.pathway.rules import FORMAL_PT, MAX_ORDER_NAME, Rules, RuleText, card_extension
from cds_hooks.protocol.wire import Action, Card, Coding, Link, Source, Suggestion

# The card extension that names the rules version behind the card (docs/integration.md).
RULES_EXTENSION = "org.lumbar-pathway-cds.rules"

# Inserted text never starts a line, so only inline Markdown and HTML matter, and the autolinks of
# GitHub-flavoured renderers: `scheme://`, `www.` and e-mail addresses become links without any markup.
_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>|~&@]|(?<=[A-Za-z0-9])(?=:/)|(?<=\bwww)(?=\.))")


def md_escape(text: str) -> str:
    """Neutralise Markdown, HTML and autolinks in text that came from the patient record."""
    return _MD_SPECIAL.sub(r"\\\1", " ".join(str(text).split()))


@dataclass(frozen=True)
class OrderingContext:
    """Who and where, for the resources a suggestion creates."""

    patient_id: str
    user_id: str
    encounter_id: str | None
    today: date


@dataclass(frozen=True)
class IssuedCard:
    card: Card
    rule_id: str
    order_ref: str
    rules_version: str | None = None


def _short(name: str) -> str:
    name = " ".join(name.split())
    return name if len(name) <= MAX_ORDER_NAME else name[: MAX_ORDER_NAME - 1] + "…"


def _reason(rules: Rules, text: RuleText, reason: Reason) -> str:
    params = {k: md_escape(v) for k, v in reason.params.items()}  # a prior study's label is record text
    if "source" in params:  # where the onset comes from, worded in cards.yaml basis.onset_sources
        params["source"] = rules.cards.basis.onset_sources.get(params["source"], params["source"])  # type: ignore[call-overload]
    return text.reasons[reason.key].format(**params).strip()


def _dates(e: Evidence) -> str:
    if e.start and e.end and e.end != e.start:
        return f"{e.start.isoformat()} to {e.end.isoformat()}"
    return e.start.isoformat() if e.start else "undated"


def _condition_line(templates: dict[str, str], e: Evidence, label: str, code: str) -> str:
    if e.onset:
        return templates["condition"].format(label=label, code=code, date=e.onset.isoformat())
    if e.recorded:
        return templates["condition_recorded"].format(label=label, code=code, date=e.recorded.isoformat())
    return templates["condition_undated"].format(label=label, code=code)


def _modality_line(rules: Rules, category: str, items: list[Evidence]) -> list[str]:
    templates = rules.cards.evidence
    name = rules.pathway.modalities[category]
    items = sorted(items, key=Evidence.chrono)
    if category == FORMAL_PT:
        lines = []
        sessions = [x for x in items if is_session(x) and x.start]
        if sessions:
            days = sorted({x.start for x in sessions if x.start})
            last = max((x.end or x.start) for x in sessions if x.start)
            lines.append(templates["pt_sessions"].format(modality=name, count=len(days), first=days[0].isoformat(),
                                                         last=last.isoformat()))
        for x in items:
            if x.resource_type == "ServiceRequest":
                lines.append(templates["pt_ordered"].format(
                    modality=name, label=md_escape(x.label), code=md_escape(x.code_label), date=_dates(x)))
        if lines:
            return lines
    latest = items[-1]
    if len(items) == 1:
        return [templates["modality"].format(modality=name, label=md_escape(latest.label),
                                             code=md_escape(latest.code_label), dates=_dates(latest))]
    first = next((x.start for x in items if x.start), None)
    last = max((x.end or x.start for x in items if x.start), default=None)
    return [templates["modality_many"].format(
        modality=name, count=len(items), first=first.isoformat() if first else "undated",
        last=last.isoformat() if last else "undated", label=md_escape(latest.label))]


def _evidence_lines(rules: Rules, found: list[Evidence]) -> list[str]:
    templates = rules.cards.evidence
    lines: list[str] = []
    seen: set[str] = set()
    by_modality: dict[str, list[Evidence]] = {}
    for e in found:
        if e.ref in seen:
            continue
        seen.add(e.ref)
        label, code = md_escape(e.label), md_escape(e.code_label)
        if e.has("lumbar-imaging"):
            lines.append(templates["prior_imaging"].format(label=label, code=code, date=_dates(e)))
        elif e.has("conservative-care"):
            for category in sorted(e.categories("conservative-care")):
                by_modality.setdefault(category, []).append(e)
        elif e.resource_type == "Condition":
            lines.append(_condition_line(templates, e, label, code))
    for category in rules.pathway.modalities:  # rules order: formal PT first, then drugs ...
        if by_modality.get(category):
            lines += _modality_line(rules, category, by_modality[category])
    return lines


def _basis(rules: Rules, finding: Finding, record: PatientRecord, today: date) -> list[str]:
    """Exactly what was checked for red flags, and what a coded record cannot show."""
    basis = rules.cards.basis
    age = age_years(record.birth_date, today)
    lines = [" ".join(basis.checked.format(
        conditions=record.conditions_checked, medications=record.medications_checked,
        temperatures=record.temperatures_checked,
        age=basis.age_known.format(years=age) if age is not None else basis.age_unknown).split())]
    published, curated = rules.red_flag_lists
    lines.append(" ".join(basis.code_lists.format(published=", ".join(published) or "(none)",
                                                  curated=curated).split()))
    for reason in finding.basis:
        lines.append(" ".join(getattr(basis, reason.key).format(**reason.params).split()))
    if record.region_skipped:
        examples = "; ".join(md_escape(s) for s in sorted(record.region_skipped)[:3])  # stable whatever the fetch order
        lines.append(basis.region_skipped.format(count=len(record.region_skipped), examples=examples))
    lines.append(" ".join(basis.not_checkable.split()))
    return lines


def _detail(rules: Rules, text: RuleText, finding: Finding, record: PatientRecord, today: date) -> str:
    h = rules.cards.headings
    ev = rules.cards.evidence
    parts = [f"**{text.headline}** " + ev["order"].format(order=md_escape(finding.order.name))]
    parts.append(f"**{h['why']}**\n" + "\n".join(f"- {_reason(rules, text, r)}" for r in finding.reasons))
    found = _evidence_lines(rules, finding.found)
    found += [_reason(rules, text, n) for n in finding.notes]
    if found:
        parts.append(f"**{h['found']}**\n" + "\n".join(f"- {line}" for line in found))
    if finding.missing:
        parts.append(f"**{h['missing']}**\n" + "\n".join(f"- {_reason(rules, text, m)}" for m in finding.missing))
    parts.append(f"**{h['basis']}**\n" + "\n".join(f"- {line}" for line in _basis(rules, finding, record, today)))
    not_checked = []
    labels = rules.cards.history_labels
    for reason, template in rules.cards.unavailable.items():
        keys = ", ".join(sorted(labels.get(k, k) for k, why in record.unavailable.items() if why == reason))
        if keys:
            not_checked.append(template.format(keys=keys[:1].upper() + keys[1:]))
    if record.skipped:
        examples = "; ".join(md_escape(s) for s in sorted(record.skipped)[:3])
        not_checked.append(ev["skipped"].format(count=len(record.skipped), examples=examples))
    if not_checked:
        parts.append(f"**{h['not_checked']}**\n" + "\n".join(f"- {line}" for line in not_checked))
    parts.append(f"**{h['recommendation']}**\n{text.recommendation.strip()}")
    if text.local_policy:
        parts.append(f"**{h['local_policy']}**\n{' '.join(text.local_policy.split())}")
    refs = [
        f"- [{c.title}]({c.url}), {c.publisher}, {c.year}" for c in rules.citations_for(finding.rule_id)
    ]
    if refs:
        parts.append(f"**{h['references']}**\n" + "\n".join(refs))
    return "\n\n".join(parts)


def _pt_referral(rules: Rules, who: OrderingContext, finding: Finding) -> dict[str, Any]:
    """The PT referral to create: the rules' template, built with fhir.resources R4B
    when the rules load, plus references whose syntax the request models checked and
    the reasons of a draft order that was itself validated as R4."""
    data = copy.deepcopy(rules.pt_referral)
    data["subject"] = {"reference": f"Patient/{who.patient_id}"}
    if who.encounter_id:
        data["encounter"] = {"reference": f"Encounter/{who.encounter_id}"}
    data["requester"] = {"reference": who.user_id}
    data["authoredOn"] = who.today.isoformat()
    reasons = finding.order.resource.get("reasonCode")
    if isinstance(reasons, list) and reasons:
        data["reasonCode"] = copy.deepcopy(reasons)
    return data


def _suggestion(rules: Rules, kind: str, finding: Finding, who: OrderingContext) -> Suggestion:
    text = rules.cards.suggestions[kind]  # type: ignore[index]
    ref = finding.order.ref
    delete = Action(type="delete", description=f"{text.description}: {ref}", resourceId=ref)
    if kind == "replace-with-pt":
        create = Action(type="create", description=text.description,
                        resource=_pt_referral(rules, who, finding))
        actions = [delete, create]
    elif kind == "use-mri-without-contrast":
        assert finding.replacement is not None
        actions = [Action(type="update", description=text.description, resource=finding.replacement)]
    else:
        actions = [delete]
    return Suggestion(label=text.label, uuid=str(uuid.uuid4()), actions=actions)


def build_cards(
    rules: Rules, findings: list[Finding], record: PatientRecord, who: OrderingContext
) -> list[IssuedCard]:
    issued: list[IssuedCard] = []
    cards_text = rules.cards
    extension = {RULES_EXTENSION: card_extension(rules.governance, rules.profile_id)}
    for finding in findings:
        text = rules.card_text(finding.rule_id)
        kinds = [k for k in text.suggestions if k not in finding.omit_suggestions]
        suggestions = [_suggestion(rules, k, finding, who) for k in kinds]
        citations = rules.citations_for(finding.rule_id)
        card = Card(
            uuid=str(uuid.uuid4()),
            summary=text.summary.format(order=_short(finding.order.name)),
            detail=_detail(rules, text, finding, record, who.today),
            indicator=text.indicator,
            source=Source(
                label=cards_text.source_label,
                url=cards_text.source_url,
                topic=Coding(system=cards_text.topic_system, code=finding.rule_id, display=text.topic),
            ),
            suggestions=suggestions or None,
            selectionBehavior="at-most-one" if suggestions else None,
            overrideReasons=[Coding(**c.model_dump()) for c in cards_text.override_reasons]
            if text.override_reasons else None,
            links=[Link(label=c.title[:120], url=c.url, type="absolute") for c in citations] or None,
            extension=copy.deepcopy(extension),
        )
        issued.append(IssuedCard(card, finding.rule_id, finding.order.ref, rules.governance.version))
    return issued
