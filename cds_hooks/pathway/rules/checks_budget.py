"""The card budgets (cards.yaml `budgets`), checked on the templates with every field at its longest.

A card a clinician reads mid-order must stay short whatever the record holds, so the bound is proved on
the wording, not hoped for: each summary, detail line and link label is filled with the longest value
each field can take in each profile (a date, a week count at the profile's longest window, a record count
of 5 digits, record text at its cut), and the lines a detail can have are counted from what each rule can
find in that profile. `rules check` fails on a template that could exceed a budget.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cds_hooks.pathway.durations import duration, weeks
from cds_hooks.pathway.rules.checks_text import MISSING_REASONS, NOTE_REASONS, enabled_rules
from cds_hooks.pathway.rules.schema import CardText, Citation, Governance, Pathway, Profile, RuleText, ValueSet
from cds_hooks.pathway.rules.yamlsource import Loader

# Value set kinds of the orders the pathway judges: each needs a short name for the summary.
ORDER_KINDS = ("lumbar-imaging", "surgical-referral", "surgeon-specialty", "lumbar-spine-surgery")
LONGEST_DATE = "2026-12-31"
LONGEST_COUNT = "99999"  # sessions, records: a hook call reads at most 10,000 resources by default
# History keys the card's "Not read" line names before "and N more" (the basis page names them all).
NOT_READ_KEYS = 3


def card_line(label: str, text: str) -> str:
    """A detail line as the card renders it (cards.py adds the Markdown: a bullet and the bold label)."""
    return f"{label}: {text}"


def _longest_days(profile: Profile) -> int:
    """The longest duration a card states in this profile: each is below the threshold that makes it a reason."""
    imaging, surgery = profile.imaging, profile.surgery
    day_counts = [7 * w for w in (imaging.min_symptom_weeks, imaging.conservative_trial_weeks,
                                  surgery.min_formal_pt_weeks) if w is not None]
    day_counts += [31 * m for m in (imaging.duplicate_lookback_months, surgery.window_months) if m is not None]
    return max(day_counts, default=0)


def longest_fields(cards: CardText, pathway: Pathway, profile: Profile) -> dict[str, str]:
    """Each template field at the longest value it can take in this profile, as the card words it."""
    days = _longest_days(profile)
    numbers = [profile.imaging.min_symptom_weeks, profile.imaging.conservative_trial_weeks,
               profile.surgery.min_formal_pt_weeks, profile.imaging.duplicate_lookback_months,
               profile.surgery.window_months]
    record_text = "x" * cards.budgets.record_text_chars
    longest = {
        "weeks": max((weeks(d) for d in range(days + 1)), key=len),
        "duration": max((duration(d) for d in range(days + 1)), key=len),
        "threshold": max((str(n) for n in numbers if n is not None), key=len, default="0"),
        "min_sessions": str(profile.formal_pt.min_sessions),
        "sessions": LONGEST_COUNT, "count": LONGEST_COUNT,
        "source": max(cards.card.onset_sources.values(), key=len),
        "modality": max(cards.modality_names.values(), key=len, default=""),
        "label": record_text, "study": record_text, "ago": max((duration(d) for d in range(days + 1)), key=len),
        "dates": f"{LONGEST_DATE} to {LONGEST_DATE}",
    }
    longest["months"] = longest["threshold"]
    for field in ("date", "onset", "start", "first", "last"):
        longest[field] = LONGEST_DATE
    return longest


def _fill(template: str, fields: dict[str, str]) -> str:
    return template.format_map(_Longest(fields))


class _Longest(dict[str, str]):
    def __missing__(self, key: str) -> str:  # an unknown field is rules check's other error: count it as empty
        return ""


def max_reasons(profile: Profile, rule_id: str) -> int:
    """How many "Why" lines the rule can give in this profile (the pathway code's contract: see imaging.py
    and surgery.py)."""
    if rule_id == "imaging-premature":
        imaging = profile.imaging
        return sum((imaging.warn_without_red_flags, imaging.min_symptom_weeks is not None,
                    imaging.conservative_trial_weeks is not None,
                    imaging.duplicate_lookback_months is not None and bool(imaging.repeat_modalities)))
    if rule_id == "referral-premature":
        return (profile.surgery.min_formal_pt_weeks is not None) + profile.surgery.require_conservative_care
    return 1


def max_detail_lines(profile: Profile, rule_id: str, text: RuleText) -> int:
    """Why lines, notes, the record, what is missing, what was not read, the advice and the local policy."""
    notes = len(NOTE_REASONS.get(rule_id, ()))
    if rule_id == "referral-premature" and profile.surgery.window_months is None:
        notes = 0
    missing = 1 if MISSING_REASONS & set(text.reasons) else 0
    return max_reasons(profile, rule_id) + notes + missing + 3 + (1 if text.local_policy else 0)


def _order_name_length(cards: CardText, valuesets: dict[str, ValueSet], governance: Governance | None,
                       rule_id: str) -> int:
    kinds = set(governance.rules[rule_id].orders) if governance and rule_id in governance.rules else set(ORDER_KINDS)
    names = [cards.order_names.get(vs.id, "") for vs in valuesets.values() if vs.kind in kinds]
    return max(map(len, names), default=0)


def check_budgets(ld: Loader, path: Path, raw: Any, cards: CardText, pathway: Pathway, valuesets: dict[str, ValueSet],
                  citations: tuple[Path, Any, dict[str, Citation]], governance: Governance | None) -> None:
    """`citations`: the citations file, its raw YAML and its citations (a short title is checked where it is)."""
    budget = cards.budgets
    for vs in valuesets.values():
        name = cards.order_names.get(vs.id)
        if vs.kind in ORDER_KINDS and not name:
            ld.problem(path, raw, ("order_names",), f"order_names: value set {vs.id!r} ({vs.kind}) has no short name")
    for vs_id in sorted(set(cards.order_names) - set(valuesets)):
        ld.problem(path, raw, ("order_names", vs_id), f"order_names: {vs_id!r} is not a value set")
    for modality in sorted(set(pathway.modalities) ^ set(cards.modality_names)):
        ld.problem(path, raw, ("modality_names",), f"modality_names: {modality!r} must be a modality of pathway.yaml, "
                   "and every modality needs a short name")
    citations_file, citations_raw, cited = citations
    for ref, citation in cited.items():
        if len(citation.short_title) > budget.link_label_chars:
            ld.problem(citations_file, citations_raw, ("citations", ref, "short_title"),
                       f"citation {ref}: short_title has {len(citation.short_title)} characters; link labels "
                       f"take {budget.link_label_chars} (cards.yaml budgets.link_label_chars)")
    if set(cards.card.history_labels) != set(cards.history_labels):
        ld.problem(path, raw, ("card", "history_labels"),
                   "card.history_labels: name exactly the keys of history_labels")
    labels = cards.card.labels
    for name, profile in pathway.profiles.items():
        fields = longest_fields(cards, pathway, profile)
        for fact, template in cards.card.facts.items():
            filled = _fill(template, fields)
            if len(filled) > budget.fact_chars:
                ld.problem(path, raw, ("card", "facts", fact), f"card.facts.{fact} can reach {len(filled)} characters "
                           f"(profile {name}); budgets.fact_chars is {budget.fact_chars}")
        keys = sorted(cards.card.history_labels.values(), key=len)[-NOT_READ_KEYS:]
        hidden = max(len(cards.card.history_labels) - NOT_READ_KEYS, 0)
        more = _fill(cards.card.facts.get("more", ""), {**fields, "count": str(hidden)})
        not_read = ", ".join([*keys, more]) + "; " + _fill(cards.card.skipped, fields)
        _line(ld, path, raw, ("card", "not_read"), f"the Not read line (profile {name})",
              card_line(labels.get("not_read", ""), _fill(cards.card.not_read, {"keys": not_read})), budget.line_chars)
        for rule_id in enabled_rules(pathway, name):
            _check_rule(ld, path, raw, cards, name, profile, rule_id, fields,
                        _order_name_length(cards, valuesets, governance, rule_id))


def _line(ld: Loader, path: Path, raw: Any, loc: tuple[Any, ...], what: str, line: str, limit: int) -> None:
    if len(line) > limit:
        ld.problem(path, raw, loc, f"{what} can reach {len(line)} characters; budgets.line_chars is {limit}")


def _check_rule(ld: Loader, path: Path, raw: Any, cards: CardText, name: str, profile: Profile, rule_id: str,
                fields: dict[str, str], order_chars: int) -> None:
    budget, labels = cards.budgets, cards.card.labels
    text = cards.rule_text(name, rule_id)
    overridden = rule_id in cards.profile_overrides.get(name, {})
    loc: tuple[Any, ...] = ("profile_overrides", name, rule_id) if overridden else ("rules", rule_id)
    where = f"{rule_id} (profile {name})"
    why = {k: r for k, r in text.reasons.items()
           if k not in MISSING_REASONS and k not in NOTE_REASONS.get(rule_id, ())}
    briefs = sorted((_fill(r.brief, fields) for r in why.values()), key=len)[-budget.summary_reasons:]
    summary = text.summary.format_map(_Longest({"order": "x" * order_chars, "reasons": ", ".join(briefs)}))
    if len(summary) > budget.summary_chars:
        ld.problem(path, raw, (*loc, "summary"), f"{where}: the summary can reach {len(summary)} characters; "
                   f"budgets.summary_chars is {budget.summary_chars}")
    for key, reason in text.reasons.items():
        if key in MISSING_REASONS:
            continue
        label = labels.get("note" if key in NOTE_REASONS.get(rule_id, ()) else "why", "")
        _line(ld, path, raw, (*loc, "reasons", key, "line"), f"{where}: reason {key}",
              card_line(label, _fill(reason.line, fields)), budget.line_chars)
    missing = [_fill(r.brief, fields) for k, r in text.reasons.items()
               if k == "missing_onset" and profile.imaging.min_symptom_weeks is not None]
    if "missing_modality" in text.reasons:
        expected = {*profile.imaging.expected_modalities} if rule_id.startswith("imaging") \
            else {*profile.surgery.expected_modalities}
        missing += [cards.modality_names.get(m, m) for m in expected]
    if missing:
        _line(ld, path, raw, (*loc, "reasons"), f"{where}: the Not documented line",
              card_line(labels.get("missing", ""), ", ".join(missing)), budget.line_chars)
    _line(ld, path, raw, (*loc, "advice"), f"{where}: advice", card_line(labels.get("advice", ""), text.advice),
          budget.line_chars)
    if text.local_policy:
        _line(ld, path, raw, (*loc, "local_policy"), f"{where}: local_policy",
              card_line(labels.get("local_policy", ""), text.local_policy), budget.line_chars)
    link = text.basis_link or cards.card.basis_link
    if len(link) > budget.link_label_chars:
        ld.problem(path, raw, (*loc, "basis_link"), f"{where}: the basis link's label has {len(link)} characters; "
                   f"budgets.link_label_chars is {budget.link_label_chars}")
    lines = max_detail_lines(profile, rule_id, text)
    if lines > budget.detail_lines:
        ld.problem(path, raw, loc, f"{where}: the detail can reach {lines} lines; budgets.detail_lines is "
                   f"{budget.detail_lines}")
