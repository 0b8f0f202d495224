"""The pathway's clinical content: loaded from `rules/`, validated, compiled.

Everything clinical (codes, thresholds, wording, citations, prefetch templates)
is data. This module turns that data into a `Rules` object and refuses to start
on a mistake, naming the file and line. Nothing here knows a clinical code.
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from cds_hooks.yamlsource import LineDict, line_of, load_yaml

Kind = Literal[
    "population",
    "prior-lumbar-surgery",
    "red-flag",
    "lumbar-imaging",
    "surgical-referral",
    "surgeon-specialty",
    "lumbar-spine-surgery",
    "conservative-care",
]
RuleId = Literal[
    "imaging-premature",
    "imaging-duplicate",
    "imaging-contrast",
    "referral-premature",
    "surgery-window",
]
SuggestionKind = Literal["replace-with-pt", "remove-order", "use-mri-without-contrast"]
Indicator = Literal["info", "warning", "critical"]
HookName = Literal["order-select", "order-sign"]
# Why history could not be read (record.py, service.py); cards.yaml words each.
UnavailableReason = Literal[
    "not-sent", "not-allowed", "ehr-error", "no-context", "timeout", "refused", "server-error", "bad-response",
    "unreachable", "truncated",
]

# The one modality the pathway names: formal PT starts the imaging trial clock
# and is the surgery rule's subject. rules/ must define it (checked at load).
FORMAL_PT = "formal-pt"

# CDS Hooks 2.0 prefetch tokens for order-select / order-sign (spec section 1.5).
ALLOWED_PREFETCH_TOKENS = frozenset(
    {
        "context.patientId",
        "context.userId",
        "context.encounterId",
        "userPractitionerId",
        "userPractitionerRoleId",
        "userPatientId",
        "userRelatedPersonId",
    }
)
_TOKEN = re.compile(r"\{\{\s*([^}]*?)\s*\}\}")


class RulesError(Exception):
    """The rules could not be loaded. `problems` holds one line per mistake."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CodeSystem(_Strict):
    uri: str
    name: str
    hierarchical: bool = False


class Alternative(_Strict):
    code: str
    display: str


class Code(_Strict):
    system: str
    code: str = Field(min_length=1)
    display: str = Field(min_length=1)
    descendants: bool = False
    verified: bool = True
    alternative: Alternative | None = None


class ValueSet(_Strict):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    kind: Kind
    title: str
    source: str = Field(min_length=3)
    category: str | None = None
    counts_when_inactive: bool = False
    modality: str | None = None
    contrast: bool | None = None
    text_match: list[str] = Field(default_factory=list)
    note: str | None = None
    codes: list[Code] = Field(min_length=1)


class Citation(_Strict):
    title: str
    publisher: str
    year: int
    url: str = Field(pattern=r"^https?://")
    note: str | None = None


class ImagingSettings(_Strict):
    # NICE NG59 1.1.4: no routine imaging in non-specialist settings, no week count.
    warn_without_red_flags: bool
    min_symptom_weeks: int | None = Field(ge=0)
    conservative_trial_weeks: int | None = Field(ge=0)
    formal_pt_required: bool
    qualifying_modalities: list[str] = Field(min_length=1)
    expected_modalities: list[str]
    duplicate_lookback_months: int | None = Field(ge=0)
    duplicate_modalities: list[str]
    suggest_mri_without_contrast: bool
    contrast_justified_by: list[str]


class SurgerySettings(_Strict):
    min_formal_pt_weeks: int | None = Field(ge=0)
    require_conservative_care: bool
    qualifying_modalities: list[str] = Field(min_length=1)
    expected_modalities: list[str]
    window_months: int | None = Field(ge=0)


class Profile(_Strict):
    title: str
    description: str
    imaging: ImagingSettings
    surgery: SurgerySettings
    red_flags_silence: list[RuleId]
    citations: dict[RuleId, list[str]]


class RecordStatuses(_Strict):
    condition_clinical_excluded: list[str]
    condition_verification_excluded: list[str]
    procedure_counted: list[str]
    encounter_counted: list[str]
    medication_excluded: list[str]
    service_request_counted: list[str]
    imaging_excluded: list[str]


