"""`rules doc`: the whole pathway as one self-contained HTML page for the CDS committee.

Governance record, flow diagram (inline SVG from Graphviz), every rule in order with its gates, its
thresholds in every profile, its card wording and citations; where the profiles differ; every value set
with its size, provenance and codes; the citations. No script, no external resource.
"""

from __future__ import annotations

from collections.abc import Callable
from html import escape

from cds_hooks.governance.doc_tables import (
    citations_by_rule,
    decision_rows,
    differing,
    not_used_rows,
    pathway_lists,
    red_flag_rows,
    settings_by_profile,
    totals,
    valueset_rows,
)
from cds_hooks.governance.fhir_knowledge import placeholders
from cds_hooks.governance.flow import flow_svg
from cds_hooks.governance.scope import conditions
from cds_hooks.governance.walk import rule_ids, selected_settings, words
from cds_hooks.pathway.rules import Rules, ValueSet, normalise
from cds_hooks.pathway.rules.schema import RuleTextOverride

STYLE = """
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;margin:0;color:#1a202c}
main{max-width:1100px;margin:0 auto;padding:1.5rem}
h1{font-size:1.6rem}h2{border-bottom:2px solid #cbd5e0;padding-bottom:.2rem;margin-top:2.2rem}
table{border-collapse:collapse;margin:.6rem 0;width:100%}th,td{border:1px solid #cbd5e0;padding:.25rem .45rem;
text-align:left;vertical-align:top}th{background:#edf2f7}td.diff{background:#fefcbf}
.badge{display:inline-block;border-radius:4px;padding:0 .4rem;font-size:.8rem;font-weight:600}
.info{background:#e3efff;color:#2b6cb0}.warning{background:#fff1d6;color:#975a16}.critical{background:#ffe0e0;color:#c53030}
.status-active{background:#c6f6d5;color:#22543d}.status-draft{background:#fefcbf;color:#744210}
.status-retired{background:#e2e8f0;color:#4a5568}figure{margin:1rem 0;overflow-x:auto}
figure svg{max-width:100%;height:auto}section.rule{border-left:4px solid #cbd5e0;padding-left:1rem;margin:1.5rem 0}
code{background:#edf2f7;padding:0 .2rem;border-radius:3px}details{margin:.3rem 0}summary{cursor:pointer}
"""


DIFF_CELL = '<td class="diff">'


