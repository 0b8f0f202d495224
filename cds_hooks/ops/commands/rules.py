"""`lumbar-cds rules ...`: tools for the clinical content in rules/: check it, export it as FHIR knowledge
artifacts, show what changed between two versions, render the pathway document, and import a published
value set whole."""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections import Counter
from pathlib import Path

import orjson
from pydantic import ValidationError

from cds_hooks.audit.audit_rules import load_measures, load_synthetic
from cds_hooks.governance.diff import diff_rules
from cds_hooks.governance.diff_render import FORMATS, render_diff
from cds_hooks.governance.doc_html import render_html
from cds_hooks.governance.doc_markdown import MarkersMissing, render_markdown, replace_generated
from cds_hooks.governance.fhir_bundle import export_bundle, transaction
from cds_hooks.governance.flow import DiagramError
from cds_hooks.governance.gitref import GitRefError, rules_at
from cds_hooks.pathway.rules import Rules, RulesError, default_rules_dir, load_rules
from cds_hooks.pathway.rules.published import PUBLISHED_DIR, PublishedError, import_valueset
from cds_hooks.settings.config import Settings


def register(sub: argparse._SubParsersAction) -> None:
    rules = sub.add_parser("rules", help="rules tools: check, import-valueset, export, diff, doc")
    rules_sub = rules.add_subparsers(dest="rules_command", required=True)
    check = rules_sub.add_parser("check", help="validate rules/ and report errors with file and line")
    _source(check)
    check.set_defaults(func=_rules_check)

    imp = rules_sub.add_parser(
        "import-valueset",
        help="import a published (VSAC) expansion whole into rules/valuesets/published/",
        description="Writes the expansion, every code and its provenance, as rules/valuesets/published/ID.json. "
                    "Record why the set is used and any exclusions in rules/valuesets/published/decisions.yaml; "
                    "`rules check` fails until you do.")
    imp.add_argument("file", help="a value-set reference-pack JSON file (oid, version, source, codes)")
    imp.add_argument("--id", required=True, help="value set id in rules/ (lower-case, dashes)")
    imp.add_argument("--kind", required=True, help="value set kind, e.g. red-flag")
    imp.add_argument("--category", help="red-flag category, modality or other category")
    imp.add_argument("--title", help="title shown in rules check and the docs (default: the set's name)")
    imp.add_argument("--rules-dir", type=Path,
                     help="rules directory to write into (default: the repository's rules/)")
    imp.set_defaults(func=_rules_import)

    export = rules_sub.add_parser("export", help="write the rules as FHIR R4 knowledge artifacts (a Bundle)")
    _source(export)
    export.add_argument("--format", choices=("fhir",), required=True)
    export.add_argument("--type", choices=("collection", "transaction"), default="collection",
                        help="collection (default), or transaction: PUTs to load into a FHIR server")
    export.add_argument("--output", type=Path, help="file to write (default: standard output)")
    export.set_defaults(func=_rules_export)

    diff = rules_sub.add_parser("diff", help="what changed between two rules directories, for the committee")
    diff.add_argument("dirs", nargs="*", type=Path, metavar="DIR",
                      help="OLD NEW; with --git REF only NEW (default: the rules in use)")
    diff.add_argument("--git", metavar="REF", help="compare the rules as committed at REF (OLD) with NEW")
    diff.add_argument("--format", choices=FORMATS, default="text")
    diff.set_defaults(func=_rules_diff)

    doc = rules_sub.add_parser("doc", help="the whole pathway as one HTML page, or the Markdown part of a document")
    _source(doc)
    doc.add_argument("--output", type=Path, help="HTML file to write (default: standard output)")
    doc.add_argument("--markdown", type=Path, metavar="FILE",
                     help="instead of HTML, rewrite the generated part of FILE (e.g. docs/pathway.md)")
    doc.add_argument("--check", action="store_true", help="with --markdown: change nothing, exit 1 if out of date")
    doc.set_defaults(func=_rules_doc)


