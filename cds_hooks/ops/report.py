"""The committee report: per rules version and rule, cards issued, accepted, overridden, override rate and top
override reasons.

Each card counts once, by its latest feedback (store/resolution.py): duplicate posts do not inflate the
counts, and a card both accepted and overridden counts as whichever came later. A card counts from when
it was issued: `since` selects cards issued on or after that day, with all their feedback. Feedback on
cards this service never issued has no rule and is left out. An override reason sent without a display
(the CDS Hooks Sandbox sends none) is shown with the rules' display for its code. Cards override memory
withheld are counted per rule as silenced. Cards a service in silent mode (a pilot) recorded but never showed
are counted apart (`silent`), beside the live ones.
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

import orjson
from sqlalchemy import Engine, func, select

from cds_hooks.ops.safe_text import printable, spreadsheet_cell
from cds_hooks.store.memory import silenced_cards
from cds_hooks.store.repository import feedback, issued_cards
from cds_hooks.store.resolution import latest_per_card

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
    # rules/governance.yaml version that issued the cards; None for cards from before versions.
    rules_version: str | None = None
    # Cards override memory withheld after a durable override for the same patient (not in `issued`).
    silenced: int = 0
    silent: int = 0  # cards recorded in silent mode: what the rule would have shown (not in `issued`)

    @property
    def override_rate(self) -> float | None:
        """Overridden among the cards acted on (accepted or overridden); None before any feedback."""
        acted = self.accepted + self.overridden
        return self.overridden / acted if acted else None


def build_report(
    engine: Engine, since: date | None = None, top: int = 3,
    displays: Mapping[tuple[str | None, str], str] | None = None,
) -> list[RuleReport]:
    """One row per rules version and rule, so a committee can compare a rule before and after a change.
    `displays` are the rules' override reason displays by (system, code), for reasons sent without one."""
    start = f"{since.isoformat()}T00:00:00.000Z" if since else None
    issued_filter = [issued_cards.c.issued_at >= start] if start else []
    version, rule = issued_cards.c.rules_version, issued_cards.c.rule_id
    with engine.connect() as db:
        by_mode = db.execute(select(version, rule, issued_cards.c.silent, func.count()).where(*issued_filter)
                             .group_by(version, rule, issued_cards.c.silent)).all()
        rows = db.execute(
            select(version, rule, feedback.c.id, feedback.c.card_uuid, feedback.c.outcome,
                   feedback.c.outcome_timestamp, feedback.c.received_at, feedback.c.override_system,
                   feedback.c.override_code, feedback.c.override_display)
            .select_from(feedback.join(issued_cards, issued_cards.c.uuid == feedback.c.card_uuid))
            .where(*issued_filter)
        ).all()
        silenced_filter = [silenced_cards.c.silenced_at >= start] if start else []
        silenced = {(v, r): n for v, r, n in db.execute(
            select(silenced_cards.c.rules_version, silenced_cards.c.rule_id, func.count())
            .where(*silenced_filter).group_by(silenced_cards.c.rules_version, silenced_cards.c.rule_id)
        ).all()}
    issued = {(v, r): n for v, r, silent, n in by_mode if not silent}
    quiet = {(v, r): n for v, r, silent, n in by_mode if silent}
    latest = latest_per_card(row._mapping for row in rows)
    displayed = _displays(rows, displays or {})
    outcomes: Counter[tuple[str | None, str, str]] = Counter()
    answered: Counter[tuple[str | None, str]] = Counter()
    reasons: dict[tuple[str | None, str], Counter[tuple[str | None, str | None]]] = {}
    for row in latest.values():
        key = (row["rules_version"], row["rule_id"])
        outcomes[(*key, row["outcome"])] += 1
        answered[key] += 1
        if row["outcome"] == "overridden":
            reasons.setdefault(key, Counter())[(row["override_system"], row["override_code"])] += 1
    report = []
    # Oldest first: cards from before versions (NULL), then versions in their own order.
    keys = set(issued) | set(quiet) | set(silenced)
    for key in sorted(keys, key=lambda k: (k[0] is not None, _version_key(k[0]), k[1])):
        ranked = sorted(
            (Reason(system, code, displayed.get((system, code)), n)
             for (system, code), n in reasons.get(key, Counter()).items()),
            key=lambda r: (-r.cards, r.code is None, r.code or ""),
        )
        report.append(RuleReport(
            key[1], issued.get(key, 0), outcomes[(*key, "accepted")], outcomes[(*key, "overridden")],
            answered[key], tuple(ranked[:top]), key[0], silenced.get(key, 0), quiet.get(key, 0),
        ))
    return report


