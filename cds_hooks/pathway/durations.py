"""How a card words a day count: exactly ('3 weeks 2 days', the basis page) or briefly ('3 weeks', the card).

A leaf module: `rules check` uses the same functions to find a template's longest wording."""

from __future__ import annotations


def _unit(n: int, word: str) -> str:
    return f"{n} {word}{'s' if n != 1 else ''}"


def duration(days: int) -> str:
    """'3 weeks 2 days' style text for a day count."""
    weeks, rest = divmod(max(days, 0), 7)
    parts = []
    if weeks:
        parts.append(_unit(weeks, "week"))
    if rest or not weeks:
        parts.append(_unit(rest, "day"))
    return " ".join(parts)


def weeks(days: int) -> str:
    """'3 weeks' (whole weeks, rounded down) for a card line; under a week, '5 days'."""
    days = max(days, 0)
    return _unit(days, "day") if days < 7 else _unit(days // 7, "week")
