"""`report.json` and `report.csv`: the report for machines.

The CSV is long and flat, one number per row (`section, group, item, metric, value`), so a
spreadsheet or a warehouse loads it without knowing the report's shape. Text cells that a
spreadsheet would run as a formula are quoted.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import orjson

HEADER = ("section", "group", "item", "metric", "value")


def write_json(report: dict[str, Any], path: Path) -> None:
    path.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n")


def _safe(value: Any) -> Any:
    if isinstance(value, str) and value.startswith(("=", "+", "-", "@", "\t", "\r")):
        return "'" + value
    return value


def rows(report: dict[str, Any]) -> list[tuple[Any, ...]]:
    out: list[tuple[Any, ...]] = []

    def scalars(section: str, group: str, item: str, values: dict[str, Any]) -> None:
        for metric, value in values.items():
            if isinstance(value, int | float | str) or value is None:
                out.append((section, group, item, metric, value))

    for section in ("period", "rules", "privacy", "source", "engine"):
        scalars(section, "", "", report.get(section, {}))
    data = report["data"]
    scalars("data", "", "", data)
    scalars("data", "resources", "", data.get("resources", {}))
    scalars("data", "notAskedFor", "", data.get("notAskedFor", {}))
    orders = report["orders"]
    scalars("orders", "all", "all", orders)
    for group, items in orders.items():
        if isinstance(items, list):
            for row in items:
                label = next(str(v) for v in row.values() if isinstance(v, str))
                scalars("orders", group, label, row)
    for row in report["redFlags"]:
        out.append(("redFlags", "category", row["category"], "orders", row["orders"]))
    for measure in report["measures"]:
        scalars(f"measure:{measure['id']}", "all", "all", measure)
        for group in ("exclusions", "strata", "byMonth"):
            for row in measure[group]:
                label = next(str(v) for v in row.values() if isinstance(v, str))
                scalars(f"measure:{measure['id']}", group, label, row)
    return out


def write_csv(report: dict[str, Any], path: Path) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(HEADER)
        for row in rows(report):
            writer.writerow([_safe(v) for v in row])
