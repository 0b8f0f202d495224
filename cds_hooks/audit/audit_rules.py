"""The audit's own clinical content: `rules/measures.yaml` (the low back pain imaging measures) and
`rules/synthetic.yaml` (the codes the synthetic population uses beside the value sets).

Loaded like the rest of `rules/`: validated against a schema, then checked against the loaded value
sets, with every problem reported by file and line (`lumbar-cds rules check` runs it too).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from cds_hooks.pathway.rules import Rules, RulesError
from cds_hooks.pathway.rules.yamlsource import Loader


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Stratum(_Strict):
    label: str
    min: int = Field(ge=0)
    max: int = Field(ge=0)


class AgeBand(_Strict):
    at: Literal["period-start", "period-end"]
    min: int = Field(ge=0)
    max: int = Field(ge=0)
    strata: list[Stratum] = Field(min_length=1)


class Exclusion(_Strict):
    id: str
    kind: str
    category: str | None = None
    days_before: int | None = Field(ge=0)  # None: any time before
    days_after: int = Field(ge=0)
    # Only these resource types count (None: any the reader keeps), e.g. a diagnosis but not a prescription.
    resource_types: list[str] | None = None


class Measure(_Strict):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    title: str
    source: str = Field(min_length=3)
    note: str | None = None
    diagnosis_kind: str
    imaging_kind: str
    imaging_types: list[str] = Field(min_length=1)
    imaging_within_days: int = Field(ge=0)
    intake_ends_days_before_period_end: int = Field(ge=0)
    negative_history_days: int = Field(ge=0)
    age: AgeBand
    exclusions: list[Exclusion]
    not_expressed: list[str] = Field(default_factory=list)


class MeasureFile(_Strict):
    measures: list[Measure] = Field(min_length=1)


class SynthCode(_Strict):
    system: str
    code: str
    display: str
    unit: str | None = None


class CodeGroup(_Strict):
    source: str = Field(min_length=3)
    codes: list[SynthCode] = Field(min_length=1)


class Unrelated(_Strict):
    conditions: CodeGroup
    medications: CodeGroup
    encounters: CodeGroup
    procedures: CodeGroup
    orders: CodeGroup


class Category(_Strict):
    system: str
    code: str


class VitalSigns(_Strict):
    source: str = Field(min_length=3)
    category: Category
    codes: dict[Literal["temperature", "weight", "heart_rate", "systolic"], SynthCode]


class SynthFile(_Strict):
    unrelated: Unrelated
    vital_signs: VitalSigns


def _kinds(rules: Rules) -> dict[str, set[str]]:
    """Value-set kind → the categories the value sets give it."""
    out: dict[str, set[str]] = {}
    for vs in rules.valuesets.values():
        out.setdefault(vs.kind, set()).add(vs.category or "")
    return out


def load_measures(rules: Rules) -> list[Measure]:
    """rules/measures.yaml, checked against the loaded value sets. Raises RulesError."""
    path = Path(rules.source_dir) / "measures.yaml"
    ld = Loader(Path(rules.source_dir))
    raw = ld.read(path)
    doc = ld.parse(MeasureFile, path, raw)
    if doc is not None:
        kinds = _kinds(rules)
        for i, m in enumerate(doc.measures):
            for key in ("diagnosis_kind", "imaging_kind"):
                if getattr(m, key) not in kinds:
                    ld.problem(path, raw, ("measures", i, key), f"no value set has kind {getattr(m, key)!r}")
            for j, ex in enumerate(m.exclusions):
                if ex.kind not in kinds or (ex.category is not None and ex.category not in kinds[ex.kind]):
                    ld.problem(path, raw, ("measures", i, "exclusions", j),
                               f"no value set has kind {ex.kind!r} and category {ex.category!r}")
            if m.age.min > m.age.max or any(s.min > s.max for s in m.age.strata):
                ld.problem(path, raw, ("measures", i, "age"), "an age band's min is above its max")
        if len({m.id for m in doc.measures}) != len(doc.measures):
            ld.problem(path, raw, ("measures",), "measure ids must be unique")
    if ld.problems:
        raise RulesError(ld.problems)
    return list(doc.measures)


def load_synthetic(rules: Rules) -> SynthFile:
    """rules/synthetic.yaml; an `unrelated` code that is in a value set is an error. Raises RulesError."""
    path = Path(rules.source_dir) / "synthetic.yaml"
    ld = Loader(Path(rules.source_dir))
    raw = ld.read(path)
    doc = ld.parse(SynthFile, path, raw)
    if doc is not None:
        for group_name in Unrelated.model_fields:
            group: CodeGroup = getattr(doc.unrelated, group_name)
            for j, code in enumerate(group.codes):
                if rules.index.lookup(code.system, code.code):
                    ld.problem(path, raw, ("unrelated", group_name, "codes", j),
                               f"{code.code} is in a value set, so it is not unrelated history")
    if ld.problems:
        raise RulesError(ld.problems)
    assert doc is not None
    return doc