def _version_key(version: str | None) -> tuple[tuple[int, str], ...]:
    """1.10.0 after 1.9.0: numeric parts compare as numbers."""
    parts = (version or "").replace("-", ".").replace("+", ".").split(".")
    return tuple((int(p), "") if p.isdigit() else (-1, p) for p in parts)


def version_label(version: str | None) -> str:
    return version or "(unversioned)"


def _displays(rows: Any, rules: Mapping[tuple[str | None, str], str]) -> dict[tuple[str | None, str | None], str]:
    """A display for each reason: one the client sent, else the rules' own for that system and code (or
    for the code alone when the client sent no system)."""
    by_code = {code: display for (_, code), display in rules.items()}
    found: dict[tuple[str | None, str | None], str] = {}
    for row in rows:
        key = (row.override_system, row.override_code)
        if row.override_display and key not in found:
            found[key] = row.override_display
    for row in rows:
        system, code = row.override_system, row.override_code
        if code is not None and (system, code) not in found:
            known = rules.get((system, code)) or (by_code.get(code) if system is None else None)
            if known:
                found[(system, code)] = known
    return found


def _rate(rate: float | None) -> str:
    return "-" if rate is None else f"{rate:.1%}"


def as_json(report: list[RuleReport], since: date | None) -> dict[str, Any]:
    return {
        "since": since.isoformat() if since else None,
        "rules": [
            {
                "rulesVersion": r.rules_version, "rule": r.rule_id, "issued": r.issued, "silent": r.silent,
                "accepted": r.accepted,
                "overridden": r.overridden, "withFeedback": r.with_feedback, "overrideRate": r.override_rate,
                "silencedByMemory": r.silenced,
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
        writer.writerow(["rules_version", "rule", "issued", "accepted", "overridden", "with_feedback",
                         "override_rate", "top_override_reasons", "silenced_by_memory", "silent"])
        for r in report:
            reasons = "; ".join(f"{x.label()}: {x.cards}" for x in r.top_reasons)
            rate = "" if r.override_rate is None else f"{r.override_rate:.4f}"
            writer.writerow(_cells([r.rules_version or "", r.rule_id, r.issued, r.accepted, r.overridden,
                                    r.with_feedback, rate, reasons, r.silenced, r.silent]))
        return out.getvalue()
    lines = [f"Cards issued {'since ' + since.isoformat() if since else 'to date'}, by rules version and rule "
             "(override rate = overridden / (accepted + overridden); silent = recorded in silent mode, not shown):", ""]
    header = (f"{'rule':<28} {'issued':>7} {'accepted':>9} {'overridden':>11} {'feedback':>9} {'override rate':>14} "
              f"{'silenced':>9} {'silent':>7}")
    lines += [header, "-" * len(header)]
    shown: object = ()  # no version heading yet
    for r in report:
        if r.rules_version != shown:
            lines.append(f"rules version {printable(version_label(r.rules_version))}:")
            shown = r.rules_version
        lines.append(f"{printable(r.rule_id):<28} {r.issued:>7} {r.accepted:>9} {r.overridden:>11} "
                     f"{r.with_feedback:>9} {_rate(r.override_rate):>14} {r.silenced:>9} {r.silent:>7}")
        lines += [f"    {x.cards:>5}  {x.label()}" for x in r.top_reasons]
    if not report:
        lines.append("(no cards issued)")
    silenced = sum(r.silenced for r in report)
    if silenced:
        lines += ["", f"Override memory silenced {silenced} card(s): the same rule, for a patient whose earlier card "
                  "was overridden for a durable reason, within the memory period. They are not counted as issued."]
    return "\n".join(lines) + "\n"
