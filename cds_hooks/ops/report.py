"""The committee report: per rule, cards issued, accepted, overridden, override rate and top override reasons.

Counts are of distinct cards, so duplicate feedback posts (which the API accepts) do not inflate them.
A card counts from when it was issued: `since` selects cards issued on or after that day, with all
their feedback. Feedback on cards this service never issued has no rule and is left out.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import date
from typing import Any

import orjson
from sqlalchemy import Engine, func, select

from cds_hooks.ops.safe_text import printable, spreadsheet_cell
from cds_hooks.store.repository import feedback, issued_cards

FORMATS = ("text", "csv", "json")


@dataclass(frozen=True)
class Reason:
    system: str | None
    code: str | None
    display: str | None
    cards: int

    def label(self) -> str:
        """Code and display as sent in feedback, control characters escaped (safe_text.py)."""
        if self.code is None:
            return "(no reason given)"
        return printable(f"{self.code} ({self.display})" if self.display else self.code)


@dataclass(frozen=True)
class RuleReport:
    rule_id: str
    issued: int
    accepted: int
    overridden: int
    # Cards with any feedback at all; the rest were ignored or the EHR sent none.
    with_feedback: int
    top_reasons: tuple[Reason, ...]

    @property
    def override_rate(self) -> float | None:
        """Overridden among the cards acted on (accepted or overridden); None before any feedback."""
        acted = self.accepted + self.overridden
        return self.overridden / acted if acted else None


def build_report(engine: Engine, since: date | None = None, top: int = 3) -> list[RuleReport]:
    issued_filter = [issued_cards.c.issued_at >= f"{since.isoformat()}T00:00:00.000Z"] if since else []
    joined = feedback.join(issued_cards, issued_cards.c.uuid == feedback.c.card_uuid)
    rule = issued_cards.c.rule_id
    distinct_cards = func.count(feedback.c.card_uuid.distinct())
    with engine.connect() as db:
        issued = dict(db.execute(select(rule, func.count()).where(*issued_filter).group_by(rule)).all())
        outcomes = db.execute(
            select(rule, feedback.c.outcome, distinct_cards).select_from(joined).where(*issued_filter)
            .group_by(rule, feedback.c.outcome)
        ).all()
        answered = dict(db.execute(
            select(rule, distinct_cards).select_from(joined).where(*issued_filter).group_by(rule)
        ).all())
        reasons = db.execute(
            select(rule, feedback.c.override_system, feedback.c.override_code,
                   func.max(feedback.c.override_display), distinct_cards)
            .select_from(joined).where(feedback.c.outcome == "overridden", *issued_filter)
            .group_by(rule, feedback.c.override_system, feedback.c.override_code)
        ).all()
    counts: dict[tuple[str, str], int] = {(r, outcome): n for r, outcome, n in outcomes}
    by_rule: dict[str, list[Reason]] = {}
    for rule_id, system, code, display, n in reasons:
        by_rule.setdefault(rule_id, []).append(Reason(system, code, display, n))
    report = []
    for rule_id in sorted(issued):
        ranked = sorted(by_rule.get(rule_id, ()), key=lambda r: (-r.cards, r.code is None, r.code or ""))
        report.append(RuleReport(
            rule_id, issued[rule_id], counts.get((rule_id, "accepted"), 0), counts.get((rule_id, "overridden"), 0),
            answered.get(rule_id, 0), tuple(ranked[:top]),
        ))
    return report


def _rate(rate: float | None) -> str:
    return "-" if rate is None else f"{rate:.1%}"


def as_json(report: list[RuleReport], since: date | None) -> dict[str, Any]:
    return {
        "since": since.isoformat() if since else None,
        "rules": [
            {
                "rule": r.rule_id, "issued": r.issued, "accepted": r.accepted, "overridden": r.overridden,
                "withFeedback": r.with_feedback, "overrideRate": r.override_rate,
                "topOverrideReasons": [
                    {"system": _printable(x.system), "code": _printable(x.code), "display": _printable(x.display),
                     "cards": x.cards} for x in r.top_reasons
                ],
            }
            for r in report
        ],
    }


def _printable(text: str | None) -> str | None:
    return None if text is None else printable(text)


def _cells(row: list[Any]) -> list[str]:
    """Every cell guarded (safe_text.py): override codes and displays come from EHR feedback."""
    return [spreadsheet_cell(str(value)) for value in row]


def render(report: list[RuleReport], since: date | None, fmt: str) -> str:
    if fmt == "json":
        return orjson.dumps(as_json(report, since), option=orjson.OPT_INDENT_2).decode() + "\n"
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["rule", "issued", "accepted", "overridden", "with_feedback", "override_rate",
                         "top_override_reasons"])
        for r in report:
            reasons = "; ".join(f"{x.label()}: {x.cards}" for x in r.top_reasons)
            rate = "" if r.override_rate is None else f"{r.override_rate:.4f}"
            writer.writerow(_cells([r.rule_id, r.issued, r.accepted, r.overridden, r.with_feedback, rate, reasons]))
        return out.getvalue()
    lines = [f"Cards issued {'since ' + since.isoformat() if since else 'to date'}, by rule "
             "(override rate = overridden / (accepted + overridden)):", ""]
    header = f"{'rule':<28} {'issued':>7} {'accepted':>9} {'overridden':>11} {'feedback':>9} {'override rate':>14}"
    lines += [header, "-" * len(header)]
    for r in report:
        lines.append(f"{printable(r.rule_id):<28} {r.issued:>7} {r.accepted:>9} {r.overridden:>11} "
                     f"{r.with_feedback:>9} {_rate(r.override_rate):>14}")
        lines += [f"    {x.cards:>5}  {x.label()}" for x in r.top_reasons]
    if not report:
        lines.append("(no cards issued)")
    return "\n".join(lines) + "\n"