def _table(headers: list[str], rows: list[list[str]], mark_diff: bool = False) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = []
    for row in rows:
        changed = mark_diff and len(set(row[1:])) > 1
        cells = "".join((DIFF_CELL if changed and i else "<td>") + f"{escape(c)}</td>" for i, c in enumerate(row))
        body.append(f"<tr>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _governance(rules: Rules) -> str:
    gov = rules.governance
    rows = [["id", gov.id], ["version", gov.version], ["status", gov.status], ["effective", str(gov.effective)],
            ["publisher", gov.publisher], ["canonical base", gov.canonical]]
    if gov.approval:
        a = gov.approval
        rows += [["approved by", f"{a.approver} ({a.committee})"], ["approved on", str(a.date)]]
        rows += [["approval record", a.reference]] if a.reference else []
    else:
        rows.append(["approval", "none: not approved"])
    return _table(["record", "value"], rows)


def _rule(rules: Rules, profile_id: str, rule_id: str) -> str:
    text = rules.cards.rule_text(profile_id, rule_id)
    scope = rules.governance.rules[rule_id]  # type: ignore[index]
    gates = "".join(f"<li>{escape(c.words)}</li>" for c in conditions(rules, profile_id, rule_id))
    profiles = rules.pathway.profiles
    paths = list(selected_settings(profiles[profile_id], scope.settings))
    rows = [[path, *(words(selected_settings(p, [path]).get(path)) for p in profiles.values())] for path in paths]
    rows.append(["silenced by a red flag", *("yes" if rule_id in p.red_flags_silence else "no"
                                             for p in profiles.values())])
    reasons = "".join(f"<li><code>{escape(k)}</code>: {_reason(v.model_dump())}</li>" for k, v in text.reasons.items())
    suggestions = ", ".join(rules.cards.suggestions[s].label for s in text.suggestions) or "none"  # type: ignore[index]
    overrides = "".join(
        f"<li>Profile {escape(name)} instead:<ul>{_override(rules, o[rule_id])}</ul></li>"  # type: ignore[index]
        for name, o in rules.cards.profile_overrides.items() if rule_id in o)
    cited = "".join(
        f"<li>{escape(name)}: " + ", ".join(f'<a href="#cite-{escape(c)}">{escape(c)}</a>' for c in ids) + "</li>"
        for name, ids in citations_by_rule(rules, rule_id).items())
    return f"""<section class="rule" id="rule-{escape(rule_id)}">
<h3>{escape(rule_id)}: {escape(text.topic)}
<span class="badge {escape(text.indicator)}">{escape(text.indicator)}</span></h3>
<p><strong>Fires when</strong> (profile {escape(profile_id)}), on every order that passes all of:</p><ol>{gates}</ol>
<h4>Thresholds and switches in every profile</h4>{_table(["setting", *profiles], rows, mark_diff=True)}
<h4>Card wording</h4><ul><li>Summary: {escape(placeholders(text.summary))}</li>
<li>Headline: {escape(text.headline)}</li><li>Why (one or more of):<ul>{reasons}</ul></li>
<li>On the card: {escape(" ".join(text.advice.split()))}</li>
<li>Recommendation: {escape(" ".join(text.recommendation.split()))}</li><li>Suggestions: {escape(suggestions)}</li>
<li>Override reasons offered: {"yes" if text.override_reasons else "no"}</li>
{overrides}</ul>
<h4>Citations by profile</h4><ul>{cited}</ul></section>"""


def _reason(wording: dict[str, str]) -> str:
    """A reason as each place words it: the summary's few words, the card's line, the basis page's sentences."""
    return (f"{escape(placeholders(wording['basis']))} (card: &ldquo;{escape(placeholders(wording['line']))}&rdquo;; "
            f"summary: &ldquo;{escape(placeholders(wording['brief']))}&rdquo;)")


def _override(rules: Rules, override: RuleTextOverride) -> str:
    """The fields a profile words differently (cards.yaml profile_overrides)."""
    items = []
    for field, value in override.model_dump(exclude_none=True).items():
        if isinstance(value, dict):  # reasons: one line each
            items += [f"<li>{escape(field)} <code>{escape(k)}</code>: {_reason(v)}</li>" for k, v in value.items()]
        elif isinstance(value, list):  # suggestions, by their labels
            labels = [rules.cards.suggestions[k].label for k in value]  # type: ignore[index]
            items.append(f"<li>{escape(field)}: {escape(', '.join(labels) or 'none')}</li>")
        else:
            items.append(f"<li>{escape(field)}: {escape(placeholders(value))}</li>")
    return "".join(items)


def _excluded(vs: ValueSet) -> Callable[[str, str], bool]:
    """Whether a code of `vs` is one of its exclusions (or under one with descendants)."""
    exact = {(x.system, normalise(x.code)) for x in vs.exclusions}
    under = [(x.system, normalise(x.code)) for x in vs.exclusions if x.descendants]
    return lambda system, code: (system, normalise(code)) in exact or any(
        system == s and normalise(code).startswith(p) for s, p in under)


def _valueset(rules: Rules, vs: ValueSet) -> str:
    excluded = _excluded(vs)
    codes = [[rules.system_name(c.system), c.code, c.display,
              "; ".join(f for f, on in (("descendants", c.descendants), ("unverified", not c.verified),
                                        ("excluded", excluded(c.system, c.code))) if on)]
             for c in vs.codes]
    exclusions = [[rules.system_name(x.system), x.code + (" (and under)" if x.descendants else ""), x.display,
                   " ".join(x.reason.split()), " ".join(x.source.split())] for x in vs.exclusions]
    return (f'<details id="vs-{escape(vs.id)}"><summary>{escape(vs.id)}: {escape(vs.title)} '
            f"({len(vs.codes)} codes" + (f", {len(exclusions)} excluded" if exclusions else "")
            + f")</summary><p>Source: {escape(vs.source)}</p>"
            + (f"<p>Note: {escape(vs.note)}</p>" if vs.note else "")
            + (f"<p>Decision: {escape(' '.join(vs.decision.split()))}</p>" if vs.decision else "")
            + (f"<p>Excluded, each with its reason and source:</p>"
               f"{_table(['system', 'code', 'display', 'reason', 'source'], exclusions)}" if exclusions else "")
            + _table(["system", "code", "display", "flags"], codes) + "</details>")


def _valuesets(rules: Rules) -> str:
    headers, rows = valueset_rows(rules)
    unused_headers, unused = not_used_rows(rules)
    return (f"<p>{escape(totals(rules))}.</p>{_table(headers, rows)}"
            f"<h3>Why each published set is used, and what it leaves out</h3>{_table(*decision_rows(rules))}"
            + (f"<h3>Published value sets not used</h3>{_table(unused_headers, unused)}" if unused else "")
            + "".join(_valueset(rules, vs) for vs in rules.valuesets.values()))


def _citations(rules: Rules) -> str:
    items = []
    for ref, c in rules.citations.items():
        note = f"<br>{escape(' '.join(c.note.split()))}" if c.note else ""
        items.append(f'<li id="cite-{escape(ref)}"><code>{escape(ref)}</code> <a href="{escape(c.url)}">'
                     f"{escape(c.title)}</a>, {escape(c.publisher)}, {c.year}{note}</li>")
    return f"<ul>{''.join(items)}</ul>"


def render_html(rules: Rules, profile_id: str | None = None) -> str:
    profile_id = profile_id or rules.profile_id
    gov = rules.governance
    headers, setting_rows = settings_by_profile(rules)
    profiles = "".join(f"<li><strong>{escape(n)}</strong>: {escape(p.title)}. {escape(' '.join(p.description.split()))}"
                       "</li>" for n, p in rules.pathway.profiles.items())
    ids = rule_ids(rules)
    nav = "".join(f'<li><a href="#rule-{escape(r)}">{escape(r)}</a></li>' for r in ids)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(gov.title)} {escape(gov.version)}</title><style>{STYLE}</style></head>
