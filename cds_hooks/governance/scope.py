"""What each rule judges, as conditions in words and as data, for one profile.

Drawn from rules/governance.yaml (`rules:` orders, settings, unless), the value sets by kind, the
profile's red-flag silencing and its settings, and the red-flag categories of pathway.yaml. The order of
the gates is the evaluation's own (pathway/evaluate.py `Scope`): the order and its region, prior lumbar
surgery, the population (age and a back condition), red flags, then the rule.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cds_hooks.governance.walk import leaves, selected_settings, words
from cds_hooks.pathway.rules import Rules, ValueSet

# The value-set kinds behind the gates every rule shares (schema.Kind names, not clinical codes).
POPULATION = "population"
EXCLUSIONS = ("prior-lumbar-surgery", "lumbar-spine-surgery")
RED_FLAG = "red-flag"


@dataclass(frozen=True)
class Condition:
    """One gate of a rule: `words` for the committee; the value sets and settings it reads as data."""

    gate: str  # order, population, exclusion, red-flags, precedence, settings
    words: str
    valuesets: tuple[str, ...] = ()
    settings: dict[str, Any] = field(default_factory=dict)


def valuesets_of(rules: Rules, *kinds: str) -> list[ValueSet]:
    return [vs for vs in rules.valuesets.values() if vs.kind in kinds]


def _titles(sets: list[ValueSet]) -> str:
    return "; ".join(vs.title for vs in sets) or "(no value set)"


def conditions(rules: Rules, profile_id: str, rule_id: str) -> list[Condition]:
    """The gates a draft order passes before `rule_id` can fire in `profile_id`."""
    scope = rules.governance.rules[rule_id]  # type: ignore[index]
    profile = rules.pathway.profiles[profile_id]
    orders = valuesets_of(rules, *scope.orders)
    population = valuesets_of(rules, POPULATION)
    excluded = valuesets_of(rules, *EXCLUSIONS)
    ages = profile.population
    span = (f"{ages.min_age_years if ages.min_age_years is not None else 0} years or older"
            + (f" and at most {ages.max_age_years}" if ages.max_age_years is not None else ""))
    out = [
        Condition("order", f"The draft order's code or performer type is in: {_titles(orders)}; a code that "
                  "names no region counts only with a lumbar body site, and a referral that states a reason "
                  "or body site only when it points at the back.", tuple(vs.id for vs in orders)),
        Condition("exclusion", f"The patient has no prior lumbar surgery on record: {_titles(excluded)}.",
                  tuple(vs.id for vs in excluded)),
        Condition("population", f"The patient is {span} (unknown age: judged as an adult), and has an active "
                  f"condition, or the order gives a reason, in: {_titles(population)}.",
                  tuple(vs.id for vs in population), settings=selected_settings(profile, ["population"])),
    ]
    if rule_id in profile.red_flags_silence:
        flags = valuesets_of(rules, RED_FLAG)
        labels = "; ".join(rules.pathway.red_flag_categories.values())
        windows = {f"red_flags.{k}": v for k, v in leaves(rules.pathway.red_flags).items()
                   if not k.endswith((".label", ".source"))}
        out.append(Condition("red-flags", "No red flag is on record within its category's window (conditions, "
                             "procedures, medications, body temperatures) or given as the order's reason: "
                             f"{labels}.", tuple(vs.id for vs in flags), settings=windows))
    else:
        out.append(Condition("red-flags", "Red flags do not silence this rule in this profile."))
    if scope.unless:
        topics = " or ".join(rules.cards.rule_text(profile_id, r).topic for r in scope.unless)
        out.append(Condition("precedence", f"No card for the same order on: {topics} (those come first)."))
    settings = selected_settings(profile, scope.settings)
    listed = "; ".join(f"{path} = {words(value)}" for path, value in settings.items())
    out.append(Condition("settings", "The rule's own criteria are met (the card's reasons say which), with "
                         f"these settings of profile {profile_id}: {listed}.", settings=settings))
    return out
