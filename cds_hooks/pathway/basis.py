"""A card's whole basis, for the basis page one click from the card: every reason in full, every fact with
its code, what is missing, exactly what was checked and what could not be, the whole recommendation (with
the NSAID cautions), the local pathway policy and every reference.

Plain data (JSON), record text unescaped: the page escapes it for HTML when it renders (http/basis.py).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import date
from typing import Any

from cds_hooks.pathway.findings import Finding, age_years
from cds_hooks.pathway.record import PatientRecord
from cds_hooks.pathway.rules import Rules, RuleText
from cds_hooks.pathway.wording import plain, record_facts, word_reason


@dataclass(frozen=True)
class Reference:
    title: str
    publisher: str
    year: int
    url: str
    kind: str


@dataclass
class Basis:
    rule_id: str
    topic: str
    indicator: str
    summary: str
    headline: str
    # (heading, lines), in reading order; an empty section is left out.
    sections: list[tuple[str, list[str]]]
    references: list[Reference]
    rules_version: str
    rules_status: str
    profile: str
    footer: list[str] = field(default_factory=list)  # added where the page is served: its expiry

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Basis:
        return cls(**{**data, "sections": [(h, list(lines)) for h, lines in data["sections"]],
                      "references": [Reference(**r) for r in data["references"]]})

    def add_section(self, heading: str, lines: list[str]) -> None:
        if lines:
            self.sections.append((heading, lines))


def checked_lines(rules: Rules, finding: Finding, record: PatientRecord, today: date) -> list[str]:
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
        examples = "; ".join(plain(s) for s in sorted(record.region_skipped)[:3])  # stable whatever the fetch order
        lines.append(basis.region_skipped.format(count=len(record.region_skipped), examples=examples))
    lines.append(" ".join(basis.not_checkable.split()))
    return lines


def not_checked_lines(rules: Rules, record: PatientRecord) -> list[str]:
    """History the service could not read, grouped by why, and the records it could not read."""
    lines = []
    labels = rules.cards.history_labels
    for reason, template in rules.cards.unavailable.items():
        keys = ", ".join(sorted(labels.get(k, k) for k, why in record.unavailable.items() if why == reason))
        if keys:
            lines.append(template.format(keys=keys[:1].upper() + keys[1:]))
    if record.skipped:
        examples = "; ".join(plain(s) for s in sorted(record.skipped)[:3])
        lines.append(rules.cards.evidence["skipped"].format(count=len(record.skipped), examples=examples))
    return lines


def build_basis(rules: Rules, text: RuleText, finding: Finding, record: PatientRecord, today: date,
                summary: str) -> Basis:
    cards = rules.cards
    h = cards.headings
    order = finding.order
    basis = Basis(finding.rule_id, text.topic, text.indicator, summary, text.headline, [], [
        Reference(c.title, c.publisher, c.year, c.url, c.kind) for c in rules.citations_for(finding.rule_id)],
        rules.governance.version, rules.governance.status, rules.profile_id)
    basis.add_section(h["order"], [cards.evidence["order"].format(order=plain(order.name),
                                                                  code=plain(order.code_label))])
    basis.add_section(h["why"], [word_reason(rules, text.reasons[r.key].basis, r, "basis", plain)
                                 for r in [*finding.reasons, *finding.notes]])
    basis.add_section(h["found"], [f.word(cards.evidence[f.template], plain, rules.pathway.modalities)
                                   for f in record_facts(rules, finding.found)])
    basis.add_section(h["missing"], [word_reason(rules, text.reasons[m.key].basis, m, "basis", plain)
                                     for m in finding.missing])
    basis.add_section(h["basis"], checked_lines(rules, finding, record, today))
    basis.add_section(h["not_checked"], not_checked_lines(rules, record))
    basis.add_section(h["recommendation"], [" ".join(text.recommendation.split())])
    if text.local_policy_detail:
        basis.add_section(h["local_policy"], [" ".join(text.local_policy_detail.split())])
    return basis