class Pathway(_Strict):
    default_profile: str
    red_flag_categories: dict[str, str]
    modalities: dict[str, str]
    record_statuses: RecordStatuses
    profiles: dict[str, Profile]


class CodingText(_Strict):
    system: str
    code: str
    display: str


class SuggestionText(_Strict):
    label: str
    description: str


class RuleText(_Strict):
    indicator: Indicator
    topic: str
    summary: str
    headline: str
    reasons: dict[str, str]
    recommendation: str
    suggestions: list[SuggestionKind] = Field(default_factory=list)
    override_reasons: bool = True


class RuleTextOverride(_Strict):
    """Profile-specific wording: only the fields given replace the default text."""

    summary: str | None = None
    headline: str | None = None
    reasons: dict[str, str] | None = None
    recommendation: str | None = None
    suggestions: list[SuggestionKind] | None = None


class CardText(_Strict):
    source_label: str
    source_url: str = Field(pattern=r"^https?://")
    topic_system: str = Field(pattern=r"^(https?://|urn:)")
    override_reason_system: str = Field(pattern=r"^(https?://|urn:)")
    override_reasons: list[CodingText] = Field(min_length=1)
    headings: dict[str, str]
    evidence: dict[str, str]
    suggestions: dict[SuggestionKind, SuggestionText]
    pt_referral: dict[str, Any]
    unavailable: dict[UnavailableReason, str]
    history_labels: dict[str, str]
    rules: dict[RuleId, RuleText]
    profile_overrides: dict[str, dict[RuleId, RuleTextOverride]] = Field(default_factory=dict)

    def rule_text(self, profile: str, rule_id: str) -> RuleText:
        base = self.rules[rule_id]  # type: ignore[index]
        override = self.profile_overrides.get(profile, {}).get(rule_id)  # type: ignore[call-overload]
        if override is None:
            return base
        changes = override.model_dump(exclude_none=True)
        if "reasons" in changes:
            changes["reasons"] = {**base.reasons, **changes["reasons"]}
        return base.model_copy(update=changes)


# The sandbox page's timeline lanes (timeline.py); sandbox.yaml labels each.
TimelineLane = Literal["episode", "red-flag", "care", "imaging", "surgery", "referral", "draft-order", "other"]
# Value set kinds a sandbox draft order's code may come from: the orders the pathway judges.
SANDBOX_ORDER_KINDS = ("lumbar-imaging", "surgical-referral", "lumbar-spine-surgery")


class CodeRef(_Strict):
    """A code named by system and code; its display comes from the value set that lists it."""

    system: str
    code: str = Field(min_length=1)


class SandboxOrder(CodeRef):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    label: str = Field(min_length=1)


class SandboxText(_Strict):
    """rules/sandbox.yaml: what the developer sandbox page offers and how it labels the timeline."""

    orders: list[SandboxOrder] = Field(min_length=1)
    pt_evaluation: CodeRef
    pt_session: CodeRef
    timeline_lanes: dict[TimelineLane, str]


class ServiceDef(_Strict):
    id: str = Field(pattern=r"^[A-Za-z0-9._-]+$")
    hook: HookName
    title: str
    description: str
    usageRequirements: str
    prefetch: dict[str, str]
    required: list[str]

    @field_validator("prefetch")
    @classmethod
    def _tokens_allowed(cls, templates: dict[str, str]) -> dict[str, str]:
        for key, template in templates.items():
            for token in _TOKEN.findall(template):
                if token not in ALLOWED_PREFETCH_TOKENS:
                    raise ValueError(f"prefetch {key!r} uses {{{{{token}}}}}, not a CDS Hooks 2.0 token")
        return templates


class ServiceFile(_Strict):
    services: list[ServiceDef] = Field(min_length=1)


class CodeSystemFile(_Strict):
    code_systems: list[CodeSystem] = Field(min_length=1)


class ValueSetFile(_Strict):
    valuesets: list[ValueSet]


class CitationFile(_Strict):
    citations: dict[str, Citation]


# --------------------------------------------------------------------------- compiled form


@dataclass(frozen=True, slots=True)
class Match:
    """A value set a coding belongs to."""

    valueset: ValueSet
    code: Code


