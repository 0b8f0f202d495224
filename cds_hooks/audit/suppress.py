"""Small-cell suppression: no count between 1 and k−1 is shown, and none can be worked out.

A count below the minimum cell size k (and above zero) is shown as "<k". Where a total is shown, one
suppressed cell could be worked out by subtraction, so a second (the next smallest) is suppressed too.
In breakdowns by practitioner, organisation or location, small rows are pooled into one "other" row,
and the next smallest rows join it until the pool itself reaches k. A rate is shown only when neither
its numerator, its denominator nor their difference is a small cell.
"""

from __future__ import annotations

from typing import Any

Cell = int | str  # a count, or "<k"
OTHER = "other (each below the minimum cell size)"


def small(n: int, k: int) -> bool:
    return 0 < n < k


def cell(n: int, k: int) -> Cell:
    return f"<{k}" if small(n, k) else n


def rate(numerator: int, denominator: int, k: int) -> float | None:
    if denominator == 0 or any(small(x, k) for x in (numerator, denominator, denominator - numerator)):
        return None
    return round(numerator / denominator, 4)


def series(values: list[int], k: int) -> list[Cell]:
    """Cells of a series whose total is shown elsewhere (months, rules)."""
    hidden = {i for i, v in enumerate(values) if small(v, k)}
    if len(hidden) == 1:
        shown = sorted((v, i) for i, v in enumerate(values) if i not in hidden and v > 0)
        if shown:
            hidden.add(shown[0][1])
    return [f"<{k}" if i in hidden else v for i, v in enumerate(values)]


def pooled_rows(rows: list[dict[str, Any]], size_key: str, label_key: str, k: int) -> list[dict[str, Any]]:
    """Rows of a breakdown with the small ones pooled into one `OTHER` row of summed counts."""
    ordered = sorted(rows, key=lambda r: (r[size_key], str(r[label_key])))
    pool = [r for r in ordered if small(r[size_key], k)]
    rest = [r for r in ordered if not small(r[size_key], k)]
    while pool and sum(r[size_key] for r in pool) < k and rest:
        pool.append(rest.pop(0))
    if not pool:
        return sorted(rest, key=lambda r: (-r[size_key], str(r[label_key])))
    other: dict[str, Any] = {label_key: OTHER, "pooled": len(pool)}
    for key, value in pool[0].items():
        if isinstance(value, int) and key != "pooled":
            other[key] = sum(int(r.get(key, 0)) for r in pool)
    return [*sorted(rest, key=lambda r: (-r[size_key], str(r[label_key]))), other]


def hide(row: dict[str, Any], k: int) -> dict[str, Any]:
    """Every count of a row as a cell."""
    return {key: cell(v, k) if isinstance(v, int) and key != "pooled" else v for key, v in row.items()}
