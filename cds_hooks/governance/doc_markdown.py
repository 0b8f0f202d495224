"""The part of docs/pathway.md that lists the rules, thresholds and value sets, generated from `rules/`
between two marker comments, so it cannot drift from the rules (tests/test_governance_doc.py checks).
The prose outside the markers is written by hand."""

from __future__ import annotations

from cds_hooks.governance.doc_tables import (
    citations_by_rule,
    decision_rows,
    not_used_rows,
    red_flag_rows,
    settings_by_profile,
    totals,
    valueset_rows,
)
from cds_hooks.pathway.cards import md_escape
from cds_hooks.pathway.rules import Rules

START = "<!-- generated: rules-doc start: `lumbar-cds rules doc --markdown docs/pathway.md` rewrites this part -->"
END = "<!-- generated: rules-doc end -->"


class MarkersMissing(ValueError):
    """The document has no (or broken) generated-section markers."""


def _table(headers: list[str], rows: list[list[str]]) -> list[str]:
    """A Markdown table; the first column holds names (rule ids, settings, value-set ids), shown as code."""
    lines = ["| " + " | ".join(md_escape(h) for h in headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join([f"`{row[0]}`", *(md_escape(cell) for cell in row[1:])]) + " |" for row in rows]
    return lines


def render_markdown(rules: Rules) -> str:
    """The generated section, without the markers."""
    gov = rules.governance
    approved = (f"approved {gov.approval.date} by {gov.approval.approver} ({gov.approval.committee})"
                if gov.approval else "not approved")
    profiles = list(rules.pathway.profiles)
    lines = [f"Rules version **{md_escape(gov.version)}** ({gov.status}, effective {gov.effective}; "
             f"{md_escape(approved)}).", "", "### Rules", ""]
    rule_rows = []
    for rule_id in rules.cards.rules:
        text = rules.cards.rule_text(rules.profile_id, rule_id)
        scope = rules.governance.rules[rule_id]  # type: ignore[index]
        silenced = [n for n, p in rules.pathway.profiles.items() if rule_id in p.red_flags_silence]
        cited = "; ".join(f"{name}: {', '.join(ids) or 'none'}"
                          for name, ids in citations_by_rule(rules, rule_id).items())
        rule_rows.append([rule_id, text.indicator, text.topic, ", ".join(scope.orders),
                          ", ".join(scope.unless) or "—", ", ".join(silenced) or "none", cited])
    lines += _table(["rule", "card", "topic", "orders judged", "only without a card from",
                     "red flags silence it in", "citations by profile"], rule_rows)
    headers, rows = settings_by_profile(rules)
    lines += ["", "### Thresholds and switches by profile", "",
              f"Each setting of each profile in `rules/pathway.yaml` (after `extends`); `off` is `null`. "
              f"The default profile is `{rules.pathway.default_profile}`.", ""]
    lines += _table(headers, rows)
    lines += ["", "### Red-flag categories", "",
              "Each category of `red_flags` in `rules/pathway.yaml`, the same in every profile: how far back a "
              "coded record counts, from which date, whether a resolved condition still counts, and what else "
              "makes it a red flag.", ""]
    lines += _table(*red_flag_rows(rules))
    vs_headers, vs_rows = valueset_rows(rules)
    lines += ["", "### Value sets", "", md_escape(totals(rules)) + ".", ""]
    lines += _table(vs_headers, vs_rows)
    lines += ["", "### Why each published set is used, and what it leaves out", "",
              "From `rules/valuesets/published/decisions.yaml` (and a curated set's own exclusions). Each "
              "excluded code, with its reason and source, is in the HTML page and in the FHIR export "
              "(`compose.exclude`).", ""]
    lines += _table(*decision_rows(rules))
    unused_headers, unused = not_used_rows(rules)
    if unused:
        lines += ["", "### Published value sets not used", ""]
        lines += _table(unused_headers, unused)
    lines += ["", f"Profiles: {', '.join(f'`{p}`' for p in profiles)}. The full pathway, with the flow diagram, "
              "every card's wording and every code, is one HTML page: `lumbar-cds rules doc > pathway.html`."]
    return "\n".join(lines)


def replace_generated(document: str, generated: str) -> str:
    """`document` with the text between the markers replaced by `generated`."""
    start, end = document.find(START), document.find(END)
    if start < 0 or end < start:
        raise MarkersMissing(f"the document needs the lines\n{START}\n{END}\naround its generated part")
    return document[: start + len(START)] + "\n" + generated + "\n" + document[end:]