def _source(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rules-dir", type=Path, help="rules directory (default: LUMBAR_CDS_RULES_DIR or built-in)")
    parser.add_argument("--profile", help="profile (default: LUMBAR_CDS_PROFILE or the rules' default)")


def _load(args: argparse.Namespace) -> Rules:
    settings = Settings.from_env()
    return load_rules(args.rules_dir or settings.rules_dir, args.profile or settings.profile)


def _write(text: str, output: Path | None) -> None:
    if output is None:
        sys.stdout.write(text)
    else:
        output.write_text(text, encoding="utf-8")


def _rules_import(args: argparse.Namespace) -> int:
    rules_dir = args.rules_dir or default_rules_dir()
    try:
        target = import_valueset(Path(args.file), rules_dir.joinpath(*PUBLISHED_DIR), args.id, args.kind,
                                 args.category, args.title)
    except PublishedError as exc:
        print(f"import FAILED: {exc}", file=sys.stderr)
        return 1
    print(f"imported {args.file} -> {target}")
    try:
        load_rules(rules_dir)
    except RulesError as exc:
        print("now record the decision; rules check says:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return 1
    return 0


def _describe(rules: Rules) -> list[str]:
    """One line per value set: id, kind/category, size by code system, and where it comes from."""
    lines = []
    for vs in rules.valuesets.values():
        counts = Counter(rules.system_name(c.system) for c in vs.codes)
        size = ", ".join(f"{name} {n}" for name, n in sorted(counts.items()))
        what = f"{vs.kind}/{vs.category}" if vs.category else vs.kind
        excluded = f"; {len(vs.exclusions)} excluded" if vs.exclusions else ""
        origin = "published " + vs.source if vs.published else "curated, a source per code"
        lines.append(f"    {vs.id} [{what}] {len(vs.codes)} codes ({size}{excluded}): {origin}")
    for item in rules.published_not_used:
        lines.append(f"    not used: {item.name} {item.oid}: {item.reason}")
    return lines


def _rules_check(args: argparse.Namespace) -> int:
    try:
        rules = _load(args)
        # The audit's own files (rules/measures.yaml, rules/synthetic.yaml), checked against the value sets.
        measures = load_measures(rules)
        load_synthetic(rules)
    except RulesError as exc:
        print(f"rules check FAILED: {len(exc.problems)} problem(s)", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return 1
    codes = sum(len(v.codes) for v in rules.valuesets.values())
    published = sum(1 for v in rules.valuesets.values() if v.published)
    unverified = sum(1 for v in rules.valuesets.values() for c in v.codes if not c.verified)
    gov = rules.governance
    approval = gov.approval
    approved = f"approved {approval.date} by {approval.approver} ({approval.committee})" if approval else "not approved"
    print(f"rules OK: {rules.source_dir}")
    print(f"  {gov.id} version {gov.version}, {gov.status}, effective {gov.effective}; {approved}")
    print(f"  profiles: {', '.join(rules.pathway.profiles)} (active: {rules.profile_id})")
    print(f"  value sets: {len(rules.valuesets)} with {codes} codes ({published} published, imported whole; "
          f"{unverified} curated codes marked unverified)")
    print("\n".join(_describe(rules)))
    print(f"  citations: {len(rules.citations)}; services: {', '.join(rules.services)}")
    print(f"  audit measures: {', '.join(m.id for m in measures)}")
    return 0


def _rules_export(args: argparse.Namespace) -> int:
    rules = _load(args)
    try:
        bundle = export_bundle(rules)
    except ValidationError as exc:  # a rules value FHIR R4 cannot carry: name it
        print(f"error: the export is not valid FHIR R4: {exc}", file=sys.stderr)
        return 1
    if args.type == "transaction":
        bundle = transaction(bundle)
    _write(orjson.dumps(bundle, option=orjson.OPT_INDENT_2).decode() + "\n", args.output)
    return 0


def _rules_diff(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    current = settings.rules_dir or default_rules_dir()
    if args.git:
        if len(args.dirs) > 1:
            print("error: with --git REF give at most one directory (NEW)", file=sys.stderr)
            return 2
        new_dir = args.dirs[0] if args.dirs else current
        with tempfile.TemporaryDirectory(prefix="lumbar-cds-rules-") as tmp:
            try:
                old_dir = rules_at(new_dir, args.git, Path(tmp))
            except GitRefError as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 2
            old = load_rules(old_dir, require_governance=False)
    elif len(args.dirs) == 2:
        old = load_rules(args.dirs[0], require_governance=False)
        new_dir = args.dirs[1]
    else:
        print("error: give OLD and NEW rules directories, or --git REF", file=sys.stderr)
        return 2
    new = load_rules(new_dir, require_governance=False)
    sys.stdout.write(render_diff(diff_rules(old, new), old.governance, new.governance, args.format))
    return 0


def _rules_doc(args: argparse.Namespace) -> int:
    rules = _load(args)
    try:
        if args.markdown is None:
            _write(render_html(rules), args.output)
            return 0
        document = args.markdown.read_text(encoding="utf-8")
        updated = replace_generated(document, render_markdown(rules))
    except (DiagramError, MarkersMissing, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if updated == document:
        print(f"{args.markdown}: the generated part is up to date")
        return 0
    if args.check:
        print(f"{args.markdown}: the generated part is out of date; run lumbar-cds rules doc --markdown "
              f"{args.markdown}", file=sys.stderr)
        return 1
    args.markdown.write_text(updated, encoding="utf-8")
    print(f"{args.markdown}: generated part rewritten from {rules.source_dir}")
    return 0