@dataclass
class CodeIndex:
    """(system, code) → value sets, plus ICD-10-CM descendant prefixes and text fallbacks."""

    exact: dict[tuple[str, str], list[Match]] = field(default_factory=dict)
    prefixes: dict[tuple[str, str], list[Match]] = field(default_factory=dict)
    hierarchical: frozenset[str] = frozenset()
    text: list[tuple[str, ValueSet]] = field(default_factory=list)
    _memo: dict[tuple[str, str], list[Match]] = field(default_factory=dict, repr=False)

    @staticmethod
    def _norm(code: str) -> str:
        return code.replace(".", "").upper()

    def lookup(self, system: str | None, code: str | None) -> list[Match]:
        if not isinstance(system, str) or not isinstance(code, str):
            return []
        key = (system, code)
        memo = self._memo.get(key)
        if memo is None:
            memo = self._lookup(system, code)
            if len(self._memo) >= 65536:  # bound memory on hostile input
                self._memo.clear()
            self._memo[key] = memo
        return memo

    def _lookup(self, system: str, code: str) -> list[Match]:
        # Every value set the code is in: listed exactly, or under a listed
        # ICD-10-CM header (M80.08XA is both a fracture and osteoporosis).
        found = list(self.exact.get((system, code), ()))
        if system in self.hierarchical and self.prefixes:
            norm = self._norm(code)
            for end in range(len(norm), 2, -1):
                for match in self.prefixes.get((system, norm[:end]), ()):
                    if match not in found:
                        found.append(match)
        return found

    def lookup_text(self, text: str) -> list[Match]:
        lowered = text.lower()
        return [
            Match(vs, vs.codes[0]) for needle, vs in self.text if needle in lowered
        ]


@dataclass(frozen=True)
class Rules:
    """The validated pathway, with the active profile chosen."""

    profile_id: str
    profile: Profile
    pathway: Pathway
    valuesets: dict[str, ValueSet]
    code_systems: dict[str, CodeSystem]
    citations: dict[str, Citation]
    cards: CardText
    services: dict[str, ServiceDef]
    index: CodeIndex
    source_dir: Path
    sandbox: SandboxText

    @cached_property
    def pt_referral(self) -> dict[str, Any]:
        """The PT-referral template as exact R4 JSON, built through fhir.resources R4B."""
        return build_pt_referral(self.cards.pt_referral)

    def card_text(self, rule_id: str) -> RuleText:
        return self.cards.rule_text(self.profile_id, rule_id)

    def citations_for(self, rule_id: str) -> list[Citation]:
        return [self.citations[c] for c in self.profile.citations.get(rule_id, [])]  # type: ignore[call-overload]

    def system_name(self, uri: str) -> str:
        system = self.code_systems.get(uri)
        return system.name if system else uri

    def code(self, ref: CodeRef) -> Code:
        """The value set entry for a code the rules name (every CodeRef is checked at load)."""
        return self.index.exact[(ref.system, ref.code)][0].code


# --------------------------------------------------------------------------- loading


def default_rules_dir() -> Path:
    """Rules shipped in the wheel, else the repository's top-level rules/."""
    packaged = resources.files("cds_hooks") / "builtin_rules"
    if packaged.is_dir():
        return Path(str(packaged))
    return Path(__file__).resolve().parent.parent / "rules"


def _merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> LineDict:
    """Deep merge that keeps each value's source line, for error messages."""
    merged = LineDict(base)
    merged.line = getattr(override, "line", 0) or getattr(base, "line", 0)
    merged.key_lines = {**getattr(base, "key_lines", {}), **getattr(override, "key_lines", {})}
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


