"""The audit report as data: what `report.json` holds and the CSV and HTML show, already suppressed.

Built from a `Tally` (the counts), what was read, and how the audit ran. Counts pass through
`suppress` before they enter the report, so no writer can show a small cell.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from cds_hooks.audit import suppress
from cds_hooks.audit.audit_rules import Measure
from cds_hooks.audit.tally import Tally
from cds_hooks.pathway.rules import Rules

BREAKDOWNS = (("byCategory", "category"), ("bySource", "source"), ("byPractitioner", "practitioner"),
              ("byOrganization", "organization"), ("byLocation", "location"))
OUTCOMES = ("warned", "red-flag", "silent", "refused")
MEASURE_STATUSES = ("prior-episode", "no-birth-date", "outside-age", "excluded", "denominator")


def _values(tally: Tally, dimension: str) -> dict[str, dict[str, int]]:
    """value → metric → count, for one order dimension."""
    out: dict[str, dict[str, int]] = {}
    for key, n in tally.counts.items():
        if key[0] == "orders" and key[1] == dimension:
            out.setdefault(key[2], {})[key[3]] = n
    return out


def _order_row(label_key: str, label: str, metrics: dict[str, int], rules: list[str]) -> dict[str, Any]:
    row: dict[str, Any] = {label_key: label, "orders": metrics.get("orders", 0)}
    for outcome in OUTCOMES:
        row[outcome] = metrics.get(outcome, 0)
    for rule in rules:
        row[f"rule:{rule}"] = metrics.get(f"rule:{rule}", 0)
    return row


def _with_rate(row: dict[str, Any], k: int) -> dict[str, Any]:
    rate = suppress.rate(row["warned"], row["orders"], k)
    return {**suppress.hide(row, k), "warnRate": rate}


def build(tally: Tally, rules: Rules, measures: list[Measure], *, period: tuple[date, date], k: int,
          source: dict[str, Any], engine: dict[str, Any], service: str, samples: int) -> dict[str, Any]:
    rule_ids = sorted({key[3][5:] for key in tally.counts if key[0] == "orders" and key[3].startswith("rule:")})
    total = _values(tally, "all").get("all", {})
    orders = total.get("orders", 0)
    months = _values(tally, "month")
    month_rows = [_order_row("month", m, months[m], rule_ids) for m in sorted(months)]
    month_cells = {name: suppress.series([r[name] for r in month_rows], k)
                   for name in ("orders", "warned", *(f"rule:{r}" for r in rule_ids))}
    by_month = []
    for i, row in enumerate(month_rows):
        shown = {**row, **{name: cells[i] for name, cells in month_cells.items()}}
        by_month.append({**{key: (suppress.cell(v, k) if isinstance(v, int) else v) for key, v in shown.items()},
                         "warnRate": suppress.rate(row["warned"], row["orders"], k)})
    rule_counts = [total.get(f"rule:{r}", 0) for r in rule_ids]
    by_rule = [{"rule": r, "topic": _topic(rules, r), "orders": cell,
                "rate": suppress.rate(n, orders, k)}
               for r, n, cell in zip(rule_ids, rule_counts, suppress.series(rule_counts, k), strict=True)]
    report: dict[str, Any] = {
        "title": "Retrospective audit of the lumbar conservative-care pathway",
        "generated": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "period": {"from": period[0].isoformat(), "to": period[1].isoformat()},
        "rules": {"profile": rules.profile_id, "service": service},
        "source": source,
        "engine": engine,
        "privacy": {"minimumCellSize": k, "samplesPerRule": samples,
                    "note": f"Counts from 1 to {k - 1} are shown as <{k}; no patient identifier is reported."},
        "data": _data(tally, k),
        "orders": {
            "total": suppress.cell(orders, k),
            **{_camel(o): suppress.cell(total.get(o, 0), k) for o in (*OUTCOMES, "warned-then-red-flag",
                                                                       "unreadable-history")},
            "warnRate": suppress.rate(total.get("warned", 0), orders, k),
            "byRule": by_rule,
            "byMonth": by_month,
        },
        "redFlags": [{"category": c, "label": rules.pathway.red_flag_categories.get(c, c),
                      "orders": suppress.cell(n, k)}
                     for c, n in sorted(((key[1], n) for key, n in tally.counts.items() if key[0] == "red-flag"),
                                        key=lambda x: (-x[1], x[0]))],
        "measures": [_measure(tally, m, k) for m in measures],
        "samples": {rule: tally.sorted_samples(rule) for rule in sorted(tally.samples)},
    }
    for name, dimension in BREAKDOWNS:
        rows = [_order_row(dimension, v, metrics, rule_ids) for v, metrics in _values(tally, dimension).items()]
        report["orders"][name] = [_with_rate(r, k) for r in suppress.pooled_rows(rows, "orders", dimension, k)]
    return report


def _camel(name: str) -> str:
    head, *rest = name.split("-")
    return head + "".join(p.title() for p in rest)


def _topic(rules: Rules, rule_id: str) -> str:
    try:
        return rules.card_text(rule_id).topic
    except (KeyError, AttributeError):
        return rule_id


def _data(tally: Tally, k: int) -> dict[str, Any]:
    data = {key[1:]: n for key, n in tally.counts.items() if key[0] == "data"}
    return {
        "patients": suppress.cell(data.get(("patients",), 0), k),
        "patientsWithOrders": suppress.cell(data.get(("patients-with-orders",), 0), k),
        "unreadableLines": data.get(("unreadable",), 0),
        # Lines that name no patient by a FHIR id and are no shared resource (Medication, Practitioner...).
        "unattributedLines": data.get(("unattributed",), 0),
        "resources": {key[1]: n for key, n in sorted(data.items()) if key[0] == "resources"},
        # Lines passed over unread: of a type read only through the prefetch, and held by no prefetch search.
        "notAskedFor": {key[1]: n for key, n in sorted(data.items()) if key[0] == "unasked"},
    }


def _measure(tally: Tally, m: Measure, k: int) -> dict[str, Any]:
    rows: dict[tuple[str, str], dict[str, int]] = {}
    for key, n in tally.counts.items():
        if key[0] == "measure" and key[1] == m.id:
            rows.setdefault((key[2], key[3]), {})[key[4]] = n
    overall = rows.get(("all", "all"), {})

    def summary(metrics: dict[str, int]) -> dict[str, Any]:
        den, num = metrics.get("denominator", 0), metrics.get("numerator", 0)
        imaged = suppress.rate(num, den, k)
        return {"index": suppress.cell(metrics.get("index", 0), k),
                **{_camel(s): suppress.cell(metrics.get(s, 0), k) for s in MEASURE_STATUSES},
                "numerator": suppress.cell(num, k), "imagedRate": imaged,
                "notImagedRate": None if imaged is None else round(1 - imaged, 4)}

    exclusions = sorted({x.id for x in m.exclusions})
    return {
        "id": m.id, "title": m.title, "source": m.source, "note": m.note, "notExpressed": m.not_expressed,
        "imagingWithinDays": m.imaging_within_days, "age": f"{m.age.min}-{m.age.max}",
        **summary(overall),
        "exclusions": [{"exclusion": x, "patients": suppress.cell(overall.get(f"excluded:{x}", 0), k)}
                       for x in exclusions],
        "strata": [{"stratum": s.label, **summary(rows.get(("stratum", s.label), {}))} for s in m.age.strata],
        "byMonth": [{"month": month, **summary(metrics)}
                    for (dimension, month), metrics in sorted(rows.items()) if dimension == "month"],
    }
