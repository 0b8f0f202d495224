"""Load `rules/`: read every file, resolve profiles, run the checks, compile. Refuses on any mistake,
naming the file and line."""

from __future__ import annotations

from datetime import date
from importlib import resources
from pathlib import Path
from typing import Any

from cds_hooks.pathway.rules.checks import check_governance, check_sandbox, check_services, check_valuesets
from cds_hooks.pathway.rules.checks_budget import check_budgets
from cds_hooks.pathway.rules.checks_text import check_cards, check_profiles
from cds_hooks.pathway.rules.compiled import Rules
from cds_hooks.pathway.rules.index import build_index, normalise
from cds_hooks.pathway.rules.published import PUBLISHED_DIR, read_published
from cds_hooks.pathway.rules.schema import (
    CardText,
    CitationFile,
    CodeSystem,
    CodeSystemFile,
    Governance,
    NotUsed,
    Pathway,
    PublishedFile,
    RulesError,
    SandboxText,
    ServiceFile,
    ValueSet,
    ValueSetFile,
)
from cds_hooks.pathway.rules.yamlsource import LineDict, Loader, merge


def default_rules_dir() -> Path:
    """Rules shipped in the wheel, else the repository's top-level rules/."""
    packaged = resources.files("cds_hooks") / "builtin_rules"
    if packaged.is_dir():
        return Path(str(packaged))
    return Path(__file__).resolve().parents[3] / "rules"


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
            own = merge(body, {})
            del own["extends"]
            result = merge(resolve(parent, (*seen, name)), own)
        resolved[name] = result
        return result

    for name in profiles:
        resolve(name, (name,))
    out = merge(raw, {})
    out["profiles"] = merged = LineDict(resolved)
    merged.line, merged.key_lines = getattr(profiles, "line", 0), getattr(profiles, "key_lines", {})
    return out


# What a rules directory written before rules/governance.yaml existed is compared as (`rules diff` only).
UNVERSIONED = Governance(
    id="unversioned", title="Rules without rules/governance.yaml", version="0", status="draft",
    description="Written before the rules carried a version, status and approval.",
    effective=date(1970, 1, 1), publisher="unknown", canonical="http://unversioned.invalid", rules={},
)


def load_rules(rules_dir: Path | None = None, profile: str | None = None, require_governance: bool = True) -> Rules:
    """Load and check all of `rules/`. Raises RulesError listing every problem.

    `require_governance=False` reads an older rules directory without governance.yaml as UNVERSIONED,
    so that `rules diff` can compare against it; nothing serves such rules."""
    root = (rules_dir or default_rules_dir()).resolve()
    ld = Loader(root)
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

    governance_file = root / "governance.yaml"
    governance: Governance | None = UNVERSIONED
    if require_governance or governance_file.exists():
        governance_raw = ld.read(governance_file)
        governance = ld.parse(Governance, governance_file, governance_raw)
        if governance:
            check_governance(ld, governance_file, governance_raw, governance)

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
    not_used = _load_published(ld, root, code_systems, valuesets, where)
    if pathway:
        check_valuesets(ld, valuesets, where, code_systems, pathway)
        check_profiles(ld, pathway_file, pathway_raw, pathway, citations, valuesets, cards)
    if cards:
        check_cards(ld, cards_file, cards_raw, cards, pathway.profiles if pathway else ())
        if pathway:
            check_budgets(ld, cards_file, cards_raw, cards, pathway, valuesets,
                          (citations_file, citations_raw, citations), governance)
    if services_doc:
        check_services(ld, services_file, services_raw, services_doc, valuesets)
    if sandbox:
        check_sandbox(ld, sandbox_file, sandbox_raw, sandbox, valuesets)
    if citations_raw is not None and citations_doc is not None and not citations:
        ld.problems.append(f"{ld.rel(citations_file)}: no citations")

    profile_id = profile or (pathway.default_profile if pathway else "")
    if pathway and profile_id not in pathway.profiles:
        ld.problems.append(
            f"profile {profile_id!r} not found; known profiles: {', '.join(sorted(pathway.profiles))}"
        )
    if ld.problems:
        raise RulesError(ld.problems)
    assert pathway and cards and services_doc and sandbox and governance  # no problems means all parsed

    return Rules(
        profile_id=profile_id,
        profile=pathway.profiles[profile_id],
        pathway=pathway,
        valuesets=valuesets,
        code_systems=code_systems,
        citations=citations,
        cards=cards,
        services={s.id: s for s in services_doc.services},
        index=build_index(valuesets.values(), code_systems, {
            name: flag.icd10_seventh_characters for name, flag in pathway.red_flags.items()
            if flag.icd10_seventh_characters is not None}),
        published_not_used=not_used,
        source_dir=root,
        sandbox=sandbox,
        governance=governance,
    )


def _load_published(
    ld: Loader, root: Path, code_systems: dict[str, CodeSystem], valuesets: dict[str, ValueSet],
    where: dict[str, tuple[Path, Any, int]],
) -> list[NotUsed]:
    """Add the imported expansions, each with its decision and exclusions from decisions.yaml."""
    folder = root.joinpath(*PUBLISHED_DIR)
    decisions_file = folder / "decisions.yaml"
    files = sorted(folder.glob("*.json"))
    if not files and not decisions_file.exists():
        return []
    raw = ld.read(decisions_file)
    doc = ld.parse(PublishedFile, decisions_file, raw)
    decisions = {d.id: (i, d) for i, d in enumerate(doc.published)} if doc else {}
    for path in files:
        vs, problems = read_published(path, code_systems)
        for problem in problems:
            ld.problems.append(f"{ld.rel(path)}: {problem}")
        if vs is None:
            continue
        if vs.id in valuesets:
            ld.problems.append(f"{ld.rel(path)}: value set id {vs.id!r} defined twice")
            continue
        if vs.id not in decisions:
            if doc is not None:
                ld.problems.append(
                    f"{ld.rel(decisions_file)}: no decision for the imported set {vs.id!r}: say why it is used "
                    "for its kind and category, and list any exclusions with reason and source")
            continue
        i, decision = decisions.pop(vs.id)
        listed = {(c.system, normalise(c.code)) for c in vs.codes}
        for j, x in enumerate(decision.exclusions):
            key = (x.system, normalise(x.code))
            if not (key in listed or (x.descendants and any(s == key[0] and c.startswith(key[1]) for s, c in listed))):
                ld.problem(decisions_file, raw, ("published", i, "exclusions", j),
                           f"{vs.id}: excluded code {x.system}|{x.code} is not in the published set")
        valuesets[vs.id] = vs.model_copy(update={"decision": decision.decision, "exclusions": decision.exclusions})
        where[vs.id] = (path, None, -1)
    for vs_id, (i, _) in decisions.items():
        ld.problem(decisions_file, raw, ("published", i, "id"), f"decision for {vs_id!r}: no such published file")
    return list(doc.not_used) if doc else []