class _Loader:
    """Collects every problem instead of stopping at the first one."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.problems: list[str] = []

    def rel(self, path: Path) -> str:
        try:
            return str(path.relative_to(self.root.parent))
        except ValueError:
            return str(path)

    def read(self, path: Path) -> Any:
        if not path.is_file():
            self.problems.append(f"{self.rel(path)}: file is missing")
            return None
        try:
            return load_yaml(path)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f":{mark.line + 1}" if mark else ""
            problem = getattr(exc, "problem", None) or str(exc)
            self.problems.append(f"{self.rel(path)}{where}: YAML error: {problem}")
            return None

    def parse(self, model: type[BaseModel], path: Path, data: Any) -> Any:
        if data is None:
            return None
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            for err in exc.errors():
                line = line_of(data, tuple(err["loc"]))
                where = f":{line}" if line else ""
                loc = ".".join(str(p) for p in err["loc"])
                self.problems.append(f"{self.rel(path)}{where}: {loc}: {err['msg']}")
            return None

    def problem(self, path: Path, data: Any, loc: tuple[Any, ...], message: str) -> None:
        line = line_of(data, loc)
        where = f":{line}" if line else ""
        self.problems.append(f"{self.rel(path)}{where}: {message}")


def _resolve_profiles(raw: Any) -> Any:
    """Apply `extends:` so each profile is complete before validation."""
    if not isinstance(raw, dict) or not isinstance(raw.get("profiles"), dict):
        return raw
    profiles = raw["profiles"]
    resolved: dict[str, Any] = {}

    def resolve(name: str, seen: tuple[str, ...]) -> Any:
        if name in resolved:
            return resolved[name]
        body = profiles[name]
        if not isinstance(body, dict):
            return body
        parent = body.get("extends")
        if parent is None:
            result = body
        elif parent in seen or parent not in profiles:
            raise RulesError([f"rules/pathway.yaml: profile {name!r} extends unknown or cyclic {parent!r}"])
        else:
            own = _merge(body, {})
            del own["extends"]
            result = _merge(resolve(parent, (*seen, name)), own)
        resolved[name] = result
        return result

    for name in profiles:
        resolve(name, (name,))
    out = _merge(raw, {})
    out["profiles"] = merged = LineDict(resolved)
    merged.line, merged.key_lines = getattr(profiles, "line", 0), getattr(profiles, "key_lines", {})
    return out


def load_rules(rules_dir: Path | None = None, profile: str | None = None) -> Rules:
    """Load and check all of `rules/`. Raises RulesError listing every problem."""
    root = (rules_dir or default_rules_dir()).resolve()
    ld = _Loader(root)
    if not root.is_dir():
        raise RulesError([f"{root}: rules directory not found"])

    systems_file = root / "code_systems.yaml"
    systems_raw = ld.read(systems_file)
    systems_doc = ld.parse(CodeSystemFile, systems_file, systems_raw)
    code_systems = {s.uri: s for s in systems_doc.code_systems} if systems_doc else {}

    citations_file = root / "citations.yaml"
    citations_raw = ld.read(citations_file)
    citations_doc = ld.parse(CitationFile, citations_file, citations_raw)
    citations = dict(citations_doc.citations) if citations_doc else {}

    pathway_file = root / "pathway.yaml"
    pathway_raw = ld.read(pathway_file)
    try:
        pathway = ld.parse(Pathway, pathway_file, _resolve_profiles(pathway_raw))
    except RulesError as exc:
        ld.problems.extend(exc.problems)
        pathway = None

    cards_file = root / "cards.yaml"
    cards_raw = ld.read(cards_file)
    cards = ld.parse(CardText, cards_file, cards_raw)

    services_file = root / "services.yaml"
    services_raw = ld.read(services_file)
    services_doc = ld.parse(ServiceFile, services_file, services_raw)

    sandbox_file = root / "sandbox.yaml"
    sandbox_raw = ld.read(sandbox_file)
    sandbox = ld.parse(SandboxText, sandbox_file, sandbox_raw)

    valuesets: dict[str, ValueSet] = {}
    where: dict[str, tuple[Path, Any, int]] = {}
    vs_files = sorted((root / "valuesets").glob("*.yaml"))
    if not vs_files:
        ld.problems.append(f"{ld.rel(root / 'valuesets')}: no value set files")
    for vs_file in vs_files:
        raw = ld.read(vs_file)
        doc = ld.parse(ValueSetFile, vs_file, raw)
        if doc is None:
            continue
        for i, vs in enumerate(doc.valuesets):
            if vs.id in valuesets:
                ld.problem(vs_file, raw, ("valuesets", i, "id"), f"value set id {vs.id!r} defined twice")
                continue
            valuesets[vs.id] = vs
            where[vs.id] = (vs_file, raw, i)

    if pathway:
        _check_valuesets(ld, valuesets, where, code_systems, pathway)
        _check_profiles(ld, pathway_file, pathway_raw, pathway, citations, valuesets)
    if cards:
        _check_cards(ld, cards_file, cards_raw, cards, pathway.profiles if pathway else ())
    if services_doc:
        _check_services(ld, services_file, services_raw, services_doc)
    if sandbox:
        _check_sandbox(ld, sandbox_file, sandbox_raw, sandbox, valuesets)
    if citations_raw is not None and citations_doc is not None and not citations:
        ld.problems.append(f"{ld.rel(citations_file)}: no citations")

    profile_id = profile or (pathway.default_profile if pathway else "")
    if pathway and profile_id not in pathway.profiles:
        ld.problems.append(
            f"profile {profile_id!r} not found; known profiles: {', '.join(sorted(pathway.profiles))}"
        )
    if ld.problems:
        raise RulesError(ld.problems)
    assert pathway and cards and services_doc and sandbox  # no problems means all parsed

    return Rules(
        profile_id=profile_id,
        profile=pathway.profiles[profile_id],
        pathway=pathway,
        valuesets=valuesets,
        code_systems=code_systems,
        citations=citations,
        cards=cards,
        services={s.id: s for s in services_doc.services},
        index=_build_index(valuesets.values(), code_systems),
        source_dir=root,
        sandbox=sandbox,
    )


def _check_valuesets(
    ld: _Loader,
    valuesets: dict[str, ValueSet],
    where: dict[str, tuple[Path, Any, int]],
    code_systems: dict[str, CodeSystem],
    pathway: Pathway,
) -> None:
    seen: dict[tuple[str, str], tuple[str, str]] = {}
    for vs in valuesets.values():
        path, raw, i = where[vs.id]
        base = ("valuesets", i)
        if vs.kind == "red-flag" and vs.category not in pathway.red_flag_categories:
            ld.problem(path, raw, (*base, "category"),
                       f"{vs.id}: red-flag category {vs.category!r} is not in pathway.yaml red_flag_categories")
        if vs.kind == "conservative-care" and vs.category not in pathway.modalities:
            ld.problem(path, raw, (*base, "category"),
                       f"{vs.id}: modality {vs.category!r} is not in pathway.yaml modalities")
        if vs.kind == "lumbar-imaging" and not vs.modality:
            ld.problem(path, raw, base, f"{vs.id}: lumbar-imaging value sets need a modality")
        if vs.text_match and vs.kind != "conservative-care":
            ld.problem(path, raw, (*base, "text_match"), f"{vs.id}: text_match is only for medication sets")
        for j, code in enumerate(vs.codes):
            loc = (*base, "codes", j)
            system = code_systems.get(code.system)
            if system is None:
                ld.problem(path, raw, loc, f"{vs.id}: unknown code system {code.system!r} for code {code.code}")
                continue
            if code.descendants and not system.hierarchical:
                ld.problem(path, raw, loc, f"{vs.id}: descendants is only meaningful for hierarchical systems")
            if code.alternative and vs.contrast is not True:
                ld.problem(path, raw, loc, f"{vs.id}: alternative is only for with-contrast imaging sets")
            key = (code.system, code.code)
            here = f"{ld.rel(path)}:{line_of(raw, loc)}"
            if key in seen:
                other, there = seen[key]
                other_vs = valuesets[other]
                word = "contradicting" if (other_vs.kind, other_vs.category) != (vs.kind, vs.category) else "duplicate"
                ld.problem(path, raw, loc,
                           f"{vs.id}: code {code.system}|{code.code} is also in {other} at {there} ({word} value sets)")
            else:
                seen[key] = (vs.id, here)


def _check_profiles(
    ld: _Loader, path: Path, raw: Any, pathway: Pathway, citations: dict[str, Citation],
    valuesets: dict[str, ValueSet],
) -> None:
    if FORMAL_PT not in pathway.modalities:
        ld.problem(path, raw, ("modalities",), f"modalities must define {FORMAL_PT!r}; the pathway relies on it")
    elif not any(vs.kind == "conservative-care" and vs.category == FORMAL_PT for vs in valuesets.values()):
        ld.problem(path, raw, ("modalities", FORMAL_PT),
                   f"modality {FORMAL_PT!r}: no conservative-care value set has this category")
    for name, prof in pathway.profiles.items():
        loc = ("profiles", name)
        for setting in (prof.imaging, prof.surgery):
            for modality in (*setting.qualifying_modalities, *setting.expected_modalities):
                if modality not in pathway.modalities:
                    ld.problem(path, raw, loc, f"profile {name}: unknown modality {modality!r}")
        for category in prof.imaging.contrast_justified_by:
            if category not in pathway.red_flag_categories:
                ld.problem(path, raw, loc, f"profile {name}: unknown red-flag category {category!r}")
        for rule_id in RuleId.__args__:  # type: ignore[attr-defined]
            refs = prof.citations.get(rule_id)
            if not refs:
                ld.problem(path, raw, (*loc, "citations", rule_id), f"profile {name}: rule {rule_id} has no citation")
                continue
            for ref in refs:
                if ref not in citations:
                    ld.problem(path, raw, (*loc, "citations", rule_id),
                               f"profile {name}: citation {ref!r} is not in citations.yaml")


def _placeholders(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}


# The contract with pathway.py: the reason keys each rule's card can show and
# the fields each one is filled with. Templates must cover these exactly.
_WINDOW = {"start", "duration", "months"}
_PRIOR = {"study", "date", "ago", "months"}
REASON_FIELDS: dict[str, dict[str, set[str]]] = {
    "imaging-premature": {
        "not_routine": set(),
        "symptoms_short": {"onset", "duration", "threshold"},
        "trial_missing": {"threshold"},
        "trial_missing_pt": {"threshold"},
        "trial_short": {"start", "duration", "threshold"},
        "trial_short_pt": {"start", "duration", "threshold"},
        "prior_imaging": _PRIOR,
        "missing_modality": {"modality"},
        "missing_onset": set(),
        "no_red_flags": {"checked"},
    },
    "imaging-duplicate": {"prior_imaging": _PRIOR},
    "imaging-contrast": {"contrast": set()},
    "referral-premature": {
        "pt_missing": {"threshold"},
        "pt_referral_only": {"date", "threshold"},
        "pt_short": {"first", "last", "sessions", "duration", "threshold"},
        "conservative_missing": set(),
        "window": _WINDOW,
        "missing_modality": {"modality"},
        "no_red_flags": {"checked"},
    },
    "surgery-window": {"window": _WINDOW},
}
SUMMARY_FIELDS = frozenset({"order"})
MAX_ORDER_NAME = 60


def _check_cards(ld: _Loader, path: Path, raw: Any, cards: CardText, profiles: Iterable[str]) -> None:
    texts = [(("rules", rule_id), rule_id, text) for rule_id, text in cards.rules.items()]
    for profile, overrides in cards.profile_overrides.items():
        if profile not in profiles:
            ld.problem(path, raw, ("profile_overrides", profile), f"profile_overrides: unknown profile {profile!r}")
        for rule_id in overrides:
            if rule_id in cards.rules:
                loc = ("profile_overrides", profile, rule_id)
                texts.append((loc, rule_id, cards.rule_text(profile, rule_id)))
    for loc, rule_id, text in texts:
        extra = _placeholders(text.summary) - SUMMARY_FIELDS
        if extra:
            ld.problem(path, raw, (*loc, "summary"), f"{rule_id}: summary uses unknown fields {sorted(extra)}")
        longest = text.summary.replace("{order}", "x" * MAX_ORDER_NAME)
        if len(longest) >= 140:
            ld.problem(path, raw, (*loc, "summary"),
                       f"{rule_id}: summary can reach {len(longest)} characters; CDS Hooks needs < 140")
        expected = REASON_FIELDS.get(rule_id, {})
        for key in sorted(set(expected) - set(text.reasons)):
            ld.problem(path, raw, (*loc, "reasons"), f"{rule_id}: reason {key!r} has no template")
        for key, template in text.reasons.items():
            if key not in expected:
                ld.problem(path, raw, (*loc, "reasons", key), f"{rule_id}: reason {key!r} is never used")
                continue
            unknown = _placeholders(template) - expected[key]
            if unknown:
                ld.problem(path, raw, (*loc, "reasons", key),
                           f"{rule_id}.{key}: unknown fields {sorted(unknown)}; allowed {sorted(expected[key])}")
        for kind in text.suggestions:
            if kind not in cards.suggestions:
                ld.problem(path, raw, (*loc, "suggestions"), f"{rule_id}: suggestion {kind!r} has no text")
    try:
        build_pt_referral(cards.pt_referral)
    except (ValueError, TypeError) as exc:  # pydantic ValidationError is a ValueError
        ld.problem(path, raw, ("pt_referral",), f"pt_referral is not a valid R4 ServiceRequest: {exc}")
    for reason in UnavailableReason.__args__:  # type: ignore[attr-defined]
        template = cards.unavailable.get(reason)
        if template is None:
            ld.problem(path, raw, ("unavailable",), f"unavailable: reason {reason!r} has no line")
        elif _placeholders(template) != {"keys"}:
            ld.problem(path, raw, ("unavailable", reason), f"unavailable.{reason}: use exactly the field {{keys}}")
    missing = set(RuleId.__args__) - set(cards.rules)  # type: ignore[attr-defined]
    for rule_id in sorted(missing):
        ld.problem(path, raw, ("rules",), f"rule {rule_id} has no card text")


def build_pt_referral(template: dict[str, Any]) -> dict[str, Any]:
    from cds_hooks.fhir import build

    # A placeholder subject makes the template a complete ServiceRequest to validate.
    built = build("ServiceRequest", {**template, "resourceType": "ServiceRequest",
                                     "subject": {"reference": "Patient/template"}})
    del built["subject"]
    return built


def _check_services(ld: _Loader, path: Path, raw: Any, doc: ServiceFile) -> None:
    ids: set[str] = set()
    for i, svc in enumerate(doc.services):
        loc = ("services", i)
        if svc.id in ids:
            ld.problem(path, raw, (*loc, "id"), f"service id {svc.id!r} defined twice")
        ids.add(svc.id)
        for key in svc.required:
            if key not in svc.prefetch:
                ld.problem(path, raw, (*loc, "required"), f"{svc.id}: required key {key!r} has no prefetch template")


def _check_sandbox(
    ld: _Loader, path: Path, raw: Any, sandbox: SandboxText, valuesets: dict[str, ValueSet]
) -> None:
    kinds: dict[tuple[str, str], set[tuple[str, str | None]]] = {}
    for vs in valuesets.values():
        for code in vs.codes:
            kinds.setdefault((code.system, code.code), set()).add((vs.kind, vs.category))
    ids: set[str] = set()
    for i, order in enumerate(sandbox.orders):
        if order.id in ids:
            ld.problem(path, raw, ("orders", i, "id"), f"orders: id {order.id!r} listed twice")
        ids.add(order.id)
        if not any(kind in SANDBOX_ORDER_KINDS for kind, _ in kinds.get((order.system, order.code), ())):
            ld.problem(path, raw, ("orders", i, "code"),
                       f"orders.{order.id}: code {order.system}|{order.code} is in no value set of kind "
                       f"{', '.join(SANDBOX_ORDER_KINDS)}")
    for name in ("pt_evaluation", "pt_session"):
        ref: CodeRef = getattr(sandbox, name)
        if ("conservative-care", FORMAL_PT) not in kinds.get((ref.system, ref.code), set()):
            ld.problem(path, raw, (name, "code"),
                       f"{name}: code {ref.system}|{ref.code} is in no conservative-care value set of "
                       f"category {FORMAL_PT!r}")
    for lane in sorted(set(TimelineLane.__args__) - set(sandbox.timeline_lanes)):  # type: ignore[attr-defined]
        ld.problem(path, raw, ("timeline_lanes",), f"timeline_lanes: lane {lane!r} has no label")


def _build_index(valuesets: Iterable[ValueSet], systems: dict[str, CodeSystem]) -> CodeIndex:
    index = CodeIndex(hierarchical=frozenset(u for u, s in systems.items() if s.hierarchical))
    for vs in valuesets:
        for code in vs.codes:
            match = Match(vs, code)
            index.exact.setdefault((code.system, code.code), []).append(match)
            if code.descendants:
                index.prefixes.setdefault((code.system, CodeIndex._norm(code.code)), []).append(match)
        for needle in vs.text_match:
            index.text.append((needle.lower(), vs))
    return index
