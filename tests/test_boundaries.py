"""Every numeric threshold and window in rules/pathway.yaml, at its edge: generated from the loaded rules.

The settings are found by walking the validated `Pathway` model (every profile, every red-flag category), so a
new threshold in the schema fails `test_every_threshold_has_a_boundary_probe` until it gets a probe here. Each
probe charts a case one step short of the limit, exactly at it, and one step past it (a day, a session, 0.1
degrees, a day of age) as FHIR JSON, reads it through the real reader and judges it with the real pathway, and
compares what happens with the inclusivity documented next to the setting in rules/pathway.yaml. A setting no
profile uses today (a maximum age) is tried on a copy of the default profile given a value, so its pair exists
before anyone sets it.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import pytest
from pydantic import BaseModel

from cds_hooks.pathway.context import build_context
from cds_hooks.pathway.evaluate import Finding, evaluate, months_before
from cds_hooks.pathway.record import read_draft_orders
from cds_hooks.pathway.rules import Rules
from tests.chart import (
    ICD,
    MRI,
    ORTHO_REFERRAL,
    REPO,
    RXNORM,
    SCT,
    TODAY,
    XRAY,
    condition,
    draft,
    lbp,
    med_request,
    procedure,
    record_of,
    rules_for,
    sole_code,
    supply,
    temperature,
)

NAPROXEN = "198014"  # an oral NSAID (conservative care in the payer profile)
STEPS = (-1, 0, 1)  # one step short of the limit, exactly at it, one step past it


# --------------------------------------------------------------------------- walking the rules


@dataclass(frozen=True)
class Setting:
    """One numeric setting as loaded: where it is (`pattern` with `*` for a profile or category name)."""

    pattern: str
    path: str
    profile: str  # the profile whose Rules hold it (the default profile for pathway-wide settings)
    category: str | None  # the red-flag category, for red_flags.* settings
    value: int | float | None


def _numeric(annotation: Any) -> bool:
    args = typing.get_args(annotation) if isinstance(annotation, types.UnionType) else (annotation,)
    return any(a in (int, float) for a in args)


def _walk(model: BaseModel, path: str, pattern: str) -> Iterator[tuple[str, str, Any]]:
    for name, field in type(model).model_fields.items():
        value = getattr(model, name)
        here, like = f"{path}.{name}".lstrip("."), f"{pattern}.{name}".lstrip(".")
        if isinstance(value, BaseModel):
            yield from _walk(value, here, like)
        elif isinstance(value, dict):
            for key, item in value.items():
                if isinstance(item, BaseModel):
                    yield from _walk(item, f"{here}.{key}", f"{like}.*")
        elif isinstance(value, bool):
            continue
        elif isinstance(value, int | float) or (value is None and _numeric(field.annotation)):
            yield here, like, value


def settings_in_rules() -> list[Setting]:
    """Every numeric setting of the pathway, once per profile for profile settings (a profile that `extends`
    another holds its own copy)."""
    default = rules_for().pathway.default_profile
    found: list[Setting] = []
    for path, like, value in _walk(rules_for().pathway, "", ""):
        if like.startswith("profiles."):
            continue
        category = path.split(".")[1] if like.startswith("red_flags.") else None
        found.append(Setting(like, path, default, category, value))
    for profile in rules_for().pathway.profiles:
        for path, like, value in _walk(rules_for(profile).profile, f"profiles.{profile}", "profiles.*"):
            found.append(Setting(like, path, profile, None, value))
    return found


# --------------------------------------------------------------------------- charting and judging


def _judge(rules: Rules, *resources: Any, order: dict[str, Any] | None = None, born: date | None = None
           ) -> list[Finding]:
    rec = record_of(*resources, rules=rules, born=born.isoformat() if born else None)
    orders = read_draft_orders({"resourceType": "Bundle", "entry": [{"resource": order or draft(*MRI)}]}, rules)
    return evaluate(rec, orders, rules, TODAY)


def _keys(findings: list[Finding]) -> set[str]:
    return {r.key for f in findings for r in (*f.reasons, *f.notes)}


def _days_ago(day: date) -> int:
    return (TODAY - day).days


def _born(years: int, step: int) -> date:
    """Born `years` years before TODAY, `step` days earlier (step -1: the birthday is tomorrow)."""
    try:
        anniversary = TODAY.replace(year=TODAY.year - years)
    except ValueError:  # 29 February
        anniversary = TODAY.replace(year=TODAY.year - years, day=28)
    return anniversary - timedelta(days=step)


def _sessions(*days_ago: int) -> list[dict[str, Any]]:
    return [procedure("97110", d) for d in days_ago]


def _course(first: int, count: int) -> list[dict[str, Any]]:
    """`count` sessions on different days: the first `first` days ago, the rest in the last days."""
    assert first >= count
    return _sessions(first, *range(count - 1, 0, -1))


def _min_sessions(rules: Rules) -> int:
    return rules.profile.formal_pt.min_sessions


def _with(rules: Rules, section: str, **values: Any) -> Rules:
    """The rules with one profile section changed (a setting the profile leaves unset, given a value)."""
    part = getattr(rules.profile, section).model_copy(update=values)
    return dataclasses.replace(rules, profile=rules.profile.model_copy(update={section: part}))


def _flag_code(rules: Rules, category: str, systems: tuple[str, ...]) -> tuple[str, str]:
    found = sole_code(rules, "red-flag", category, systems)
    assert found, f"red flag {category}: no code of this category alone to chart a boundary case with"
    return found


def _red_flag(rules: Rules, *resources: Any) -> bool:
    """The red flag is present: it silences the warning a 2-week back pain would get for an MRI."""
    return not _judge(rules, lbp(14), *resources)


# --------------------------------------------------------------------------- the probes


@dataclass(frozen=True)
class Probe:
    """How to chart a setting's edge: `fires(rules, setting, step)` says whether the rule's effect is there at
    one step short (-1), exactly at (0) and one step past (+1) the limit; `expect` is the documented answer."""

    fires: Callable[[Rules, Setting, int], bool]
    expect: tuple[bool, bool, bool]
    inclusivity: str  # as rules/pathway.yaml documents it
    sample: int | float | None = None  # tried on the default profile when no profile sets it
    # Whether a profile's rules read the setting at all; where they do not, it must never fire.
    applies: Callable[[Rules], bool] = lambda rules: True


def _symptom_weeks(rules: Rules, s: Setting, step: int) -> bool:
    onset = int(s.value) * 7 + step  # type: ignore[arg-type]
    return "symptoms_short" in _keys(_judge(rules, lbp(onset)))


def _trial_weeks(rules: Rules, s: Setting, step: int) -> bool:
    first = int(s.value) * 7 + step  # type: ignore[arg-type]
    findings = _judge(rules, lbp(first + 30), _course(first, _min_sessions(rules)))
    key = "trial_short_pt" if rules.profile.imaging.formal_pt_required else "trial_short"
    return key in _keys(findings)


def _min_sessions_probe(rules: Rules, s: Setting, step: int) -> bool:
    """min_sessions + step sessions on different days over three months: too few for a course, for every order
    kind whose rule asks for formal PT (imaging in a profile requiring it, a referral with a PT span)."""
    history = [lbp(200), *_course(90, int(s.value) + step)]  # type: ignore[arg-type]
    few = {"trial_few_sessions", "pt_few_sessions"}
    imaging = bool(_keys(_judge(rules, *history)) & few)
    referral = bool(_keys(_judge(rules, *history, order=draft(*ORTHO_REFERRAL))) & few)
    asks = (rules.profile.imaging.formal_pt_required, rules.profile.surgery.min_formal_pt_weeks is not None)
    assert (imaging and not asks[0], referral and not asks[1]) == (False, False), "counted where no rule asks"
    if all(asks):
        assert imaging == referral, "imaging and referral count a course differently"
    return imaging or referral


def _pt_span(rules: Rules, s: Setting, step: int) -> bool:
    span = int(s.value) * 7 + step  # type: ignore[arg-type]
    history = [lbp(span + 60), *_course(span + 1, _min_sessions(rules))]
    return "pt_short" in _keys(_judge(rules, *history, order=draft(*ORTHO_REFERRAL)))


def _surgery_window(rules: Rules, s: Setting, step: int) -> bool:
    """Conservative care (a completed course of PT) that began on the window's first day, `step` days later
    (-1: it has run a day short of the window) or earlier (+1)."""
    first = _days_ago(months_before(TODAY, int(s.value))) + step  # type: ignore[arg-type]
    history = [lbp(first + 60), *_sessions(*range(first, 0, -7))]
    return "window" in _keys(_judge(rules, *history, order=draft(*ORTHO_REFERRAL)))


def _duplicate_lookback(rules: Rules, s: Setting, step: int) -> bool:
    """A prior lumbar MRI on the look-back's first day, `step` days later (-1) or earlier (+1)."""
    prior = _days_ago(months_before(TODAY, int(s.value))) + step  # type: ignore[arg-type]
    return "prior_imaging" in _keys(_judge(rules, lbp(400), procedure(MRI[0], prior)))