<body><main>
<h1>{escape(gov.title)} <span class="badge status-{escape(gov.status)}">{escape(gov.status)}</span></h1>
<p>{escape(gov.description)} Version {escape(gov.version)}, generated from <code>rules/</code> by
<code>lumbar-cds rules doc</code>; the diagram and the rules below show profile
<strong>{escape(profile_id)}</strong>.</p>
<nav><ol><li><a href="#governance">Governance</a></li><li><a href="#flow">Flow</a></li>
<li><a href="#rules">Rules</a><ol>{nav}</ol></li><li><a href="#profiles">Profiles</a></li>
<li><a href="#valuesets">Value sets</a></li><li><a href="#citations">Citations</a></li></ol></nav>
<h2 id="governance">Governance</h2>{_governance(rules)}
<h2 id="flow">Flow</h2><figure id="flow-diagram">{flow_svg(rules, profile_id)}</figure>
<h2 id="rules">Rules</h2>{"".join(_rule(rules, profile_id, r) for r in ids)}
<h2 id="profiles">Profiles</h2><ul>{profiles}</ul>
<h3>Where the profiles differ</h3>{_table(headers, differing(setting_rows), mark_diff=True)}
<h3>Every threshold and switch</h3>{_table(headers, setting_rows, mark_diff=True)}
<h3>Red-flag categories</h3>{_table(*red_flag_rows(rules))}
<h3>Episode, record statuses, ratings and labels</h3>
{_table(["pathway.yaml", "value"], [list(p) for p in pathway_lists(rules)])}
<h2 id="valuesets">Value sets</h2>{_valuesets(rules)}
<h2 id="citations">Citations</h2>{_citations(rules)}
</main></body></html>
"""
