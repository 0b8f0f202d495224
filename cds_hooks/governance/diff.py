"""What changed between two versions of the rules, for the committee.

Both sides are loaded and validated (`load_rules`), then compared part by part through `walk`: the
governance record, every profile's settings (after `extends`), the rest of pathway.yaml, every value set
(its fields and decision, and its codes and excluded codes added, removed or changed, with displays), the
card wording, citations, code systems, services and the sandbox's wording. A setting changed in a profile
that others extend is one change, listed under every profile whose behaviour it changes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from cds_hooks.governance.walk import code_label, content_parts, leaves, plain
from cds_hooks.pathway.rules import Rules, ValueSet

Kind = Literal["added", "removed", "changed"]
# Sections in the order the committee reads them; parts of Rules not named here come after, by name.
AREAS = ("governance", "profiles", "pathway", "valuesets", "cards", "citations", "code_systems", "services",
         "sandbox")


@dataclass(frozen=True)
class Change:
    area: str  # a part of the rules: profiles, valuesets, cards, ...
    subject: str  # what in that part: "seeds, payer", a value set id, a citation id; "" for the part itself
    path: str  # the setting or field, dotted; "code" for a code of a value set; "" for the subject itself
    kind: Kind
    old: Any = None
    new: Any = None


def _compare(area: str, subject: str, old: dict[str, Any], new: dict[str, Any]) -> list[Change]:
    out = []
    for path in sorted(old.keys() | new.keys()):
        if path not in new:
            out.append(Change(area, subject, path, "removed", old=old[path]))
        elif path not in old:
            out.append(Change(area, subject, path, "added", new=new[path]))
        elif old[path] != new[path]:
            out.append(Change(area, subject, path, "changed", old[path], new[path]))
    return out


def _keyed(area: str, old: dict[str, Any], new: dict[str, Any]) -> list[Change]:
    """A part that is a mapping of named records (citations, services, code systems)."""
    out = []
    for key in sorted(old.keys() | new.keys(), key=str):
        if key not in new:
            out.append(Change(area, str(key), "", "removed", old=plain(old[key])))
        elif key not in old:
            out.append(Change(area, str(key), "", "added", new=plain(new[key])))
        else:
            out += _compare(area, str(key), leaves(old[key]), leaves(new[key]))
    return out


def _profiles(old: Rules, new: Rules) -> list[Change]:
    before, after = old.pathway.profiles, new.pathway.profiles
    grouped: dict[tuple[str, Kind, str, str], tuple[Change, list[str]]] = {}
    out = []
    for name in [*after, *(n for n in before if n not in after)]:  # in pathway.yaml's order
        if name not in after or name not in before:
            kind: Kind = "removed" if name not in after else "added"
            side = before.get(name) or after[name]
            out.append(Change("profiles", name, "", kind, old=side.title if kind == "removed" else None,
                              new=side.title if kind == "added" else None))
            continue
        for change in _compare("profiles", name, leaves(before[name]), leaves(after[name])):
            key = (change.path, change.kind, repr(change.old), repr(change.new))
            if key in grouped:
                grouped[key][1].append(name)
            else:
                grouped[key] = (change, [name])
    for change, names in grouped.values():
        out.append(Change("profiles", ", ".join(names), change.path, change.kind, change.old, change.new))
    return out


def _codes(vs: ValueSet, field: str = "codes") -> dict[tuple[str, str], Any]:
    """The value set's codes (or its exclusions) by system and code."""
    return {(c.system, c.code): c for c in getattr(vs, field)}


def _valuesets(old: Rules, new: Rules) -> list[Change]:
    out = []
    for vs_id in sorted(old.valuesets.keys() | new.valuesets.keys()):
        before, after = old.valuesets.get(vs_id), new.valuesets.get(vs_id)
        if before is None or after is None:
            side = before or after
            assert side is not None
            summary = f"{side.title} ({len(side.codes)} codes)"
            out.append(Change("valuesets", vs_id, "", "added" if before is None else "removed",
                              old=summary if after is None else None, new=summary if before is None else None))
        meta_old = leaves(before.model_dump(exclude={"codes", "exclusions"})) if before else {}
        meta_new = leaves(after.model_dump(exclude={"codes", "exclusions"})) if after else {}
        if before and after:
            out += _compare("valuesets", vs_id, meta_old, meta_new)
        for field in ("codes", "exclusions"):  # each code (or excluded code) added or removed is one change
            out += _code_changes(old, new, vs_id, "code" if field == "codes" else "exclusion",
                                 _codes(before, field) if before else {}, _codes(after, field) if after else {})
    return out


def _code_changes(old: Rules, new: Rules, vs_id: str, what: str, codes_old: dict[tuple[str, str], Any],
                  codes_new: dict[tuple[str, str], Any]) -> list[Change]:
    out = []
    for key in sorted(codes_old.keys() | codes_new.keys()):
        if key not in codes_new:
            out.append(Change("valuesets", vs_id, what, "removed", old=code_label(old, codes_old[key])))
        elif key not in codes_old:
            out.append(Change("valuesets", vs_id, what, "added", new=code_label(new, codes_new[key])))
        else:
            label = f"{what} {new.system_name(key[0])} {key[1]}"
            for change in _compare("valuesets", vs_id, leaves(codes_old[key]), leaves(codes_new[key])):
                out.append(Change("valuesets", vs_id, f"{label} {change.path}", change.kind, change.old, change.new))
    return out


def diff_rules(old: Rules, new: Rules) -> list[Change]:
    """Every change from `old` to `new`, area by area."""
    changes = _profiles(old, new) + _valuesets(old, new)
    old_parts, new_parts = content_parts(old), content_parts(new)
    for area in sorted(old_parts.keys() | new_parts.keys()):
        if area == "valuesets":
            continue
        before, after = old_parts.get(area), new_parts.get(area)
        if area == "pathway":
            changes += _compare(area, "", leaves(before.model_dump(exclude={"profiles"})) if before else {},
                                leaves(after.model_dump(exclude={"profiles"})) if after else {})
        elif isinstance(before, dict) or isinstance(after, dict):
            changes += _keyed(area, before or {}, after or {})
        else:
            changes += _compare(area, "", leaves(before) if before is not None else {},
                                leaves(after) if after is not None else {})
    order = {area: i for i, area in enumerate(AREAS)}
    return sorted(changes, key=lambda c: (order.get(c.area, len(AREAS)), c.area))