def _min_age(rules: Rules, s: Setting, step: int) -> bool:
    """Outside the population (no card for a 2-week back pain) with a birthday `step` days from the limit."""
    return not _judge(rules, lbp(14), born=_born(int(s.value), step))  # type: ignore[arg-type]


def _max_age(rules: Rules, s: Setting, step: int) -> bool:
    rules = rules if rules.profile.population.max_age_years is not None else \
        _with(rules, "population", max_age_years=s.value)
    return not _judge(rules, lbp(14), born=_born(int(s.value) + 1, step))  # type: ignore[arg-type]


def _older_age(rules: Rules, s: Setting, step: int) -> bool:
    """A lumbar X-ray is released (no card) for a patient `step` days from the older age."""
    return not _judge(rules, lbp(14), order=draft(*XRAY), born=_born(int(s.value), step))  # type: ignore[arg-type]


def _episode_gap(rules: Rules, s: Setting, step: int) -> bool:
    """A new episode: the last of seven weeks of PT ended gap + step days before a diagnosis recorded 20 days
    ago (no onset given); then that PT is earlier care and the basis says so."""
    last = 20 + int(s.value) + step  # type: ignore[arg-type]
    findings = _judge(rules, lbp(onset=None, recorded=20), _sessions(*range(last + 49, last - 1, -7)))
    return any(b.key == "earlier_episode" for f in findings for b in f.basis)


