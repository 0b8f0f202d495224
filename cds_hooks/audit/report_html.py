"""`report.html`: one self-contained page for the CDS committee (plots embedded, no outside requests).

Every value is escaped; the page loads nothing (no scripts, fonts or images from elsewhere).
"""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

from cds_hooks.audit import plots

STYLE = """
body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:60rem;color:#222;line-height:1.4}
h1{font-size:1.6rem}h2{margin-top:2.2rem;border-bottom:1px solid #ccc}
table{border-collapse:collapse;margin:.6rem 0}
th,td{border:1px solid #ccc;padding:.25rem .5rem;text-align:right;font-size:.9rem}th{background:#eef2f6}
td:first-child,th:first-child{text-align:left}.figures{display:flex;flex-wrap:wrap;gap:1rem}
.figure{border:1px solid #ccc;border-radius:6px;padding:.6rem 1rem;min-width:9rem}
.figure b{font-size:1.5rem;display:block}
img{max-width:100%;border:1px solid #eee;margin:.5rem 0}.card{border-left:4px solid #d1495b;background:#fafafa;
padding:.5rem 1rem;margin:.8rem 0}.card pre{white-space:pre-wrap;font-family:inherit;font-size:.88rem}
.note{color:#555;font-size:.9rem}
"""


def _e(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.1%}"
    return html.escape(str(value))


def _img(png: bytes, alt: str) -> str:
    return f'<img class="plot" alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def _table(rows: list[dict[str, Any]], columns: list[tuple[str, str]], caption: str) -> str:
    if not rows:
        return f'<p class="note">{html.escape(caption)}: none.</p>'
    head = "".join(f"<th>{html.escape(title)}</th>" for _, title in columns)
    body = "".join("<tr>" + "".join(f"<td>{_e(row.get(key))}</td>" for key, _ in columns) + "</tr>" for row in rows)
    return f"<table><caption>{html.escape(caption)}</caption><tr>{head}</tr>{body}</table>"


def _order_columns(report: dict[str, Any], label: str, title: str) -> list[tuple[str, str]]:
    rules = [(f"rule:{r['rule']}", r["topic"]) for r in report["orders"]["byRule"]]
    return [(label, title), ("orders", "orders"), ("warned", "would warn"), ("warnRate", "rate"), *rules,
            ("red-flag", "red flag"), ("silent", "silent")]


