"""`rules diff` output for the committee: plain text for a terminal, Markdown for a change request."""

from __future__ import annotations

from itertools import groupby
from typing import Any

from cds_hooks.governance.diff import Change
from cds_hooks.governance.walk import words
from cds_hooks.pathway.cards import md_escape
from cds_hooks.pathway.rules import Governance

TITLES = {
    "governance": "Governance (version, status, approval)", "profiles": "Profile settings",
    "pathway": "Pathway labels and statuses", "valuesets": "Value sets", "cards": "Card wording",
    "citations": "Citations", "code_systems": "Code systems", "services": "Services (discovery and prefetch)",
    "sandbox": "Sandbox page wording",
}
FORMATS = ("text", "markdown")


def area_title(area: str) -> str:
    return TITLES.get(area, area.replace("_", " ").capitalize())


def _value(value: Any) -> str:
    if isinstance(value, dict):
        return "; ".join(f"{k}: {_value(v)}" for k, v in value.items())
    return " ".join(words(value).split())


def label(gov: Governance) -> str:
    approved = f"approved {gov.approval.date} by {gov.approval.approver}" if gov.approval else "not approved"
    return f"{gov.id} {gov.version} ({gov.status}, effective {gov.effective}, {approved})"


def _line(change: Change, fmt: str) -> str:
    esc = md_escape if fmt == "markdown" else (lambda s: s)
    what = " · ".join(part for part in (change.subject, change.path) if part)
    if fmt == "markdown":
        what = f"**{esc(change.subject)}**" + (f" · `{change.path}`" if change.path else "") if change.subject \
            else (f"`{change.path}`" if change.path else "")
    if change.kind == "added":
        return f"+ {what}: {esc(_value(change.new))}" if what else f"+ {esc(_value(change.new))}"
    if change.kind == "removed":
        return f"- {what}: {esc(_value(change.old))}" if what else f"- {esc(_value(change.old))}"
    return f"~ {what}: {esc(_value(change.old))} → {esc(_value(change.new))}"


def render_diff(changes: list[Change], old: Governance, new: Governance, fmt: str = "text") -> str:
    count = f"{len(changes)} change{'s' if len(changes) != 1 else ''}" if changes else "No changes"
    if changes and old.version == new.version:
        count += f"; the rules changed but their version did not ({new.version}): set a new one in governance.yaml"
    if fmt == "markdown":
        lines = ["## Rules changes", "", "| | rules |", "|---|---|",
                 f"| old | {md_escape(label(old))} |", f"| new | {md_escape(label(new))} |", "",
                 f"{count}. `+` added, `-` removed, `~` changed (old → new).", ""]
        for area, group in groupby(changes, key=lambda c: c.area):
            lines += [f"### {area_title(area)}", ""]
            lines += [f"- {_line(c, fmt)}" for c in group]  # "- + ..." reads as a list of signed lines
            lines.append("")
        return "\n".join(lines).rstrip() + "\n"
    lines = [f"old: {label(old)}", f"new: {label(new)}", f"{count} (+ added, - removed, ~ changed: old → new)"]
    for area, group in groupby(changes, key=lambda c: c.area):
        lines += ["", area_title(area)]
        lines += [f"  {_line(c, fmt)}" for c in group]
    return "\n".join(lines) + "\n"