def _default_supply(rules: Rules, s: Setting, step: int) -> bool:
    """A completed NSAID prescription stating no duration covers the default supply: prescribed supply + step
    days before an episode that began 20 days ago, it still reaches into the episode (step -1) or not."""
    authored = 20 + int(s.value) + step  # type: ignore[arg-type]
    rec = record_of(lbp(20), med_request(NAPROXEN, authored, status="completed"), rules=rules)
    care = build_context(rec, rules, TODAY).care
    return any(i.evidence.has("conservative-care", "nsaid") for i in care.done)


def _lookback(rules: Rules, s: Setting, step: int) -> bool:
    """The category's condition (and its vital sign, if it has one) dated lookback + step days ago."""
    flag = rules.pathway.red_flags[s.category]  # type: ignore[index]
    days = int(s.value) + step  # type: ignore[arg-type]
    code, system = _flag_code(rules, s.category, (ICD, SCT))  # type: ignore[arg-type]
    if flag.dated_by == "latest":
        # A state is current while active; a resolved one is dated by its last documentation.
        assert flag.counts_when_inactive, f"{s.category}: an inactive condition never counts, chart another way"
        status = "resolved"
    else:
        status = "active"
    fires = _red_flag(rules, condition(code, system, onset=days, recorded=days, clinical=status))
    if flag.vital_sign is not None:
        reading = temperature(flag.vital_sign.min_value + 1, days, unit=flag.vital_sign.unit)
        assert _red_flag(rules, reading) is fires, f"{s.category}: the vital sign's window differs"
    return fires


def _drug(rules: Rules, category: str) -> str:
    code, _ = _flag_code(rules, category, (RXNORM,))
    return code


def _within_days(rules: Rules, s: Setting, step: int) -> bool:
    rule = rules.pathway.red_flags[s.category].medications  # type: ignore[index, union-attr]
    assert rule is not None
    code, window = _drug(rules, s.category), int(s.value)  # type: ignore[arg-type]
    if rule.rule == "current":
        # A completed 30-day supply whose last day is window + step days ago.
        last = window + step
        return _red_flag(rules, med_request(code, last + 29, status="completed", **supply(30)))  # type: ignore[arg-type]
    # cumulative-days: exactly min_days of use whose first day is window - 1 + step days ago.
    assert rule.min_days is not None
    first = window - 1 + step
    return _red_flag(rules, med_request(code, first, status="completed", **supply(rule.min_days)))  # type: ignore[arg-type]


def _min_days(rules: Rules, s: Setting, step: int) -> bool:
    """min_days + step days of use, ending yesterday."""
    days = int(s.value) + step  # type: ignore[arg-type]
    code = _drug(rules, s.category)  # type: ignore[arg-type]
    return _red_flag(rules, med_request(code, days, status="completed", **supply(days)))  # type: ignore[arg-type]


def _min_value(rules: Rules, s: Setting, step: int) -> bool:
    rule = rules.pathway.red_flags[s.category].vital_sign  # type: ignore[index]
    assert rule is not None
    return _red_flag(rules, temperature(round(float(s.value) + step / 10, 1), 3, unit=rule.unit))  # type: ignore[arg-type]


