"""Findings to CDS Hooks cards, worded from rules/cards.yaml, short by design.

A card says what a clinician needs mid-order, in seconds: the summary (the verdict, a short order name and
the main reasons), a few short detail lines (why, the record's key facts with dates, what is missing, what
could not be read, one sentence of advice, the local pathway policy) and the primary source as a link. The
whole basis (every reason in full, codes, what was checked, the NSAID cautions, every reference) is built
beside it (`basis.py`) for the basis page the service links from the card. `rules check` proves the
wording fits the budgets in cards.yaml.
"""

from __future__ import annotations

import copy
import uuid
from dataclasses import dataclass
from datetime import date
from typing import Any

from cds_hooks.pathway.basis import Basis, build_basis
from cds_hooks.pathway.evaluate import Finding
from cds_hooks.pathway.record import PatientRecord
from cds_hooks.pathway.rules import NOT_READ_KEYS, Rules, RuleText, card_extension
from cds_hooks.pathway.wording import Text, card_text, md_escape, order_name, record_facts, word_reason
from cds_hooks.protocol.wire import Action, Card, Coding, Link, Source, Suggestion

__all__ = ["RULES_EXTENSION", "IssuedCard", "OrderingContext", "build_cards", "md_escape"]

# The card extension that names the rules version behind the card (docs/integration.md).
RULES_EXTENSION = "org.lumbar-pathway-cds.rules"


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
    basis: Basis | None = None  # the card's whole basis, for the basis page
    basis_label: str | None = None  # the basis link's label


def _summary(rules: Rules, text: RuleText, finding: Finding) -> str:
    briefs = [word_reason(rules, text.reasons[r.key].brief, r, "brief", md_escape)
              for r in finding.reasons[: rules.cards.budgets.summary_reasons]]
    return " ".join(text.summary.format(order=order_name(rules, finding.order), reasons=", ".join(briefs)).split())


def _more(rules: Rules, shown: list[str], total: int) -> list[str]:
    if total > len(shown):
        return [*shown, rules.cards.card.facts["more"].format(count=total - len(shown))]
    return shown


def _not_read(rules: Rules, record: PatientRecord) -> str | None:
    card = rules.cards.card
    keys = sorted(card.history_labels.get(k, k) for k in record.unavailable)
    parts = []
    if keys:
        parts.append(card.not_read.format(keys=", ".join(_more(rules, keys[:NOT_READ_KEYS], len(keys)))))
    if record.skipped:
        parts.append(card.skipped.format(count=len(record.skipped)))
    return "; ".join(parts) or None


def _detail(rules: Rules, text: RuleText, finding: Finding, record: PatientRecord) -> str:
    """The card's short lines, each a bullet led by its bold label."""
    cards = rules.cards
    labels, budget = cards.card.labels, cards.budgets
    shown: Text = card_text(budget.record_text_chars)
    lines: list[tuple[str, str]] = [("why", word_reason(rules, text.reasons[r.key].line, r, "line", shown))
                                    for r in finding.reasons]
    lines += [("note", word_reason(rules, text.reasons[n.key].line, n, "line", shown)) for n in finding.notes]
    facts = record_facts(rules, finding.found)
    if facts:
        worded = [f.word(cards.card.facts[f.template], shown, cards.modality_names) for f in facts[: budget.facts]]
        lines.append(("record", "; ".join(_more(rules, worded, len(facts)))))
    if finding.missing:
        lines.append(("missing", ", ".join(word_reason(rules, text.reasons[m.key].brief, m, "brief", shown)
                                           for m in finding.missing)))
    not_read = _not_read(rules, record)
    if not_read:
        lines.append(("not_read", not_read))
    lines.append(("advice", " ".join(text.advice.split())))
    if text.local_policy:
        lines.append(("local_policy", " ".join(text.local_policy.split())))
    return "\n".join(f"- **{labels[label]}:** {line}" for label, line in lines)


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
        citations = rules.citations_for(finding.rule_id)[: cards_text.budgets.card_citations]
        summary = _summary(rules, text, finding)
        card = Card(
            uuid=str(uuid.uuid4()),
            summary=summary,
            detail=_detail(rules, text, finding, record),
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
            # Short titles kept within the link budget by rules check: never cut here.
            links=[Link(label=c.short_title, url=c.url, type="absolute") for c in citations] or None,
            extension=copy.deepcopy(extension),
        )
        issued.append(IssuedCard(card, finding.rule_id, finding.order.ref, rules.governance.version,
                                 build_basis(rules, text, finding, record, who.today, summary),
                                 text.basis_link or cards_text.card.basis_link))
    return issued
