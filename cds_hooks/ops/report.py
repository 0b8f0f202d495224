"""The committee report: per rules version and rule, cards issued, accepted, overridden, override rate and top
override reasons.

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

from cds_hooks.store.repository import feedback, issued_cards

FORMATS = ("text", "csv", "json")


@dataclass(frozen=True)
class Reason:
    system: str | None
    code: str | None
    display: str | None
    cards: int

    def label(self) -> str:
        if self.code is None:
            return "(no reason given)"
        return f"{self.code} ({self.display})" if self.display else self.code


@dataclass(frozen=True)
class RuleReport:
    rule_id: str
    issued: int
    accepted: int
    overridden: int
    # Cards with any feedback at all; the rest were ignored or the EHR sent none.
    with_feedback: int
    top_reasons: tuple[Reason, ...]
    # rules/governance.yaml version that issued the cards; None for cards from before versions.
    rules_version: str | None = None

    @property
    def override_rate(self) -> float | None:
        """Overridden among the cards acted on (accepted or overridden); None before any feedback."""
        acted = self.accepted + self.overridden
        return self.overridden / acted if acted else None


def build_report(engine: Engine, since: date | None = None, top: int = 3) -> list[RuleReport]:
    """One row per rules version and rule: a committee compares a rule before and after a change."""
    issued_filter = [issued_cards.c.issued_at >= f"{since.isoformat()}T00:00:00.000Z"] if since else []
    joined = feedback.join(issued_cards, issued_cards.c.uuid == feedback.c.card_uuid)
    version, rule = issued_cards.c.rules_version, issued_cards.c.rule_id
    distinct_cards = func.count(feedback.c.card_uuid.distinct())
    with engine.connect() as db:
        issued = {(v, r): n for v, r, n in db.execute(
            select(version, rule, func.count()).where(*issued_filter).group_by(version, rule)).all()}
        outcomes = db.execute(
            select(version, rule, feedback.c.outcome, distinct_cards).select_from(joined).where(*issued_filter)
            .group_by(version, rule, feedback.c.outcome)
        ).all()
        answered = {(v, r): n for v, r, n in db.execute(
            select(version, rule, distinct_cards).select_from(joined).where(*issued_filter).group_by(version, rule)
        ).all()}
        reasons = db.execute(
            select(version, rule, feedback.c.override_system, feedback.c.override_code,
                   func.max(feedback.c.override_display), distinct_cards)
            .select_from(joined).where(feedback.c.outcome == "overridden", *issued_filter)
            .group_by(version, rule, feedback.c.override_system, feedback.c.override_code)
        ).all()
    counts: dict[tuple[str | None, str, str], int] = {(v, r, outcome): n for v, r, outcome, n in outcomes}
    by_rule: dict[tuple[str | None, str], list[Reason]] = {}
    for rules_version, rule_id, system, code, display, n in reasons:
        by_rule.setdefault((rules_version, rule_id), []).append(Reason(system, code, display, n))
    report = []
    # Oldest first: cards from before versions (NULL), then versions in their own order.
    for key in sorted(issued, key=lambda k: (k[0] is not None, _version_key(k[0]), k[1])):
        ranked = sorted(by_rule.get(key, ()), key=lambda r: (-r.cards, r.code is None, r.code or ""))
        report.append(RuleReport(
            key[1], issued[key], counts.get((*key, "accepted"), 0), counts.get((*key, "overridden"), 0),
            answered.get(key, 0), tuple(ranked[:top]), key[0],
        ))
    return report


def _version_key(version: str | None) -> tuple[tuple[int, str], ...]:
    """1.10.0 after 1.9.0: numeric parts compare as numbers."""
    parts = (version or "").replace("-", ".").replace("+", ".").split(".")
    return tuple((int(p), "") if p.isdigit() else (-1, p) for p in parts)


def version_label(version: str | None) -> str:
    return version or "(unversioned)"


def _rate(rate: float | None) -> str:
    return "-" if rate is None else f"{rate:.1%}"


def as_json(report: list[RuleReport], since: date | None) -> dict[str, Any]:
    return {
        "since": since.isoformat() if since else None,
        "rules": [
            {
                "rulesVersion": r.rules_version, "rule": r.rule_id, "issued": r.issued, "accepted": r.accepted,
                "overridden": r.overridden,
                "withFeedback": r.with_feedback, "overrideRate": r.override_rate,
                "topOverrideReasons": [
                    {"system": x.system, "code": x.code, "display": x.display, "cards": x.cards} for x in r.top_reasons
                ],
            }
            for r in report
        ],
    }


def _cell(text: str) -> str:
    """Override codes and displays come from EHR feedback: a leading = + - @ would make a
    spreadsheet run the cell as a formula, so such text is quoted."""
    return "'" + text if text.startswith(("=", "+", "-", "@", "\t", "\r")) else text


def render(report: list[RuleReport], since: date | None, fmt: str) -> str:
    if fmt == "json":
        return orjson.dumps(as_json(report, since), option=orjson.OPT_INDENT_2).decode() + "\n"
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["rules_version", "rule", "issued", "accepted", "overridden", "with_feedback",
                         "override_rate", "top_override_reasons"])
        for r in report:
            reasons = "; ".join(f"{x.label()}: {x.cards}" for x in r.top_reasons)
            rate = "" if r.override_rate is None else f"{r.override_rate:.4f}"
            writer.writerow([r.rules_version or "", r.rule_id, r.issued, r.accepted, r.overridden, r.with_feedback,
                             rate, _cell(reasons)])
        return out.getvalue()
    lines = [f"Cards issued {'since ' + since.isoformat() if since else 'to date'}, by rules version and rule "
             "(override rate = overridden / (accepted + overridden)):", ""]
    header = f"{'rule':<28} {'issued':>7} {'accepted':>9} {'overridden':>11} {'feedback':>9} {'override rate':>14}"
    lines += [header, "-" * len(header)]
    shown: object = ()  # no version heading yet
    for r in report:
        if r.rules_version != shown:
            lines.append(f"rules version {version_label(r.rules_version)}:")
            shown = r.rules_version
        lines.append(f"{r.rule_id:<28} {r.issued:>7} {r.accepted:>9} {r.overridden:>11} {r.with_feedback:>9} "
                     f"{_rate(r.override_rate):>14}")
        lines += [f"    {x.cards:>5}  {x.label()}" for x in r.top_reasons]
    if not report:
        lines.append("(no cards issued)")
    return "\n".join(lines) + "\n"
