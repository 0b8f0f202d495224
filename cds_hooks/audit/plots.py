"""The report's plots (matplotlib, Agg backend), as PNG bytes to embed in the HTML page.

Plots draw only what the report shows: a suppressed cell is left out (a gap), never estimated.
"""

from __future__ import annotations

import io
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display; set before pyplot is imported
import matplotlib.pyplot as plt

COLOURS = ("#1b6ca8", "#d1495b", "#edae49", "#66a182", "#8d5a97", "#00798c", "#30638e")


def _png(fig: Any) -> bytes:
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=110, metadata={"Software": None})
    plt.close(fig)
    return buffer.getvalue()


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def rates_over_time(report: dict[str, Any]) -> bytes:
    rows = report["orders"]["byMonth"]
    months = [r["month"] for r in rows]
    fig, left = plt.subplots(figsize=(8, 3.6))
    counts = [_number(r["orders"]) for r in rows]
    left.bar(months, [c or 0 for c in counts], color="#c9d6e3", label="orders audited")
    left.set_ylabel("orders audited")
    left.tick_params(axis="x", rotation=60, labelsize=8)
    right = left.twinx()
    rates = [r["warnRate"] * 100 if r["warnRate"] is not None else float("nan") for r in rows]
    right.plot(months, rates, color=COLOURS[1], marker="o", label="would warn (%)")
    right.set_ylabel("would warn (%)")
    right.set_ylim(0, 100)
    left.set_title("Orders audited and would-warn rate by month")
    fig.legend(loc="upper left", fontsize=8)
    return _png(fig)


def by_rule(report: dict[str, Any]) -> bytes:
    rows = report["orders"]["byRule"]
    fig, ax = plt.subplots(figsize=(8, 0.6 + 0.5 * max(len(rows), 1)))
    labels = [r["topic"] for r in rows]
    rates = [(r["rate"] or 0) * 100 for r in rows]
    ax.barh(labels, rates, color=COLOURS[0])
    for i, r in enumerate(rows):
        ax.text(rates[i], i, f" {r['orders']}", va="center", fontsize=8)
    ax.set_xlabel("orders that would get this card (% of orders audited)")
    ax.set_title("Would-warn rate by rule")
    ax.invert_yaxis()
    return _png(fig)


def by_group(report: dict[str, Any], group: str, label_key: str, title: str, limit: int = 15) -> bytes:
    rows = [r for r in report["orders"][group] if r.get("warnRate") is not None][:limit]
    fig, ax = plt.subplots(figsize=(8, 0.6 + 0.45 * max(len(rows), 1)))
    labels = [str(r[label_key])[:40] for r in rows]
    ax.barh(labels, [r["warnRate"] * 100 for r in rows], color=COLOURS[3])
    ax.set_xlim(0, 100)
    ax.set_xlabel("would warn (% of its orders)")
    ax.set_title(title)
    ax.invert_yaxis()
    return _png(fig)


def red_flag_mix(report: dict[str, Any]) -> bytes:
    rows = [r for r in report["redFlags"] if _number(r["orders"]) is not None]
    fig, ax = plt.subplots(figsize=(8, 0.6 + 0.45 * max(len(rows), 1)))
    ax.barh([r["label"][:50] for r in rows], [r["orders"] for r in rows], color=COLOURS[2])
    ax.set_xlabel("orders kept quiet by this red flag (alone enough)")
    ax.set_title("Red-flag mix")
    ax.invert_yaxis()
    return _png(fig)


def measure_by_month(measure: dict[str, Any]) -> bytes:
    rows = measure["byMonth"]
    fig, ax = plt.subplots(figsize=(8, 3.2))
    ax.plot([r["month"] for r in rows],
            [r["imagedRate"] * 100 if r["imagedRate"] is not None else float("nan") for r in rows],
            marker="o", color=COLOURS[4])
    ax.set_ylim(0, 100)
    ax.set_ylabel("imaged within the window (%)")
    ax.tick_params(axis="x", rotation=60, labelsize=8)
    ax.set_title(f"{measure['id']}: imaging within {measure['imagingWithinDays']} days, by index month")
    return _png(fig)