PROBES: dict[str, Probe] = {
    "profiles.*.imaging.min_symptom_weeks": Probe(
        _symptom_weeks, (True, False, False), "exactly that many weeks since onset is enough"),
    "profiles.*.imaging.conservative_trial_weeks": Probe(
        _trial_weeks, (True, False, False), "exactly that many weeks since the trial began is enough"),
    "profiles.*.formal_pt.min_sessions": Probe(
        _min_sessions_probe, (True, False, False), "exactly that many sessions make a course",
        applies=lambda r: r.profile.imaging.formal_pt_required or r.profile.surgery.min_formal_pt_weeks is not None),
    "profiles.*.surgery.min_formal_pt_weeks": Probe(
        _pt_span, (True, False, False), "a PT span of exactly that many weeks is enough"),
    "profiles.*.surgery.window_months": Probe(
        _surgery_window, (True, False, False), "care that began exactly that many months ago has run its time"),
    "profiles.*.imaging.duplicate_lookback_months": Probe(
        _duplicate_lookback, (True, True, False), "a study exactly that many months ago is a repeat"),
    "profiles.*.population.min_age_years": Probe(
        _min_age, (True, False, False), "a patient of exactly that age is in the population"),
    "profiles.*.population.max_age_years": Probe(
        _max_age, (False, True, True), "a patient of exactly that age is in the population", sample=75),
    "profiles.*.older_age.min_age_years": Probe(
        _older_age, (False, True, True), "a patient of exactly that age is older"),
    "episode.gap_days": Probe(
        _episode_gap, (False, True, True), "a gap of exactly that many days starts a new episode"),
    "medications.default_supply_days": Probe(
        _default_supply, (True, False, False), "the prescription covers its first day and that many days in all"),
    "red_flags.*.lookback_days": Probe(
        _lookback, (True, True, False), "a date exactly that many days ago is inside the window"),
    "red_flags.*.medications.within_days": Probe(
        _within_days, (True, True, False),
        "current: a last day of use exactly that many days ago counts; cumulative-days: the window is that many "
        "days ending today (a day exactly that many days ago is outside)"),
    "red_flags.*.medications.min_days": Probe(
        _min_days, (False, True, True), "exactly that many days of use count"),
    "red_flags.*.vital_sign.min_value": Probe(
        _min_value, (False, True, True), "a reading of exactly that value counts"),
}


def _instances() -> list[Setting]:
    found = [s for s in settings_in_rules() if s.value is not None]
    with_value = {s.pattern for s in found}
    default = rules_for().pathway.default_profile
    for pattern, probe in PROBES.items():
        if pattern not in with_value and probe.sample is not None:  # set nowhere today: tried with a value
            found.append(Setting(pattern, pattern.replace("*", default), default, None, probe.sample))
    return found


def test_every_threshold_has_a_boundary_probe() -> None:
    """A numeric setting added to rules/ (or the schema) must come with its boundary cases, and no probe may
    outlive its setting."""
    patterns = {s.pattern for s in settings_in_rules()}
    assert patterns - PROBES.keys() == set(), "numeric settings without a boundary probe in this file"
    assert PROBES.keys() - patterns == set(), "probes for settings the rules no longer have"


def test_every_threshold_is_exercised_at_least_once() -> None:
    assert {s.pattern for s in _instances()} == PROBES.keys()


def test_pathway_yaml_documents_each_thresholds_inclusivity() -> None:
    """rules/pathway.yaml says, in its Boundaries comment, on which side each threshold's exact value falls."""
    text = (REPO / "rules" / "pathway.yaml").read_text()
    assert "# Boundaries" in text, "rules/pathway.yaml has no '# Boundaries' comment block"
    block = text.split("# Boundaries", 1)[1].split("\n\n", 1)[0]
    for pattern in PROBES:
        name = pattern.rsplit(".", 1)[1]
        assert re.search(rf"^#\s+(.* / )?{name}( / .*)?:", block, re.M), f"{name}: no line in the Boundaries block"


@pytest.mark.parametrize("setting", _instances(), ids=lambda s: f"{s.path}={s.value}")
def test_each_threshold_at_its_edge(setting: Setting) -> None:
    probe = PROBES[setting.pattern]
    rules = rules_for(setting.profile)
    seen = tuple(probe.fires(rules, setting, step) for step in STEPS)
    expect = probe.expect if probe.applies(rules) else (False, False, False)
    assert seen == expect, (f"{setting.path} = {setting.value} ({probe.inclusivity}): at -1, 0, +1 "
                                  f"expected {expect}, got {seen}")
