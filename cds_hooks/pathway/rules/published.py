"""Published value sets: VSAC expansions imported whole into rules/valuesets/published/ as JSON.

Curated YAML sets are validated node by node with line numbers; a published expansion holds thousands
of codes (the Cancer set alone has 7,981), so it is stored as compact JSON, read with orjson and checked
with light code: the shape, known code systems, no duplicate, and every published code present.
`import_valueset` writes the file from a reference-pack expansion (`lumbar-cds rules import-valueset`);
nothing is ever picked out of it. Exclusions and the reason for using a set live in
rules/valuesets/published/decisions.yaml, where a reviewer reads them.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, get_args

import orjson
from pydantic import ValidationError

from cds_hooks.pathway.rules.base import Kind
from cds_hooks.pathway.rules.schema import CodeSystem, Provenance, PublishedCode, ValueSet

FORMAT = "lumbar-cds/published-valueset/1"
PUBLISHED_DIR = ("valuesets", "published")
_KINDS = frozenset(get_args(Kind))


class PublishedError(ValueError):
    """A reference-pack file or a published rules file that cannot be used, with why."""


def _provenance(pack: Mapping[str, Any]) -> dict[str, Any]:
    """The reference pack's description of an expansion, as the rules' Provenance fields."""
    source = pack.get("source") or {}
    expansion = pack.get("expansion") or {}
    return {
        "oid": pack.get("oid"), "name": pack.get("name"), "version": pack.get("version"), "url": pack.get("url"),
        "publisher": pack.get("publisher"), "expansion": expansion.get("identifier"),
        "expansion_timestamp": expansion.get("timestamp"), "repository": source.get("repo"),
        "path": source.get("path"), "commit": source.get("commit"), "role": pack.get("role"),
        "pack_category": pack.get("category"), "note": pack.get("note"), "code_count": pack.get("code_count"),
        "code_system_versions": pack.get("code_system_versions") or {},
    }


def import_valueset(
    pack_file: Path, target_dir: Path, vs_id: str, kind: str, category: str | None, title: str | None = None
) -> Path:
    """Write one reference-pack expansion, whole, as rules/valuesets/published/<vs_id>.json."""
    try:
        pack = orjson.loads(pack_file.read_bytes())
    except (OSError, orjson.JSONDecodeError) as exc:
        raise PublishedError(f"{pack_file}: not a readable JSON file ({exc})") from None
    if not isinstance(pack, dict) or not isinstance(pack.get("codes"), list):
        raise PublishedError(f"{pack_file}: no `codes` list; is this a value-set reference-pack file?")
    codes = [[c.get("system"), c.get("code"), c.get("display")] for c in pack["codes"] if isinstance(c, dict)]
    if len(codes) != len(pack["codes"]) or any(not all(isinstance(x, str) and x for x in c) for c in codes):
        raise PublishedError(f"{pack_file}: every code needs a system, a code and a display")
    if pack.get("code_count") != len(codes):
        raise PublishedError(f"{pack_file}: code_count {pack.get('code_count')} but {len(codes)} codes; not whole")
    if kind not in _KINDS:
        raise PublishedError(f"kind {kind!r} is not one of {', '.join(sorted(_KINDS))}")
    try:
        provenance = Provenance.model_validate(_provenance(pack))
    except ValidationError as exc:
        raise PublishedError(f"{pack_file}: provenance incomplete: {exc.errors()[0]['loc']}") from None
    header = {
        "format": FORMAT, "id": vs_id, "kind": kind, "category": category, "title": title or provenance.name,
        "published": provenance.model_dump(exclude_none=True),
    }
    body = orjson.dumps(header, option=orjson.OPT_INDENT_2)[:-2]  # reopen the object to append the codes
    lines = b",\n  ".join(orjson.dumps(c) for c in codes)
    target_dir.mkdir(parents=True, exist_ok=True)
    target = target_dir / f"{vs_id}.json"
    target.write_bytes(body + b',\n  "codes": [\n  ' + lines + b"\n  ]\n}\n")
    return target


def source_line(p: Provenance) -> str:
    """One line naming the expansion, for `rules check`, the card basis and the governance export."""
    return (f"VSAC {p.name} {p.oid} version {p.version}, expansion {p.expansion or p.expansion_timestamp}; "
            f"{p.repository}@{p.commit[:12]} {p.path}")


def read_published(path: Path, systems: Mapping[str, CodeSystem]) -> tuple[ValueSet | None, list[str]]:
    """One published file as a ValueSet (exclusions and decision still empty), or the problems with it."""
    try:
        doc = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError) as exc:
        return None, [f"not readable JSON ({exc})"]
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        return None, [f"not a published value set file (format must be {FORMAT!r})"]
    problems: list[str] = []
    if doc.get("id") != path.stem:
        problems.append(f"id {doc.get('id')!r} does not match the file name {path.stem!r}")
    if doc.get("kind") not in _KINDS:
        problems.append(f"unknown kind {doc.get('kind')!r}")
    try:
        provenance = Provenance.model_validate(doc.get("published"))
    except ValidationError as exc:
        return None, [*problems, f"published: {'; '.join(str(e['loc']) + ' ' + e['msg'] for e in exc.errors())}"]
    raw = doc.get("codes")
    if not isinstance(raw, list):
        return None, [*problems, "codes is not a list"]
    codes: list[PublishedCode] = []
    seen: set[tuple[str, str]] = set()
    unknown: set[str] = set()
    for item in raw:
        if not (isinstance(item, list) and len(item) == 3 and all(isinstance(x, str) and x for x in item)):
            problems.append(f"code {item!r} is not [system, code, display]")
            continue
        system, code, display = item
        if system not in systems:
            unknown.add(system)
        if (system, code) in seen:
            problems.append(f"code {system}|{code} listed twice")
        seen.add((system, code))
        # Shape checked above; a full pydantic validation of 20,000 codes would dominate start-up.
        codes.append(PublishedCode(system, code, display))
    problems += [f"unknown code system {s!r} (add it to code_systems.yaml)" for s in sorted(unknown)]
    if len(codes) != provenance.code_count:
        problems.append(f"{len(codes)} codes but the expansion has {provenance.code_count}: not imported whole")
    if problems:
        return None, problems
    vs = ValueSet.model_construct(
        id=doc["id"], kind=doc["kind"], title=str(doc.get("title") or provenance.name),
        source=source_line(provenance), category=doc.get("category"), modality=None, contrast=None,
        note=provenance.note, published=provenance, decision=None, exclusions=[], codes=codes,
    )
    return vs, []
