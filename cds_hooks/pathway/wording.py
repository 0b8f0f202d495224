"""What the card and its basis page share: the record's facts grouped for wording, a reason's fields as each
template kind words them, and the order's short name.

The card words record text escaped for Markdown and cut short; the basis page gets it whole and escapes
it for HTML when it renders. So every function here takes the record-text treatment (`Text`) to apply.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from cds_hooks.pathway.episode import is_session
from cds_hooks.pathway.facts import DraftOrder, Evidence
from cds_hooks.pathway.findings import Reason
from cds_hooks.pathway.rules import FORMAL_PT, Rules

Text = Callable[[str], str]  # what record text becomes where it is shown
Kind = Literal["brief", "line", "basis"]
# Order kinds in the order their short name is preferred (a referral matches by code and by performerType).
ORDER_KINDS = ("lumbar-imaging", "lumbar-spine-surgery", "surgical-referral", "surgeon-specialty")
# Reason fields that hold record text (a prior study's label).
RECORD_FIELDS = frozenset({"study"})

# Inserted text never starts a line, so only inline Markdown and HTML matter, and the autolinks of
# GitHub-flavoured renderers: `scheme://`, `www.` and e-mail addresses become links without any markup.
_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>|~&@]|(?<=[A-Za-z0-9])(?=:/)|(?<=\bwww)(?=\.))")


def md_escape(text: str) -> str:
    """Neutralise Markdown, HTML and autolinks in text that came from the patient record."""
    return _MD_SPECIAL.sub(r"\\\1", " ".join(str(text).split()))


def plain(text: str) -> str:
    """Record text for the basis page: whitespace collapsed; the page escapes it for HTML."""
    return " ".join(str(text).split())


def card_text(limit: int) -> Text:
    """Record text for the card: cut at `limit` characters with an ellipsis, then escaped for Markdown."""
    def shown(text: str) -> str:
        text = plain(text)
        return md_escape(text if len(text) <= limit else text[: limit - 1].rstrip() + "…")
    return shown


def order_name(rules: Rules, order: DraftOrder) -> str:
    """The order's short name from the value set it matched (cards.yaml order_names), never the EHR's display."""
    names = rules.cards.order_names
    for kind in ORDER_KINDS:
        for match in order.matches:
            if match.valueset.kind == kind and match.valueset.id in names:
                return names[match.valueset.id]
    # Unreachable for a judged order: rules check gives every order value set a name.
    return next((m.valueset.title for m in order.matches), "Order")


def reason_fields(rules: Rules, reason: Reason, kind: Kind, text: Text) -> dict[str, str]:
    """A reason's parameters as a template of this kind words them."""
    fields = dict(reason.params)
    source = fields.get("source")
    if source is not None:  # where the onset comes from
        worded = rules.cards.basis.onset_sources if kind == "basis" else rules.cards.card.onset_sources
        fields["source"] = worded.get(source, source)  # type: ignore[call-overload]
    modality = fields.get("modality")
    if modality is not None:
        fields["modality"] = (rules.pathway.modalities if kind == "basis" else rules.cards.modality_names).get(
            modality, modality)
    for name in RECORD_FIELDS & set(fields):
        fields[name] = text(fields[name])
    return fields


def word_reason(rules: Rules, template: str, reason: Reason, kind: Kind, text: Text) -> str:
    return " ".join(template.format(**reason_fields(rules, reason, kind, text)).split())


@dataclass(frozen=True)
class Fact:
    """One fact from the record, for a template of cards.yaml `evidence` (basis page) or `card.facts` (card):
    both are filled from the same fields; a template uses the ones it names."""

    template: str
    fields: dict[str, Any]
    record_fields: frozenset[str] = frozenset({"label", "code"})

    def word(self, template: str, text: Text, modality_names: dict[str, str]) -> str:
        fields = {k: text(v) if k in self.record_fields else v for k, v in self.fields.items()}
        if "modality" in fields:
            fields["modality"] = modality_names.get(fields["modality"], fields["modality"])
        return " ".join(template.format(**fields).split())


def _dates(e: Evidence) -> str:
    if e.start and e.end and e.end != e.start:
        return f"{e.start.isoformat()} to {e.end.isoformat()}"
    return e.start.isoformat() if e.start else "undated"


def _condition(e: Evidence) -> Fact:
    fields = {"label": e.label, "code": e.code_label}
    if e.onset:
        return Fact("condition", {**fields, "date": e.onset.isoformat()})
    if e.recorded:
        return Fact("condition_recorded", {**fields, "date": e.recorded.isoformat()})
    return Fact("condition_undated", fields)


def _modality(category: str, items: list[Evidence]) -> list[Fact]:
    items = sorted(items, key=Evidence.chrono)
    if category == FORMAL_PT:
        out = []
        sessions = [x for x in items if is_session(x) and x.start]
        if sessions:
            days = sorted({x.start for x in sessions if x.start})
            last = max((x.end or x.start) for x in sessions if x.start)
            out.append(Fact("pt_sessions", {"modality": category, "count": len(days), "first": days[0].isoformat(),
                                            "last": last.isoformat()}))
        out += [Fact("pt_ordered", {"modality": category, "label": x.label, "code": x.code_label, "date": _dates(x)})
                for x in items if x.resource_type == "ServiceRequest"]
        if out:
            return out
    latest = items[-1]
    if len(items) == 1:
        return [Fact("modality", {"modality": category, "label": latest.label, "code": latest.code_label,
                                  "dates": _dates(latest)})]
    first = next((x.start for x in items if x.start), None)
    last = max((x.end or x.start for x in items if x.start), default=None)
    return [Fact("modality_many", {"modality": category, "count": len(items), "label": latest.label,
                                   "first": first.isoformat() if first else "undated",
                                   "last": last.isoformat() if last else "undated"})]


def record_facts(rules: Rules, found: list[Evidence]) -> list[Fact]:
    """The facts behind a finding: diagnoses and prior imaging in the order found, then conservative care by
    modality in the rules' order (formal PT first), each modality's records together."""
    facts: list[Fact] = []
    seen: set[str] = set()
    by_modality: dict[str, list[Evidence]] = {}
    for e in found:
        if e.ref in seen:
            continue
        seen.add(e.ref)
        if e.has("lumbar-imaging"):
            facts.append(Fact("prior_imaging", {"label": e.label, "code": e.code_label, "date": _dates(e)}))
        elif e.has("conservative-care"):
            for category in sorted(e.categories("conservative-care")):
                by_modality.setdefault(category, []).append(e)
        elif e.resource_type == "Condition":
            facts.append(_condition(e))
    for category in rules.pathway.modalities:
        if by_modality.get(category):
            facts += _modality(category, by_modality[category])
    return facts
