"""Cross-file checks of `rules/` value sets, services, the sandbox and governance: what pydantic cannot see in one file.

Every problem is collected with its file and line (`Loader.problem`), so
`lumbar-cds rules check` lists all mistakes at once. The profile and card
checks are in `checks_text`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from cds_hooks.pathway.rules.index import normalise
from cds_hooks.pathway.rules.schema import (
    FORMAL_PT,
    LUMBAR_SITE,
    NON_SYSTEMIC_ROUTE,
    SANDBOX_ORDER_KINDS,
    CodeRef,
    CodeSystem,
    Governance,
    Pathway,
    Profile,
    RuleId,
    SandboxText,
    ServiceFile,
    TimelineLane,
    ValueSet,
)
from cds_hooks.pathway.rules.yamlsource import Loader, line_of

# Kinds whose codes may name no body region and so carry a `body_site` rule.
_REGIONAL_KINDS = {"lumbar-imaging", "lumbar-spine-surgery", "prior-lumbar-surgery"}
_NEEDS_CATEGORY = {"red-flag", "conservative-care", "vital-sign", "body-site", "medication-route",
                   "lumbar-spine-surgery"}
Where = dict[str, tuple[Path, Any, int]]


def _exclusion_test(vs: ValueSet) -> Any:
    """A fast "is this code excluded from vs?" for the duplicate scan over thousands of codes."""
    exact = {(x.system, normalise(x.code)) for x in vs.exclusions if not x.descendants}
    prefixes = [(x.system, normalise(x.code)) for x in vs.exclusions if x.descendants]

    def excluded(system: str, code: str) -> bool:
        norm = normalise(code)
        return (system, norm) in exact or any(system == s and norm.startswith(p) for s, p in prefixes)

    return excluded


def _check_one(ld: Loader, vs: ValueSet, where: Where, code_systems: dict[str, CodeSystem], pathway: Pathway) -> None:
    path, raw, i = where[vs.id]
    base = ("valuesets", i)

    def problem(loc: tuple[Any, ...], message: str) -> None:
        if raw is None:
            ld.problems.append(f"{ld.rel(path)}: {message}")
        else:
            ld.problem(path, raw, (*base, *loc), message)

    if vs.kind in _NEEDS_CATEGORY and not vs.category:
        problem(("kind",), f"{vs.id}: value sets of kind {vs.kind} need a category")
    if vs.kind == "red-flag" and vs.category and vs.category not in pathway.red_flags:
        problem(("category",), f"{vs.id}: red-flag category {vs.category!r} is not in pathway.yaml red_flags")
    if vs.kind == "conservative-care" and vs.category not in pathway.modalities:
        problem(("category",), f"{vs.id}: modality {vs.category!r} is not in pathway.yaml modalities")
    if vs.kind == "lumbar-imaging" and not vs.modality:
        problem((), f"{vs.id}: lumbar-imaging value sets need a modality")
    if raw is None:
        return  # a published expansion: its codes were checked as it was read
    for j, code in enumerate(vs.codes):
        loc = ("codes", j)
        system = code_systems.get(code.system)
        if system is None:
            problem(loc, f"{vs.id}: unknown code system {code.system!r} for code {code.code}")
            continue
        if code.descendants and not system.hierarchical:
            problem(loc, f"{vs.id}: descendants is only meaningful for hierarchical systems")
        if code.alternative and vs.contrast is not True:
            problem(loc, f"{vs.id}: alternative is only for with-contrast imaging sets")
        if code.body_site != "implied" and vs.kind not in _REGIONAL_KINDS:
            problem(loc, f"{vs.id}: body_site is only for {', '.join(sorted(_REGIONAL_KINDS))} sets")
    for j, x in enumerate(vs.exclusions):
        under = [c for c in vs.codes if c.system == x.system and (
            normalise(c.code) == normalise(x.code)
            or (c.descendants and normalise(x.code).startswith(normalise(c.code))))]
        if not under:
            problem(("exclusions", j), f"{vs.id}: excluded code {x.code} is not in the set or under a listed header")


def check_valuesets(
    ld: Loader, valuesets: dict[str, ValueSet], where: Where, code_systems: dict[str, CodeSystem], pathway: Pathway
) -> None:
    seen: dict[tuple[str, str], tuple[str, str]] = {}
    for vs in valuesets.values():
        _check_one(ld, vs, where, code_systems, pathway)
        excluded = _exclusion_test(vs) if vs.exclusions else None
        for j, code in enumerate(vs.codes):
            if excluded is not None and excluded(code.system, code.code):
                continue
            system = code_systems.get(code.system)
            key = (code.system, normalise(code.code) if system and system.hierarchical else code.code)
            if key not in seen:
                seen[key] = (vs.id, j)
                continue
            other_id, k = seen[key]
            here, there = _where(ld, where, vs.id, j), _where(ld, where, other_id, k)
            other = valuesets[other_id]
            if (other.kind, other.category) == (vs.kind, vs.category):
                if vs.published and other.published:
                    continue  # two published sets may share codes; neither is edited
                word = "duplicate"
            elif other.kind == vs.kind and vs.kind in ("red-flag", "conservative-care"):
                # One code can be two red flags (M80.08XA: fracture and osteoporosis) or two
                # modalities (a group PT session is formal PT and a group exercise programme).
                continue
            else:
                word = "contradicting"
            message = (f"{vs.id}: code {code.system}|{code.code} is also in {other_id} at {there} ({word} value sets)"
                       + ("; exclude it in decisions.yaml with its reason" if vs.published else ""))
            ld.problems.append(f"{here}: {message}")
    for name in sorted(pathway.red_flags):
        if not any(v.kind == "red-flag" and v.category == name for v in valuesets.values()):
            ld.problems.append(f"rules/pathway.yaml: red flag {name!r}: no red-flag value set has this category")
    for kind, category in (("body-site", LUMBAR_SITE), ("medication-route", NON_SYSTEMIC_ROUTE)):
        if not any(v.kind == kind and v.category == category for v in valuesets.values()):
            ld.problems.append(f"rules/valuesets: no {kind} value set of category {category!r}")


def _where(ld: Loader, where: Where, vs_id: str, j: int) -> str:
    path, raw, i = where[vs_id]
    if raw is None:
        return f"{ld.rel(path)} codes[{j}]"
    return f"{ld.rel(path)}:{line_of(raw, ('valuesets', i, 'codes', j))}"


_CODE_PARAM = re.compile(r"[?&]code=([^&]+)")


def setting_exists(path: str) -> bool:
    """Whether a dotted path names a profile field (a settings section, or a setting of its own) or one
    setting in a section (an optional section such as `older_age` included)."""
    section, _, name = path.partition(".")
    field = Profile.model_fields.get(section)
    if field is None or "." in name:
        return False
    if not name:
        return True
    models = [field.annotation, *getattr(field.annotation, "__args__", ())]
    return any(isinstance(m, type) and name in getattr(m, "model_fields", {}) for m in models)


def check_governance(ld: Loader, path: Path, raw: Any, gov: Governance) -> None:
    if gov.status != "draft" and gov.approval is None:
        ld.problem(path, raw, ("status",),
                   f"status {gov.status!r} needs an approval record (committee, approver, date)")
    if gov.approval and gov.approval.date > gov.effective:
        ld.problem(path, raw, ("approval", "date"),
                   f"approval date {gov.approval.date} is after the effective date {gov.effective}")
    for rule_id in sorted(set(RuleId.__args__) - set(gov.rules)):  # type: ignore[attr-defined]
        ld.problem(path, raw, ("rules",), f"rules: rule {rule_id} has no entry (orders, settings)")
    for rule_id, scope in gov.rules.items():
        loc = ("rules", rule_id)
        for i, setting in enumerate(scope.settings):
            if not setting_exists(setting):
                ld.problem(path, raw, (*loc, "settings", i), f"rules.{rule_id}: {setting!r} is not a profile setting")
        if rule_id in scope.unless:
            ld.problem(path, raw, (*loc, "unless"), f"rules.{rule_id}: a rule cannot take precedence over itself")


def check_services(
    ld: Loader, path: Path, raw: Any, doc: ServiceFile, valuesets: dict[str, ValueSet] | None = None
) -> None:
    ids: set[str] = set()
    vitals = {f"{c.system}|{c.code}" for v in (valuesets or {}).values() if v.kind == "vital-sign" for c in v.codes}
    for i, svc in enumerate(doc.services):
        loc = ("services", i)
        if svc.id in ids:
            ld.problem(path, raw, (*loc, "id"), f"service id {svc.id!r} defined twice")
        ids.add(svc.id)
        for key in svc.required:
            if key not in svc.prefetch:
                ld.problem(path, raw, (*loc, "required"), f"{svc.id}: required key {key!r} has no prefetch template")
        observation = [(k, t) for k, t in svc.prefetch.items() if t.startswith("Observation?")]
        if vitals and not observation:
            ld.problem(path, raw, (*loc, "prefetch"), f"{svc.id}: no Observation template reads the vital signs")
        for key, template in observation:
            # The server filters by code: the template must ask for exactly the codes the rules read.
            asked = set(",".join(_CODE_PARAM.findall(template)).split(",")) - {""}
            if asked != vitals:
                ld.problem(path, raw, (*loc, "prefetch", key),
                           f"{svc.id}.{key}: the template's codes {sorted(asked)} differ from the vital-sign value "
                           f"set codes {sorted(vitals)}")


def check_sandbox(
    ld: Loader, path: Path, raw: Any, sandbox: SandboxText, valuesets: dict[str, ValueSet]
) -> None:
    kinds: dict[tuple[str, str], set[tuple[str, str | None]]] = {}
    for vs in valuesets.values():
        if vs.published:
            continue  # the sandbox names curated codes only
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
