"""Tables the rules doc and the generated Markdown share: every setting by profile, the value sets,
and which citations each rule rests on in each profile. Plain rows of strings; the callers escape."""

from __future__ import annotations

from cds_hooks.governance.walk import leaves, profile_settings, words
from cds_hooks.pathway.rules import Rules, ValueSet


def settings_by_profile(rules: Rules) -> tuple[list[str], list[list[str]]]:
    """Every threshold and switch (red-flag silencing among them) with its value in each profile."""
    profiles = rules.pathway.profiles
    values = {name: profile_settings(p) for name, p in profiles.items()}
    paths: list[str] = []
    for per_profile in values.values():
        paths += [path for path in per_profile if path not in paths]
    rows = [[path, *(words(values[name].get(path)) if path in values[name] else "—" for name in profiles)]
            for path in paths]
    return ["setting", *profiles], rows


def differing(rows: list[list[str]]) -> list[list[str]]:
    """The rows whose value is not the same in every profile."""
    return [row for row in rows if len(set(row[1:])) > 1]


def provenance(vs: ValueSet) -> str:
    p = vs.published
    if p is None:
        return "curated for this pathway"
    role = f" (role: {p.role})" if p.role else ""
    return f"{p.name}, OID {p.oid}, version {p.version}{role}; {p.repository} {p.path} @ {p.commit[:12]}"


def valueset_rows(rules: Rules) -> tuple[list[str], list[list[str]]]:
    rows = []
    for vs in rules.valuesets.values():
        systems = sorted({rules.system_name(c.system) for c in vs.codes})
        unverified = sum(1 for c in vs.codes if not c.verified)
        kind = vs.kind + (f" ({vs.category})" if vs.category else "")
        notes = [note for note, on in ((f"{unverified} unverified", unverified),
                                       (f"{len(vs.exclusions)} excluded", vs.exclusions)) if on]
        rows.append([vs.id, kind, vs.title, str(len(vs.codes)) + (f" ({', '.join(notes)})" if notes else ""),
                     ", ".join(systems), provenance(vs)])
    return ["value set", "kind", "title", "codes", "code systems", "provenance"], rows


def decision_rows(rules: Rules) -> tuple[list[str], list[list[str]]]:
    """Each value set with a recorded decision (the published ones, decisions.yaml) or exclusions: why it
    is used, and how many of its codes it leaves out (each with its reason in the HTML page and export)."""
    rows = [[vs.id, vs.kind + (f" ({vs.category})" if vs.category else ""),
             " ".join((vs.decision or "curated; the exclusions narrow a code listed with its descendants").split()),
             str(len(vs.exclusions))]
            for vs in rules.valuesets.values() if vs.decision or vs.exclusions]
    return ["value set", "kind", "decision", "codes excluded"], rows


def not_used_rows(rules: Rules) -> tuple[list[str], list[list[str]]]:
    """Published value sets deliberately not used, and why (decisions.yaml `not_used`)."""
    return ["OID", "value set", "why not used"], [[n.oid, n.name, " ".join(n.reason.split())]
                                                  for n in rules.published_not_used]


def red_flag_rows(rules: Rules) -> tuple[list[str], list[list[str]]]:
    """The red-flag categories with their windows and what else makes each a red flag (pathway.yaml)."""
    rows = []
    for name, flag in rules.pathway.red_flags.items():
        extra = []
        if flag.icd10_seventh_characters:
            extra.append(f"ICD-10-CM 7th character {', '.join(flag.icd10_seventh_characters)}")
        if flag.medications:
            m = flag.medications
            extra.append(f"medications: {m.min_days}+ days in the last {m.within_days}" if m.rule == "cumulative-days"
                         else f"medications: in use in the last {m.within_days} days")
        if flag.vital_sign:
            v = flag.vital_sign
            extra.append(f"{v.category} at or above {v.min_value:g} {v.unit}")
        window = f"{flag.lookback_days} days" if flag.lookback_days else "any time"
        rows.append([name, flag.label, window, flag.dated_by, words(flag.counts_when_inactive),
                     "; ".join(extra) or "—", " ".join(flag.source.split())])
    return ["category", "label", "look back", "dated by", "history counts", "also", "source"], rows


def totals(rules: Rules) -> str:
    codes = sum(len(v.codes) for v in rules.valuesets.values())
    unverified = sum(1 for v in rules.valuesets.values() for c in v.codes if not c.verified)
    published = sum(1 for v in rules.valuesets.values() if v.published)
    return (f"{codes} codes in {len(rules.valuesets)} value sets ({published} imported whole from published "
            f"sources); {unverified} codes marked verified: false")


def citations_by_rule(rules: Rules, rule_id: str) -> dict[str, list[str]]:
    """Citation ids per profile for one rule."""
    return {name: list(p.citations.get(rule_id, [])) for name, p in rules.pathway.profiles.items()}  # type: ignore[call-overload]


def pathway_lists(rules: Rules) -> list[tuple[str, str]]:
    """The rest of pathway.yaml (episode, medications, record statuses, ratings, modality labels, default
    profile) as path, value pairs; the red-flag categories have their own table."""
    rest = rules.pathway.model_dump(exclude={"profiles", "red_flags"})
    return [(path, words(value)) for path, value in leaves(rest).items()]