def render(report: dict[str, Any]) -> str:
    orders = report["orders"]
    k = report["privacy"]["minimumCellSize"]
    parts = [f"<h1>{_e(report['title'])}</h1>",
             f"<p>Orders placed {_e(report['period']['from'])} to {_e(report['period']['to'])}, judged with the live "
             f"pathway (profile <b>{_e(report['rules']['profile'])}</b>, service {_e(report['rules']['service'])}) "
             f"on each patient's record as it stood on the order date. {_e(report['privacy']['note'])}</p>",
             '<div class="figures">']
    for key, label in (("total", "orders audited"), ("warned", "would warn"), ("redFlag", "kept quiet by a red flag"),
                       ("silent", "silent"), ("warnedThenRedFlag", "warned, red flag recorded soon after")):
        parts.append(f'<div class="figure"><b>{_e(orders[key])}</b>{html.escape(label)}</div>')
    parts.append(f'<div class="figure"><b>{_e(orders["warnRate"])}</b>would-warn rate</div></div>')
    parts += ["<h2>Rates over time</h2>", _img(plots.rates_over_time(report), "orders and would-warn rate by month"),
              _table(orders["byMonth"], _order_columns(report, "month", "month"), "By month"),
              "<h2>By rule</h2>", _img(plots.by_rule(report), "would-warn rate by rule"),
              _table(orders["byRule"], [("topic", "rule"), ("rule", "id"), ("orders", "orders"), ("rate", "rate")],
                     "Cards each rule would have shown"),
              "<h2>By clinic</h2>",
              _img(plots.by_group(report, "byOrganization", "organization", "Would-warn rate by organisation"),
                   "would-warn rate by organisation"),
              _table(orders["byOrganization"], _order_columns(report, "organization", "organisation"),
                     "By organisation"),
              _table(orders["byLocation"], _order_columns(report, "location", "location"), "By location"),
              _table(orders["byPractitioner"], _order_columns(report, "practitioner", "ordering practitioner"),
                     "By ordering practitioner"),
              _table(orders["byCategory"], _order_columns(report, "category", "order"), "By kind of order"),
              _table(orders["bySource"], _order_columns(report, "source", "found as"), "By where the order was found"),
              "<h2>Red-flag mix</h2>",
              '<p class="note">Orders that the pathway kept quiet because of a red flag, by the red-flag category '
              "that alone was enough (an order can count under several).</p>",
              _img(plots.red_flag_mix(report), "red-flag mix"),
              _table(report["redFlags"], [("label", "red flag"), ("orders", "orders")], "Red-flag exclusions")]
    parts.append("<h2>Low back pain imaging measures</h2>")
    for m in report["measures"]:
        parts += [f"<h3>{_e(m['title'])}</h3>", f'<p class="note">{_e(m["note"])} Source: {_e(m["source"])}. '
                  f"Not expressed in the rules: {_e(', '.join(m['notExpressed']))}.</p>",
                  _table([m], [("index", "index diagnoses"), ("priorEpisode", "not new"), ("outsideAge", "outside age"),
                               ("noBirthDate", "no birth date"), ("excluded", "excluded"),
                               ("denominator", "denominator"), ("numerator", "imaged"),
                               ("imagedRate", "imaged rate"), ("notImagedRate", "measure (not imaged)")],
                         f"Age {m['age']}, imaging within {m['imagingWithinDays']} days"),
                  _table(m["strata"], [("stratum", "age"), ("denominator", "denominator"), ("numerator", "imaged"),
                                       ("imagedRate", "imaged rate")], "By age stratum"),
                  _table(m["exclusions"], [("exclusion", "exclusion"), ("patients", "patients")], "Exclusions"),
                  _img(plots.measure_by_month(m), f"{m['id']} by month")]
    parts.append("<h2>Example cards</h2>")
    if not report["samples"]:
        parts.append('<p class="note">No samples were asked for (<code>--sample N</code>).</p>')
    for rule, samples in report["samples"].items():
        parts.append(f"<h3>{_e(rule)}</h3>")
        for s in samples:
            card = s["card"]
            parts.append(f'<div class="card"><b>[{_e(card.get("indicator"))}] {_e(card.get("summary"))}</b> '
                         f'<span class="note">({_e(s["category"])})</span><pre>{_e(card.get("detail"))}</pre></div>')
    data = report["data"]
    parts += ["<h2>Data read</h2>",
              _table([{"what": key, "n": value} for key, value in (
                  ("patients", data["patients"]), ("patients with audited orders", data["patientsWithOrders"]),
                  ("unreadable lines", data["unreadableLines"]),
                  ("lines of no patient (and no shared resource)", data["unattributedLines"]),
                  ("orders judged on a record with unreadable resources", orders["unreadableHistory"]),
                  ("orders the service would refuse as invalid FHIR", orders["refused"]))],
                  [("what", "what"), ("n", "count")], "Input"),
              _table([{"type": t, "n": n, "unasked": data["notAskedFor"].get(t, 0)}
                      for t, n in sorted({**dict.fromkeys(data["notAskedFor"], 0), **data["resources"]}.items())],
                     [("type", "resource type"), ("n", "resources read"),
                      ("unasked", "lines not read: no prefetch search asks for them")], "Resources by type"),
              f'<p class="note">Minimum cell size {k}. Engine: {_e(report["engine"].get("name"))}. '
              f"Generated {_e(report['generated'])}.</p>"]
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{_e(report["title"])}</title>'
            f"<style>{STYLE}</style></head><body>{''.join(parts)}</body></html>\n")


def write_html(report: dict[str, Any], path: Path) -> None:
    path.write_text(render(report), encoding="utf-8")
